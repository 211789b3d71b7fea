"""Alpaca data for supervised finetuning: load, validate, tokenize, mask, measure, batch.

Every example is tokenized the way the model will meet it at inference time: the alpaca
prompt from `sfteval.prompts` encoded on its own (with the tokenizer's BOS, as
`prompts.encode` does for `inference.py`), then the answer, then EOS. Labels are -100 on the
prompt and on padding, and equal to the token on the answer and on EOS, so the loss teaches
the model to answer and then to stop. Padding never hides EOS because labels are built here,
not derived from `input_ids != pad_token_id`, and the pad token is a different token anyway
(`loading.ensure_pad_token`).

Examples longer than `max_length` are dropped by default (a cut answer has no EOS and teaches
the model to ramble); `overlong="truncate"` keeps their first `max_length` tokens instead.
Either way the count is reported and recorded in train_config.json.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sfteval import prompts, records
from sfteval.cli import UserError

IGNORE_INDEX = -100
REQUIRED_KEYS = ("instruction", "output")
OPTIONAL_KEYS = ("input",)
LOCAL_SUFFIXES = (".json", ".jsonl")
OVERLONG_POLICIES = ("drop", "truncate")
HEX40 = re.compile(r"(?<![0-9a-f])[0-9a-f]{40}(?![0-9a-f])")


@dataclass
class DatasetInfo:
    """Where the records came from, for train_config.json."""

    name: str
    source: str  # "local" or "hub"
    n_records: int
    records_sha256: str  # of the records actually used (after --limit), in canonical JSON
    path: str | None = None
    sha256: str | None = None  # of the local file
    split: str | None = None
    revision: str | None = None  # hub commit, when known
    fingerprint: str | None = None  # datasets' fingerprint of the hub split
    limit: int | None = None


@dataclass
class TokenizedData:
    train: list[dict[str, list[int]]]
    val: list[dict[str, list[int]]]
    stats: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- loading and validation


def is_local_dataset(name: str) -> bool:
    path = Path(name).expanduser()
    return path.exists() or name.lower().endswith(LOCAL_SUFFIXES) or "\\" in name or name.startswith((".", "/", "~"))


def load_records(
    dataset: str, split: str = "train", revision: str | None = None, limit: int | None = None
) -> tuple[list[dict[str, str]], DatasetInfo]:
    """Alpaca records (`instruction`, `input`, `output`, all strings) from a local .json/.jsonl
    file or a hub dataset, validated; the first `limit` of them if given."""
    if is_local_dataset(dataset):
        rows, info = _load_local(dataset)
    else:
        rows, info = _load_hub(dataset, split, revision)
    rows = validate_records(rows, dataset)
    if limit is not None:
        if limit < 1:
            raise UserError(f"--limit must be at least 1, got {limit}")
        rows = rows[:limit]
        info.limit = limit
    info.n_records = len(rows)
    info.records_sha256 = records.sha256_json(rows)
    return rows, info


def _load_local(dataset: str) -> tuple[list[Any], DatasetInfo]:
    path = Path(dataset).expanduser()
    if not path.exists():
        raise UserError(f"dataset file {dataset} does not exist")
    if path.is_dir():
        raise UserError(f"dataset {dataset} is a folder; pass an alpaca .json or .jsonl file or a hub dataset name")
    what = "dataset"
    if path.suffix.lower() == ".jsonl":
        rows = records.read_jsonl(path, what)
    else:
        try:
            rows = records.read_json(path, what)
        except UserError as err:
            if _looks_like_jsonl(path):
                raise UserError(f"{err}; it looks like JSON Lines: name it .jsonl") from None
            raise
        if not isinstance(rows, list):
            raise UserError(
                f"dataset {dataset} must hold a JSON list of alpaca records "
                f"({{instruction, input, output}}); it holds a {type(rows).__name__}"
            )
    info = DatasetInfo(
        name=str(dataset), source="local", n_records=len(rows), records_sha256="", path=str(path.resolve())
    )
    info.sha256 = records.sha256_file(path)
    return rows, info


def _looks_like_jsonl(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as handle:
            first = handle.readline()
        return isinstance(json.loads(first), dict)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False


def _load_hub(dataset: str, split: str, revision: str | None) -> tuple[list[Any], DatasetInfo]:
    try:
        import datasets
    except ImportError:
        raise UserError("the `datasets` package is needed for hub datasets; pip install datasets") from None
    try:
        hub = datasets.load_dataset(dataset, split=split, revision=revision)
    except Exception as err:  # any failure here means "could not get it": offline, typo, no such split
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"could not load dataset {dataset!r} (split {split!r}) from the Hugging Face hub: {detail}. "
            "Offline? Pass a local alpaca .json or .jsonl file with --dataset"
        ) from None
    missing = [key for key in REQUIRED_KEYS if key not in hub.column_names]
    if missing:
        raise UserError(
            f"hub dataset {dataset} has columns {hub.column_names}; alpaca format needs "
            f"{', '.join(REQUIRED_KEYS)} (and optionally input)"
        )
    rows = hub.to_list()
    info = DatasetInfo(name=dataset, source="hub", n_records=len(rows), records_sha256="", split=split)
    info.revision = revision or _revision_from_cache(hub)
    info.fingerprint = getattr(hub, "_fingerprint", None)
    return rows, info


def _revision_from_cache(hub: Any) -> str | None:
    """The hub commit a downloaded dataset came from: the 40-hex folder in its cache path."""
    for entry in getattr(hub, "cache_files", None) or []:
        found = HEX40.findall(str(entry.get("filename", "")))
        if found:
            return found[-1]
    return None


def validate_records(rows: Sequence[Any], dataset: str) -> list[dict[str, str]]:
    """Every row a dict with string `instruction` and `output`; `input` optional (None -> "")."""
    if not rows:
        raise UserError(f"dataset {dataset} is empty")
    clean = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise UserError(f"dataset {dataset} record {index} is a {type(row).__name__}, not an object")
        missing = [key for key in REQUIRED_KEYS if key not in row]
        if missing:
            raise UserError(
                f"dataset {dataset} record {index} has keys {sorted(row)}; alpaca format needs "
                f"{', '.join(REQUIRED_KEYS)} (and optionally input)"
            )
        item = {}
        for key in (*REQUIRED_KEYS, *OPTIONAL_KEYS):
            value = row.get(key)
            if value is None and key in OPTIONAL_KEYS:
                value = ""
            if not isinstance(value, str):
                raise UserError(f"dataset {dataset} record {index}: {key!r} is a {type(value).__name__}, not text")
            item[key] = value
        if not item["instruction"].strip():
            raise UserError(f"dataset {dataset} record {index} has an empty instruction")
        clean.append(item)
    return clean


# ---------------------------------------------------------------- tokenization and masking


def eos_id(tokenizer: Any) -> int:
    if tokenizer.eos_token_id is None:
        raise UserError("the tokenizer defines no EOS token; the model could not learn to stop")
    return int(tokenizer.eos_token_id)


def check_pad_token(tokenizer: Any) -> None:
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise UserError("the pad token must exist and differ from EOS (see loading.ensure_pad_token)")


def build_example(prompt_ids: Sequence[int], answer_ids: Sequence[int], eos: int) -> dict[str, list[int]]:
    """input_ids = prompt + answer + EOS; labels = -100 on the prompt, the tokens elsewhere."""
    target = [*answer_ids, eos]
    return {"input_ids": [*prompt_ids, *target], "labels": [IGNORE_INDEX] * len(prompt_ids) + target}


def tokenize_records(
    tokenizer: Any, rows: Sequence[dict[str, str]], max_length: int, overlong: str = "drop"
) -> tuple[list[dict[str, list[int]]], dict[str, Any]]:
    """Tokenized examples (in record order, overlong ones dropped or cut) and their counts."""
    if overlong not in OVERLONG_POLICIES:
        raise UserError(f"unknown overlong policy {overlong!r}; choose one of {', '.join(OVERLONG_POLICIES)}")
    if max_length < 2:
        raise UserError(f"--max-length must be at least 2, got {max_length}")
    check_pad_token(tokenizer)
    eos = eos_id(tokenizer)
    prompt_texts = [prompts.alpaca_prompt(row["instruction"], row["input"]) for row in rows]
    # Batched for speed; per text this is exactly prompts.encode (BOS as the tokenizer adds it).
    with_bos = [prompts.adds_bos(tokenizer, text) for text in prompt_texts]
    prompt_ids = _batch_encode(tokenizer, prompt_texts, with_bos)
    answer_ids = _batch_encode(tokenizer, [row["output"] for row in rows], [False] * len(rows))
    examples, dropped, truncated, prompt_only = [], [], 0, 0
    for index, (p_ids, a_ids) in enumerate(zip(prompt_ids, answer_ids)):
        example = build_example(p_ids, a_ids, eos)
        if len(example["input_ids"]) > max_length:
            if overlong == "drop" or len(p_ids) >= max_length:
                dropped.append(index)
                prompt_only += len(p_ids) >= max_length
                continue
            example = {key: value[:max_length] for key, value in example.items()}
            truncated += 1
        examples.append(example)
    stats = {
        "max_length": max_length,
        "overlong_policy": overlong,
        "n_records": len(rows),
        "n_examples": len(examples),
        "n_overlong": len(dropped) + truncated,
        "n_dropped_overlong": len(dropped),
        "n_truncated": truncated,
        "n_prompt_too_long": prompt_only,
        "dropped_indices_head": dropped[:20],
        "eos_token": tokenizer.eos_token,
        "eos_token_id": eos,
        "pad_token": tokenizer.pad_token,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_added": bool(with_bos and with_bos[0]),
        "lengths_all_records": length_stats([len(p) + len(a) + 1 for p, a in zip(prompt_ids, answer_ids)]),
    }
    return examples, stats


def _batch_encode(tokenizer: Any, texts: Sequence[str], special: Sequence[bool]) -> list[list[int]]:
    out: list[list[int]] = [[] for _ in texts]
    for flag in (True, False):
        picked = [i for i, s in enumerate(special) if s is flag]
        if not picked:
            continue
        ids = tokenizer([texts[i] for i in picked], add_special_tokens=flag)["input_ids"]
        for i, row in zip(picked, ids):
            out[i] = list(row)
    return out


def length_stats(lengths: Sequence[int]) -> dict[str, float | int]:
    """count, total, mean, median, p95 and max of a list of token counts."""
    if not lengths:
        return {"count": 0, "total": 0, "mean": 0.0, "median": 0.0, "p95": 0.0, "max": 0}
    ordered = sorted(lengths)
    return {
        "count": len(ordered),
        "total": int(sum(ordered)),
        "mean": round(sum(ordered) / len(ordered), 2),
        "median": round(float(_quantile(ordered, 0.5)), 2),
        "p95": round(float(_quantile(ordered, 0.95)), 2),
        "max": int(ordered[-1]),
    }


def _quantile(ordered: Sequence[int], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default)."""
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def split_train_val(
    examples: Sequence[dict[str, list[int]]], val_size: float, seed: int
) -> tuple[list[dict[str, list[int]]], list[dict[str, list[int]]]]:
    """Hold out `val_size` examples (a count if >= 1, else a fraction), chosen with `seed`;
    both parts keep the original order."""
    if val_size <= 0:
        return list(examples), []
    n_val = int(val_size) if val_size >= 1 else max(1, round(len(examples) * val_size))
    if val_size >= 1 and val_size != int(val_size):
        raise UserError(f"--val-size is a fraction below 1 or a whole count, got {val_size}")
    if n_val >= len(examples):
        raise UserError(f"--val-size {val_size} leaves no training examples out of {len(examples)}")
    held = set(random.Random(seed).sample(range(len(examples)), n_val))
    train = [ex for i, ex in enumerate(examples) if i not in held]
    val = [ex for i, ex in enumerate(examples) if i in held]
    return train, val


