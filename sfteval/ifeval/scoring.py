"""IFEval scoring on lm-eval's instruction checkers: strict and loose verdicts, made deterministic,
with per-instruction and per-category accuracies and bootstrap intervals.

The official scorer decides a few items at random: `keywords:letter_frequency` with a
non-letter `letter` draws a letter from `random`, and langdetect (response_language,
english_capital, english_lowercase) draws from an unseeded generator. Here `random` is
seeded per instruction from the prompt key and langdetect's seed is fixed, so a verdict
depends only on the response, whatever the order or the process.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import random
import socket
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfteval import records, schemas, stats
from sfteval.cli import UserError, tqdm_disable
from sfteval.ifeval import answers
from sfteval.ifeval.prompts import REQUIRED_KEYS, load_prompt_set, normalize

SCORER_NAME = "sfteval.ifeval"
LANGDETECT_SEED = 0
DOWNLOAD_TIMEOUT_S = 10.0
PUNKT_TAB = "tokenizers/punkt_tab/english/"
PUNKT_HINT = (
    "run `python -m nltk.downloader punkt_tab` on a machine with internet access, "
    "or point NLTK_DATA at a folder holding tokenizers/punkt_tab"
)
MODES = ("strict", "loose")
# What generation recorded about each answer, carried into `per_prompt` for sfteval.ifeval.answers.
RUN_FIELDS = ("new_tokens", "stop_reason")


# ---------------------------------------------------------------- resources


def find_punkt_tab() -> str | None:
    import nltk

    try:
        return str(nltk.data.find(PUNKT_TAB))
    except LookupError:
        return None


def ensure_punkt_tab(download_timeout: float = DOWNLOAD_TIMEOUT_S) -> str:
    """The path of nltk's punkt_tab tables, downloading them once if absent.

    lm-eval's IFEval module downloads punkt_tab at import time with no timeout and prints
    into the output; checking first makes an offline machine fail at once with a hint.
    """
    found = find_punkt_tab()
    if found:
        return found
    import nltk

    target = os.environ.get("NLTK_DATA", "").split(os.pathsep)[0] or None
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(download_timeout)
    try:
        # nltk prints its own multi-line error even when quiet; the user gets ours instead.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nltk.download(
                "punkt_tab", download_dir=target, quiet=True, raise_on_error=True, print_error_to=io.StringIO()
            )
    except Exception as err:  # no network, proxy, DNS, timeout or a refused folder
        reason = " ".join(str(err).split())
        raise UserError(
            f"nltk's punkt_tab data is missing and could not be downloaded ({reason}); {PUNKT_HINT}"
        ) from None
    finally:
        socket.setdefaulttimeout(previous_timeout)
    found = find_punkt_tab()
    if not found:
        raise UserError(f"nltk's punkt_tab data was downloaded but nltk cannot find it; {PUNKT_HINT}")
    return found


@functools.lru_cache(maxsize=1)
def load_checkers() -> dict[str, type]:
    """lm-eval's instruction registry, ready to give repeatable verdicts.

    Also loads what the checkers would otherwise load on first use (langdetect's language
    profiles, the punkt tables), so that scoring times measure scoring only.
    """
    ensure_punkt_tab()
    import langdetect
    from langdetect import detector_factory
    from lm_eval.tasks.ifeval import instructions_registry, instructions_util

    langdetect.DetectorFactory.seed = LANGDETECT_SEED
    detector_factory.init_factory()
    instructions_util.count_sentences("Warm up. Done.")
    instructions_util.nltk.word_tokenize("Warm up.")
    return dict(instructions_registry.INSTRUCTION_DICT)


def lm_eval_version() -> str | None:
    return records.installed_version("lm-eval")


# ---------------------------------------------------------------- verdicts


def loose_variants(response: str) -> list[str]:
    """The loose scorer's candidates, in lm-eval's order: the response, without `*`, and without
    its first and/or last line (with and without `*`); duplicates and blank ones are dropped,
    since a checker gives the same verdict on the same text."""
    lines = response.split("\n")
    trimmed = ["\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    candidates = [response, response.replace("*", ""), *trimmed, *(text.replace("*", "") for text in trimmed)]
    unique: list[str] = []
    for text in candidates:
        if text.strip() and text not in unique:
            unique.append(text)
    return unique


def build_checker(registry: dict[str, type], row: dict[str, Any], index: int) -> Any:
    """Instruction `index` of `row`, built as lm-eval builds it, with `random` seeded from
    the prompt key so checkers that draw a random argument always draw the same one."""
    instruction_id = row["instruction_id_list"][index]
    random.seed(f"ifeval:{row['key']}:{index}")
    checker = registry[instruction_id](instruction_id)
    checker.build_description(**{k: v for k, v in row["kwargs"][index].items() if v is not None})
    args = checker.get_instruction_args()
    if args and "prompt" in args:
        checker.build_description(prompt=row["prompt"])
    return checker


def score_prompt(row: dict[str, Any], registry: dict[str, type] | None = None) -> dict[str, Any]:
    """One prompt's verdicts, strict and loose, in the `per_prompt` form of `ifeval_scores`."""
    registry = registry or load_checkers()
    response = row["response"]
    variants = loose_variants(response)
    strict, loose = [], []
    for index in range(len(row["instruction_id_list"])):
        checker = build_checker(registry, row, index)
        followed = bool(response.strip()) and bool(checker.check_following(response))
        strict.append(followed)
        # The response itself is the first loose candidate: a strict pass is a loose pass.
        loose.append(followed or any(checker.check_following(text) for text in variants[1:]))
    return {
        "key": row["key"],
        "prompt": row["prompt"],
        "response": response,
        "instruction_id_list": list(row["instruction_id_list"]),
        "follow_instruction_list_strict": strict,
        "follow_instruction_list_loose": loose,
        "follow_all_strict": all(strict),
        "follow_all_loose": all(loose),
        **{k: row[k] for k in RUN_FIELDS if k in row},
    }


