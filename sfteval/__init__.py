"""LoRA-finetune a base LLM on alpaca-cleaned and measure its instruction following.

Heavy libraries (torch, transformers, unsloth, bitsandbytes, lm-eval) are imported
inside the functions that need them, so the CLIs start fast and the scoring tools
run on a laptop without torch.
"""

__version__ = "0.1.0"
