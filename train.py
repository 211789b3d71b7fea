"""LoRA / QLoRA finetuning on alpaca-cleaned that teaches the model to answer and stop.

The defaults are Unsloth's Llama-3.1-8B Alpaca recipe (4-bit base, LoRA r=16 alpha=16 on all
projections, lr 2e-4, 8-bit AdamW, 2 x 4 examples per step, linear schedule with 5 warm-up
steps, weight decay 0.01, seed 3407, max length 2048), for one epoch. The adapter, the tokenizer
and train_config.json go to ./lora_model_<precision>; inference.py and the eval scripts read
the base model and the prompt template from it.

  python train.py                                   # the seed recipe, 4-bit QLoRA with unsloth
  python train.py --precision bf16 --max-steps 60 --report-to none
  python train.py --precision bf16 --use-hf --packing --batch-size 32 --grad-accum 1 \\
      --no-gradient-checkpointing --attention varlen --lr 8e-4   # the fast recipe, H100 (bench/README.md)
  python train.py --dataset my_alpaca.jsonl --val-size 0.02 --output-dir lora_mine
  python train.py --resume                          # continue an interrupted run, same flags
  python train.py --estimate-memory --precision 4bit --rank 16 --batch-size 8
  # CPU (no CUDA): transformers' Trainer, fp32 weights, torch AdamW
  python train.py --model path/to/small-model --use-hf --precision fp32 \\
      --dataset ../shared/data/alpaca_cleaned/alpaca_data_cleaned_first5000.json \\
      --limit 200 --max-steps 20 --report-to none --output-dir lora_cpu
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sfteval import cli
from sfteval.model.loading import DEFAULT_LORA_TARGETS

DEFAULT_MODEL = "unsloth/Meta-Llama-3.1-8B"
DEFAULT_DATASET = "yahma/alpaca-cleaned"


def module_list(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError("give at least one module name")
    return names


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model", default=DEFAULT_MODEL, help="base model: hub name, local folder or .gguf (default: %(default)s)"
    )
    model.add_argument(
        "--precision",
        choices=cli.PRECISIONS,
        default="4bit",
        help="base weights: 4bit = QLoRA, bf16/8bit = LoRA, fp32 = CPU reference (default: %(default)s)",
    )
    model.add_argument(
        "--use-hf",
        action="store_true",
        help="transformers + peft + TRL + bitsandbytes instead of unsloth (always on a CPU)",
    )

    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset", default=DEFAULT_DATASET, help="hub name or local alpaca .json/.jsonl (default: %(default)s)"
    )
    data.add_argument("--dataset-split", default="train", help="hub split (default: %(default)s)")
    data.add_argument("--dataset-revision", help="hub revision (commit, tag or branch) to pin")
    data.add_argument("--limit", type=cli.positive_int, help="use only the first N records")
    data.add_argument(
        "--val-size",
        type=cli.non_negative_float,
        default=0.0,
        help="held-out examples: a fraction < 1 or a count (default: none)",
    )
    data.add_argument(
        "--max-length", type=cli.positive_int, default=2048, help="tokens per example (default: %(default)s)"
    )
    data.add_argument(
        "--overlong",
        choices=("drop", "truncate"),
        default="drop",
        help="examples over --max-length: drop them, or keep their first tokens (no EOS); counted either way (default: %(default)s)",
    )

    lora = parser.add_argument_group("LoRA")
    lora.add_argument(
        "--rank", "--lora-r", dest="lora_r", type=cli.positive_int, default=16, help="LoRA rank (default: %(default)s)"
    )
    lora.add_argument("--lora-alpha", type=cli.positive_int, default=16, help="(default: %(default)s)")
    lora.add_argument("--lora-dropout", type=cli.non_negative_float, default=0.0, help="(default: %(default)s)")
    lora.add_argument(
        "--target-modules",
        type=module_list,
        default=DEFAULT_LORA_TARGETS,
        help="comma-separated (default: all 7 projections)",
    )

    optim = parser.add_argument_group("optimization")
    optim.add_argument(
        "--lr", dest="learning_rate", type=cli.positive_float, default=2e-4, help="(default: %(default)s)"
    )
    optim.add_argument(
        "--optim",
        default="adamw_8bit",
        choices=("adamw_8bit", "paged_adamw_8bit", "adamw_torch", "adamw_torch_fused"),
        help="(default: %(default)s; torch AdamW on a CPU)",
    )
    optim.add_argument(
        "--batch-size", type=cli.positive_int, default=2, help="examples per micro-batch (default: %(default)s)"
    )
    optim.add_argument(
        "--grad-accum", type=cli.positive_int, default=4, help="micro-batches per optimizer step (default: %(default)s)"
    )
    optim.add_argument(
        "--lr-scheduler", choices=("linear", "cosine", "constant", "constant_with_warmup"), default="linear"
    )
    optim.add_argument("--warmup-steps", type=cli.non_negative_int, default=5, help="(default: %(default)s)")
    optim.add_argument("--weight-decay", type=cli.non_negative_float, default=0.01, help="(default: %(default)s)")
    optim.add_argument(
        "--max-grad-norm", type=cli.non_negative_float, default=1.0, help="clip; 0 = off (default: %(default)s)"
    )
    optim.add_argument("--seed", type=int, default=3407, help="(default: %(default)s)")
    optim.add_argument("--epochs", type=cli.positive_float, default=1.0, help="(default: %(default)s)")
    optim.add_argument(
        "--max-steps", type=cli.positive_int, help="stop after this many optimizer steps (overrides --epochs)"
    )

    speed = parser.add_argument_group("speed and memory")
    speed.add_argument(
        "--packing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="padding-free batches: a micro-batch's examples concatenated into one row, attention kept within each "
        "example (default: unsloth decides, usually on; --use-hf pads)",
    )
    speed.add_argument(
        "--gradient-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="recompute activations in the backward pass (unsloth: offloaded to CPU RAM) (default: on)",
    )
    speed.add_argument(
        "--group-by-length",
        action="store_true",
        help="fill each effective batch with examples of similar length (transformers' LengthGroupedSampler): "
        "little padding in padded batches, the order still shuffled with --seed; the longest batch comes first, "
        "so a batch size that does not fit fails at step 1",
    )
    speed.add_argument(
        "--compile",
        action="store_true",
        help="with --use-hf: torch.compile each decoder layer with dynamic shapes: fused kernels and fewer "
        "launches per step; the first steps pay the compile (once for all layers and batch lengths). On an H100 "
        "1.36x faster; on a real model it trained to the eager held-out loss (bench/README.md)",
    )
    speed.add_argument(
        "--attention",
        choices=("sdpa", "varlen"),
        default="sdpa",
        help="with --use-hf: varlen = flash attention's variable-length kernel for --packing rows (each example "
        "attends only to itself, no dense block mask; CUDA, torch's varlen_attn); sdpa = transformers' SDPA "
        "(default: %(default)s)",
    )
    speed.add_argument(
        "--peft-input-cast",
        action="store_true",
        help="with --use-hf on a GPU: keep peft's fp32 copy of every LoRA input; under bf16 autocast it is cast "
        "back before the matmul, so leaving it out (the default) changes no number and saves two copies per layer",
    )
    speed.add_argument(
        "--token-budget",
        type=cli.positive_int,
        help="unsloth: run a micro-batch holding more real tokens than this as several passes over whole "
        "examples (same loss and gradients), so big padding-free batches without checkpointing cannot run out "
        "of memory on a long batch",
    )
    speed.add_argument(
        "--estimate-memory",
        action="store_true",
        help="print the memory estimate for --model and these settings, then exit",
    )

    out = parser.add_argument_group("output, checkpoints, logging")
    out.add_argument("--output-dir", help="adapter folder, must not exist (default: ./lora_model_<precision>)")
    out.add_argument(
        "--save-steps", type=cli.positive_int, default=200, help="checkpoint every N steps (default: %(default)s)"
    )
    out.add_argument(
        "--save-total-limit", type=cli.positive_int, default=2, help="checkpoints kept (default: %(default)s)"
    )
    out.add_argument("--keep-checkpoints", action="store_true", help="keep <output-dir>.partial/ after success")
    out.add_argument(
        "--resume", action="store_true", help="continue the unfinished run of --output-dir from its last checkpoint"
    )
    out.add_argument("--logging-steps", type=cli.positive_int, default=1, help="(default: %(default)s)")
    out.add_argument(
        "--eval-steps", type=cli.positive_int, help="validation loss every N steps (default: only at the end)"
    )
    out.add_argument("--eval-on-start", action="store_true", help="also measure the validation loss before training")
    out.add_argument(
        "--report-to", choices=("auto", "wandb", "none"), default="auto", help="auto = wandb if installed (default)"
    )
    out.add_argument("--wandb-project", default="sfteval", help="(default: %(default)s)")
    out.add_argument("--run-name", help="W&B run name (default: the output folder's name)")
    return parser


def settings_from_args(args: argparse.Namespace):
    from sfteval.train.trainer import TrainSettings

    names = set(TrainSettings.__dataclass_fields__)
    return TrainSettings(**{key: value for key, value in vars(args).items() if key in names})


def estimate_memory(args: argparse.Namespace) -> int:
    from sfteval.train import memory

    shape, source = memory.load_shape(args.model)
    print(
        memory.format_table(
            shape,
            source,
            batch_size=args.batch_size,
            seq_len=args.max_length,
            rank=args.lora_r,
            precision=args.precision,
            optimizer_8bit="8bit" in args.optim,
            checkpointing=args.gradient_checkpointing,
            targets=tuple(args.target_modules),
        )
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if args.estimate_memory:
        return estimate_memory(args)
    from sfteval.train import trainer

    trainer.run(settings_from_args(args))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
