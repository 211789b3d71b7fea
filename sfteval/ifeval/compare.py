"""Pair two IFEval runs prompt by prompt: both runs' accuracies with intervals, the paired
differences, exact McNemar tests, per-instruction deltas and the prompts that flipped.

Inputs are `ifeval_scores` files (read as they are), or `ifeval_responses` files and the
official `{"prompt", "response"}` JSONL (scored on the fly by `sfteval.ifeval.scoring.score_file`).
Nothing here needs torch or scipy: the laptop's light install runs it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sfteval import records, schemas, stats
from sfteval.cli import UserError
from sfteval.ifeval import answers

KIND = "ifeval_comparison"

# (summary key, short label, level, strictness)
METRICS = (
    ("prompt_level_strict_acc", "prompt-level strict", "prompt", "strict"),
    ("prompt_level_loose_acc", "prompt-level loose", "prompt", "loose"),
    ("inst_level_strict_acc", "instruction-level strict", "inst", "strict"),
    ("inst_level_loose_acc", "instruction-level loose", "inst", "loose"),
)
EXCERPT_CHARS = 160
PROMPT_EXCERPT_CHARS = 100


# ---------------------------------------------------------------------------------------------
# Loading


def load_run(path: str | Path, prompts: str | None = None) -> dict[str, Any]:
    """An `ifeval_scores` document for `path`: read if it is one, scored on the fly otherwise."""
    path = records.require_file(path, "run file")
    if path.suffix.lower() == ".jsonl":
        return _score(path, prompts)
    text = records.read_text(path, "run file")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        if _looks_like_official_jsonl(text):
            return _score(path, prompts)
        doc = records.read_json(path)  # raises the one-line parse error
    kind = doc.get("kind") if isinstance(doc, dict) else None
    if kind == "ifeval_scores":
        return schemas.validate(doc, "ifeval_scores", path)
    if kind == "ifeval_responses":
        return _score(path, prompts)
    if kind:
        raise UserError(
            f"{path} holds {kind} results, not IFEval: expected an ifeval_scores or ifeval_responses "
            "file, or an official prompt/response JSONL"
        )
    if isinstance(doc, dict) and "results" in doc and "config" in doc:
        raise UserError(f"{path} is an lm-eval results file, not IFEval scores or responses")
    raise UserError(f"{path} is not an IFEval scores or responses file (no `kind` field)")


def _looks_like_official_jsonl(text: str) -> bool:
    first = text.lstrip().split("\n", 1)[0]
    try:
        row = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(row, dict) and "prompt" in row and "response" in row


def _score(path: Path, prompts: str | None) -> dict[str, Any]:
    from sfteval.ifeval import scoring as ifeval

    return schemas.validate(ifeval.score_file(path, prompts=prompts), "ifeval_scores", path)


def describe_run(doc: dict[str, Any]) -> str:
    """'model + adapter, precision, template' from the metadata, or the scored file's name."""
    meta = doc.get("metadata") or {}
    parts = []
    if meta.get("model"):
        model = str(meta["model"])
        if meta.get("adapter"):
            model += f" + {records.slug(meta['adapter'])}"
        parts.append(model)
    for field in ("precision", "template"):
        if meta.get(field):
            parts.append(f"{field} {meta[field]}")
    if not parts and meta.get("input_format") == "official_jsonl":
        source = (meta.get("prompt_set") or {}).get("source")
        return "official prompt/response JSONL" + (f", prompts from {Path(source).name}" if source else "")
    return ", ".join(parts) or "no run metadata"


# ---------------------------------------------------------------------------------------------
# Pairing


def _pair_key(rows_a: list[dict], rows_b: list[dict]) -> str:
    has_keys = all(isinstance(r.get("key"), int) for r in [*rows_a, *rows_b])
    return "key" if has_keys else "prompt"


