"""Continuous batching through transformers' own manager (transformers 5.17,
`transformers/generation/continuous_batching/`): every prompt is queued at once, a background
thread runs one forward pass per step over whatever requests are active (prefill chunks and
decode tokens packed into one sequence), and a request that ends frees its paged KV blocks for
the next prompt at once, instead of idling until the longest answer of its batch ends.

What it needs and does, read from transformers 5.17:
- the attention runs as `paged|<impl>`: the manager switches the model to `paged|sdpa` (or
  `paged|flash_attention_2/3` when flash-attn or the `kernels` fallback is installed) for the
  run and back afterwards (`ContinuousBatchingManager.switch_to_cb_friendly_attn`, `stop`);
- requests take token ids, `max_new_tokens` and their own `eos_token_id` list
  (`add_request`); the greedy pick is `argmax` when `generation_config.do_sample` is False;
- a finished request comes back as a `GenerationOutput` whose `generated_tokens` end with the
  stop token that ended it, as `generate` rows do (`RequestState.update_and_check_completion`);
- the manager is driven on `model.get_base_model()` for a PEFT model: the LoRA layers sit in the
  base model's modules, so an unmerged adapter is applied;
- on a CPU the cache is sized from the machine's whole RAM unless told otherwise, so here a CPU
  run gets a cache just large enough for its requests.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sfteval.cli import UserError
from sfteval.model import generation

# Tokens per prefill/decode step on a CPU (the whole RAM would otherwise size it, and the paged
# sdpa mask grows with it); on a GPU transformers sizes it from the free memory.
CPU_MAX_BATCH_TOKENS = 1024


@dataclass
class ContinuousRun:
    """A started manager: `results()` yields finished requests; `knobs` says how transformers sized the run."""

    manager: Any
    tokenizer: Any
    stop_ids: list[int]
    indices: dict[str, int]  # request id -> prompt index
    knobs: dict[str, Any] = field(default_factory=dict)

    def results(self, poll_seconds: float = 1.0) -> Iterator[tuple[int, generation.Completion] | None]:
        """(prompt index, completion) per finished request, in the order they finish; None when
        `poll_seconds` passed without one (so the caller can write what it holds)."""
        left = set(self.indices)
        while left:
            result = self.manager.get_result(timeout=poll_seconds)
            if result is None:
                if not self.manager.is_running():
                    raise RuntimeError(
                        f"transformers' continuous batching thread stopped with {len(left)} requests unfinished: "
                        f"{self.manager.background_thread_status.fatal_error!r}"
                    )
                yield None
                continue
            if not result.is_finished() or result.request_id not in left:
                continue
            if result.error is not None:
                raise RuntimeError(f"continuous batching request {result.request_id} failed: {result.error}")
            left.discard(result.request_id)
            completion = generation.split_completion(self.tokenizer, result.generated_tokens, self.stop_ids)
            yield self.indices[result.request_id], completion


def batching_config(
    model_config: Any,
    has_cuda: bool,
    prompt_lengths: Sequence[int],
    max_new_tokens: int,
    max_requests: int | None,
    seed: int,
) -> Any:
    from transformers import ContinuousBatchingConfig
    from transformers.generation.continuous_batching.cache import group_layers_by_attn_type

    config = ContinuousBatchingConfig(max_requests_per_batch=max_requests, seed=seed)
    if not has_cuda:
        # Room for every request at full length in every layer group (a model that mixes sliding and
        # full attention, e.g. Gemma 3, has several); get_device_and_memory_breakdown would offer the whole RAM.
        groups = len(group_layers_by_attn_type(model_config)[0])
        blocks = sum(math.ceil((n + max_new_tokens) / config.block_size) for n in prompt_lengths)
        config.num_blocks = 1 + groups * blocks
        config.max_batch_tokens = CPU_MAX_BATCH_TOKENS
    return config


@contextmanager
def start(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[tuple[int, Sequence[int]]],
    settings: generation.GenerationSettings,
    stop_ids: Sequence[int],
    max_requests: int | None,
    has_cuda: bool,
) -> Iterator[ContinuousRun]:
    """Start transformers' continuous batching on `prompts` ((index, token ids), queued in this
    order) and stop it on leaving; an error or interrupt stops it at once (HARD_STOP) instead
    of letting it finish the queue."""
    from transformers import GenerationConfig
    from transformers.generation.continuous_batching.utils import WorkloadHints

    from sfteval.model import loading

    base = loading.unwrap_peft(model)
    if not hasattr(base, "init_continuous_batching"):
        raise UserError(f"--speed continuous: {type(base).__name__} has no continuous batching in this transformers")
    stop_ids = list(stop_ids)
    gen_config = GenerationConfig(
        max_new_tokens=settings.max_new_tokens,
        eos_token_id=stop_ids,
        do_sample=not settings.greedy,
        **({} if settings.greedy else {"temperature": settings.temperature, "top_p": settings.top_p}),
    )
    lengths = [len(ids) for _, ids in prompts]
    hints = WorkloadHints(
        max_prompt_length=max(lengths), max_generated_length=settings.max_new_tokens, num_requests=len(prompts)
    )
    original_attn = base.config._attn_implementation
    started = time.perf_counter()
    try:
        manager = base.init_continuous_batching(
            generation_config=gen_config,
            continuous_batching_config=batching_config(
                base.config, has_cuda, lengths, settings.max_new_tokens, max_requests, settings.seed
            ),
            workload_hints=hints,
        )
    except (ValueError, NotImplementedError) as err:
        raise UserError(
            f"--speed continuous: transformers cannot run this model with continuous batching ({err})"
        ) from None
    failed = True
    try:
        # Builds the paged cache here (and CUDA graphs where transformers uses them). Not under
        # inference_mode: the generation thread runs under no_grad and updates these tensors in place.
        manager.warmup()
        cb = manager.continuous_batching_config
        knobs = {
            "attn_implementation": base.config._attn_implementation,
            "attn_implementation_before": original_attn,
            "block_size": cb.block_size,
            "num_blocks": cb.num_blocks,
            "max_batch_tokens": cb.max_batch_tokens,
            "max_requests_per_batch": cb.max_requests_per_batch,
            "max_requests_requested": max_requests,
            "decode_fast_path": bool(cb.max_blocks_per_request),
            "cuda_graphs": list(cb.use_cuda_graph),
            "async_batching": bool(cb.use_async_batching),
            "prefix_sharing": bool(manager._use_prefix_sharing),
            "setup_seconds": round(time.perf_counter() - started, 3),
        }
        manager.start()
        indices: dict[str, int] = {}
        for index, ids in prompts:
            request_id = f"prompt{index}"
            manager.add_request(
                list(ids), request_id=request_id, max_new_tokens=settings.max_new_tokens, eos_token_id=stop_ids
            )
            indices[request_id] = index
        yield ContinuousRun(manager, tokenizer, stop_ids, indices, knobs)
        failed = False
    finally:
        manager.stop(block=True, hard_stop=failed)
        manager.destroy()
        if base.config._attn_implementation != original_attn:  # stop() restores it; make sure
            base.set_attn_implementation(original_attn)
