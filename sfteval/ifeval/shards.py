"""Join the N shard files of one IFEval generation run into the file one process would have written.

Shard i of N holds prompts i, i+N, i+2N, ... of the prompt set (after `limit`), so prompt j of
the run is row j // N of shard j % N. The shards must agree on everything the responses depend
on (model, adapter, precision, loader, template, generation settings, stop tokens, prompt set);
the joined metadata keeps each shard's sessions and timings and sums its counts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sfteval import records
from sfteval.cli import UserError
from sfteval.ifeval import run as ifeval_run

# What the responses depend on: the shards of one run must agree on all of it.
SAME_IN_EVERY_SHARD = (
    "model",
    "model_source",
    "adapter",
    "precision",
    "loader",
    "template",
    "llm_int8_threshold",
    "merge_adapter",
    "limit",
)
SAME_GENERATION = ("max_new_tokens", "temperature", "top_p", "seed", "do_sample", "stop_token_ids")
# Written afresh by records.run_metadata for the merge itself; each shard's own are kept under "shards".
RUN_METADATA_KEYS = ("created_at", "command", "host", "platform", "git_commit", "library_versions", "gpu")
SHARD_NAME = re.compile(r"^(?P<stem>.+)\.shard(?P<index>\d+)of(?P<count>\d+)\.json$")


def merged_path(shard_path: Path) -> Path:
    """`x.shard0of2.json` -> `x.json`, next to the shard."""
    match = SHARD_NAME.match(shard_path.name)
    if not match:
        raise UserError(f"{shard_path.name} is not named like a shard (<name>.shard<i>of<N>.json); pass --output")
    return shard_path.with_name(match["stem"] + ".json")


def read_shard(path: Path) -> dict[str, Any]:
    document = records.read_json(path, "shard file")
    if not isinstance(document, dict) or document.get("kind") != ifeval_run.KIND:
        raise UserError(f"{path} is not an {ifeval_run.KIND} file")
    if not document["metadata"].get("shard"):
        raise UserError(f"{path} is a whole run, not a shard (it was made without --shard)")
    return document


def check_same_run(documents: Sequence[dict[str, Any]], paths: Sequence[Path]) -> None:
    first = documents[0]["metadata"]
    for document, path in zip(documents[1:], paths[1:]):
        meta = document["metadata"]
        differ = [key for key in SAME_IN_EVERY_SHARD if meta.get(key) != first.get(key)]
        differ += [
            f"generation.{key}"
            for key in SAME_GENERATION
            if meta["generation"].get(key) != first["generation"].get(key)
        ]
        if meta["prompt_set"].get("sha256") != first["prompt_set"].get("sha256"):
            differ.append("prompt_set")
        if differ:
            raise UserError(f"{path.name} and {paths[0].name} are not shards of one run: {', '.join(differ)} differ")


def order_shards(documents: Sequence[dict[str, Any]], paths: Sequence[Path]) -> list[int]:
    """Positions of the documents in shard order; every shard 0..N-1 exactly once."""
    counts = {document["metadata"]["shard"]["count"] for document in documents}
    if len(counts) != 1:
        raise UserError(f"these files split their runs into different numbers of shards: {sorted(counts)}")
    count = counts.pop()
    by_index: dict[int, int] = {}
    for position, document in enumerate(documents):
        index = document["metadata"]["shard"]["index"]
        if index in by_index:
            raise UserError(f"{paths[by_index[index]].name} and {paths[position].name} are both shard {index}/{count}")
        by_index[index] = position
    missing = [index for index in range(count) if index not in by_index]
    if missing:
        raise UserError(f"shard(s) {', '.join(f'{i}/{count}' for i in missing)} missing; pass all {count} files")
    return [by_index[index] for index in range(count)]


def interleave(shard_rows: Sequence[Sequence[dict[str, Any]]], total: int) -> list[dict[str, Any]]:
    count = len(shard_rows)
    for index, rows in enumerate(shard_rows):
        if len(rows) != len(range(index, total, count)):
            raise UserError(f"shard {index}/{count} holds {len(rows)} responses, not its share of {total} prompts")
    return [shard_rows[j % count][j // count] for j in range(total)]


def merged_metadata(documents: Sequence[dict[str, Any]], paths: Sequence[Path], responses: list[dict]) -> dict:
    metas = [document["metadata"] for document in documents]
    first = metas[0]
    peaks = [meta["peak_gpu_memory_gb"] for meta in metas if meta.get("peak_gpu_memory_gb") is not None]
    tokens = sum(meta["tokens_generated"] for meta in metas)
    wall = max(meta["wall_seconds"] for meta in metas)  # the shards ran side by side
    inherited = {key: value for key, value in first.items() if key not in RUN_METADATA_KEYS}
    return records.run_metadata(
        **{
            **inherited,
            "n_prompts": len(responses),
            "shard": None,
            "wall_seconds": wall,
            "tokens_generated": tokens,
            "tokens_per_second": round(tokens / wall, 2) if wall > 0 else None,
            "peak_gpu_memory_gb": max(peaks) if peaks else None,
            "stop_reasons": {
                reason: sum(row["stop_reason"] == reason for row in responses) for reason in ("eos", "length")
            },
            "batching": {
                **first["batching"],
                "batches": sum(meta["batching"]["batches"] for meta in metas),
                "oom_split_parts": sum(meta["batching"]["oom_split_parts"] for meta in metas),
                "batch_seconds": [s for meta in metas for s in meta["batching"].get("batch_seconds", [])],
            },
            "resumed": any(meta.get("resumed") for meta in metas),
            "sessions": [
                {**session, "shard": meta["shard"]["index"]} for meta in metas for session in meta.get("sessions", [])
            ],
            "shards": [
                {
                    "file": path.name,
                    "sha256": records.sha256_file(path),
                    **meta["shard"],
                    "n_prompts": meta["n_prompts"],
                    "wall_seconds": meta["wall_seconds"],
                    "host": meta.get("host"),
                    "gpu": meta.get("gpu"),
                }
                for meta, path in zip(metas, paths)
            ],
        }
    )


def merge(paths: Sequence[str | Path], output: str | Path | None = None) -> Path:
    """Write the joined responses file (and its .official.jsonl); returns its path. Nothing is overwritten."""
    paths = [Path(path) for path in paths]
    if not paths:
        raise UserError("give the shard files to merge")
    documents = [read_shard(path) for path in paths]
    check_same_run(documents, paths)
    order = order_shards(documents, paths)
    documents, paths = [documents[i] for i in order], [paths[i] for i in order]
    total = documents[0]["metadata"]["shard"]["n_prompts_all_shards"]
    responses = interleave([document["responses"] for document in documents], total)
    target = ifeval_run.RunPaths.from_any(output if output is not None else merged_path(paths[0]))
    if target.official.exists():
        raise UserError(f"{target.official} already exists; nothing is overwritten (choose another --output)")
    metadata = merged_metadata(documents, paths, responses)
    metadata["official_jsonl"] = target.official.name
    records.write_json_atomic(target.output, records.envelope(ifeval_run.KIND, metadata, responses=responses))
    ifeval_run.write_official(target.official, responses)
    return target.output