def pair_rows(
    doc_a: dict[str, Any], doc_b: dict[str, Any], common_only: bool = False
) -> tuple[list[tuple[dict, dict]], list[str]]:
    """Rows of both runs for the same prompts, in the first run's order, and notes on how
    they were paired. Different prompt sets are refused unless `common_only`."""
    rows_a, rows_b = doc_a["per_prompt"], doc_b["per_prompt"]
    by = _pair_key(rows_a, rows_b)
    index_a = _index(rows_a, by, "--model1")
    index_b = _index(rows_b, by, "--model2")
    notes: list[str] = []
    hint = "; pass --common-only to compare on the prompts both runs share"

    sha_a = ((doc_a.get("metadata") or {}).get("prompt_set") or {}).get("sha256")
    sha_b = ((doc_b.get("metadata") or {}).get("prompt_set") or {}).get("sha256")
    if sha_a and sha_b and sha_a != sha_b:
        if not common_only:
            raise UserError(f"the runs used different prompt sets (sha256 {sha_a[:12]}… vs {sha_b[:12]}…){hint}")
        notes.append(
            "The prompt-set checksums differ: prompts are paired where key, text and instruction ids agree; "
            "instruction arguments cannot be compared from scores files."
        )

    common = [k for k in index_a if k in index_b]
    only_a, only_b = len(index_a) - len(common), len(index_b) - len(common)
    if only_a or only_b:
        if not common_only:
            raise UserError(
                f"the runs cover different prompts ({len(index_a)} vs {len(index_b)}, {len(common)} in common){hint}"
            )
        notes.append(f"Compared on the {len(common)} prompts both runs share ({only_a} only in A, {only_b} only in B).")

    differing = [
        k
        for k in common
        if index_a[k].get("prompt") != index_b[k].get("prompt")
        or list(index_a[k]["instruction_id_list"]) != list(index_b[k]["instruction_id_list"])
    ]
    if differing:
        if not common_only:
            raise UserError(
                f"{len(differing)} prompt(s) with the same {by} differ in text or instructions "
                f"(first: {by} {str(differing[0])[:60]!r}); the runs used different prompt sets{hint}"
            )
        notes.append(f"Left out {len(differing)} prompt(s) whose text or instructions differ between the runs.")
        common = [k for k in common if k not in set(differing)]
    if not common:
        raise UserError("the runs have no prompt in common")
    if by == "prompt":
        notes.append("Paired by prompt text (the files carry no prompt keys).")
    return [(index_a[k], index_b[k]) for k in common], notes


def _index(rows: list[dict], by: str, flag: str) -> dict[Any, dict]:
    index: dict[Any, dict] = {}
    for row in rows:
        value = row.get(by)
        if value in index:
            raise UserError(f"{flag} has two scored rows for {by} {str(value)[:60]!r}")
        index[value] = row
    return index


# ---------------------------------------------------------------------------------------------
# Statistics


def _units(rows: Sequence[dict], level: str, strictness: str) -> list[list[bool]]:
    if level == "prompt":
        return [[bool(r[f"follow_all_{strictness}"])] for r in rows]
    return [[bool(v) for v in r[f"follow_instruction_list_{strictness}"]] for r in rows]


def _accuracy(doc, rows, key, level, strictness, samples, seed) -> dict[str, Any]:
    """Accuracy over the paired rows with its 95% bootstrap interval over prompts (as the
    scorer computes it). When every scored prompt takes part, the file's own interval is
    shown, as results.md does."""
    units = _units(rows, level, strictness)
    hits, total = sum(sum(u) for u in units), sum(len(u) for u in units)
    value = hits / total if total else 0.0
    summary = doc.get("summary") or {}
    ci = summary.get(f"{key}_ci")
    full = len(rows) == len(doc["per_prompt"])
    same = isinstance(summary.get(key), (int, float)) and abs(summary[key] - value) < 1e-9
    if not (full and same and isinstance(ci, list) and len(ci) == 2):
        ci = stats.bootstrap_interval(units, samples=samples, seed=seed)
    return {"acc": value, "ci": [float(ci[0]), float(ci[1])], "n": total}


