"""The side file of an IFEval generation run: every finished batch is appended to it and forced
to disk, so a crash loses at most the batch in flight and `--resume` carries on from it.

The side file `<stem>.partial.jsonl` has one JSON object per line:

    {"kind": "ifeval_responses_partial", "schema_version": 1, "output": "<stem>.json", "settings": {...}}
    {"session": {...}}   one per start or resume: when, where, with what batch size and speed knobs
    {"key": ..., ...}    one response row, exactly as in the final file, in the order generated
    {"batch": {...}}     after each batch's rows: rows, seconds, new tokens, peak GPU memory

`settings` holds what the responses depend on (model, adapter, precision, loader, template,
generation settings, stop tokens, the prompts); a resume must match it exactly. Speed knobs
(batch size, static cache, compile) may differ between sessions and are recorded per session.
A line cut short by a crash is dropped before the run goes on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfteval.cli import UserError

PARTIAL_KIND = "ifeval_responses_partial"
PARTIAL_SUFFIX = ".partial.jsonl"


@dataclass
class Partial:
    path: Path
    header: dict[str, Any]
    rows: list[dict[str, Any]]
    batches: list[dict[str, Any]]
    sessions: list[dict[str, Any]]
    good_bytes: (
        int  # length of the settled part; what a crash cut short (a torn line, rows without their batch) lies beyond
    )
    torn_tail: bool


def read_partial(path: str | Path) -> Partial:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no unfinished run at {path}")
    data = path.read_bytes()
    objects, ends = [], []  # each complete line's object and the byte offset where the line ends
    offset = 0
    # Every complete line ends in "\n"; whatever follows the last "\n" was cut short by a crash.
    for number, raw in enumerate(data.split(b"\n")[:-1], 1):
        offset += len(raw) + 1
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{path} line {number} is not valid JSON; the side file is damaged") from None
        if not isinstance(obj, dict):
            raise UserError(f"{path} line {number} is not a JSON object; the side file is damaged")
        objects.append(obj)
        ends.append(offset)
    if not objects or objects[0].get("kind") != PARTIAL_KIND:
        raise UserError(
            f"{path} is not a side file of eval_generate.py (its first line is not a {PARTIAL_KIND} header)"
        )
    # A batch's rows and its record are one write: rows after the last record lost it to a crash, so
    # they count as cut short too (generated again), and every session's row count adds up.
    settled = max(i for i, obj in enumerate(objects) if "key" not in obj)
    header, rows, batches, sessions = objects[0], [], [], []
    for obj in objects[1 : settled + 1]:
        if "key" in obj:
            rows.append(obj)
        elif "batch" in obj:
            batches.append(obj["batch"])
        elif "session" in obj:
            sessions.append(obj["session"])
    good_bytes = ends[settled]
    return Partial(path, header, rows, batches, sessions, good_bytes, good_bytes < len(data))


class SideFile:
    """Appends lines and forces them to disk, so a crash loses at most the batch in flight."""

    def __init__(self, path: Path, truncate_to: int | None = None):
        if truncate_to is not None:
            with open(path, "r+b") as handle:
                handle.truncate(truncate_to)
        self.path = path
        self.handle = open(path, "a", encoding="utf-8", newline="\n")

    def append(self, objects: Sequence[dict[str, Any]]) -> None:
        self.handle.write("".join(json.dumps(obj, ensure_ascii=False) + "\n" for obj in objects))
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.close()


def differing(current: dict[str, Any], recorded: dict[str, Any], keys: Sequence[str]) -> list[str]:
    return [k for k in keys if current.get(k) != recorded.get(k)]


def side_files(folder: Path, settings: dict[str, Any]) -> Iterator[tuple[Path, list[str]]]:
    """(side file, the settings it differs in) for each side file in `folder`, newest first."""
    candidates = sorted(folder.glob("*" + PARTIAL_SUFFIX), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in candidates:
        try:
            with open(path, encoding="utf-8") as handle:
                header = json.loads(handle.readline())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(header, dict) and header.get("kind") == PARTIAL_KIND:
            yield path, differing(settings, header.get("settings", {}), list(settings))


def find_partial(folder: Path, settings: dict[str, Any]) -> Path:
    """The newest side file in `folder` whose settings match; a one-line error naming what
    differs when none does."""
    found = list(side_files(folder, settings))
    for path, diff in found:
        if not diff:
            return path
    if not found:
        raise UserError(f"--resume: no unfinished run ({PARTIAL_SUFFIX} file) in {folder}")
    raise UserError(
        f"--resume: no unfinished run in {folder} matches these settings "
        f"(the newest, {found[0][0].name}, differs in: {', '.join(found[0][1])})"
    )
