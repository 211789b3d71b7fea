"""The code never asks for remote code or unpickles a file it was handed. (That the pipeline
writes no secret into any file is checked on its smoke run, in test_pipeline_smoke.py.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Modules that turn bytes from a file into arbitrary objects (and so run code on load).
UNPICKLERS = {"pickle", "cPickle", "dill", "joblib", "cloudpickle", "shelve", "marshal"}


def production_files() -> list[Path]:
    return sorted([*ROOT.glob("*.py"), *(ROOT / "sfteval").rglob("*.py")])


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
