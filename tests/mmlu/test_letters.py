"""The letter histogram and constant-letter baseline, on hand-made items and on the real
Gemma-3-270M tinyMMLU files (written before these fields existed). Those are fixtures cut by
tools/cut_test_fixtures.py from the run files in history (docs/runs/ at commit fac9ff7) (tests/fixtures/README.md): all 100 items of each
run, with only idx, answer, prediction and correct."""

from __future__ import annotations

import pytest

from sfteval import records, stats
from sfteval.mmlu import compare
from sfteval.mmlu.letters import letter_analysis, letter_line
from tests.conftest import ROOT

GEMMA_RESULTS = ROOT / "tests" / "fixtures" / "gemma_2026-11-27" / "eval_results"


def items(answers, predictions):
    return [{"answer": a, "prediction": p} for a, p in zip(answers, predictions)]


def test_histograms_and_the_best_constant_letter():
    result = letter_analysis(items([3, 3, 3, 0, 1, 2, 3], [3, 3, 3, 3, 3, 3, 0]))
    assert result["prediction_counts"] == {"A": 1, "B": 0, "C": 0, "D": 6}
    assert result["answer_counts"] == {"A": 1, "B": 1, "C": 1, "D": 4}
    baseline = result["constant_baseline"]
    assert (baseline["letter"], baseline["n_correct"]) == ("D", 4)
    assert baseline["accuracy"] == pytest.approx(4 / 7)
    assert baseline["ci"] == pytest.approx(list(stats.wilson_interval(4, 7)))
    assert "always answering D scores 57.1%" in letter_line(result)


@pytest.mark.parametrize("path", sorted(GEMMA_RESULTS.glob("*_tinymmlu_*.json.gz")), ids=lambda p: p.name[-30:])
def test_real_files_the_baseline_is_what_a_constant_answer_scores(path):
    doc = records.read_json(path)
    result = letter_analysis(doc["items"])
    for letter_index, letter in enumerate("ABCD"):
        always = sum(item["answer"] == letter_index for item in doc["items"])
        assert always <= result["constant_baseline"]["n_correct"]
        assert result["answer_counts"][letter] == always
    assert sum(result["prediction_counts"].values()) == len(doc["items"])
    predicted = max(result["prediction_counts"], key=result["prediction_counts"].get)
    assert result["prediction_counts"][predicted] == sum(
        item["prediction"] == "ABCD".index(predicted) for item in doc["items"]
    )


def test_compare_mmlu_shows_both_runs_letters():
    base, tuned = (sorted(GEMMA_RESULTS.glob(pattern))[0] for pattern in ("*c8adfa24f746_bf16_*", "*lora*_bf16_*"))
    result = compare.compare(base, tuned)
    assert result["a"]["letters"] == letter_analysis(records.read_json(base)["items"])
    text = compare.format_text(result, ("base", "lora"))
    assert text.count("always answering") == 2
