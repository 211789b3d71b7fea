"""What every script shares: one-line errors, common flags, the entry-point wrapper."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# fp32 is for CPU reference runs: bf16 batched generation is not bit-identical to one-by-one.
PRECISIONS = ("bf16", "8bit", "4bit", "fp32")


# What to install when a package is missing: the scoring laptop's set, or the GPU stack.
SCORING_INSTALL = "pip install -r requirements-score.txt"
GPU_INSTALL = "pip install -r requirements.txt"
INSTALL_HINTS = {
    "lm_eval": SCORING_INSTALL,
    "langdetect": SCORING_INSTALL,
    "nltk": SCORING_INSTALL,
    "immutabledict": SCORING_INSTALL,
    "matplotlib": "pip install matplotlib",
    "wandb": "pip install wandb",
    "unsloth": f"{GPU_INSTALL}, or pass --use-hf",
    "bitsandbytes": GPU_INSTALL,
    "torch": GPU_INSTALL,
    "transformers": GPU_INSTALL,
    "peft": GPU_INSTALL,
    "trl": GPU_INSTALL,
    "accelerate": GPU_INSTALL,
    "datasets": GPU_INSTALL,
    "safetensors": GPU_INSTALL,
}


def tqdm_disable(wanted: bool = True) -> bool | None:
    """tqdm's `disable` for a bar: None lets tqdm show it only on a terminal. In a log file or
    captured output every redraw of a bar is one more line: hundreds for one run."""
    return None if wanted else True


def terminal() -> bool:
    return sys.stderr.isatty()


class UserError(Exception):
    """Bad input or a missing resource: printed as one line, exit code 2, no traceback."""


def missing_package_message(err: ModuleNotFoundError) -> str | None:
    """One line naming what to install, for a package that sfteval imports only where it is needed."""
    package = (err.name or "").split(".")[0]
    if package not in INSTALL_HINTS:
        return None
    return f"this needs the {package} package, which is not installed (or too old): {INSTALL_HINTS[package]}"


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    try:
        return main(argv) or 0
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:
        message = missing_package_message(err)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
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


def setting(default: Any, help: str, **argparse_options: Any) -> Any:
    """A settings-dataclass field whose metadata becomes its command-line option (HfArgumentParser)."""
    return dataclasses.field(default=default, metadata={"help": help, **argparse_options})


# A YAML block that describes the file (a recipe's measured figures) rather than setting anything.
INFO_KEY = "recipe_info"


def read_config_file(path: str, dataclass_types: Sequence[type]) -> dict[str, Any]:
    """A YAML mapping of setting names (as in the dataclasses, dashes allowed) to values; unknown names refused."""
    import yaml

    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"--config {path}: no such file; give a YAML file such as recipes/seed.yaml")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise UserError(f"--config {path} is not valid YAML ({str(err).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"--config {path} must hold a mapping of setting: value, got {type(data).__name__}")
    known = {f.name for dtype in dataclass_types for f in dataclasses.fields(dtype) if f.init}
    values = {str(key).replace("-", "_"): value for key, value in data.items() if key != INFO_KEY}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"--config {path}: unknown setting(s) {', '.join(unknown)}; see --help for the names")
    return values


def parse_settings(
    dataclass_types: Sequence[type],
    argv: Sequence[str] | None,
    description: str | None,
    base_defaults: Callable[[argparse.Namespace], dict[str, Any]] | None = None,
) -> tuple[Any, ...]:
    """Settings dataclasses from the command line, the options generated from their fields by
    transformers' HfArgumentParser. Precedence, lowest first: the fields' defaults,
    `base_defaults(args so far)` (train.py's recipe), `--config FILE.yaml`, the flags given."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(
        list(dataclass_types), description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for action in parser._actions:
        # dashed spellings first in --help; a boolean option takes no value (an optional true/false is still read)
        action.option_strings.sort(key=lambda option: "_" in option)
        if action.nargs == "?" and action.const is True:
            action.metavar = "true|false"
    parser.add_argument("--config", metavar="FILE.yaml", help="read settings from a YAML file; flags override it")
    known, _ = parser.parse_known_args(argv)
    from_file = read_config_file(known.config, dataclass_types) if known.config else {}
    parser.set_defaults(**from_file)
    if base_defaults is not None:
        known, _ = parser.parse_known_args(argv)
        parser.set_defaults(**{**base_defaults(known), **from_file})
    args = vars(parser.parse_args(argv))
    config = args.pop("config")
    built = []
    for dtype in dataclass_types:
        names = {f.name for f in dataclasses.fields(dtype) if f.init}
        try:
            built.append(dtype(**{k: v for k, v in args.items() if k in names}))
        except (TypeError, ValueError) as err:
            source = f" in --config {config}" if config else ""
            raise UserError(f"bad setting{source}: {err}") from None
    return tuple(built)
