"""The one-command smoke run that README names as the install check, end to end on a CPU, and
that it writes no secret anywhere. Both tests read the one smoke run (a fixture of this file), so
pytest-xdist's --dist loadfile runs it once."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sfteval import cli
from tests.conftest import ROOT, load_script

# Fake secrets in the smoke run's environment; no file it writes may hold them (test_pipeline_writes_no_secret).
FAKE_SECRETS = {
    "HF_TOKEN": "hf_sfteTestFakeTokenNeverToBeWritten0042",
    "HUGGING_FACE_HUB_TOKEN": "hf_sfteTestFakeTokenNeverToBeWritten0042",
    "WANDB_API_KEY": "sfteval0fake0wandb0key0never0written0000",
}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, shared_data, smollm2_dir) -> tuple[Path, subprocess.CompletedProcess]:
    """README's install check, `run_pipeline.py --smoke` on SmolLM2, run once for this file with
    FAKE_SECRETS set and home, caches and W&B folders inside its own folder (the smoke and the
    secrets tests both read it). Returns (that folder, the process); the outputs are in `smoke/`."""
    root = tmp_path_factory.mktemp("smoke_run")
    (root / "home").mkdir()
    env = {
        **os.environ,
        **FAKE_SECRETS,
        "HOME": str(root / "home"),
        "XDG_CACHE_HOME": str(root / "cache"),
        "HF_HOME": str(root / "hf"),
        "HF_HUB_OFFLINE": "1",
        "WANDB_CACHE_DIR": str(root / "wandb_cache"),
        "WANDB_CONFIG_DIR": str(root / "wandb_config"),
        "WANDB_DATA_DIR": str(root / "wandb_data"),
        "SFTEVAL_CACHE": str(root / "sfteval_cache"),
    }
    command = [sys.executable, str(ROOT / "run_pipeline.py"), "--smoke", "--model", str(smollm2_dir)]
    done = subprocess.run(
        [*command, "--out", str(root / "smoke")], cwd=root, env=env, capture_output=True, text=True, timeout=1200
    )
    return root, done


@pytest.mark.slow
def test_smoke_pipeline_runs_end_to_end(smoke_run):
    root, done = smoke_run
    out = root / "smoke"
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "smoke pipeline passed" in done.stdout

    train_config = json.loads((out / "lora_smoke" / "train_config.json").read_text())
    assert train_config["template"] == "alpaca" and train_config["loader"] == "hf"
    scores = sorted((out / "eval_responses").glob("*.scores.json"))
    assert len(scores) == 2
    for path in scores:
        summary = json.loads(path.read_text())["summary"]
        assert summary["n_prompts"] == 6
        assert 0.0 <= summary["prompt_level_strict_acc"] <= 1.0
    results = (out / "results.md").read_text()
    assert results.count("| fp32 |") == 2 and "lora_smoke" in results
    assert (out / "compare.md").read_text().startswith("# IFEval comparison")
    assert (out / "compare.png").stat().st_size > 10_000


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


def test_an_out_that_is_a_file_is_one_line(tmp_path, capsys):
    pipeline = load_script(ROOT / "run_pipeline.py", "run_pipeline")
    blocker = tmp_path / "smoke"
    blocker.write_text("notes\n")
    assert cli.run(pipeline.main, ["--smoke", "--out", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a file, not a folder" in err and blocker.read_text() == "notes\n"
