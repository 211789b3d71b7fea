"""The IFEval prompt set: a local `input_data.jsonl` or the hub's `google/IFEval`, validated
and fingerprinted so that responses and scores can be matched to the exact prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sfteval.cli import UserError
from sfteval.records import read_jsonl, sha256_json

HUB_DATASET = "google/IFEval"
REQUIRED_KEYS = ("key", "prompt", "instruction_id_list", "kwargs")


def normalize(row: dict[str, Any]) -> dict[str, Any]:
    """One prompt in a canonical form. The hub's copy fills every kwargs dict with all
    argument names set to None; the official file lists only the set ones. Dropping the
    None values makes both give the same rows and the same checksum."""
    kwargs = [{k: v for k, v in (kw or {}).items() if v is not None} for kw in row["kwargs"]]
    return {
        "key": int(row["key"]),
        "prompt": row["prompt"],
        "instruction_id_list": list(row["instruction_id_list"]),
        "kwargs": kwargs,
    }


def validate(rows: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    if not rows:
        raise UserError(f"prompt set {source} is empty")
    for number, row in enumerate(rows, 1):
        missing = [k for k in REQUIRED_KEYS if k not in row]
        if missing:
            raise UserError(
                f"{source} is not an IFEval prompt set: row {number} lacks {', '.join(missing)} "
                "(expected keys: key, prompt, instruction_id_list, kwargs)"
            )
        if len(row["instruction_id_list"]) != len(row["kwargs"]):
            raise UserError(f"{source} row {number}: instruction_id_list and kwargs differ in length")
    normalized = [normalize(r) for r in rows]
    keys = [r["key"] for r in normalized]
    if len(set(keys)) != len(keys):
        raise UserError(f"{source} has duplicate keys")
    return normalized


def load_prompt_set(source: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows in file order and a description: source, count and checksum of the canonical rows."""
    if source and Path(source).expanduser().exists():
        rows = validate(read_jsonl(Path(source).expanduser(), "prompt set"), source)
        origin = str(Path(source).expanduser().resolve())
    elif source and source != HUB_DATASET:
        raise UserError(f"prompt set {source} does not exist; pass a local input_data.jsonl or {HUB_DATASET}")
    else:
        rows = validate(load_hub_rows(), HUB_DATASET)
        origin = HUB_DATASET
    return rows, describe(rows, origin)


def load_hub_rows() -> list[dict[str, Any]]:
    try:
        from datasets import load_dataset

        return [dict(r) for r in load_dataset(HUB_DATASET, split="train")]
    except Exception as err:  # network, auth or cache problems all end the same way for the user
        raise UserError(
            f"could not load {HUB_DATASET} from the hub ({type(err).__name__}); "
            "pass --prompts path/to/input_data.jsonl to use a local copy"
        ) from None


def describe(rows: list[dict[str, Any]], origin: str) -> dict[str, Any]:
    return {
        "source": origin,
        "n_prompts": len(rows),
        "n_instructions": sum(len(r["instruction_id_list"]) for r in rows),
        "sha256": sha256_json(rows),
    }
