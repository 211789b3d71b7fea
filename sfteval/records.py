"""Files the scripts exchange: safe writes, output names and self-describing metadata.

Every JSON file a script writes carries `schema_version`, a `kind` naming what it
holds, and `metadata` from `run_metadata()`, so a file moved to another machine
still says how it was made.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from sfteval.cli import UserError

SCHEMA_VERSION = 1
PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Distribution names whose versions are recorded in every output file.
TRACKED_LIBRARIES = (
    "torch",
    "transformers",
    "peft",
    "trl",
    "accelerate",
    "datasets",
    "bitsandbytes",
    "unsloth",
    "unsloth_zoo",
    "lm-eval",
    "langdetect",
    "nltk",
    "wandb",
)


def timestamp() -> str:
    return dt.datetime.now().strftime("%Y%m%d_%H%M%S")


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def slug(name: str) -> str:
    """A filename-safe short name for a model, adapter or file path."""
    name = str(name).rstrip("/\\")
    base = re.split(r"[/\\]", name)[-1]
    base = re.sub(r"\.gguf$", "", base, flags=re.IGNORECASE)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-") or "model"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def unique_path(path: str | Path) -> Path:
    """`path` if it is free, else the same name with `_1`, `_2`, ... before the suffix."""
    path = Path(path)
    if not path.exists():
        return path
    # Only word-like suffixes count (".scores.json"): model names such as Meta-Llama-3.1-8B hold dots.
    kept = []
    for suffix in reversed(path.suffixes):
        if not re.fullmatch(r"\.[A-Za-z]+", suffix):
            break
        kept.insert(0, suffix)
    suffixes = "".join(kept)
    stem = path.name[: len(path.name) - len(suffixes)] if suffixes else path.name
    for n in range(1, 10_000):
        candidate = path.with_name(f"{stem}_{n}{suffixes}")
        if not candidate.exists():
            return candidate
    raise UserError(f"could not find a free file name next to {path}")


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable_folder(folder: str | Path, what: str = "output folder") -> None:
    """Refuse, before any work is done, a folder that cannot be written: one that is a file, lies
    under a file, or is read-only. A folder that does not exist yet counts as its nearest parent."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{what} {folder} cannot be made: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise UserError(f"{what} {folder} cannot be written ({err.strerror or err})") from None


def check_new_file(path: str | Path, what: str = "output file") -> Path:
    """Refuse, before any work is done, an output file that exists or whose folder cannot be written."""
    path = Path(path)
    if path.exists():
        raise UserError(f"{what} {path} already exists; choose another name (nothing is overwritten)")
    check_writable_folder(path.parent, f"the folder of {what} {path},")
    return path


# Temporary files of write_text_atomic are `.<name>.sfteval-<random>.tmp`. One left behind by a write
# killed before its rename is removed by a later write into the same folder, once it is this old.
TMP_MARK = ".sfteval-"
STALE_TMP_SECONDS = 3600


def remove_stale_tmp(folder: Path) -> None:
    cutoff = time.time() - STALE_TMP_SECONDS
    for leftover in folder.glob(f".*{TMP_MARK}*.tmp"):
        with contextlib.suppress(OSError):
            if leftover.is_file() and leftover.stat().st_mtime < cutoff:
                leftover.unlink()


def write_text_atomic(path: str | Path, text: str, overwrite: bool = False) -> Path:
    """Write via a temporary file and a rename, so a crash never leaves half a file."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise UserError(f"{path} already exists; choose another output name (nothing is overwritten)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TMP_MARK}", suffix=".tmp")
    except OSError as err:
        raise UserError(f"cannot write {path} ({err.strerror or err})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise UserError(f"cannot write {path} ({err.strerror or err})") from None
        raise
    return path


def write_json_atomic(path: str | Path, obj: Any, overwrite: bool = False) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n", overwrite=overwrite)


def require_file(path: str | Path, what: str = "file") -> Path:
    """`path` as a Path, or a one-line error when it is missing or a folder."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder; pass the file inside it")
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist")
    return path


def read_text(path: str | Path, what: str = "file") -> str:
    """A file's text (gunzipped when it ends in .gz, e.g. a scores file kept small for moving around),
    or a one-line error when it is missing, not UTF-8 or empty."""
    path = require_file(path, what)
    try:
        data = path.read_bytes()
        text = (gzip.decompress(data) if path.suffix == ".gz" else data).decode("utf-8")
    except (gzip.BadGzipFile, EOFError):
        raise UserError(f"{what} {path} is not a complete gzip file") from None
    except UnicodeDecodeError:
        raise UserError(f"{what} {path} is not UTF-8 text") from None
    except OSError as err:
        raise UserError(f"{what} {path} cannot be read ({err.strerror or err})") from None
    if not text.strip():
        raise UserError(f"{what} {path} is empty")
    return text


def read_json(path: str | Path, what: str = "file") -> Any:
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{what} {path} is not valid JSON ({err.msg} at line {err.lineno})") from None


def read_jsonl(path: str | Path, what: str = "file") -> list[dict]:
    rows = []
    # Lines end at "\n" only: str.splitlines would also cut at characters like U+2028 inside a string.
    for lineno, line in enumerate(read_text(path, what).split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{what} {path} line {lineno} is not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise UserError(f"{what} {path} line {lineno} is not a JSON object")
        rows.append(row)
    return rows


def installed_version(distribution: str) -> str | None:
    """The installed version of a package, or None where it is not installed."""
    try:
        return importlib_metadata.version(distribution)
    except importlib_metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str | None]:
    return {"python": platform.python_version(), **{dist: installed_version(dist) for dist in TRACKED_LIBRARIES}}


def git_commit() -> str | None:
    """The project's commit, with `-dirty` when the tree has uncommitted changes. $SFTEVAL_GIT_COMMIT,
    when set, wins: a GPU machine that got a copy of the working tree may have no .git or a stale one."""
    if os.environ.get("SFTEVAL_GIT_COMMIT") or not (PROJECT_ROOT / ".git").exists():
        return os.environ.get("SFTEVAL_GIT_COMMIT")
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def peak_gpu_memory_gb() -> float | None:
    """The CUDA allocator's peak in GB, only when torch is already in use (None on a CPU)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 1e9, 3)


def gpu_info() -> dict[str, Any] | None:
    """Name and peak memory of the CUDA device, only when torch is already in use."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return {
        "name": torch.cuda.get_device_name(0),
        "count": torch.cuda.device_count(),
        "peak_memory_gb": peak_gpu_memory_gb(),
        "peak_reserved_gb": round(torch.cuda.max_memory_reserved() / 1e9, 3),
    }


def run_metadata(**fields: Any) -> dict[str, Any]:
    """Where and with what a file was made; `fields` add the script's own settings."""
    return {
        "created_at": now_iso(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "host": platform.node(),
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "library_versions": library_versions(),
        "gpu": gpu_info(),
        **fields,
    }


def envelope(kind: str, metadata: dict[str, Any], **body: Any) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "kind": kind, "metadata": metadata, **body}


def derived_document(kind: str, inputs: Sequence[str | Path], body: dict[str, Any], **settings: Any) -> dict:
    """A file computed from other files: run metadata naming each input with its sha256, then `body`."""
    meta = run_metadata(inputs=[{"path": str(p), "sha256": sha256_file(p)} for p in inputs], **settings)
    return envelope(kind, meta, **body)