def prepare(
    tokenizer: Any,
    rows: Sequence[dict[str, str]],
    max_length: int,
    overlong: str = "drop",
    val_size: float = 0,
    seed: int = 3407,
) -> TokenizedData:
    examples, stats = tokenize_records(tokenizer, rows, max_length, overlong)
    if not examples:
        raise UserError(
            f"no example fits in --max-length {max_length} ({stats['n_dropped_overlong']} dropped); raise --max-length"
        )
    train, val = split_train_val(examples, val_size, seed)
    stats.update(
        n_train=len(train),
        n_val=len(val),
        train_lengths=length_stats([len(ex["input_ids"]) for ex in train]),
        train_label_tokens=sum(label_count(ex["labels"]) for ex in train),
        val_label_tokens=sum(label_count(ex["labels"]) for ex in val),
    )
    return TokenizedData(train, val, stats)


def label_count(labels: Sequence[int]) -> int:
    return sum(1 for token in labels if token != IGNORE_INDEX)


def overlong_message(stats: dict[str, Any]) -> str | None:
    if not stats["n_overlong"]:
        return None
    if stats["overlong_policy"] == "drop":
        return (
            f"dropped {stats['n_dropped_overlong']} of {stats['n_records']} examples longer than "
            f"--max-length {stats['max_length']} tokens (recorded in train_config.json)"
        )
    return (
        f"cut {stats['n_truncated']} of {stats['n_records']} examples to --max-length {stats['max_length']} tokens "
        f"(their answers lose the end and the EOS) and dropped {stats['n_dropped_overlong']} whose prompt alone "
        "does not fit (recorded in train_config.json)"
    )


