"""How an IFEval generation run decodes: batch size from the free GPU memory, and the decode path
--speed auto picks (eager, static cache, compiled step, GQA/flex decode, NF4 dequantized once),
each with the one line eval_generate.py prints to say what it chose and why."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sfteval.model import attention

if TYPE_CHECKING:
    from sfteval.ifeval.run import RunConfig

# Batch size when --batch-size is not given: on a CPU a small fixed one; on a GPU as many
# sequences as the free memory holds at full length (see auto_batch_size), at most this many.
CPU_BATCH_SIZE = 8
MAX_AUTO_BATCH_SIZE = 1024
# Below this many decode steps in a run (batches x max new tokens) a compiled step does not repay
# its compile; 64 prompts x 256 tokens is one batch of 256 steps, all 541 IFEval prompts at
# 1,280 tokens are one to three batches of 1,280. Set against the eager step of before f483bc1,
# which still planned cuDNN attention at every step; bench/gpu's bench8b_bf16_eager re-measures it.
COMPILE_MIN_DECODE_STEPS = 1024
# Share of free GPU memory the KV cache and activations may take, and a fixed reserve for
# the allocator's fragmentation and the CUDA graphs of --compile.
GPU_MEMORY_SHARE = 0.9
GPU_RESERVE_BYTES = 2 * 1024**3

# --dequantize-once by default: when the bf16 copies of the NF4 weights take at most this share
# of the free GPU memory, the rest being left to the KV cache.
DEQUANTIZE_ONCE_MAX_SHARE = 0.5

# transformers' own default for the compiled decode step (CUDA graphs)
DEFAULT_COMPILE_MODE = "reduce-overhead"


@dataclass
class SpeedPlan:
    """The decode path a run takes, resolved from --speed, the flags, the hardware and the run's size."""

    static_cache: bool
    compile: bool
    gqa_decode: bool
    reason: str
    flex: bool = False  # --flex-decode, which only a compiled GQA decode step takes
    layers_once: bool = False  # --compile-layers-once, which only a compiled step takes

    @property
    def flex_decode(self) -> bool:
        return self.flex and self.compile and self.gqa_decode

    @property
    def compile_layers_once(self) -> bool:
        return self.layers_once and self.compile


def auto_batch_size(model: Any, n_prompts: int, longest_prompt: int, max_new_tokens: int) -> int:
    """As many sequences as the free GPU memory holds at full length (see fit_batch_size);
    a fixed small size on a CPU. Out-of-memory batches are still split, so this only has to be close."""
    import torch

    if not torch.cuda.is_available():
        return max(1, min(n_prompts, CPU_BATCH_SIZE))
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads = cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    dtype_bytes = 4 if model.dtype == torch.float32 else 2
    # Memory that torch's allocator holds but no longer uses (e.g. the packed NF4 weights after
    # --dequantize-once) counts as taken for the driver until it is handed back.
    torch.cuda.empty_cache()
    free, _total = torch.cuda.mem_get_info()
    return fit_batch_size(
        free_bytes=free,
        kv_bytes_per_token=2 * cfg.num_hidden_layers * kv_heads * head_dim * dtype_bytes,
        activation_bytes_per_token=(2 * cfg.intermediate_size + 4 * cfg.hidden_size) * dtype_bytes,
        longest_prompt=longest_prompt,
        max_new_tokens=max_new_tokens,
        n_prompts=n_prompts,
    )


