"""Time the real command lines as whole processes and keep one record per run in a JSON list.

Each --run is one command exactly as a user types it (a script of this project and its flags);
it runs in its own process, its wall time is measured from start to exit, and the figures it
wrote into its own output file (tokens, generation rate, peak GPU memory, versions) are copied
into the record. Records are appended to --out after every run, atomically, so a cut session
keeps the runs that finished.

  python bench/cli_bench.py --run "eval_generate.py --model M --precision bf16 --prompts P"
  python bench/cli_bench.py --out bench/results/latest.json \\
      --run "eval_generate.py --model M --precision bf16 --prompts P" \\
      --run "eval_generate.py --model M --precision 4bit --prompts P" \\
      --run "train.py --model M --dataset D --max-steps 30 --report-to none"

A record: script, args (the flags given), gpu, n_prompts (generation) or tokens (training),
process_seconds, tokens_per_second (as the script measured it over its own work; for train.py
also steady_tokens_per_second, its rate after the first steps' compile and warm-up),
process_tokens_per_second (tokens / process_seconds), peak_gpu_memory_gb, load_seconds,
returncode, git_commit, versions, and the last lines of the run's output.

Records measured on another machine (a GPU box's own latest.json) join --out with --merge:

  python bench/cli_bench.py --merge /path/from/the/gpu/latest.json     # then --table
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sfteval import cli, records  # noqa: E402

SCRIPTS = ("eval_generate.py", "train.py", "eval_mmlu.py")
LOG_TAIL_LINES = 15


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", default=[], metavar="COMMAND", help="one command line; repeat")
    parser.add_argument("--table", action="store_true", help="print --out's records as a markdown table and exit")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "latest.json", help="(default: %(default)s)"
    )
    parser.add_argument("--timeout", type=cli.positive_int, default=1800, help="seconds per run (default: %(default)s)")
    parser.add_argument(
        "--merge",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="append FILE's records to --out, leaving out those --out already holds (same measured_at, script "
        "and args); repeat",
    )
    return parser


def read_records(path: Path) -> list[dict[str, Any]]:
    kept = records.read_json(path, "bench records file")
    if not isinstance(kept, list) or not all(isinstance(r, dict) and {"script", "args"} <= r.keys() for r in kept):
        raise cli.UserError(f"{path}: not a list of cli_bench records (each with script and args)")
    return kept


def merged(kept: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`kept` and then those of `new` it does not hold already, each once, in their order."""

    def identity(record: dict[str, Any]) -> tuple:
        return record.get("measured_at"), record["script"], tuple(record["args"])

    seen = {identity(r) for r in kept}
    added = []
    for record in new:
        if identity(record) not in seen:
            seen.add(identity(record))
            added.append(record)
    return kept + added


def split_command(text: str) -> tuple[str, list[str]]:
    words = shlex.split(text)
    if not words or Path(words[0]).name not in SCRIPTS:
        raise cli.UserError(f"--run {text!r}: start with one of {', '.join(SCRIPTS)}")
    return words[0], words[1:]


def output_args(script: str, args: list[str], scratch: Path) -> list[str]:
    """An output location in `scratch` unless the command names its own."""
    if script == "train.py":
        return [] if "--output-dir" in args else ["--output-dir", str(scratch / "adapter")]
    if script == "eval_mmlu.py":
        return [] if "--output-dir" in args else ["--output-dir", str(scratch)]
    return [] if "--output" in args else ["--output", str(scratch)]


