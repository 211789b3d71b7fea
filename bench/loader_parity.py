"""Loader/precision parity: the same prompts through unsloth and transformers, batched and one
by one, compared token by token with a reference run (default: transformers at bf16).

    python bench/loader_parity.py --model unsloth/Llama-3.2-1B-Instruct \
        --prompts ../shared/data/ifeval/input_data.jsonl --limit 32 \
        --runs hf:bf16 hf:8bit hf:4bit unsloth:bf16 unsloth:8bit unsloth:4bit
    python bench/loader_parity.py --model path/to/SmolLM2 --runs hf:fp32 hf:bf16   # CPU

Prints, per run: share of prompts whose greedy output equals the reference's, the median
first diverging token, the mean per-token log-prob difference on the reference's outputs,
and whether batched output equals one-by-one output (a run where it does not is flagged).
Writes everything to eval_results/parity_<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sfteval import cli, records  # noqa: E402

LOADERS = ("hf", "unsloth")


def run_spec(text: str) -> tuple[str, str]:
    loader, _, precision = text.partition(":")
    if loader not in LOADERS or precision not in cli.PRECISIONS:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LOADER:PRECISION, e.g. hf:bf16 or unsloth:4bit")
    return loader, precision


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompts", required=True, help="IFEval input_data.jsonl (or any JSONL with key, prompt)")
    parser.add_argument("--limit", type=cli.positive_int, default=32)
    parser.add_argument("--max-new-tokens", type=cli.positive_int, default=128)
    parser.add_argument("--batch-size", type=cli.positive_int, default=16)
    parser.add_argument("--runs", nargs="+", type=run_spec, default=[("hf", "bf16")], metavar="LOADER:PRECISION")
    parser.add_argument("--reference", type=run_spec, default=None, help="default: the first of --runs")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--worker", nargs=2, metavar=("RUN", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--reference-file", help=argparse.SUPPRESS)
    return parser


def load_rows(path: str, limit: int) -> list[dict]:
    rows = records.read_jsonl(path, "prompts file")
    if any("prompt" not in r or "key" not in r for r in rows):
        raise cli.UserError(f"{path}: every row needs `key` and `prompt`")
    return rows[:limit]


def worker(args: argparse.Namespace) -> int:
    from sfteval.model import parity

    loader, precision = run_spec(args.worker[0])
    reference = json.loads(Path(args.reference_file).read_text()) if args.reference_file else None
    result = parity.run_worker(
        args.model,
        loader,
        precision,
        load_rows(args.prompts, args.limit),
        args.max_new_tokens,
        args.batch_size,
        reference,
    )
    result["peak_gpu_memory_gb"] = (records.gpu_info() or {}).get("peak_memory_gb")
    Path(args.worker[1]).write_text(json.dumps(result))
    return 0


def spawn(args: argparse.Namespace, run: tuple[str, str], out: Path, reference_file: Path | None) -> dict:
    command = [
        sys.executable,
        __file__,
        "--model",
        args.model,
        "--prompts",
        args.prompts,
        "--limit",
        str(args.limit),
        "--max-new-tokens",
        str(args.max_new_tokens),
        "--batch-size",
        str(args.batch_size),
        "--worker",
        f"{run[0]}:{run[1]}",
        str(out),
    ]
    if reference_file:
        command += ["--reference-file", str(reference_file)]
    print(f"== {run[0]}:{run[1]}", file=sys.stderr, flush=True)
    done = subprocess.run(command, env=os.environ.copy())
    if done.returncode != 0:
        return {"error": f"worker exited with {done.returncode}"}
    return json.loads(out.read_text())


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    if args.worker:
        return worker(args)
    from sfteval.model import parity

    load_rows(args.prompts, args.limit)  # fail fast on a bad file
    reference_run = args.reference or args.runs[0]
    runs = [reference_run] + [r for r in args.runs if r != reference_run]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ref_file = Path(tmp) / "reference.json"
        results[":".join(reference_run)] = spawn(args, reference_run, ref_file, None)
        if "error" in results[":".join(reference_run)]:
            raise cli.UserError(f"the reference run {':'.join(reference_run)} failed; see the output above")
        for run in runs[1:]:
            results[":".join(run)] = spawn(args, run, Path(tmp) / f"{run[0]}_{run[1]}.json", ref_file)
    reference = results[":".join(reference_run)]
    summaries = {}
    for name, result in results.items():
        if "error" in result:
            summaries[name] = result
            continue
        summaries[name] = parity.summarize(result, None if name == ":".join(reference_run) else reference)
        summaries[name]["peak_gpu_memory_gb"] = result.get("peak_gpu_memory_gb")
    print(f"\nreference: {':'.join(reference_run)}   prompts: {args.limit}   max_new_tokens: {args.max_new_tokens}")
    print(
        f"{'run':<14} {'=ref':>6} {'1st div':>8} {'|dlogp|/tok':>12} {'batch==single':>14} {'tok/s':>8} {'load s':>7}"
    )
    for name, s in summaries.items():
        if "error" in s:
            print(f"{name:<14} {s['error']}")
            continue
        flag = "" if s["batch_invariant"] else "  <- batched differs from one-by-one"
        print(
            f"{name:<14} {s.get('identical_to_reference', 1.0):>6.0%} {str(s.get('median_first_divergence', '-')):>8} "
            f"{s.get('mean_abs_logprob_diff_per_token', 0.0):>12.4f} {s['batched_equals_single']:>14.0%} "
            f"{s['batched_tokens_per_second'] or 0:>8.1f} {s['load_seconds']:>7.1f}{flag}"
        )
    meta = records.run_metadata(
        model=args.model,
        prompts=args.prompts,
        limit=args.limit,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        reference=":".join(reference_run),
    )
    output = args.output or records.unique_path(
        Path("eval_results") / f"parity_{records.slug(args.model)}_{records.timestamp()}.json"
    )
    records.write_json_atomic(output, records.envelope("loader_parity", meta, summary=summaries, runs=results))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