def to_dataset(examples: Sequence[dict[str, list[int]]]) -> Any:
    """A `datasets.Dataset` with `input_ids` and `labels` columns."""
    from datasets import Dataset

    return Dataset.from_dict(
        {"input_ids": [ex["input_ids"] for ex in examples], "labels": [ex["labels"] for ex in examples]}
    )


def info_dict(info: DatasetInfo) -> dict[str, Any]:
    return asdict(info)


# ---------------------------------------------------------------- collators (transformers.Trainer path)


@dataclass
class PaddedCollator:
    """Right-pads a batch: pad id in `input_ids`, 0 in `attention_mask`, -100 in `labels`."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(features), width), dtype=torch.long)
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            input_ids[row, :n] = torch.as_tensor(feature["input_ids"], dtype=torch.long)
            labels[row, :n] = torch.as_tensor(feature["labels"], dtype=torch.long)
            attention[row, :n] = 1
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


@dataclass
class PaddingFreeCollator:
    """Concatenates a batch into one row with per-example `position_ids` (0, 1, ... for each) and
    no attention mask; transformers turns the position resets into a block-diagonal causal mask,
    so examples never attend to each other, and no compute is spent on padding. The first token
    of every example is unlabelled, so no loss crosses an example boundary. `use_cache=False` is
    part of the batch: with a KV cache transformers skips the position-id check and the examples
    would see each other."""

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        input_ids, labels, positions = [], [], []
        for feature in features:
            n = len(feature["input_ids"])
            input_ids.extend(feature["input_ids"])
            labels.extend([IGNORE_INDEX, *feature["labels"][1:]])
            positions.extend(range(n))
        return {
            "input_ids": torch.tensor([input_ids], dtype=torch.long),
            "labels": torch.tensor([labels], dtype=torch.long),
            "position_ids": torch.tensor([positions], dtype=torch.long),
            "use_cache": False,
        }
