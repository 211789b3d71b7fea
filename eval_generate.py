"""IFEval responses for any model, precision and adapter: fast, resumable, self-describing.

python eval_generate.py --model unsloth/Meta-Llama-3.1-8B --precision 4bit
python eval_generate.py --model unsloth/Meta-Llama-3.1-8B-Instruct --precision bf16 --batch-size 128
python eval_generate.py --lora lora_model_4bit --precision 4bit            # base model and template from the adapter
python eval_generate.py --model unsloth/Meta-Llama-3.1-8B --no-chat-template --use-hf --precision 8bit
python eval_generate.py --model M --use-hf --precision bf16 --static-cache --compile --gqa-decode --batch-size 256  # fastest
python eval_generate.py --model M --use-hf --precision bf16 --gqa-decode      # KV cache read once per key/value head
python eval_generate.py --model M --use-hf --precision 4bit --dequantize-once --static-cache --compile --gqa-decode  # 4-bit weights, bf16 speed
python eval_generate.py --model M --prompts ../shared/data/ifeval/input_data.jsonl --limit 20 --max-new-tokens 64
python eval_generate.py --model M --precision 4bit --resume                # complete the newest matching run
python eval_generate.py --resume eval_responses/NAME.partial.jsonl --model M --precision 4bit

Writes eval_responses/<model>[_<adapter>]_<precision>_<YYYYmmdd_HHMMSS>.json (format
`ifeval_responses`, docs/FORMATS.md) and, next to it, <same stem>.official.jsonl for Google's
scorer. While it runs, every finished batch is appended to <same stem>.partial.jsonl; after a
crash, the same command with --resume completes the run (and refuses if the settings differ).
Nothing is ever overwritten. Greedy decoding; each answer stops at its own EOS or at
--max-new-tokens (1280 by default, lm-eval's IFEval setting).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from sfteval import cli


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_model_args(parser)
    parser.add_argument(
        "--no-chat-template", action="store_true", help="prompt with the raw instruction (same as --template none)"
    )
    parser.add_argument(
        "--merge-adapter",
        action="store_true",
        help="with --lora, bf16/fp32 and --use-hf: merge the LoRA weights into the base before generating "
        "(fewer kernels per step; slightly different rounding, so it is part of the run's settings)",
    )
    parser.add_argument(
        "--llm-int8-threshold",
        metavar="T",
        type=float,
        default=6.0,
        help="8bit only: activations above this magnitude run in 16-bit (LLM.int8 outlier split; "
        "0 = pure int8, faster but less accurate) (default: %(default)s)",
    )
    group = parser.add_argument_group("prompts and generation")
    group.add_argument(
        "--prompts",
        metavar="FILE",
        help="local IFEval input_data.jsonl (default: the hub's google/IFEval)",
    )
    group.add_argument("--limit", metavar="N", help="only the first N prompts (a quick check)")
    group.add_argument("--max-new-tokens", metavar="N", default="1280", help="(default: %(default)s, as lm-eval)")
    group.add_argument("--seed", type=int, default=0, help="set before generating (default: %(default)s)")
    group = parser.add_argument_group("speed (may differ between a run and its resume)")
    group.add_argument(
        "--batch-size",
        metavar="N",
        default="auto",
        help="prompts per generate call; auto = as many as fit in free GPU memory at full length, "
        "at most 256 (8 on a CPU) (default: %(default)s)",
    )
    group.add_argument(
        "--static-cache",
        action="store_true",
        help="preallocated KV cache of one size for every batch (transformers cache_implementation=static)",
    )
    group.add_argument(
        "--compile",
        action="store_true",
        help="with --static-cache: torch.compile the decode step (CUDA graphs); the first batch pays the compile",
    )
    group.add_argument(
        "--compile-mode",
        choices=("reduce-overhead", "max-autotune"),
        default="reduce-overhead",
        help="torch.compile mode for --compile; max-autotune also tries Triton matmuls (longer compile; on "
        "an H100 it made the 8B shape's 4-bit decoding no faster, bench/README.md) (default: %(default)s)",
    )
    group.add_argument(
        "--gqa-decode",
        action="store_true",
        help="transformers loader: at each new token read every key/value head of the cache once instead of "
        "copying it for each query head it serves (same attention, sfteval/model/attention.py)",
    )
    group.add_argument(
        "--dequantize-once",
        action="store_true",
        help="4bit with --use-hf: dequantize the NF4 weights to bf16 once at load: the 4-bit model's "
        "weights, bit for bit, at bf16's speed but with bf16's GPU memory (about 16 GB for an 8B model). "
        "Same arithmetic as bitsandbytes where it dequantizes before its matmul (8B shapes from 33 rows "
        "a batch on an H100, 65 on an A100); elsewhere answers may differ by rounding",
    )
    group = parser.add_argument_group("output")
    group.add_argument("--output", metavar="PATH", help="a .json file name, or a folder (default: eval_responses/)")
    group.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        metavar="PATH",
        help="complete an unfinished run: its .partial.jsonl (or .json) path, or with no PATH the newest "
        "one in the output folder made with the same settings",
    )
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def count(text: str | None, flag: str, allow_auto: bool = False) -> int | None:
    """A positive integer flag, checked here so a bad value is one line (exit 2)."""
    if text is None or (allow_auto and text == "auto"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise cli.UserError(f"{flag} must be a whole number{' or auto' if allow_auto else ''}, got {text!r}") from None
    if value < 1:
        raise cli.UserError(f"{flag} must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    template = args.template
    if args.no_chat_template:
        if template not in ("auto", "none"):
            raise cli.UserError(f"--no-chat-template contradicts --template {template}")
        template = "none"
    if not args.compile:
        # The dynamic KV cache grows by one token per step; expandable segments keep the
        # allocator from fragmenting into an out-of-memory error (left alone for CUDA graphs).
        os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    from sfteval.ifeval import run as ifeval_run

    config = ifeval_run.RunConfig(
        model=args.model,
        adapter=args.lora,
        precision=args.precision,
        use_hf=args.use_hf,
        template=template,
        max_new_tokens=count(args.max_new_tokens, "--max-new-tokens"),
        seed=args.seed,
        prompts=args.prompts,
        limit=count(args.limit, "--limit"),
        batch_size=count(args.batch_size, "--batch-size", allow_auto=True),
        static_cache=args.static_cache,
        compile=args.compile,
        compile_mode=args.compile_mode,
        gqa_decode=args.gqa_decode,
        dequantize_once=args.dequantize_once,
        merge_adapter=args.merge_adapter,
        llm_int8_threshold=args.llm_int8_threshold,
        output=args.output,
        resume=args.resume,
        progress=not args.no_progress,
    )
    result = ifeval_run.run(config)
    if result.status == "already complete":
        print(f"{result.output} is already complete; nothing to do", file=sys.stderr)
    else:
        s = result.summary
        reasons = ", ".join(f"{n} {reason}" for reason, n in s["stop_reasons"].items())
        peak = "" if s["peak_gpu_memory_gb"] is None else f", peak {s['peak_gpu_memory_gb']} GB"
        print(
            f"{s['n_prompts']} responses ({reasons}); {s['tokens_generated']} tokens in {s['wall_seconds']:.1f} s "
            f"= {s['tokens_per_second'] or 0:.0f} tokens/s{peak}",
            file=sys.stderr,
        )
    print(result.output)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