def read_result(script: str, stdout: str, scratch: Path) -> dict[str, Any]:
    """The figures the run wrote into its own output file."""
    if script == "train.py":
        config_files = sorted(scratch.glob("**/train_config.json"))
        if not config_files:
            return {}
        document = json.loads(config_files[-1].read_text(encoding="utf-8"))
        result, meta = document.get("results") or {}, document.get("metadata") or {}
        return {
            "tokens": result.get("tokens_seen") or result.get("train_tokens"),
            "tokens_per_second": result.get("tokens_per_second"),
            "steady_tokens_per_second": result.get("steady_tokens_per_second"),
            "steady_from_step": result.get("steady_from_step"),
            "peak_gpu_memory_gb": result.get("peak_gpu_memory_gb"),
            "metadata": {k: meta.get(k) for k in ("git_commit", "library_versions", "gpu", "recipe")},
        }
    lines = [line for line in stdout.splitlines() if line.strip()]
    path = Path(lines[-1]) if lines else None
    if path is None or not path.is_file():
        return {}
    meta = records.read_json(path, "output file")["metadata"]
    return {
        "n_prompts": meta.get("n_prompts"),
        "tokens": meta.get("tokens_generated"),
        "tokens_per_second": meta.get("tokens_per_second"),
        "peak_gpu_memory_gb": meta.get("peak_gpu_memory_gb"),
        "load_seconds": meta.get("load_seconds"),
        "batch_seconds": (meta.get("batching") or {}).get("batch_seconds"),
        "generation": meta.get("generation"),
        "metadata": {k: meta.get(k) for k in ("git_commit", "library_versions", "gpu")},
    }


def run_one(command: str, timeout: int) -> dict[str, Any]:
    script, args = split_command(command)
    with tempfile.TemporaryDirectory(prefix="sfteval_bench_") as tmp:
        scratch = Path(tmp)
        argv = [sys.executable, str(ROOT / script), *args, *output_args(script, args, scratch)]
        started = time.perf_counter()
        try:
            done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
            returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as err:
            # What the process wrote before the timeout comes as bytes, whatever `text` said.
            returncode = None
            stdout, stderr = (
                s.decode(errors="replace") if isinstance(s, bytes) else s or "" for s in (err.stdout, err.stderr)
            )
            stderr = stderr.rstrip("\n") + f"\n(timed out after {timeout} s)"
        seconds = time.perf_counter() - started
        found = read_result(script, stdout, scratch) if returncode == 0 else {}
    meta = found.pop("metadata", {})
    tokens = found.get("tokens")
    return {
        "script": script,
        "args": args,
        "measured_at": records.now_iso(),
        "gpu": meta.get("gpu") or records.gpu_info(),
        "returncode": returncode,
        "process_seconds": round(seconds, 2),
        **found,
        "process_tokens_per_second": round(tokens / seconds, 1) if tokens else None,
        "git_commit": meta.get("git_commit") or records.git_commit(),
        "versions": meta.get("library_versions") or records.library_versions(),
        "log_tail": stderr.strip().splitlines()[-LOG_TAIL_LINES:],
    }


def markdown_table(kept: list[dict[str, Any]]) -> str:
    lines = [
        "| command | GPU | prompts / tokens | process s | tokens/s (own work) | tokens/s (process) | peak GB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in kept:
        gpu = (r.get("gpu") or {}).get("name", "CPU")
        work = r.get("n_prompts") or r.get("tokens")
        lines.append(
            f"| `{r['script']} {' '.join(r['args'])}` | {gpu} | {work} | {r['process_seconds']} | "
            f"{r.get('tokens_per_second')} | {r.get('process_tokens_per_second')} | {r.get('peak_gpu_memory_gb')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if args.table:
        print(markdown_table(read_records(args.out)))
        return 0
    if args.merge:
        kept = read_records(args.out) if args.out.is_file() else []
        combined = kept
        for path in args.merge:
            combined = merged(combined, read_records(path))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        records.write_json_atomic(args.out, combined, overwrite=True)
        print(f"{len(combined) - len(kept)} record(s) added to {args.out}, {len(combined)} in all", file=sys.stderr)
        return 0
    if not args.run:
        raise cli.UserError("give at least one --run COMMAND (or --table, or --merge FILE)")
    commands = [(text, *split_command(text)) for text in args.run]  # every command checked before the first runs
    kept = read_records(args.out) if args.out.is_file() else []
    for text, _script, _args in commands:
        print(f"== {text}", file=sys.stderr, flush=True)
        record = run_one(text, args.timeout)
        kept.append(record)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        records.write_json_atomic(args.out, kept, overwrite=True)
        rate = record.get("tokens_per_second")
        print(
            f"   rc {record['returncode']}, {record['process_seconds']} s for the process"
            + (f", {rate} tokens/s, peak {record.get('peak_gpu_memory_gb')} GB" if rate else ""),
            file=sys.stderr,
            flush=True,
        )
        if record["returncode"] != 0:
            print("\n".join("   | " + line for line in record["log_tail"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