def compare(
    doc_a: dict[str, Any],
    doc_b: dict[str, Any],
    *,
    common_only: bool = False,
    names: tuple[str, str] = ("A", "B"),
    bootstrap_samples: int = stats.BOOTSTRAP_SAMPLES,
    bootstrap_seed: int = stats.BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """The comparison as one JSON-ready dict (the body of an `ifeval_comparison` file)."""
    pairs, notes = pair_rows(doc_a, doc_b, common_only=common_only)
    rows_a = [a for a, _ in pairs]
    rows_b = [b for _, b in pairs]
    metrics = paired_metrics(doc_a, doc_b, rows_a, rows_b, bootstrap_samples, bootstrap_seed)
    return {
        "names": list(names),
        "runs": [_run_info(doc_a), _run_info(doc_b)],
        "n_prompts": len(pairs),
        "n_instructions": sum(len(a["instruction_id_list"]) for a in rows_a),
        "notes": notes,
        "bootstrap": {"samples": bootstrap_samples, "seed": bootstrap_seed},
        "metrics": metrics,
        "answers": paired_answers(doc_a, doc_b, pairs, bootstrap_samples, bootstrap_seed),
        "per_instruction": per_instruction(pairs),
        "flips": {"strict": flips(pairs, "strict"), "loose": flips(pairs, "loose")},
    }


def paired_metrics(
    doc_a: dict[str, Any],
    doc_b: dict[str, Any],
    rows_a: Sequence[dict],
    rows_b: Sequence[dict],
    samples: int = stats.BOOTSTRAP_SAMPLES,
    seed: int = stats.BOOTSTRAP_SEED,
) -> list[dict[str, Any]]:
    """The four accuracies of both runs on these paired rows, their difference with a paired
    bootstrap interval, exact McNemar on the verdicts and, at instruction level, McNemar
    clustered by prompt."""
    metrics = []
    for key, label, level, strictness in METRICS:
        units_a = _units(rows_a, level, strictness)
        units_b = _units(rows_b, level, strictness)
        run_a = _accuracy(doc_a, rows_a, key, level, strictness, samples, seed)
        run_b = _accuracy(doc_b, rows_b, key, level, strictness, samples, seed)
        test = stats.mcnemar_exact([v for u in units_a for v in u], [v for u in units_b for v in u])
        metrics.append(
            {
                "metric": key,
                "label": label,
                "level": level,
                "a": run_a,
                "b": run_b,
                "difference": run_b["acc"] - run_a["acc"],
                "difference_ci": list(stats.paired_bootstrap_difference(units_a, units_b, samples, seed)),
                "mcnemar": {
                    "pass_to_fail": test["only_first"],
                    "fail_to_pass": test["only_second"],
                    "discordant": test["discordant"],
                    "p_value": test["p_value"],
                },
                "clustered_mcnemar": stats.clustered_mcnemar(units_a, units_b) if level == "inst" else None,
            }
        )
    return metrics


ANSWER_MEASURES = (
    ("stopped", "stopped (EOS)"),
    ("loop", "repetition loop"),
    ("echo", "prompt echo"),
    ("clean", "clean"),
)


def _answer_flags(rows: Sequence[dict], measure: str) -> list[bool]:
    if measure == "stopped":
        return [row["stop_reason"] == "eos" for row in rows]
    return [bool(answers.answer_flags(row)[measure]) for row in rows]


def paired_answers(
    doc_a: dict[str, Any],
    doc_b: dict[str, Any],
    pairs: Sequence[tuple[dict, dict]],
    samples: int = stats.BOOTSTRAP_SAMPLES,
    seed: int = stats.BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """Both runs' answer measures (sfteval.ifeval.answers) on the paired prompts, each change
    with a paired bootstrap interval and exact McNemar, and IFEval on the prompts whose answers
    are clean in both runs. Measures that need stop reasons are left out when a run lacks them."""
    rows_a = [a for a, _ in pairs]
    rows_b = [b for _, b in pairs]
    known = answers.stop_reasons_known(rows_a) and answers.stop_reasons_known(rows_b)
    changes = []
    for measure, label in ANSWER_MEASURES:
        if measure != "echo" and not known:
            continue
        flags_a, flags_b = _answer_flags(rows_a, measure), _answer_flags(rows_b, measure)
        test = stats.mcnemar_exact(flags_a, flags_b)
        changes.append(
            {
                "measure": measure,
                "label": label,
                "a": answers.rate(flags_a),
                "b": answers.rate(flags_b),
                "difference": (sum(flags_b) - sum(flags_a)) / len(pairs),
                "difference_ci": list(
                    stats.paired_bootstrap_difference([[x] for x in flags_a], [[y] for y in flags_b], samples, seed)
                ),
                "mcnemar": {"only_a": test["only_first"], "only_b": test["only_second"], "p_value": test["p_value"]},
            }
        )
    block: dict[str, Any] = {
        "rules": dict(answers.RULES),
        "stop_reason_known": known,
        "a": answers.analyse(rows_a),
        "b": answers.analyse(rows_b),
        "changes": changes,
        "clean_in_both": None,
    }
    if known:
        both = [(a, b) for a, b in pairs if answers.answer_flags(a)["clean"] and answers.answer_flags(b)["clean"]]
        if both:
            clean_a, clean_b = [a for a, _ in both], [b for _, b in both]
            block["clean_in_both"] = {
                "n_prompts": len(both),
                "metrics": paired_metrics(doc_a, doc_b, clean_a, clean_b, samples, seed),
            }
    return block


def _run_info(doc: dict[str, Any]) -> dict[str, Any]:
    meta = doc.get("metadata") or {}
    return {
        "description": describe_run(doc),
        "source_file": meta.get("source_file"),
        "source_sha256": meta.get("source_sha256"),
        "model": meta.get("model"),
        "adapter": meta.get("adapter"),
        "precision": meta.get("precision"),
        "template": meta.get("template"),
        "prompt_set_sha256": (meta.get("prompt_set") or {}).get("sha256"),
        "n_prompts_in_file": len(doc["per_prompt"]),
    }


def per_instruction(pairs: Sequence[tuple[dict, dict]]) -> list[dict[str, Any]]:
    """Accuracy of both runs per instruction id, sorted by the strict delta (B - A), largest
    gain first."""
    counts: dict[str, dict[str, int]] = {}
    for a, b in pairs:
        for i, inst in enumerate(a["instruction_id_list"]):
            c = counts.setdefault(inst, {"n": 0, "a_strict": 0, "b_strict": 0, "a_loose": 0, "b_loose": 0})
            c["n"] += 1
            c["a_strict"] += bool(a["follow_instruction_list_strict"][i])
            c["b_strict"] += bool(b["follow_instruction_list_strict"][i])
            c["a_loose"] += bool(a["follow_instruction_list_loose"][i])
            c["b_loose"] += bool(b["follow_instruction_list_loose"][i])
    out = []
    for inst, c in counts.items():
        n = c["n"]
        row = {"instruction_id": inst, "n": n}
        for s in ("strict", "loose"):
            row[f"a_{s}_acc"] = c[f"a_{s}"] / n
            row[f"b_{s}_acc"] = c[f"b_{s}"] / n
            row[f"delta_{s}"] = (c[f"b_{s}"] - c[f"a_{s}"]) / n
        out.append(row)
    out.sort(key=lambda r: (-r["delta_strict"], -r["delta_loose"], r["instruction_id"]))
    return out


def excerpt(text: Any, limit: int = EXCERPT_CHARS) -> str:
    """The start of a text on one line, whitespace collapsed, with an ellipsis when cut."""
    flat = " ".join(str(text or "").split())
    if not flat:
        return "(empty)"
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def flips(pairs: Sequence[tuple[dict, dict]], strictness: str) -> dict[str, list[dict[str, Any]]]:
    """Prompts whose prompt-level verdict changed, with the instructions that changed."""
    out: dict[str, list[dict[str, Any]]] = {"pass_to_fail": [], "fail_to_pass": []}
    for a, b in pairs:
        pass_a, pass_b = bool(a[f"follow_all_{strictness}"]), bool(b[f"follow_all_{strictness}"])
        if pass_a == pass_b:
            continue
        verdicts_a = a[f"follow_instruction_list_{strictness}"]
        verdicts_b = b[f"follow_instruction_list_{strictness}"]
        changed = [
            ("+" if vb else "-") + inst
            for inst, va, vb in zip(a["instruction_id_list"], verdicts_a, verdicts_b)
            if bool(va) != bool(vb)
        ]
        out["pass_to_fail" if pass_a else "fail_to_pass"].append(
            {
                "key": a.get("key"),
                "prompt": excerpt(a.get("prompt"), PROMPT_EXCERPT_CHARS),
                "changed_instructions": changed,
                "response_a": excerpt(a.get("response")),
                "response_b": excerpt(b.get("response")),
            }
        )
    return out


# ---------------------------------------------------------------------------------------------
# Text and markdown


def pct(value: float) -> str:
    return f"{100 * value:.1f}"


def interval(ci: Sequence[float]) -> str:
    return f"[{pct(ci[0])}, {pct(ci[1])}]"


def signed_points(value: float) -> str:
    return f"{100 * value:+.1f}"


def p_text(p: float) -> str:
    return f"{p:.3g}" if p >= 1e-4 else f"{p:.1e}"


def _run_lines(comparison: dict[str, Any]) -> list[str]:
    lines = []
    for name, run in zip(comparison["names"], comparison["runs"]):
        lines.append(f"{name} = {run['source_file'] or '?'}: {run['description']}")
    return lines


MCNEMAR_NOTE = (
    "difference interval: paired bootstrap over prompts; McNemar: exact, on the discordant pairs; at instruction "
    "level it treats one prompt's instructions as independent, which they are not, so read the clustered p there "
    "(McNemar clustered by prompt, Durkalski et al. 2003; docs/ANALYSES.md)"
)


def _clustered_p(metric: dict[str, Any]) -> str:
    test = metric.get("clustered_mcnemar")
    return p_text(test["p_value"]) if test else "–"


def _metric_text_lines(metrics: Sequence[dict[str, Any]], a: str, b: str) -> list[str]:
    # Columns at least as wide as the run names, with a space between, so long names stay apart.
    wide = max(20, len(a) + 1, len(b) + 1)
    diff_name = f"{b} - {a} (pts)"
    wide_diff = max(22, len(diff_name) + 1)
    header = (
        f"{'metric':<26}{a:>{wide}}{b:>{wide}}{diff_name:>{wide_diff}}  {'McNemar p':>10}  {'clustered p':>11}"
        "  pass->fail / fail->pass"
    )
    lines = [header, "-" * len(header)]
    for m in metrics:
        lines.append(
            f"{m['label']:<26}"
            f"{pct(m['a']['acc']) + ' ' + interval(m['a']['ci']):>{wide}}"
            f"{pct(m['b']['acc']) + ' ' + interval(m['b']['ci']):>{wide}}"
            f"{signed_points(m['difference']) + ' ' + interval(m['difference_ci']):>{wide_diff}}"
            f"  {p_text(m['mcnemar']['p_value']):>10}  {_clustered_p(m):>11}"
            f"  {m['mcnemar']['pass_to_fail']} / {m['mcnemar']['fail_to_pass']}"
        )
    return lines


def _rate_text(measure: dict[str, Any]) -> str:
    return f"{pct(measure['rate'])} {interval(measure['ci'])}"


def _tokens_text(block: dict[str, Any]) -> str:
    tokens = block.get("new_tokens")
    if not tokens:
        return "not recorded"
    return (
        f"median {tokens['median']}, p25 {tokens['p25']}, p75 {tokens['p75']}, p90 {tokens['p90']}, max {tokens['max']}"
    )


def _answer_text_lines(block: dict[str, Any], a: str, b: str) -> list[str]:
    """The answers section: stop, loop, echo and clean rates paired, tokens, IFEval on clean answers."""
    lines = ["", "Answers, % of the paired prompts (rules in docs/ANALYSES.md):"]
    wide = max(20, len(a) + 1, len(b) + 1)
    diff_name = f"{b} - {a} (pts)"
    header = f"{'measure':<26}{a:>{wide}}{b:>{wide}}{diff_name:>24}  {'McNemar p':>10}  only {a} / only {b}"
    lines += [header, "-" * len(header)]
    for change in block["changes"]:
        lines.append(
            f"{change['label']:<26}{_rate_text(change['a']):>{wide}}{_rate_text(change['b']):>{wide}}"
            f"{signed_points(change['difference']) + ' ' + interval(change['difference_ci']):>24}"
            f"  {p_text(change['mcnemar']['p_value']):>10}  {change['mcnemar']['only_a']} / {change['mcnemar']['only_b']}"
        )
    lines.append(f"new tokens {a}: {_tokens_text(block['a'])}")
    lines.append(f"new tokens {b}: {_tokens_text(block['b'])}")
    if not block["stop_reason_known"]:
        lines.append("(stop reasons unknown for a run: compare the ifeval_responses files to get stop, loop and clean)")
    elif block["clean_in_both"]:
        clean = block["clean_in_both"]
        lines += ["", f"IFEval on the {clean['n_prompts']} prompts whose answers are clean in both runs:"]
        lines += _metric_text_lines(clean["metrics"], a, b)
    else:
        lines.append("No prompt has a clean answer in both runs.")
    return lines


def format_text(comparison: dict[str, Any], max_flips: int = 10) -> str:
    """The report printed to stdout."""
    a, b = comparison["names"]
    lines = ["IFEval comparison", *("  " + x for x in _run_lines(comparison))]
    lines.append(
        f"  paired on {comparison['n_prompts']} prompts, {comparison['n_instructions']} instructions; "
        "accuracies in %, 95% intervals in brackets"
    )
    lines += ["  note: " + n for n in comparison["notes"]]
    lines.append("")
    lines += _metric_text_lines(comparison["metrics"], a, b)
    lines.append(f"({MCNEMAR_NOTE})")
    if comparison.get("answers"):
        lines += _answer_text_lines(comparison["answers"], a, b)
    lines += ["", f"Per instruction id, sorted by the strict change ({b} - {a}, points):"]
    w = max(len(a), len(b)) + 9  # room for "<name> strict" and a gap
    header = (
        f"{'instruction id':<48}{'n':>5}{a + ' strict':>{w}}{b + ' strict':>{w}}{'delta':>8}"
        f"{a + ' loose':>{w}}{b + ' loose':>{w}}{'delta':>8}"
    )
    lines += [header, "-" * len(header)]
    for r in comparison["per_instruction"]:
        lines.append(
            f"{r['instruction_id']:<48}{r['n']:>5}{pct(r['a_strict_acc']):>{w}}{pct(r['b_strict_acc']):>{w}}"
            f"{signed_points(r['delta_strict']):>8}{pct(r['a_loose_acc']):>{w}}{pct(r['b_loose_acc']):>{w}}"
            f"{signed_points(r['delta_loose']):>8}"
        )
    for strictness in ("strict", "loose"):
        f = comparison["flips"][strictness]
        lines += [
            "",
            f"Prompts that flipped (prompt-level {strictness}): "
            f"{len(f['pass_to_fail'])} pass -> fail, {len(f['fail_to_pass'])} fail -> pass",
        ]
        for direction, title in (("pass_to_fail", "pass -> fail"), ("fail_to_pass", "fail -> pass")):
            items = f[direction]
            if not items:
                continue
            lines.append(f"  {title}:")
            for item in items[:max_flips]:
                lines.append(f"    key {item['key']}  [{' '.join(item['changed_instructions'])}]  {item['prompt']}")
                lines.append(f"      {a}: {item['response_a']}")
                lines.append(f"      {b}: {item['response_b']}")
            if len(items) > max_flips:
                lines.append(f"    ... and {len(items) - max_flips} more (all in --markdown / --json)")
    return "\n".join(lines) + "\n"


def _md(text: Any) -> str:
    """Text for a markdown table cell: one line, markdown's special characters escaped."""
    out = " ".join(str(text).split())
    for char in "\\`*_[]<>#|~":
        out = out.replace(char, "\\" + char)
    return out


def _metric_markdown_lines(metrics: Sequence[dict[str, Any]], a: str, b: str) -> list[str]:
    out = [
        f"| metric | {a} | {b} | {b} − {a} (pts) | McNemar p | clustered p | pass→fail | fail→pass |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in metrics:
        out.append(
            f"| {m['label']} | {pct(m['a']['acc'])} {interval(m['a']['ci'])} "
            f"| {pct(m['b']['acc'])} {interval(m['b']['ci'])} "
            f"| {signed_points(m['difference'])} {interval(m['difference_ci'])} "
            f"| {p_text(m['mcnemar']['p_value'])} | {_clustered_p(m)} "
            f"| {m['mcnemar']['pass_to_fail']} | {m['mcnemar']['fail_to_pass']} |"
        )
    return out


def _answer_markdown_lines(block: dict[str, Any], a: str, b: str) -> list[str]:
    out = [
        "",
        "## Answers",
        "",
        "% of the paired prompts with 95% Wilson intervals; the change has a paired bootstrap interval and an "
        "exact McNemar test. Rules in docs/ANALYSES.md.",
        "",
        f"| measure | {a} | {b} | {b} − {a} (pts) | McNemar p | only {a} | only {b} |",
        "|---|---|---|---|---|---|---|",
    ]
    for change in block["changes"]:
        out.append(
            f"| {change['label']} | {_rate_text(change['a'])} | {_rate_text(change['b'])} "
            f"| {signed_points(change['difference'])} {interval(change['difference_ci'])} "
            f"| {p_text(change['mcnemar']['p_value'])} | {change['mcnemar']['only_a']} | {change['mcnemar']['only_b']} |"
        )
    out += [
        "",
        f"- New tokens, {_md(a)}: {_tokens_text(block['a'])}.",
        f"- New tokens, {_md(b)}: {_tokens_text(block['b'])}.",
    ]
    if not block["stop_reason_known"]:
        out.append(
            "- Stop reasons are unknown for a run: compare the ifeval_responses files to get stop, loop and clean."
        )
    elif block["clean_in_both"]:
        clean = block["clean_in_both"]
        out += ["", f"### IFEval on the {clean['n_prompts']} prompts whose answers are clean in both runs", ""]
        out += _metric_markdown_lines(clean["metrics"], a, b)
    else:
        out.append("- No prompt has a clean answer in both runs.")
    return out


def format_markdown(comparison: dict[str, Any], plot_name: str | None = None) -> str:
    a, b = comparison["names"]
    out = ["# IFEval comparison", ""]
    out += [f"- {_md(x)}" for x in _run_lines(comparison)]
    out.append(f"- Paired on {comparison['n_prompts']} prompts, {comparison['n_instructions']} instructions.")
    out += [f"- {_md(n)}" for n in comparison["notes"]]
    out += ["", f"Accuracies in %, with 95% bootstrap intervals over prompts. {_md(MCNEMAR_NOTE.capitalize())}.", ""]
    out += _metric_markdown_lines(comparison["metrics"], a, b)
    if comparison.get("answers"):
        out += _answer_markdown_lines(comparison["answers"], a, b)
    if plot_name:
        out += ["", f"![IFEval comparison]({plot_name})"]
    out += [
        "",
        f"## Per instruction id (sorted by the strict change, {b} − {a})",
        "",
        f"| instruction id | n | {a} strict | {b} strict | Δ strict | {a} loose | {b} loose | Δ loose |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in comparison["per_instruction"]:
        out.append(
            f"| `{r['instruction_id']}` | {r['n']} | {pct(r['a_strict_acc'])} | {pct(r['b_strict_acc'])} "
            f"| {signed_points(r['delta_strict'])} | {pct(r['a_loose_acc'])} | {pct(r['b_loose_acc'])} "
            f"| {signed_points(r['delta_loose'])} |"
        )
    for strictness in ("strict", "loose"):
        f = comparison["flips"][strictness]
        out += [
            "",
            f"## Flipped prompts, prompt-level {strictness}: {len(f['pass_to_fail'])} pass→fail, "
            f"{len(f['fail_to_pass'])} fail→pass",
        ]
        for direction, title in (("pass_to_fail", "pass → fail"), ("fail_to_pass", "fail → pass")):
            if not f[direction]:
                continue
            out += [
                "",
                f"### {title}",
                "",
                f"| key | changed instructions | prompt | {a} | {b} |",
                "|---|---|---|---|---|",
            ]
            for item in f[direction]:
                out.append(
                    f"| {item['key']} | {_md(' '.join(item['changed_instructions']))} | {_md(item['prompt'])} "
                    f"| {_md(item['response_a'])} | {_md(item['response_b'])} |"
                )
    return "\n".join(out) + "\n"
