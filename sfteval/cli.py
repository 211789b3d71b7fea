"""What every script shares: one-line errors, common flags, the entry-point wrapper."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

# fp32 is for CPU reference runs: bf16 batched generation is not bit-identical to one-by-one.
PRECISIONS = ("bf16", "8bit", "4bit", "fp32")
TEMPLATES = ("auto", "chat", "alpaca", "none")


def tqdm_disable(wanted: bool = True) -> bool | None:
    """tqdm's `disable` for a bar: None lets tqdm show it only on a terminal. In a log file or
    captured output every redraw of a bar is one more line: hundreds for one run."""
    return None if wanted else True


def terminal() -> bool:
    return sys.stderr.isatty()


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


def bounded(cast: Callable[[str], float], minimum: float, strict: bool = False) -> Callable[[str], float]:
    """An argparse type: `cast(text)`, at least `minimum` (above it when `strict`)."""
    noun = "an integer" if cast is int else "a number"

    def parse(text: str) -> float:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {'above' if strict else 'at least'} {minimum}, got {value}")
        return value

    return parse


positive_int = bounded(int, 1)
non_negative_int = bounded(int, 0)
positive_float = bounded(float, 0, strict=True)
non_negative_float = bounded(float, 0)


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
        "--precision",
        choices=PRECISIONS,
        default="bf16",
        help="weights precision (default: %(default)s). Measuring defaults to bf16, the reference weights; "
        "train.py and inference.py default to 4bit, the seed recipe's QLoRA. Measure an adapter at the precision "
        "it was trained at to see it as trained",
    )
    group.add_argument(
        "--use-hf",
        action="store_true",
        help="load with transformers (+ bitsandbytes) instead of unsloth; always the case on a CPU",
    )
    group.add_argument("--template", choices=templates, default=default_template, help=template_help)
