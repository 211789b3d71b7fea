"""Secrets stay out of every file: the pipeline run with fake HF_TOKEN and WANDB_API_KEY writes
neither into its outputs, logs, W&B offline files or caches; and the code never asks for remote
code or unpickles a file it was handed."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

FAKE_SECRETS = {
    "HF_TOKEN": "hf_sfteTestFakeTokenNeverToBeWritten0042",
    "HUGGING_FACE_HUB_TOKEN": "hf_sfteTestFakeTokenNeverToBeWritten0042",
    "WANDB_API_KEY": "sfteval0fake0wandb0key0never0written0000",
}
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
def test_pipeline_writes_no_secret(tmp_path, tiny_llama_dir, shared_data):
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        **FAKE_SECRETS,
        "HOME": str(home),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
        "WANDB_CACHE_DIR": str(tmp_path / "wandb_cache"),
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb_config"),
        "WANDB_DATA_DIR": str(tmp_path / "wandb_data"),
        "SFTEVAL_CACHE": str(tmp_path / "sfteval_cache"),
        "OMP_NUM_THREADS": "1",
    }
    out = tmp_path / "run"
    command = [
        sys.executable, str(ROOT / "run_pipeline.py"), "--smoke", "--model", str(tiny_llama_dir), "--out", str(out),
        "--records", "8", "--steps", "2", "--ifeval-prompts", "2", "--max-new-tokens", "4",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    offline_runs = list((out / "wandb").glob("offline-run-*"))
    assert offline_runs, "eval_wandb.py logged no offline W&B run"

    needles = sorted({value.encode() for value in FAKE_SECRETS.values()})
    assert files_holding(tmp_path, needles) == []
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
