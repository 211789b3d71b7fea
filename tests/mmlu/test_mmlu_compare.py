import json
import subprocess
import sys

import pytest

from sfteval import records, stats
from sfteval.cli import UserError
from sfteval.mmlu import compare as mmlu_compare
from tests.conftest import ROOT


def results_file(path, shared_data, correct, data_sha="d" * 64, adapter=None):
    """A tinymmlu_results file as eval_mmlu.py writes it, over the 100 shared questions."""
    rows = [json.loads(line) for line in (shared_data / "tinymmlu" / "tinyMMLU_test.jsonl").read_text().splitlines()]
    items = [
        {
            "idx": i,
            "subject": row["subject"],
            "answer": row["answer"],
            "prediction": row["answer"] if ok else (row["answer"] + 1) % 4,
            "correct": ok,
        }
        for i, (row, ok) in enumerate(zip(rows, correct))
    ]
    meta = {"model": "m", "adapter": adapter, "precision": "bf16", "template": "none", "data": {"sha256": data_sha}}
    path.write_text(json.dumps({"schema_version": 1, "kind": "tinymmlu_results", "metadata": meta, "items": items}))
    return path


@pytest.fixture
def pair(tmp_path, shared_data):
    # A right on 30, B on 36; 10 questions only A gets right, 16 only B.
    a = [i < 30 for i in range(100)]
    b = [20 <= i < 56 for i in range(100)]
    return (
        results_file(tmp_path / "a.json", shared_data, a),
        results_file(tmp_path / "b.json", shared_data, b, adapter="lora_model_4bit"),
        a,
        b,
    )


def test_accuracies_intervals_and_mcnemar(pair):
    path_a, path_b, a, b = pair
    result = mmlu_compare.compare(path_a, path_b)
    assert result["n"] == 100
    assert (result["a"]["n_correct"], result["b"]["n_correct"]) == (30, 36)
    assert result["a"]["ci"] == stats.wilson_interval(30, 100)
    assert (result["mcnemar"]["only_first"], result["mcnemar"]["only_second"]) == (20, 26)
    assert result["mcnemar"]["p_value"] == stats.mcnemar_exact(a, b)["p_value"]
    assert result["difference"]["points"] == pytest.approx(6.0)
    low, high = result["difference"]["ci_points"]
    assert low < 6.0 < high and high - low > 10  # 100 questions: a wide interval


def test_identical_runs_differ_by_nothing(pair):
    path_a, _, _, _ = pair
    result = mmlu_compare.compare(path_a, path_a)
    assert result["difference"] == {"points": 0.0, "ci_points": (0.0, 0.0)}
    assert result["mcnemar"]["p_value"] == 1.0


def test_refuses_different_question_sets(tmp_path, shared_data, pair):
    path_a, _, a, _ = pair
    other = results_file(tmp_path / "other.json", shared_data, a, data_sha="e" * 64)
    with pytest.raises(UserError, match="different question sets"):
        mmlu_compare.compare(path_a, other)
    doc = json.loads(path_a.read_text())
    doc["items"] = doc["items"][:10]
    (tmp_path / "limited.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match="different questions"):
        mmlu_compare.compare(path_a, tmp_path / "limited.json")


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "compare_mmlu.py", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_cli_prints_writes_and_never_overwrites(tmp_path, pair):
    path_a, path_b, _, _ = pair
    out = tmp_path / "cmp.json"
    done = run_cli("--model1", path_a, "--model2", path_b, "--names", "base", "lora", "--json", out)
    assert done.returncode == 0, done.stderr
    assert "base: 30.0%" in done.stdout and "lora: 36.0%" in done.stdout and "lora - base: +6.0 points" in done.stdout
    saved = json.loads(out.read_text())
    assert saved["names"] == ["base", "lora"]
    assert (saved["kind"], saved["schema_version"]) == ("tinymmlu_comparison", 1)
    assert saved["metadata"]["inputs"][1] == {"path": str(path_b), "sha256": records.sha256_file(path_b)}
    assert saved["mcnemar"]["p_value"] == mmlu_compare.compare(path_a, path_b)["mcnemar"]["p_value"]
    again = run_cli("--model1", path_a, "--model2", path_b, "--json", out)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_cli_bad_file_is_one_line(tmp_path, pair):
    path_a, _, _, _ = pair
    scores = tmp_path / "x.scores.json"
    scores.write_text(json.dumps({"kind": "ifeval_scores"}))
    done = run_cli("--model1", path_a, "--model2", scores)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "not a tinyMMLU results file" in done.stderr