@contextlib.contextmanager
def _caller_random_state() -> Iterator[None]:
    """Scoring reseeds the global `random`; give the caller back the state it had."""
    state = random.getstate()
    try:
        yield
    finally:
        random.setstate(state)


def score_rows(rows: Sequence[dict[str, Any]], progress: bool = False) -> list[dict[str, Any]]:
    """Verdicts for rows holding `key`, `prompt`, `instruction_id_list`, `kwargs` (None values
    dropped or not) and `response`, in the same order.

    One process: 541 responses take about 0.5 s of CPU. Forked workers gain little on two
    cores and spawned ones (Windows, macOS) lose seconds re-importing lm-eval; see
    bench/score_speed.py.
    """
    registry = load_checkers()
    unknown = sorted({i for row in rows for i in row["instruction_id_list"]} - registry.keys())
    if unknown:
        raise UserError(
            f"unknown instruction id(s) {', '.join(unknown)}; lm-eval {lm_eval_version()} knows {len(registry)}"
        )
    if progress:
        from tqdm import tqdm

        rows = tqdm(rows, desc="scoring", unit="resp", leave=False, disable=tqdm_disable())
    with _caller_random_state():
        return [score_prompt(row, registry) for row in rows]


# ---------------------------------------------------------------- aggregation


def summarize(per_prompt: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Prompt- and instruction-level accuracy, strict and loose, each with a 95% bootstrap
    interval resampling prompts (one fixed seed, so all four see the same resamples)."""
    if not per_prompt:
        raise UserError("there is nothing to score: no responses")
    summary: dict[str, Any] = {
        "n_prompts": len(per_prompt),
        "n_instructions": sum(len(p["instruction_id_list"]) for p in per_prompt),
    }
    for mode in MODES:
        prompt_units = [[p[f"follow_all_{mode}"]] for p in per_prompt]
        instruction_units = [list(p[f"follow_instruction_list_{mode}"]) for p in per_prompt]
        for name, units in ((f"prompt_level_{mode}_acc", prompt_units), (f"inst_level_{mode}_acc", instruction_units)):
            verdicts = [v for unit in units for v in unit]
            summary[name] = sum(verdicts) / len(verdicts)
            summary[f"{name}_ci"] = list(stats.bootstrap_interval(units))
    # The single IFEval figure Meta's Llama 3.1/3.2 model cards report (their 80.4 for 3.1 8B Instruct).
    summary["mean_of_four_acc"] = (
        sum(summary[f"{level}_level_{mode}_acc"] for level in ("prompt", "inst") for mode in MODES) / 4
    )
    return summary


def accuracy_by(per_prompt: Sequence[dict[str, Any]], group: Callable[[str], str]) -> dict[str, dict[str, Any]]:
    """Instruction-level strict and loose accuracy per `group(instruction_id)`, sorted by name."""
    tallies: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for p in per_prompt:
        verdicts = zip(
            p["instruction_id_list"], p["follow_instruction_list_strict"], p["follow_instruction_list_loose"]
        )
        for instruction_id, strict, loose in verdicts:
            tally = tallies[group(instruction_id)]
            tally[0] += 1
            tally[1] += strict
            tally[2] += loose
    return {
        name: {"n": n, "strict_acc": strict / n, "loose_acc": loose / n}
        for name, (n, strict, loose) in sorted(tallies.items())
    }


def category(instruction_id: str) -> str:
    return instruction_id.split(":", 1)[0]


# ---------------------------------------------------------------- input files


@dataclass
class Responses:
    """Responses matched to their prompts, ready for `score_rows`."""

    rows: list[dict[str, Any]]  # key, prompt, instruction_id_list, kwargs, response; input order
    input_format: str  # "ifeval_responses" or "official_jsonl"
    metadata: dict[str, Any] = field(default_factory=dict)  # the input's own, if it has any
    prompt_set: dict[str, Any] | None = None  # the prompt set it was matched against
    missing_keys: list[int] = field(default_factory=list)


def parse_responses_file(path: Path) -> tuple[str, Any]:
    """("ifeval_responses", document) or ("official_jsonl", rows), or a one-line error."""
    text = records.read_text(path, "responses file")
    try:
        parsed = [json.loads(text)]
    except json.JSONDecodeError:
        parsed = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                parsed.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise UserError(f"responses file {path} is not JSON or JSONL (line {lineno}: {err.msg})") from None
    first = parsed[0]
    if len(parsed) == 1 and isinstance(first, dict) and "kind" in first:
        if first["kind"] != "ifeval_responses":
            raise UserError(f"{path} is a {first['kind']!r} file, not IFEval responses")
        return "ifeval_responses", first
    if all(isinstance(row, dict) and "prompt" in row and "response" in row for row in parsed):
        return "official_jsonl", parsed
    raise UserError(
        f"{path} is in an unknown format: expected an ifeval_responses JSON file from eval_generate.py "
        'or official IFEval JSONL with one {"prompt": ..., "response": ...} per line'
    )


def _check_response_text(rows: list[dict[str, Any]], path: Path) -> None:
    for number, row in enumerate(rows, 1):
        if not isinstance(row.get("response"), str):
            raise UserError(f"{path} response {number} is not a string")


def _refuse_duplicates(rows: list[dict[str, Any]], path: Path) -> None:
    for field_name in ("prompt", "key"):
        seen: set[Any] = set()
        for row in rows:
            if row[field_name] in seen:
                shown = row[field_name] if field_name == "key" else repr(row[field_name][:60])
                raise UserError(f"{path} holds two responses for the prompt with {field_name} {shown}")
            seen.add(row[field_name])


def _own_rows(document: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    schemas.validate(document, "ifeval_responses", path)
    return [
        {**normalize(raw), "response": raw["response"], **{k: raw[k] for k in RUN_FIELDS if k in raw}}
        for raw in document["responses"]
    ]


def _check_against_prompt_set(rows: list[dict[str, Any]], prompt_rows: list[dict[str, Any]], path: Path) -> None:
    by_key = {r["key"]: r for r in prompt_rows}
    for row in rows:
        expected = by_key.get(row["key"])
        if expected is None:
            raise UserError(f"{path}: key {row['key']} is not in the prompt set")
        if any(row[k] != expected[k] for k in ("prompt", "instruction_id_list", "kwargs")):
            raise UserError(f"{path}: the prompt with key {row['key']} differs from the prompt set's")


def _check_named_prompt_set(rows: list[dict[str, Any]], metadata: dict[str, Any], path: Path) -> None:
    """A file that answers as many prompts as the prompt set its metadata names (no --limit, none
    missing) must answer exactly those prompts: same keys, texts and instructions, in the set's order."""
    named = metadata.get("prompt_set")
    if not isinstance(named, dict) or not isinstance(named.get("n_prompts"), int) or not named.get("sha256"):
        return
    if len(rows) > named["n_prompts"]:
        raise UserError(f"{path} holds {len(rows)} responses, but its prompt set has only {named['n_prompts']} prompts")
    if len(rows) == named["n_prompts"]:
        own_prompts = [{k: row[k] for k in REQUIRED_KEYS} for row in rows]
        if records.sha256_json(own_prompts) != named["sha256"]:
            raise UserError(
                f"{path}: its prompts (keys, texts or instructions) are not those of the prompt set its metadata "
                f"names ({named.get('source')}, sha256 {named['sha256'][:12]}...); the file was edited or mixed up"
            )


def _match_official(parsed: list[dict[str, Any]], prompt_rows: list[dict[str, Any]], path: Path) -> list[dict]:
    """Official rows carry only prompt and response: find each prompt in the set, by `key`
    where the row has one, else by exact prompt text."""
    by_key = {r["key"]: r for r in prompt_rows}
    by_text = {r["prompt"]: r for r in prompt_rows}
    rows, unmatched = [], []
    for number, raw in enumerate(parsed, 1):
        if raw.get("key") is not None:
            if not str(raw["key"]).isdigit():
                raise UserError(f"{path} line {number}: key {raw['key']!r} is not a whole number")
            prompt = by_key.get(int(raw["key"]))
            if prompt is not None and prompt["prompt"] != raw["prompt"]:
                raise UserError(f"{path} line {number}: key {raw['key']} has a different prompt in the prompt set")
        else:
            prompt = by_text.get(raw["prompt"])
        if prompt is None:
            unmatched.append(number)
        else:
            rows.append({**prompt, "response": raw["response"]})
    if unmatched:
        first = parsed[unmatched[0] - 1]["prompt"]
        raise UserError(
            f"{path}: {len(unmatched)} of {len(parsed)} prompts are not in the prompt set "
            f"(first at line {unmatched[0]}: {str(first)[:60]!r}); pass the matching --prompts file"
        )
    return rows


def read_responses(path: str | Path, prompts: str | Path | None = None, allow_missing: bool = False) -> Responses:
    """Read either input format and match it to its prompts.

    `prompts` is a local input_data.jsonl or "google/IFEval". Official JSONL needs a prompt
    set (the hub's by default); an ifeval_responses file carries its own prompts and is only
    checked against `prompts` when it is given.
    """
    path = Path(path)
    input_format, content = parse_responses_file(path)
    prompt_rows, prompt_set = (None, None)
    if prompts is not None or input_format == "official_jsonl":
        prompt_rows, prompt_set = load_prompt_set(None if prompts is None else str(prompts))
    if input_format == "official_jsonl":
        rows = _match_official(content, prompt_rows, path)
        _check_response_text(rows, path)
        _refuse_duplicates(rows, path)
        return Responses(rows, input_format, {}, prompt_set)

    rows = _own_rows(content, path)
    _check_response_text(rows, path)
    _refuse_duplicates(rows, path)
    if prompt_rows is not None:
        _check_against_prompt_set(rows, prompt_rows, path)
    metadata = content["metadata"]
    _check_named_prompt_set(rows, metadata, path)
    promised = metadata.get("n_prompts")
    missing_keys: list[int] = []
    if isinstance(promised, int) and promised > len(rows):
        if not allow_missing:
            raise UserError(
                f"{path} holds {len(rows)} of the {promised} responses its metadata promises "
                f"({promised - len(rows)} missing, e.g. from a crashed run); pass --allow-missing to score the rest"
            )
        if prompt_rows is not None:
            # Generation writes prompt-set order and --limit keeps the first n_prompts prompts.
            present = {r["key"] for r in rows}
            missing_keys = [r["key"] for r in prompt_rows[:promised] if r["key"] not in present]
    return Responses(rows, input_format, metadata, prompt_set or metadata.get("prompt_set"), missing_keys)


# ---------------------------------------------------------------- the scores document


def score_file(
    path: str | Path,
    prompts: str | Path | None = None,
    allow_missing: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """The full `ifeval_scores` document for a responses file (docs/FORMATS.md); writes nothing."""
    path = Path(path)
    responses = read_responses(path, prompts, allow_missing)
    per_prompt = score_rows(responses.rows, progress=progress)
    return scores_document(path, responses, per_prompt)


def scores_document(path: Path, responses: Responses, per_prompt: list[dict[str, Any]]) -> dict[str, Any]:
    if responses.metadata:
        metadata = dict(responses.metadata)
    else:  # official JSONL says nothing about its run: record this one and the prompt set
        metadata = records.run_metadata(prompt_set=responses.prompt_set, n_prompts=len(responses.rows))
    metadata.update(
        {
            "input_format": responses.input_format,
            "source_file": path.name,
            "source_sha256": records.sha256_file(path),
            "scorer": {
                "name": SCORER_NAME,
                "lm_eval_version": lm_eval_version(),
                "langdetect_seed": LANGDETECT_SEED,
                "random_seed": "per instruction: random.seed('ifeval:<key>:<index>')",
                "bootstrap_samples": stats.BOOTSTRAP_SAMPLES,
                "bootstrap_seed": stats.BOOTSTRAP_SEED,
                "git_commit": records.git_commit(),
                "scored_at": records.now_iso(),
            },
            "n_prompts_scored": len(per_prompt),
            "missing_keys": list(responses.missing_keys),
        }
    )
    return records.envelope(
        "ifeval_scores",
        metadata,
        summary=summarize(per_prompt),
        per_instruction=accuracy_by(per_prompt, lambda instruction_id: instruction_id),
        per_category=accuracy_by(per_prompt, category),
        per_prompt=per_prompt,
        answers=answers.analyse(per_prompt),
    )


def official_rows(per_prompt: Iterable[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    """Rows of Google's `eval_results_<mode>.jsonl`, in the order given."""
    return [
        {
            "prompt": p["prompt"],
            "response": p["response"],
            "instruction_id_list": p["instruction_id_list"],
            "follow_all_instructions": p[f"follow_all_{mode}"],
            "follow_instruction_list": p[f"follow_instruction_list_{mode}"],
        }
        for p in per_prompt
    ]


def summary_table(document: dict[str, Any]) -> str:
    """A few lines for the terminal: the four headline accuracies with intervals, then categories."""
    summary, metadata = document["summary"], document["metadata"]
    lines = [
        f"IFEval scores of {metadata['source_file']}: {summary['n_prompts']} prompts, "
        f"{summary['n_instructions']} instructions",
        f"{'':20}{'strict':24}loose",
    ]
    for level, label in (("prompt", "prompt-level"), ("inst", "instruction-level")):
        cells = []
        for mode in MODES:
            name = f"{level}_level_{mode}_acc"
            low, high = summary[f"{name}_ci"]
            cells.append(f"{summary[name]:6.1%} [{low:.1%}, {high:.1%}]")
        lines.append(f"{label:20}{cells[0]:24}{cells[1]}")
    if "mean_of_four_acc" in summary:
        lines.append(
            f"{'mean of the four':20}{summary['mean_of_four_acc']:6.1%} (the IFEval figure of Meta's Llama model cards)"
        )
    lines.append(f"{'category':26}{'n':>4}  strict   loose")
    for name, row in document["per_category"].items():
        lines.append(f"{name:26}{row['n']:>4}  {row['strict_acc']:6.1%}  {row['loose_acc']:6.1%}")
    if document.get("answers"):
        lines += answers.summary_lines(document["answers"])
    return "\n".join(lines)


# ---------------------------------------------------------------- self-check

# Two made-up responses whose verdicts exercise nltk's punkt_tab (number_sentences), langdetect
# (english_lowercase, response_language) and a loose-only pass (end phrase wrapped in `**`).
SELF_CHECK_ROWS = (
    {
        "key": 1,
        "prompt": "Describe tea in two sentences, all in lowercase letters, without any commas.",
        "instruction_id_list": [
            "change_case:english_lowercase",
            "length_constraints:number_sentences",
            "punctuation:no_comma",
        ],
        "kwargs": [{}, {"relation": "less than", "num_sentences": 3}, {}],
        "response": "tea is a drink made by steeping dried leaves in hot water. people around the world enjoy it every day.",
    },
    {
        "key": 2,
        "prompt": "Write a short note about tea in German with a title in double angular brackets. "
        'End it with the exact phrase "Noch Fragen?"',
        "instruction_id_list": ["detectable_format:title", "language:response_language", "startend:end_checker"],
        "kwargs": [{}, {"language": "de"}, {"end_phrase": "Noch Fragen?"}],
        "response": "<<Tea>>\nTea is a drink made from the leaves of the tea plant. "
        "Many people enjoy it every morning.\n**Noch Fragen?**",
    },
)
SELF_CHECK_EXPECTED = {  # key: (strict, loose)
    1: ([True, True, True], [True, True, True]),
    2: ([True, False, False], [True, False, True]),
}


def self_check() -> str:
    """Score the built-in examples; a one-line report, or a UserError naming the first wrong verdict."""
    punkt = ensure_punkt_tab()
    verdicts = score_rows([dict(row) for row in SELF_CHECK_ROWS])
    for verdict in verdicts:
        strict, loose = SELF_CHECK_EXPECTED[verdict["key"]]
        got = (verdict["follow_instruction_list_strict"], verdict["follow_instruction_list_loose"])
        if got != (strict, loose):
            raise UserError(
                f"self-check failed on example {verdict['key']}: strict/loose verdicts {got}, expected {(strict, loose)}; "
                f"check the installed lm-eval ({lm_eval_version()}), langdetect and nltk versions"
            )
    n_instructions = sum(len(row["instruction_id_list"]) for row in SELF_CHECK_ROWS)
    return (
        f"self-check passed: {len(verdicts)} responses, {n_instructions} instructions scored as expected "
        f"(lm-eval {lm_eval_version()}, punkt_tab at {punkt})"
    )
