"""tinyMMLU: load and check the 100 questions, build the 0-shot MMLU prompt, score the four
answer letters by next-token log-probability, and summarize (accuracy with its interval,
per subject, and tinyBenchmarks' IRT estimates when its package and a verified parameter
file are present).

Scoring: the model reads the prompt once; the answer is the letter whose token has the
highest log-probability (log-softmax over the whole vocabulary) at the next position. Which
token stands for a letter depends on what the prompt ends with:

* the plain prompt ends in "Answer:", and running text continues with a space, so the letters
  are the tokens of " A", " B", " C", " D" (one token each in Llama 3 and SmolLM2 BPE, and what
  lm-eval scores too: its MMLU tasks append " " + letter to the same text);
* a chat or alpaca prompt ends with the assistant header or "### Response:" and a newline, and
  a reply starts with no space, so there the letters are the tokens of "A", "B", "C", "D".

`letter_token_ids` checks, for every prompt, that prompt + letter tokenizes as the prompt's
own tokens plus exactly one more; a tokenizer that merges the letter into the prompt's last
token is refused rather than scored wrongly.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sfteval import prompts
from sfteval.cli import UserError, tqdm_disable
from sfteval.mmlu.letters import LETTERS, letter_analysis
from sfteval.model import generation
from sfteval.records import installed_version, read_jsonl, sha256_file, sha256_json
from sfteval.stats import wilson_interval

HUB_DATASET = "tinyBenchmarks/tinyMMLU"
HUB_CONFIG = "all"  # the config lm-eval's tinyMMLU task reads
HUB_SPLIT = "test"
REQUIRED_KEYS = ("question", "subject", "choices", "answer")
# What this scorer accepts for --template: `none` (the default) is the plain 0-shot text a base
# model is scored on; `chat` and `alpaca` wrap the same text as one instruction.
TEMPLATES = ("none", "chat", "alpaca")

# sha256 of the canonical rows (question, subject, choices, answer; idx left out, order kept) of
# the 100 test questions in hub order, computed from ../shared/data/tinymmlu/tinyMMLU_test.jsonl.
# tinyBenchmarks' IRT estimates assume exactly these items in exactly this order.
TINYMMLU_TEST_SHA256 = "3b96033a12723b8ea636ad21b208968359e4497b5508881faf1c6a799f4bc850"

# tinyBenchmarks.pkl (the IRT parameters; 5,230,626 bytes): the sha256 that several unrelated
# public projects pin for the file at tinyBenchmarks commits e9a8b10 and 74577e0. It could not be
# checked here (no network); upstream serves the file from its `main` branch, unversioned, so a
# newer file will not match: whoever trusts it sets TINYBENCHMARKS_SHA256_ENV to its hash.
TINYBENCHMARKS_PKL_SHA256 = "c3b6e426dfe7b100fe6d0ee960398e10a8763254bcead3be80cc6bc15abca284"
TINYBENCHMARKS_SHA256_ENV = "SFTEVAL_TINYBENCHMARKS_SHA256"
TINYBENCHMARKS_PKL_ENV = "SFTEVAL_TINYBENCHMARKS_PKL"
TINYBENCHMARKS_PKL_NAME = "tinyBenchmarks.pkl"
TINYBENCHMARKS_INSTALL = "pip install git+https://github.com/felipemaiapolo/tinyBenchmarks"
TINYBENCHMARKS_PKL_URL = (
    "https://raw.githubusercontent.com/felipemaiapolo/tinyBenchmarks/main/tinyBenchmarks/tinyBenchmarks.pkl"
)


@dataclass(frozen=True)
class Item:
    idx: int
    question: str
    subject: str
    choices: tuple[str, ...]
    answer: int

    def canonical(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "subject": self.subject,
            "choices": list(self.choices),
            "answer": self.answer,
        }


@dataclass
class ItemScore:
    idx: int
    subject: str
    answer: int
    logprobs: list[float]
    prediction: int
    correct: bool
    prompt: str  # the exact text the model read

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------- data


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate(rows: Sequence[dict[str, Any]], source: str) -> list[Item]:
    """Rows as `Item`s, or a one-line error naming the first bad row (1-based)."""
    if not rows:
        raise UserError(f"tinyMMLU data {source} is empty")
    items = []
    for number, row in enumerate(rows, 1):
        where = f"{source} row {number}"
        missing = [k for k in REQUIRED_KEYS if k not in row]
        if missing:
            raise UserError(f"{where} lacks {', '.join(missing)} (tinyMMLU rows need: {', '.join(REQUIRED_KEYS)})")
        question, subject, choices, answer = (row[k] for k in REQUIRED_KEYS)
        if not isinstance(question, str) or not question.strip():
            raise UserError(f"{where}: `question` must be non-empty text")
        if not isinstance(subject, str) or not subject.strip():
            raise UserError(f"{where}: `subject` must be non-empty text, e.g. high_school_statistics")
        if not isinstance(choices, list) or len(choices) != len(LETTERS):
            count = len(choices) if isinstance(choices, list) else type(choices).__name__
            raise UserError(f"{where}: `choices` must be a list of exactly 4 answers (A-D), got {count}")
        if not all(isinstance(c, str) for c in choices):
            raise UserError(f"{where}: every choice must be text")
        if not _is_int(answer) or not 0 <= answer < len(LETTERS):
            raise UserError(f"{where}: `answer` must be 0-3 (the index of the right choice), got {answer!r}")
        idx = row.get("idx", number - 1)
        if not _is_int(idx):
            raise UserError(f"{where}: `idx` must be an integer, got {idx!r}")
        items.append(Item(idx, question, subject, tuple(choices), answer))
    indices = [item.idx for item in items]
    if len(set(indices)) != len(indices):
        raise UserError(f"{source} has duplicate idx values")
    return items


def load_items(source: str | None = None) -> tuple[list[Item], dict[str, Any]]:
    """The questions in file (or hub) order and a description of where they came from."""
    if source and source != HUB_DATASET:
        path = Path(source).expanduser()
        if not path.exists():
            raise UserError(f"tinyMMLU data {source} does not exist; pass a JSONL file or {HUB_DATASET}")
        try:
            rows = read_jsonl(path, "tinyMMLU data")
        except UnicodeDecodeError:
            raise UserError(f"tinyMMLU data {source} is not UTF-8 text (expected JSONL)") from None
        items = validate(rows, source)
        return items, describe(items, str(path.resolve()), sha256_file(path))
    items = validate(load_hub_rows(), HUB_DATASET)
    return items, describe(items, f"{HUB_DATASET} ({HUB_CONFIG}/{HUB_SPLIT})", None)


def load_hub_rows() -> list[dict[str, Any]]:
    try:
        from datasets import load_dataset

        dataset = load_dataset(HUB_DATASET, HUB_CONFIG, split=HUB_SPLIT)
    except Exception as err:  # offline, auth or cache trouble: one way out for the user
        raise UserError(
            f"could not load {HUB_DATASET} from the hub ({type(err).__name__}); "
            "pass --data path/to/tinyMMLU_test.jsonl (keys: question, subject, choices, answer)"
        ) from None
    return [{k: row[k] for k in REQUIRED_KEYS} for row in dataset]


def data_sha256(items: Sequence[Item]) -> str:
    return sha256_json([item.canonical() for item in items])


def describe(items: Sequence[Item], origin: str, file_sha256: str | None) -> dict[str, Any]:
    checksum = data_sha256(items)
    return {
        "source": origin,
        "n_items": len(items),
        "sha256": checksum,
        "file_sha256": file_sha256,
        "is_tinymmlu_test": checksum == TINYMMLU_TEST_SHA256,
    }


# ------------------------------------------------------------------------------------- prompts


def subject_name(subject: str) -> str:
    return subject.replace("_", " ").strip()


def question_text(item: Item) -> str:
    """The standard MMLU 0-shot prompt (the header lm-eval's MMLU tasks use, then the question)."""
    lines = [f"The following are multiple choice questions (with answers) about {subject_name(item.subject)}.", ""]
    lines.append(item.question.strip())
    lines += [f"{letter}. {choice}" for letter, choice in zip(LETTERS, item.choices)]
    lines.append("Answer:")
    return "\n".join(lines)


def render(template: str, tokenizer: Any, item: Item) -> str:
    if template not in TEMPLATES:
        raise UserError(f"unknown template {template!r} for tinyMMLU; choose one of {', '.join(TEMPLATES)}")
    return prompts.render(template, tokenizer, question_text(item))


def letter_continuations(prompt_text: str) -> list[str]:
    """ " A".." D" after running text ("Answer:"); "A".."D" where a reply starts on a fresh line."""
    space = "" if (not prompt_text or prompt_text[-1].isspace()) else " "
    return [space + letter for letter in LETTERS]


def letter_token_ids(tokenizer: Any, prompt_text: str, prompt_ids: Sequence[int] | None = None) -> list[int]:
    """The four token ids whose next-token log-probs are compared after `prompt_text`.

    Each letter must add exactly one token to the prompt's own tokens, so that its next-token
    log-prob is the log-prob of the whole answer; four distinct ids are required."""
    if prompt_ids is None:
        prompt_ids = prompts.encode(tokenizer, prompt_text)
    prompt_ids = list(prompt_ids)
    ids = []
    for continuation in letter_continuations(prompt_text):
        full = prompts.encode(tokenizer, prompt_text + continuation)
        if len(full) != len(prompt_ids) + 1 or full[: len(prompt_ids)] != prompt_ids:
            raise UserError(
                f"this tokenizer does not encode the answer {continuation!r} as one token after the prompt "
                "(it merges it with the prompt's end or splits it); next-token scoring would be wrong"
            )
        ids.append(full[-1])
    if len(set(ids)) != len(ids):
        raise UserError(f"the answer letters share token ids {ids}; they cannot be told apart")
    return ids


@dataclass
class Encoded:
    texts: list[str]
    prompt_ids: list[list[int]]
    letter_ids: list[int]
    letter_tokens: list[str]


def encode_items(tokenizer: Any, items: Sequence[Item], template: str) -> Encoded:
    """Tokenized prompts and the letter ids, checked to be the same for every prompt."""
    texts: list[str] = []
    all_ids: list[list[int]] = []
    letter_ids: list[int] | None = None
    for item in items:
        text = render(template, tokenizer, item)
        texts.append(text)
        ids = prompts.encode(tokenizer, text)
        these = letter_token_ids(tokenizer, text, ids)
        if letter_ids is None:
            letter_ids = these
        elif these != letter_ids:
            raise UserError(f"item {item.idx}: the answer letters tokenize as {these}, elsewhere as {letter_ids}")
        all_ids.append(ids)
    if letter_ids is None:
        raise UserError("no tinyMMLU items to score")
    return Encoded(texts, all_ids, letter_ids, tokenizer.convert_ids_to_tokens(letter_ids))


# ------------------------------------------------------------------------------------- scoring


def forward_last_logits(model: Any, input_ids: Any, attention: Any) -> Any:
    """Logits at the last position of each left-padded row, computed with positions counted from
    each row's first real token (so padding never shifts a prompt)."""
    position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
    kwargs = {"input_ids": input_ids, "attention_mask": attention, "position_ids": position_ids, "use_cache": False}
    try:
        output = model(**kwargs, logits_to_keep=1)
    except TypeError as err:  # an older or patched forward without `logits_to_keep`
        if "logits_to_keep" not in str(err):
            raise
        output = model(**kwargs)
    logits = output.logits
    if logits is None or logits.ndim != 3 or logits.shape[0] != input_ids.shape[0] or logits.shape[1] == 0:
        raise UserError("the model returned no logits (with unsloth, set UNSLOTH_RETURN_LOGITS=1, or pass --use-hf)")
    return logits[:, -1, :]


def score_batch(
    model: Any, pad_id: int, batch: Sequence[Sequence[int]], letter_ids: Sequence[int]
) -> list[list[float]]:
    """Log-probs (over the whole vocabulary) of the four letter tokens, one row per prompt."""
    import torch

    input_ids, attention = generation.left_pad(batch, pad_id)
    device = next(model.parameters()).device
    with torch.inference_mode():
        last = forward_last_logits(model, input_ids.to(device), attention.to(device))
        logprobs = torch.log_softmax(last.float(), dim=-1)[:, list(letter_ids)]
    values = logprobs.cpu().tolist()
    if not all(math.isfinite(v) for row in values for v in row):
        raise UserError("the model produced non-finite log-probs (NaN/inf); try another --precision")
    return values


def argmax(values: Sequence[float]) -> int:
    """Index of the largest value; the first one on a tie, so a tie never depends on batching."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def score_indexed(
    model: Any,
    pad_id: int,
    prompt_ids: Sequence[Sequence[int]],
    indices: list[int],
    letter_ids: Sequence[int],
    on_split: Callable[[int], None] | None = None,
) -> list[tuple[int, list[float]]]:
    """Score `indices` as one batch; a batch that runs out of GPU memory is halved and retried."""
    import torch

    try:
        rows = score_batch(model, pad_id, [prompt_ids[i] for i in indices], letter_ids)
    except (RuntimeError, torch.OutOfMemoryError) as err:
        if not generation.is_oom(err):
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if len(indices) == 1:
            raise UserError("out of GPU memory on a single question; use --precision 4bit") from None
        if on_split:
            on_split(len(indices))
        half = len(indices) // 2
        return score_indexed(model, pad_id, prompt_ids, indices[:half], letter_ids, on_split) + score_indexed(
            model, pad_id, prompt_ids, indices[half:], letter_ids, on_split
        )
    return list(zip(indices, rows))


def score_items(
    model: Any,
    tokenizer: Any,
    items: Sequence[Item],
    template: str = "none",
    batch_size: int = 16,
    progress: bool = True,
) -> tuple[list[ItemScore], dict[str, Any]]:
    """Score every item; batches group prompts of similar length, results come back in item order."""
    from tqdm.auto import tqdm

    encoded = encode_items(tokenizer, items, template)
    lengths = [len(ids) for ids in encoded.prompt_ids]
    logprobs: dict[int, list[float]] = {}
    with tqdm(total=len(items), desc="tinyMMLU", unit="q", disable=tqdm_disable(progress)) as bar:

        def on_split(size: int) -> None:
            bar.write(f"out of GPU memory on a batch of {size}; splitting it in two")

        for batch in generation.length_sorted_batches(lengths, batch_size):
            for index, row in score_indexed(
                model, tokenizer.pad_token_id, encoded.prompt_ids, batch, encoded.letter_ids, on_split
            ):
                logprobs[index] = row
            bar.update(len(batch))
    scores = []
    for position, item in enumerate(items):
        row = logprobs[position]
        prediction = argmax(row)
        scores.append(
            ItemScore(
                item.idx, item.subject, item.answer, row, prediction, prediction == item.answer, encoded.texts[position]
            )
        )
    info = {
        "method": "next-token log-prob of each answer letter (log-softmax over the vocabulary); prediction = argmax",
        "letter_continuations": letter_continuations(render(template, tokenizer, items[0])),
        "letter_token_ids": encoded.letter_ids,
        "letter_tokens": encoded.letter_tokens,
        "batch_size": batch_size,
        "padding": "left",
        "prompt_tokens_min": min(lengths),
        "prompt_tokens_max": max(lengths),
        "prompt_tokens_total": sum(lengths),
    }
    return scores, info


# ------------------------------------------------------------------------------------- summary


def interval_note(n: int, ci: tuple[float, float]) -> str:
    half = (ci[1] - ci[0]) / 2 * 100
    widest = 1.959964 * math.sqrt(0.25 / n) * 100 if n else 0.0
    return (
        f"{n} items: the 95% interval is about +-{half:.1f} points (up to +-{widest:.1f} near 50% accuracy); "
        "a smaller difference between two runs is not evidence of a real one"
    )


def summarize(scores: Sequence[ItemScore]) -> dict[str, Any]:
    n = len(scores)
    hits = sum(s.correct for s in scores)
    ci = wilson_interval(hits, n)
    subjects: dict[str, list[bool]] = {}
    for s in scores:
        subjects.setdefault(s.subject, []).append(s.correct)
    mass = [sum(math.exp(v) for v in s.logprobs) for s in scores]
    return {
        "n": n,
        "n_correct": hits,
        "accuracy": hits / n if n else 0.0,
        "accuracy_ci": [ci[0], ci[1]],
        "note": interval_note(n, ci),
        "per_subject": {name: {"n": len(v), "accuracy": sum(v) / len(v)} for name, v in sorted(subjects.items())},
        **letter_analysis([s.to_dict() for s in scores]),
        "letter_prob_mass_mean": sum(mass) / n if n else 0.0,
        "irt": None,
        "irt_note": "",
    }


# ----------------------------------------------------------------------------- IRT estimates


def expected_pkl_sha256() -> str:
    return (os.environ.get(TINYBENCHMARKS_SHA256_ENV) or TINYBENCHMARKS_PKL_SHA256).strip().lower()


def pkl_candidates(explicit: str | None = None) -> list[Path]:
    """Where a parameter file is looked for, in order: --irt-params, the environment variable,
    the current folder (where the package itself keeps it), next to the package, the cache."""
    if explicit:
        return [Path(explicit).expanduser()]
    found: list[Path] = []
    if os.environ.get(TINYBENCHMARKS_PKL_ENV):
        found.append(Path(os.environ[TINYBENCHMARKS_PKL_ENV]).expanduser())
    found.append(Path.cwd() / TINYBENCHMARKS_PKL_NAME)
    spec = importlib.util.find_spec("tinyBenchmarks")
    if spec is not None and spec.origin:
        found.append(Path(spec.origin).parent / TINYBENCHMARKS_PKL_NAME)
    cache = Path(os.environ.get("SFTEVAL_CACHE") or Path.home() / ".cache" / "sfteval")
    found.append(cache / TINYBENCHMARKS_PKL_NAME)
    return found


def irt_estimates(
    correct: Sequence[bool], data: dict[str, Any], params: str | None = None
) -> tuple[dict[str, float] | None, str, dict[str, Any] | None]:
    """tinyBenchmarks' IRT, p-IRT and gp-IRT estimates of full-MMLU accuracy, or None and why not.

    Returns (estimates, note, provenance). The parameter file is a pickle, and unpickling runs
    code, so it is read only when its sha256 matches `expected_pkl_sha256()`; the package is then
    run in a scratch folder holding exactly those bytes, so it never fetches its own copy."""
    if importlib.util.find_spec("tinyBenchmarks") is None:
        return None, f"IRT skipped: the tinyBenchmarks package is not installed ({TINYBENCHMARKS_INSTALL})", None
    if len(correct) != 100:
        return None, f"IRT skipped: it needs all 100 tinyMMLU test items, this run scored {len(correct)}", None
    if not data.get("is_tinymmlu_test") and not str(data.get("source", "")).startswith(HUB_DATASET):
        return None, "IRT skipped: the data is not the tinyMMLU test split in hub order (checksum differs)", None
    path = next((p for p in pkl_candidates(params) if p.is_file()), None)
    if path is None:
        return (
            None,
            f"IRT skipped: no {TINYBENCHMARKS_PKL_NAME} found (pass --irt-params FILE or set {TINYBENCHMARKS_PKL_ENV}; "
            f"download it from {TINYBENCHMARKS_PKL_URL}); the package's own unverified download is not used",
            None,
        )
    payload = path.read_bytes()
    actual = hashlib.sha256(payload).hexdigest()
    expected = expected_pkl_sha256()
    provenance = {
        "path": str(path.resolve()),
        "sha256": actual,
        "expected_sha256": expected,
        "expected_from": "environment" if os.environ.get(TINYBENCHMARKS_SHA256_ENV) else "sfteval constant",
        "tinyBenchmarks_version": installed_version("tinyBenchmarks"),
    }
    if actual != expected:
        return (
            None,
            f"IRT skipped: {path} has sha256 {actual[:16]}..., expected {expected[:16]}...; not unpickled "
            f"(if you trust this file, set {TINYBENCHMARKS_SHA256_ENV}={actual})",
            provenance,
        )
    try:
        estimates = _run_tinybenchmarks(payload, correct)
    except Exception as err:  # a third-party package on a pickle: report, never lose the run
        return None, f"IRT failed inside tinyBenchmarks: {type(err).__name__}: {err}".splitlines()[0], provenance
    note = (
        "tinyBenchmarks estimates of full-MMLU accuracy; its IRT model was fitted to Open LLM Leaderboard "
        "(5-shot) results, so on this 0-shot prompt treat them as indicative"
    )
    return estimates, note, provenance


def _run_tinybenchmarks(payload: bytes, correct: Sequence[bool]) -> dict[str, float]:
    import numpy as np
    import tinyBenchmarks as tb

    previous = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="sfteval-irt-") as scratch:
        (Path(scratch) / TINYBENCHMARKS_PKL_NAME).write_bytes(payload)
        os.chdir(scratch)
        try:
            result = tb.evaluate(np.array([float(c) for c in correct]), "mmlu")
        finally:
            os.chdir(previous)
    block = result.get("mmlu") if "mmlu" in result else next(iter(result.values()))
    return {key: float(block[key]) for key in ("irt", "pirt", "gpirt")}
