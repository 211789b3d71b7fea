"""What every script shares: one-line errors, common flags, the entry-point wrapper."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

# fp32 is for CPU reference runs: bf16 batched generation is not bit-identical to one-by-one.
PRECISIONS = ("bf16", "8bit", "4bit", "fp32")
TEMPLATES = ("auto", "chat", "alpaca", "none")


class UserError(Exception):
    """Bad input or a missing resource: printed as one line, exit code 2, no traceback."""


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    try:
        return main(argv) or 0
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_model_args(
    parser: argparse.ArgumentParser,
    default_model: str | None = None,
    templates: Sequence[str] = TEMPLATES,
    default_template: str = "auto",
    template_help: str = "prompt format: auto = the adapter's training template, else the tokenizer's chat template, else none",
) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default=default_model,
        help="hub name (e.g. unsloth/Meta-Llama-3.1-8B), local folder, or .gguf file"
        + ("" if default_model is None else f" (default: {default_model}; with --lora, the adapter's base)"),
    )
    group.add_argument("--lora", metavar="DIR", help="LoRA adapter folder written by train.py (or any PEFT adapter)")
    group.add_argument(
        "--precision", choices=PRECISIONS, default="bf16", help="weights precision (default: %(default)s)"
    )
    group.add_argument(
        "--use-hf",
        action="store_true",
        help="load with transformers (+ bitsandbytes) instead of unsloth; always the case on a CPU",
    )
    group.add_argument("--template", choices=templates, default=default_template, help=template_help)
