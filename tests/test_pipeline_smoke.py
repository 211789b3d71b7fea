"""The one-command smoke run that README names as the install check, end to end on a CPU."""

import json

import pytest

from sfteval import cli
from tests.conftest import ROOT, load_script


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


def test_an_out_that_is_a_file_is_one_line(tmp_path, capsys):
    pipeline = load_script(ROOT / "run_pipeline.py", "run_pipeline")
    blocker = tmp_path / "smoke"
    blocker.write_text("notes\n")
    assert cli.run(pipeline.main, ["--smoke", "--out", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a file, not a folder" in err and blocker.read_text() == "notes\n"
