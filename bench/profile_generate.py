"""Where a generation run's time goes: eval_generate.py's own run (same flags, same code path) inside
torch's profiler, then the operators that took the most GPU time and the most CPU time, and the
launch counts that tell eager steps from CUDA graph replays. Keep runs short (--limit and
--max-new-tokens): every operator and kernel launch is recorded, which slows an eager decode
several times over.

  python bench/profile_generate.py --out prof.json -- --model M --precision bf16 --limit 181 --max-new-tokens 64
  python bench/profile_generate.py --out prof.json -- --model M --precision bf16 --limit 8 --max-new-tokens 8 --output /tmp/p.json

Everything after `--` is eval_generate.py's command line. --out gets the summary as JSON (and the
table is printed); --trace also writes a Chrome trace (large). Stopped by SIGTERM (e.g. `timeout`),
it still summarizes what it recorded.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import eval_generate  # noqa: E402
from sfteval import cli, records  # noqa: E402
from sfteval.ifeval.run import RunConfig  # noqa: E402

# Host-side calls whose counts say how the steps ran: one kernel launch per operator (eager),
# or one graph launch per replayed step (CUDA graphs).
LAUNCH_CALLS = ("cudaLaunchKernel", "cuLaunchKernel", "cudaGraphLaunch", "cudaStreamSynchronize", "cudaMemcpyAsync")


class Stopped(Exception):
    """SIGTERM (a time limit) arrived: the profile so far is still summarized."""


def stop(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # `timeout` signals the child and then its whole group
    raise Stopped


def operator_rows(events: Any, key: str, top: int) -> list[dict[str, Any]]:
    rows = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:top]
    return [
        {
            "name": e.key[:120],
            "calls": e.count,
            "self_device_ms": round(e.self_device_time_total / 1000, 2),
            "self_cpu_ms": round(e.self_cpu_time_total / 1000, 2),
        }
        for e in rows
    ]


def summarize(prof: Any, wall_seconds: float, top: int) -> dict[str, Any]:
    events = prof.key_averages()
    by_name = {e.key: e for e in events}
    return {
        "wall_seconds": round(wall_seconds, 2),
        "launch_counts": {name: by_name[name].count for name in LAUNCH_CALLS if name in by_name},
        "total_self_device_ms": round(sum(e.self_device_time_total for e in events) / 1000, 1),
        "top_device": operator_rows(events, "self_device_time_total", top),
        "top_cpu": operator_rows(events, "self_cpu_time_total", top),
    }


def print_summary(summary: dict[str, Any]) -> None:
    print(f"wall {summary['wall_seconds']} s, GPU busy {summary['total_self_device_ms']} ms (sum of kernels)")
    print("launches: " + ", ".join(f"{k} {v}" for k, v in summary["launch_counts"].items()))
    for title, key in (("most GPU time", "top_device"), ("most CPU time", "top_cpu")):
        print(f"-- {title}: calls, self GPU ms, self CPU ms, operator")
        for row in summary[key]:
            print(f"{row['calls']:>9} {row['self_device_ms']:>10} {row['self_cpu_ms']:>10}  {row['name']}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the summary as JSON (refuses an existing file)")
    parser.add_argument("--top", type=int, default=25, help="operators listed per table")
    parser.add_argument("--trace", help="also write a Chrome trace here")
    args = parser.parse_args(argv[:split])
    if split == len(argv):
        raise cli.UserError("give eval_generate.py's flags after `--`, e.g. -- --model M --limit 8")
    out = records.check_new_file(args.out, "--out")
    (config,) = cli.parse_settings([RunConfig], argv[split + 1 :], eval_generate.__doc__)

    import torch
    from torch.profiler import ProfilerActivity, profile

    from sfteval.ifeval import run as ifeval_run

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    signal.signal(signal.SIGTERM, stop)
    result = None
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        try:
            result = ifeval_run.run(config)
        except Stopped:
            print("stopped by SIGTERM: summarizing the profile so far", file=sys.stderr)
    wall = time.perf_counter() - start
    metadata = records.run_metadata(
        eval_generate_args=argv[split + 1 :],
        finished=result is not None,
        run_summary=result.summary if result else None,
    )
    summary = summarize(prof, wall, args.top)
    if args.trace:
        prof.export_chrome_trace(args.trace)
    records.write_json_atomic(out, records.envelope("generate_profile", metadata, **summary))
    print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