def fit_batch_size(
    free_bytes: int,
    kv_bytes_per_token: int,
    activation_bytes_per_token: int,
    longest_prompt: int,
    max_new_tokens: int,
    n_prompts: int,
) -> int:
    """Sequences per batch such that the larger of two peaks fits in GPU_MEMORY_SHARE of the free
    memory less GPU_RESERVE_BYTES: decoding (the KV cache at full length, +15% for the cache
    growing step by step) or the prefill (the prompt's KV plus its layer activations).
    Llama-3.1-8B in bf16 on an 80 GB card: 128 KiB of KV per token, about 63 GB free after
    loading, prompts up to about 410 tokens + 1280 new: 213, so 541 prompts run as 3 x 181."""
    # +15% over the KV cache at full length: measured on an H200, 541 rows at 1.0x ran out of memory.
    decode = 1.15 * (longest_prompt + max_new_tokens) * kv_bytes_per_token
    prefill = longest_prompt * (kv_bytes_per_token + activation_bytes_per_token)
    budget = free_bytes * GPU_MEMORY_SHARE - GPU_RESERVE_BYTES
    return max(1, min(n_prompts, MAX_AUTO_BATCH_SIZE, int(budget // max(decode, prefill))))


def plan_speed(config: RunConfig, loader: str, has_cuda: bool, n_prompts: int, batch_size: int) -> SpeedPlan:
    """--speed auto on a CUDA GPU with transformers: GQA decode always (same attention, fewer bytes
    read per step), and a compiled static-cache step when the decode steps of the whole run
    (batches x --max-new-tokens) reach COMPILE_MIN_DECODE_STEPS, below which the compile costs
    more than it saves. Flags given force their knob on either way."""
    if config.speed == "continuous":
        requests = f"at most {batch_size}" if batch_size else "as many as transformers' paged cache holds"
        return SpeedPlan(
            False,
            False,
            False,
            "continuous: transformers' continuous batching on a paged KV cache; every prompt queued, a finished "
            f"answer's place taken by the next prompt at once, {requests} requests per step",
        )
    forced = SpeedPlan(
        config.static_cache or config.compile,
        config.compile,
        config.gqa_decode,
        "",
        config.flex_decode,
        config.compile_layers_once,
    )
    if config.speed == "eager" or not has_cuda or loader != "hf":
        why = "--speed eager" if config.speed == "eager" else ("no CUDA GPU" if not has_cuda else f"{loader} loader")
        forced.reason = f"as flagged ({why}): " + describe_speed(forced)
        return forced
    steps = math.ceil(n_prompts / batch_size) * config.max_new_tokens
    long_run = steps >= COMPILE_MIN_DECODE_STEPS
    chosen = SpeedPlan(
        static_cache=forced.static_cache or long_run,
        compile=forced.compile or long_run,
        gqa_decode=True,
        reason="",
        flex=config.flex_decode,
        layers_once=config.compile_layers_once,
    )
    size = f"{steps} decode steps ({math.ceil(n_prompts / batch_size)} batches x {config.max_new_tokens})"
    if long_run:
        chosen.reason = f"auto: {describe_speed(chosen)}, since {size} repay the compile; --speed eager to skip it"
    else:
        chosen.reason = (
            f"auto: {describe_speed(chosen)}; {size} are under {COMPILE_MIN_DECODE_STEPS}, too few to repay a "
            "compile (--compile forces it)"
        )
    return chosen


def auto_dequantize(config: RunConfig, loader: str, has_cuda: bool) -> bool:
    """Whether --dequantize-once is left to the free memory (see dequantize_fits)."""
    return (
        config.dequantize_once is None
        and config.precision == "4bit"
        and loader == "hf"
        and has_cuda
        and config.speed == "auto"
    )


def dequantize_fits(bf16_bytes: int, free_bytes: int) -> bool:
    return bf16_bytes <= DEQUANTIZE_ONCE_MAX_SHARE * free_bytes


def describe_speed(speed: SpeedPlan) -> str:
    compiled = "static cache + compiled step" + (" (one layer compiled, reused)" if speed.compile_layers_once else "")
    parts = [compiled if speed.compile else "static cache" if speed.static_cache else "eager"]
    decode = "GQA decode over the filled cache blocks (flex)" if speed.flex_decode else "GQA decode"
    return " + ".join(parts + ([decode] if speed.gqa_decode else []))


def speed_options(config: RunConfig, speed: SpeedPlan, longest_prompt: int) -> dict[str, Any]:
    """Extra `generate` arguments for the speed knobs; empty for the eager path."""
    if not speed.static_cache:
        return {}
    # One cache length for every batch (the longest prompt + max_new_tokens), so a compiled
    # decode step is reused instead of recompiled per batch.
    options: dict[str, Any] = {
        "cache_implementation": "static",
        "max_cache_len": attention.static_cache_length(longest_prompt, config.max_new_tokens, speed.flex_decode),
    }
    if not speed.compile:
        options["disable_compile"] = True
    elif config.compile_mode != DEFAULT_COMPILE_MODE:
        from transformers import CompileConfig

        options["compile_config"] = CompileConfig(mode=config.compile_mode)
    return options


def grows_cache(config: RunConfig, speed: SpeedPlan) -> bool:
    """Whether the decode loop runs over transformers' dynamic KV cache, one key longer every step."""
    return not speed.static_cache and config.speed != "continuous"


def was_compiled(model: Any) -> bool:
    """Whether transformers compiled the decode step (it silently skips models it deems not compileable)."""
    from sfteval.model import loading

    return getattr(loading.unwrap_peft(model), "_compiled_call", None) is not None
