"""How the answers end and what they hold: stop rate, new-token counts, repetition loops and
prompt echoes, and IFEval restricted to the answers that neither loop nor echo.

A degenerate answer can pass IFEval checks (a loop of one short line has no commas and is all
lowercase), so accuracy alone can reward text nobody would call an answer. The rules are
defined in docs/ANALYSES.md; the constants below are their parameters and are recorded in
every document that uses them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sfteval import stats

LOOP_TAIL_CHARS = 2000  # the end of the answer that is examined
LOOP_WINDOW_CHARS = 20  # length of the character windows compared
LOOP_REPEATED_SHARE = 0.5  # a loop: at least this share of the tail's windows occurred earlier in it
ECHO_PREFIX_SHARE = 0.5  # an echo: the answer starts with at least this share of the prompt
TOKEN_QUANTILES = (("p10", 0.10), ("p25", 0.25), ("median", 0.50), ("p75", 0.75), ("p90", 0.90))
DIGIT = re.compile(r"\d")

RULES = {
    "stop": "stop_reason == 'eos': the answer ended with its own end-of-sequence token",
    "loop": (
        f"stop_reason == 'length' and, in the last {LOOP_TAIL_CHARS} characters with every digit read as 0, "
        f"at least {LOOP_REPEATED_SHARE:.0%} of the {LOOP_WINDOW_CHARS}-character windows occur earlier in that tail"
    ),
    "echo": (
        "with whitespace collapsed and case folded, the answer contains the whole prompt or starts with at "
        f"least {ECHO_PREFIX_SHARE:.0%} of it"
    ),
    "clean": "neither a loop nor an echo",
}


def normalized(text: str) -> str:
    return " ".join(str(text).split()).casefold()


def tail_repeated_share(response: str) -> float:
    """Share of the tail's character windows that already occurred earlier in the tail.

    Digits are masked so that a numbered list repeating one line ("171. Vans", "172. Vans")
    counts as the repetition it is."""
    tail = DIGIT.sub("0", response)[-LOOP_TAIL_CHARS:]
    windows = len(tail) - LOOP_WINDOW_CHARS + 1
    if windows <= 0:
        return 0.0
    distinct = len({tail[i : i + LOOP_WINDOW_CHARS] for i in range(windows)})
    return 1 - distinct / windows


def is_loop(response: str, stop_reason: str | None) -> bool | None:
    """True for an answer cut at the token limit whose tail repeats itself; None when the
    stop reason is unknown (official JSONL, or a scores file written before it was kept)."""
    if stop_reason is None:
        return None
    return stop_reason == "length" and tail_repeated_share(response) >= LOOP_REPEATED_SHARE


def is_echo(prompt: str, response: str) -> bool:
    prompt_text, answer = normalized(prompt), normalized(response)
    if not prompt_text:
        return False
    if prompt_text in answer:
        return True
    shared = 0
    for p, a in zip(prompt_text, answer):
        if p != a:
            break
        shared += 1
    return shared >= ECHO_PREFIX_SHARE * len(prompt_text)


def answer_flags(row: dict[str, Any]) -> dict[str, bool | None]:
    """loop, echo and clean for one scored row (clean is None when loop is unknown)."""
    loop = is_loop(row.get("response") or "", row.get("stop_reason"))
    echo = is_echo(row.get("prompt") or "", row.get("response") or "")
    return {"loop": loop, "echo": echo, "clean": None if loop is None else not (loop or echo)}


def stop_reasons_known(rows: Sequence[dict[str, Any]]) -> bool:
    return bool(rows) and all(row.get("stop_reason") in ("eos", "length") for row in rows)


def rate(flags: Sequence[bool]) -> dict[str, Any]:
    """Count and share of true flags, with a 95% Wilson interval."""
    count, n = sum(bool(f) for f in flags), len(flags)
    return {"count": count, "n": n, "rate": count / n if n else 0.0, "ci": list(stats.wilson_interval(count, n))}


def token_distribution(counts: Sequence[int]) -> dict[str, Any] | None:
    """min, quantiles (nearest rank), max and mean of the answers' new-token counts."""
    if not counts:
        return None
    ordered = sorted(counts)
    out: dict[str, Any] = {"n": len(ordered), "mean": sum(ordered) / len(ordered), "min": ordered[0]}
    for name, q in TOKEN_QUANTILES:
        out[name] = ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]
    out["max"] = ordered[-1]
    return out


def clean_accuracies(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The four IFEval accuracies with bootstrap intervals on the clean answers only."""
    from sfteval.ifeval.scoring import summarize  # scoring builds its document with this module

    clean = [row for row in rows if answer_flags(row)["clean"]]
    return summarize(clean) if clean else None


def analyse(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The `answers` block of a scores document (docs/FORMATS.md): per-run measures of `rows`
    (scored rows with prompt and response, and stop_reason/new_tokens where the run kept them)."""
    known = stop_reasons_known(rows)
    flags = [answer_flags(row) for row in rows]
    tokens = [row["new_tokens"] for row in rows if isinstance(row.get("new_tokens"), int)]
    block: dict[str, Any] = {
        "rules": dict(RULES),
        "n": len(rows),
        "stop_reason_known": known,
        "echo": rate([f["echo"] for f in flags]),
        "new_tokens": token_distribution(tokens) if len(tokens) == len(rows) else None,
        "stopped": None,
        "loop": None,
        "clean": None,
        "clean_accuracy": None,
    }
    if known:
        block["stopped"] = rate([row["stop_reason"] == "eos" for row in rows])
        block["loop"] = rate([f["loop"] for f in flags])
        block["clean"] = rate([f["clean"] for f in flags])
        block["clean_accuracy"] = clean_accuracies(rows)
    else:
        block["note"] = (
            "the answers' stop reasons are unknown, so stop rate, loops and clean answers are not measured; "
            "score the ifeval_responses file from eval_generate.py to get them"
        )
    return block


def summary_lines(block: dict[str, Any]) -> list[str]:
    """The terminal lines for one run's `answers` block."""

    def share(measure: dict[str, Any] | None) -> str:
        if not measure:
            return "not measured"
        low, high = measure["ci"]
        return f"{measure['count']}/{measure['n']} = {measure['rate']:.1%} [{low:.1%}, {high:.1%}]"

    lines = [
        "answers (rules in docs/ANALYSES.md):",
        f"  stopped on their own (EOS)  {share(block['stopped'])}",
        f"  repetition loops            {share(block['loop'])}",
        f"  prompt echoes               {share(block['echo'])}",
        f"  clean (no loop, no echo)    {share(block['clean'])}",
    ]
    tokens = block.get("new_tokens")
    if tokens:
        lines.append(
            f"  new tokens: min {tokens['min']}, p25 {tokens['p25']}, median {tokens['median']}, "
            f"p75 {tokens['p75']}, p90 {tokens['p90']}, max {tokens['max']}, mean {tokens['mean']:.0f}"
        )
    clean = block.get("clean_accuracy")
    if clean:
        cells = []
        for key, label in (("prompt_level_strict_acc", "prompt strict"), ("inst_level_strict_acc", "inst strict")):
            low, high = clean[f"{key}_ci"]
            cells.append(f"{label} {clean[key]:.1%} [{low:.1%}, {high:.1%}]")
        lines.append(f"  IFEval on the {clean['n_prompts']} clean answers: " + ", ".join(cells))
    if block.get("note"):
        lines.append(f"  note: {block['note']}")
    return lines
