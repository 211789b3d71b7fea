"""Secrets stay out of every file: the pipeline run with fake HF_TOKEN and WANDB_API_KEY writes
neither into its outputs, logs, W&B offline files or caches; and the code never asks for remote
code or unpickles a file it was handed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import FAKE_SECRETS, ROOT

# Modules that turn bytes from a file into arbitrary objects (and so run code on load).
UNPICKLERS = {"pickle", "cPickle", "dill", "joblib", "cloudpickle", "shelve", "marshal"}


def production_files() -> list[Path]:
    return sorted([*ROOT.glob("*.py"), *(ROOT / "sfteval").rglob("*.py")])


def files_holding(folder: Path, needles: list[bytes]) -> list[str]:
    return [
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and any(needle in path.read_bytes() for needle in needles)
    ]


@pytest.mark.slow
def test_pipeline_writes_no_secret(smoke_run):
    """The smoke run had fake tokens in its environment: no file under its folder (outputs, logs,
    home, caches, W&B offline files) and none of its output holds one."""
    root, done = smoke_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert list((root / "smoke" / "wandb").glob("offline-run-*")), "eval_wandb.py logged no offline W&B run"
    needles = sorted({value.encode() for value in FAKE_SECRETS.values()})
    assert files_holding(root, needles) == []
    for needle in needles:
        assert needle.decode() not in done.stdout + done.stderr


def keyword_calls(tree: ast.AST, name: str) -> list[ast.keyword]:
    return [kw for node in ast.walk(tree) if isinstance(node, ast.Call) for kw in node.keywords if kw.arg == name]


@pytest.mark.parametrize("path", production_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_remote_code_and_no_unpickling(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    remote = [
        kw
        for kw in keyword_calls(tree, "trust_remote_code")
        if not (isinstance(kw.value, ast.Constant) and kw.value.value is False)
    ]
    assert not remote, f"{path.name}:{remote[0].lineno} passes trust_remote_code"
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not imported & UNPICKLERS, f"{path.name} imports {sorted(imported & UNPICKLERS)}"
    loads = [
        kw
        for kw in keyword_calls(tree, "weights_only")
        if isinstance(kw.value, ast.Constant) and kw.value.value is False
    ]
    assert not loads, f"{path.name}:{loads[0].lineno} loads a torch file with weights_only=False"
