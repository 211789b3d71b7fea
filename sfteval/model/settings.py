"""The model a script loads, as one settings dataclass that eval_mmlu.py and inference.py share
(their options are generated from it; see sfteval.cli.parse_settings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sfteval.cli import setting

DEFAULT_MODEL = "unsloth/Meta-Llama-3.1-8B"


@dataclass
class ModelSettings:
    model: str | None = setting(
        None, f"hub name, local folder or .gguf file (default: the adapter's base with --lora, else {DEFAULT_MODEL})"
    )
    adapter: str | None = setting(
        None, "LoRA adapter folder written by train.py (or any PEFT adapter)", aliases=["--lora"], metavar="DIR"
    )
    precision: Literal["bf16", "8bit", "4bit", "fp32"] = setting(
        "bf16", "weights precision (bf16 by default for evaluation: the reference numbers; fp32 for CPU checks)"
    )
    use_hf: bool = setting(False, "load with transformers (+ bitsandbytes) instead of unsloth; always so on a CPU")

    @property
    def model_to_load(self) -> str | None:
        """None with an adapter and no --model: the loader takes the adapter's recorded base."""
        return self.model if self.model or self.adapter else DEFAULT_MODEL

    def spec(self):
        """What sfteval.model.loading.load_model takes (imported here, so --help stays light)."""
        from sfteval.model import loading

        return loading.ModelSpec(
            model=self.model_to_load, precision=self.precision, use_hf=self.use_hf, lora=self.adapter
        )
