"""Training recipes as data (recipes/*.yaml) and the choice train.py makes when none is named.

A recipe file holds TrainSettings values plus a `recipe_info` block: what it is, the peak GPU
memory and real tokens/s it was measured at on the Llama-3.1-8B shape. `--recipe auto` takes the
fastest recipe whose peak fits the GPU: the measured 8B peak, scaled to the model at hand by the
project's own estimate (sfteval.train.memory) of both, must stay under FREE_MEMORY_SHARE of the
free memory. Without a CUDA GPU it takes the seed recipe, whose CPU fallbacks train.py records.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfteval import cli, records
from sfteval.cli import UserError
from sfteval.train import memory

RECIPES_DIR = records.PROJECT_ROOT / "recipes"
# Fastest first; the first that fits is taken.
AUTO_ORDER = ("fast-80gb", "fast-40gb", "qlora-24gb")
SEED = "seed"
FREE_MEMORY_SHARE = 0.9
# alpaca-cleaned: about 9.3 M real tokens in 51,760 examples (Llama 3 tokenizer, alpaca template).
EPOCH_TOKENS = 9_300_000
EXAMPLE_TOKENS = 180
REFERENCE_SHAPE = "llama-3.1-8b"


@dataclass
class Recipe:
    name: str
    path: Path
    info: dict[str, Any]
    settings: dict[str, Any]

    def describe(self) -> str:
        rate = self.info.get("tokens_per_second")
        epoch = f"an alpaca-cleaned epoch in about {EPOCH_TOKENS / rate / 60:.0f} min" if rate else "speed not measured"
        where = self.info.get("measured_on", "?")
        return f"{self.info.get('about', self.name)}; projected from {where}: {epoch}"


def available() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def load(name_or_path: str) -> Recipe:
    """A recipe by name (recipes/NAME.yaml) or by path."""
    path = Path(name_or_path).expanduser()
    if not path.suffix:
        path = RECIPES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise UserError(f"--recipe {name_or_path}: no such recipe; choose auto, one of {', '.join(available())}, "
                        "or a YAML file")  # fmt: skip
    import yaml

    from sfteval.train.trainer import TrainSettings

    info = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get(cli.INFO_KEY) or {}
    return Recipe(path.stem, path, info, cli.read_config_file(str(path), [TrainSettings]))


def recipe_memory_gb(shape: memory.Shape, settings: dict[str, Any]) -> float:
    """The project's estimate of one step of `settings` at alpaca lengths."""
    batch = settings.get("batch_size", 2)
    return memory.estimate(
        shape,
        "qlora" if settings.get("precision") == "4bit" else "lora",
        batch_size=1,
        seq_len=batch * EXAMPLE_TOKENS,
        rank=settings.get("lora_r", 16),
        optimizer_8bit="8bit" in settings.get("optim", "adamw_8bit"),
        checkpointing=settings.get("gradient_checkpointing", True),
    ).total_gb


def needed_gb(recipe: Recipe, model: str) -> float:
    """The recipe's measured 8B peak, scaled to `model` (unscaled when its shape cannot be read, e.g. a .gguf)."""
    peak = float(recipe.info.get("peak_gb_8b") or 0)
    try:
        shape, _source = memory.load_shape(model)
    except UserError:
        return peak
    reference, _ = memory.load_shape(REFERENCE_SHAPE)
    return peak * recipe_memory_gb(shape, recipe.settings) / recipe_memory_gb(reference, recipe.settings)


def choose(model: str, free_gb: float | None) -> tuple[Recipe, str]:
    """(the recipe, one line saying why) for `model` on a GPU with `free_gb` free (None: no GPU)."""
    if free_gb is None:
        return load(SEED), "no CUDA GPU here, so the seed recipe with its CPU fallbacks"
    budget = free_gb * FREE_MEMORY_SHARE
    for name in AUTO_ORDER:
        recipe = load(name)
        need = needed_gb(recipe, model)
        if need <= budget:
            return recipe, f"the fastest that fits: needs about {need:.0f} GB of the {free_gb:.0f} GB free"
    return load(SEED), f"no faster recipe fits in {free_gb:.0f} GB free"


def free_gpu_gb() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info()
    return free / 1e9
