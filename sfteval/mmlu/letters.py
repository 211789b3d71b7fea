"""Which letters a tinyMMLU run predicts, and what always answering one letter would score.

A model that answers D to nearly everything scores about the share of questions whose answer is
D; its accuracy means something only above that constant-letter baseline. Both read the `items`
of a `tinymmlu_results` file, so old files get them too. CPU only; no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sfteval.stats import wilson_interval

LETTERS = ("A", "B", "C", "D")


def letter_counts(indices: Sequence[int]) -> dict[str, int]:
    return {letter: sum(1 for i in indices if i == position) for position, letter in enumerate(LETTERS)}


def letter_analysis(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Predicted and correct letters per item, and the best constant-letter baseline with its
    95% Wilson interval (ties go to the earlier letter)."""
    answers = letter_counts([int(item["answer"]) for item in items])
    n = len(items)
    best = max(LETTERS, key=lambda letter: (answers[letter], -LETTERS.index(letter)))
    low, high = wilson_interval(answers[best], n)
    return {
        "prediction_counts": letter_counts([int(item["prediction"]) for item in items]),
        "answer_counts": answers,
        "constant_baseline": {
            "letter": best,
            "n_correct": answers[best],
            "accuracy": answers[best] / n if n else 0.0,
            "ci": [low, high],
        },
    }


def letter_line(analysis: dict[str, Any]) -> str:
    predicted = "/".join(str(v) for v in analysis["prediction_counts"].values())
    correct = "/".join(str(v) for v in analysis["answer_counts"].values())
    baseline = analysis["constant_baseline"]
    low, high = baseline["ci"]
    return (
        f"predicted A/B/C/D {predicted}, correct A/B/C/D {correct}; always answering {baseline['letter']} "
        f"scores {baseline['accuracy']:.1%} [{low:.1%}, {high:.1%}]"
    )
