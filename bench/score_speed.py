"""How fast eval_score.py scores, and whether worker processes would pay: imports, lm-eval's
own loop, sfteval.ifeval.scoring serial, forked and spawned workers, bootstrap intervals.

python bench/score_speed.py
python bench/score_speed.py --input eval_responses/run.json --repeats 5 --workers 2

Default input: the shared Phi-3 responses (541 prompts, official JSONL) scored against the
shared input_data.jsonl. Imports and one-time loads are timed on their own. Each figure is
wall seconds (best / median of --repeats) and CPU seconds per run, summed over this process
and its workers: on a busy machine the CPU figure is the stable one.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sfteval import cli  # noqa: E402

SHARED_IFEVAL = ROOT.parent / "shared" / "data" / "ifeval"


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", default=str(SHARED_IFEVAL / "phi3_eval_results_strict.jsonl"))
    parser.add_argument("--prompts", default=str(SHARED_IFEVAL / "input_data.jsonl"))
    parser.add_argument("--repeats", type=cli.positive_int, default=3)
    parser.add_argument("--workers", type=cli.positive_int, default=2)
    return parser


def timed(func: Callable[[], object], repeats: int) -> tuple[float, float, float]:
    walls = []
    cpu_start = os.times()
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        walls.append(time.perf_counter() - start)
    cpu_end = os.times()
    # user + system of this process and of its reaped children (pool workers)
    cpu = sum(cpu_end[i] - cpu_start[i] for i in range(4)) / repeats
    return min(walls), statistics.median(walls), cpu


def lm_eval_loop(rows: Sequence[dict]) -> None:
    """The reference: lm-eval's own strict and loose functions, one prompt at a time."""
    from lm_eval.tasks.ifeval import utils

    for row in rows:
        fields = {k: row[k] for k in ("key", "instruction_id_list", "prompt", "kwargs")}
        example = utils.InputExample(**fields)
        utils.test_instruction_following_strict(example, row["response"])
        utils.test_instruction_following_loose(example, row["response"])


def pooled(method: str, func: Callable, items: Sequence, workers: int) -> list:
    """`func` over `items` in a fresh pool: fork inherits the loaded checkers (Linux); spawn,
    what Windows and macOS get, starts interpreters that import lm-eval again."""
    with multiprocessing.get_context(method).Pool(workers) as pool:
        return pool.map(func, items)


def split(rows: Sequence[dict], parts: int) -> list[list[dict]]:
    size = -(-len(rows) // parts)
    return [list(rows[i : i + size]) for i in range(0, len(rows), size)]


def line(label: str, figures: str) -> None:
    print(f"{label:52} {figures}")


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    os.environ.setdefault("NLTK_DATA", str(ROOT.parent / "shared" / "data" / "nltk_data"))
    start = time.perf_counter()
    import lm_eval.tasks.ifeval.instructions_registry  # noqa: F401

    import_s = time.perf_counter() - start
    from sfteval import stats
    from sfteval.ifeval import scoring as ifeval

    start = time.perf_counter()
    ifeval.load_checkers()
    setup_s = time.perf_counter() - start
    rows = ifeval.read_responses(args.input, args.prompts).rows
    n_instructions = sum(len(r["instruction_id_list"]) for r in rows)
    per_prompt = ifeval.score_rows(rows)
    unit_sets = [  # the four that summarize() bootstraps
        [[p[f"follow_all_{mode}"]] for p in per_prompt]
        if level == "prompt"
        else [p[f"follow_instruction_list_{mode}"] for p in per_prompt]
        for mode in ("strict", "loose")
        for level in ("prompt", "instruction")
    ]

    figures = {"lm-eval's strict + loose functions, serial": timed(lambda: lm_eval_loop(rows), args.repeats)}
    figures["sfteval.ifeval.scoring.score_rows, serial"] = timed(lambda: ifeval.score_rows(rows), args.repeats)
    chunks = split(rows, args.workers)
    if "fork" in multiprocessing.get_all_start_methods():
        figures[f"score_rows, {args.workers} forked workers"] = timed(
            lambda: pooled("fork", ifeval.score_rows, chunks, args.workers), args.repeats
        )
    figures[f"score_rows, {args.workers} spawned workers (+ imports)"] = timed(
        lambda: pooled("spawn", ifeval.score_rows, chunks, args.workers), 1
    )
    figures["4 bootstrap intervals, serial"] = timed(lambda: ifeval.summarize(per_prompt), 1)
    if "fork" in multiprocessing.get_all_start_methods():
        figures[f"4 bootstrap intervals, {args.workers} forked workers"] = timed(
            lambda: pooled("fork", stats.bootstrap_interval, unit_sets, args.workers), 1
        )

    print(f"input: {Path(args.input).name}, {len(rows)} responses, {n_instructions} instructions")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"cpus: {os.cpu_count()}, load average {load:.1f}; seconds: wall best / median, cpu per run")
    line("import lm_eval.tasks.ifeval.instructions_registry", f"{import_s:.2f}")
    line("one-time loads (langdetect profiles, punkt tables)", f"{setup_s:.2f}")
    for label, (best, median, cpu) in figures.items():
        line(label, f"{best:.2f} / {median:.2f}   cpu {cpu:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
