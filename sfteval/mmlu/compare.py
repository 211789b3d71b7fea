"""Paired comparison of two tinyMMLU runs (files from eval_mmlu.py) on the same questions:
both accuracies with Wilson intervals, the difference with a paired bootstrap interval, and the
exact McNemar test on the questions that changed verdict. CPU only; no torch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sfteval import records, schemas, stats
from sfteval.cli import UserError
from sfteval.mmlu.letters import letter_analysis, letter_line

KIND = "tinymmlu_results"
COMPARISON_KIND = "tinymmlu_comparison"


def load_run(path: str | Path) -> dict[str, Any]:
    doc = records.read_json(path, "tinyMMLU results file")
    kind = doc.get("kind") if isinstance(doc, dict) else None
    if kind != KIND or not isinstance(doc.get("items"), list):
        found = f"kind {kind!r}" if kind else "no `kind`"
        raise UserError(
            f"{path} is not a tinyMMLU results file from eval_mmlu.py: it has {found}, expected {KIND!r} with items"
        )
    if not doc["items"]:
        raise UserError(f"{path} holds no items; pass a file from a finished eval_mmlu.py run")
    return schemas.validate(doc, KIND, path)


def verdicts(doc: dict[str, Any]) -> dict[int, bool]:
    return {item["idx"]: item["correct"] for item in doc["items"]}


def describe(doc: dict[str, Any], path: str | Path) -> dict[str, Any]:
    meta = doc.get("metadata", {})
    return {
        "file": str(path),
        "model": meta.get("model"),
        "adapter": meta.get("adapter"),
        "precision": meta.get("precision"),
        "template": meta.get("template"),
        "letters": letter_analysis(doc["items"]),
    }


def compare(path_a: str | Path, path_b: str | Path) -> dict[str, Any]:
    """B - A on the questions both files answered; refuses different question sets."""
    doc_a, doc_b = load_run(path_a), load_run(path_b)
    data_a = doc_a.get("metadata", {}).get("data", {}).get("sha256")
    data_b = doc_b.get("metadata", {}).get("data", {}).get("sha256")
    if data_a != data_b:
        raise UserError(f"{path_a} and {path_b} scored different question sets (data sha256 differs)")
    a, b = verdicts(doc_a), verdicts(doc_b)
    if set(a) != set(b):
        raise UserError(f"{path_a} and {path_b} hold different questions (was one run with --limit?)")
    keys = sorted(a)
    first, second = [a[k] for k in keys], [b[k] for k in keys]
    return {
        "n": len(keys),
        "a": {**describe(doc_a, path_a), **accuracy(first)},
        "b": {**describe(doc_b, path_b), **accuracy(second)},
        "difference": difference(first, second),
        "mcnemar": stats.mcnemar_exact(first, second),
    }


def accuracy(correct: Sequence[bool]) -> dict[str, Any]:
    hits = sum(correct)
    return {"n_correct": hits, "accuracy": hits / len(correct), "ci": stats.wilson_interval(hits, len(correct))}


def difference(first: Sequence[bool], second: Sequence[bool]) -> dict[str, Any]:
    """accuracy(B) - accuracy(A) with a paired bootstrap interval over questions."""
    low, high = stats.paired_bootstrap_difference([[x] for x in first], [[y] for y in second])
    return {"points": (sum(second) - sum(first)) / len(first) * 100, "ci_points": (low * 100, high * 100)}


def format_text(result: dict[str, Any], names: Sequence[str] = ("A", "B")) -> str:
    a, b, diff, test = result["a"], result["b"], result["difference"], result["mcnemar"]

    def pct(run: dict[str, Any]) -> str:
        return f"{run['accuracy'] * 100:.1f}% [{run['ci'][0] * 100:.1f}, {run['ci'][1] * 100:.1f}]"

    lines = [f"tinyMMLU, paired on {result['n']} questions (95% intervals)"]
    for name, run in zip(names, (a, b)):
        adapter = f" + {run['adapter']}" if run["adapter"] else ""
        lines.append(f"  {name}: {pct(run)}  {run['model']}{adapter}, {run['precision']}, template {run['template']}")
        lines.append(f"    {letter_line(run['letters'])}")
    lines.append(
        f"  {names[1]} - {names[0]}: {diff['points']:+.1f} points [{diff['ci_points'][0]:+.1f}, {diff['ci_points'][1]:+.1f}]; "
        f"McNemar p = {test['p_value']:.3g} ({test['only_first']} right only in {names[0]}, "
        f"{test['only_second']} only in {names[1]})"
    )
    return "\n".join(lines)
