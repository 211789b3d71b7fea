"""LoRA / QLoRA finetuning on alpaca-cleaned that teaches the model to answer and stop.

With no flags, train.py picks the fastest recipe (recipes/*.yaml) that fits this GPU and prints
which one and why: fast-80gb on 80 GB and more, fast-40gb on 40-48 GB, qlora-24gb below, the seed
recipe (Unsloth's Llama-3.1-8B Alpaca notebook) when nothing else fits or there is no GPU.
Precedence, lowest first: the recipe, --config FILE.yaml, the flags given. The adapter, the
tokenizer and train_config.json go to ./lora_model_<precision>; inference.py and the eval
scripts read the base model and the prompt template from it.

  python train.py                                   # the fastest recipe that fits, one epoch
  python train.py --recipe seed                     # the notebook exactly
  python train.py --recipe fast-40gb --max-steps 60 --report-to none
  python train.py --config recipes/seed.yaml --estimate-memory   # the memory table, offline
  python train.py --dataset my_alpaca.jsonl --val-size 0.02 --output-dir lora_mine
  python train.py --resume                          # continue an interrupted run, same flags
  # CPU (no CUDA): transformers' Trainer, fp32 weights, torch AdamW
  python train.py --model path/to/small-model --use-hf --precision fp32 \\
      --dataset ../shared/data/alpaca_cleaned/alpaca_data_cleaned_first5000.json \\
      --limit 200 --max-steps 20 --report-to none --output-dir lora_cpu
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from sfteval import cli
from sfteval.train.trainer import TrainSettings


@dataclass
class TrainCommand:
    recipe: str = cli.setting(
        "auto",
        "auto = the fastest recipe that fits this GPU; or a name in recipes/ (seed, fast-80gb, fast-40gb, "
        "qlora-24gb) or a recipe YAML file",
    )
    estimate_memory: bool = cli.setting(False, "print the memory estimate for these settings, then exit (offline)")


class RecipeChoice:
    """Picks the recipe once the model is known; remembers the choice for the line printed."""

    def __init__(self) -> None:
        self.line = ""
        self.record: dict[str, str] = {}

    def __call__(self, known: argparse.Namespace) -> dict:
        from sfteval.train import recipes

        if known.estimate_memory and known.recipe == "auto":
            self.line = "recipe: seed (--estimate-memory reads no GPU; name a --recipe to estimate another)"
            return recipes.load(recipes.SEED).settings
        if known.recipe == "auto":
            recipe, why = recipes.choose(known.model, recipes.free_gpu_gb())
            self.line = f"recipe: {recipe.name} ({why}; --recipe to choose another)\n  {recipe.describe()}"
        else:
            recipe, why = recipes.load(known.recipe), "as asked"
            self.line = f"recipe: {recipe.name} (as asked)\n  {recipe.describe()}"
        self.record = {"name": recipe.name, "file": str(recipe.path), "why": why, "line": self.line}
        return recipe.settings


def estimate_memory(settings: TrainSettings) -> int:
    from sfteval.train import memory

    shape, source = memory.load_shape(settings.model)
    print(
        memory.format_table(
            shape,
            source,
            batch_size=settings.batch_size,
            seq_len=settings.max_length,
            rank=settings.lora_r,
            precision=settings.precision,
            optimizer_8bit="8bit" in settings.optim,
            checkpointing=settings.gradient_checkpointing,
            targets=tuple(settings.target_modules),
        )
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    choice = RecipeChoice()
    settings, command = cli.parse_settings([TrainSettings, TrainCommand], argv, __doc__, base_defaults=choice)
    if command.estimate_memory:
        print(choice.line, file=sys.stderr)
        return estimate_memory(settings)
    from sfteval.train import trainer

    trainer.run(settings, choice.record)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
