"""Attention implementations this project registers with transformers.

`GQA_DECODE`, for generation: the decode step reads each key/value head once under grouped-query
attention. `FLEX_DECODE` does the same and, in a compiled decode step over a static cache, reads
only the cache blocks that hold tokens.

transformers' SDPA path copies every key/value head `num_key_value_groups` times (`repeat_kv`)
whenever an attention mask is present, and batched IFEval generation always has one (left
padding). For Llama-3.1-8B that is 4 copies of the whole KV cache written and read at every new
token. At a decode step there is one query per head, so the query heads that share a key/value
head can instead stand in for the query positions of that head: one SDPA call over
(batch, kv_heads, groups, head_dim) queries against the cache as it is, with the same padding
mask. The arithmetic is the same attention; prefill and models without grouped heads take
transformers' own SDPA path unchanged.

A static cache is allocated at its final length (longest prompt + max new tokens), and SDPA reads
all of it at every step, the empty tail included: with IFEval's 1,280 new tokens, about twice the
bytes the filled part holds, on average over an answer. Under torch.compile, `FLEX_DECODE` hands
the step to torch's flex attention with a block mask built from the padding mask: only 128-token
blocks with at least one visible token are read. Outside a compiled region (where flex attention
would run unfused) it is `GQA_DECODE`.

`VARLEN`, for padding-free training: a packed row of several examples goes through flash
attention's variable-length kernel, one causal block per example, instead of SDPA with a dense
(row x row) block mask that computes every cross-example score only to mask it out. The example
boundaries come from the position ids once per forward pass (a hook `use_varlen` adds).
"""

from __future__ import annotations

from typing import Any

from sfteval.model import loading

GQA_DECODE = "sdpa_gqa_decode"
FLEX_DECODE = "flex_gqa_decode"
VARLEN = "sdpa_varlen"
# flex attention's key/value block: a static cache for FLEX_DECODE is a whole number of these.
KV_BLOCK = 128


def gqa_decode_sdpa(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    batch, heads, q_length, head_dim = query.shape
    if q_length != 1 or groups == 1 or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    # Query head h uses key/value head h // groups (the order repeat_kv expands to).
    grouped = query.reshape(batch, key.shape[1], groups, head_dim)
    # A decode step's mask is (batch, 1, 1, kv_length): it broadcasts over the groups as it did over the heads.
    output = torch.nn.functional.scaled_dot_product_attention(
        grouped, key, value, attn_mask=attention_mask, dropout_p=dropout if module.training else 0.0, scale=scaling
    )
    return output.reshape(batch, heads, 1, head_dim).transpose(1, 2).contiguous(), None


def visible_blocks(mask: Any) -> Any:
    """flex attention's BlockMask for one decode step from its boolean mask (batch, 1, 1, kv_length):
    the blocks holding a visible token, in cache order, with the mask itself applied inside them."""
    import torch
    from torch.nn.attention.flex_attention import BlockMask

    visible = mask[:, 0, -1, :]
    batch, length = visible.shape
    blocks = visible.reshape(batch, length // KV_BLOCK, KV_BLOCK).any(-1)
    count = blocks.sum(-1, dtype=torch.int32).reshape(batch, 1, 1)
    # Visible blocks first, each row's in cache order (the rest are never read).
    order = torch.argsort((~blocks).to(torch.int8), dim=-1, stable=True).to(torch.int32)

    def mask_mod(b: Any, h: Any, q: Any, kv: Any) -> Any:
        return visible[b, kv]

    return BlockMask.from_kv_blocks(
        count, order.reshape(batch, 1, 1, -1), BLOCK_SIZE=KV_BLOCK, mask_mod=mask_mod,
        seq_lengths=(1, length), compute_q_blocks=False,
    )  # fmt: skip


def flex_decode_step(query: Any, key: Any, value: Any, mask: Any, scaling: float | None) -> Any:
    """One decode step through flex attention over the visible blocks: (batch, heads, 1, dim) out."""
    from torch.nn.attention.flex_attention import flex_attention

    if mask.shape[0] != query.shape[0]:
        mask = mask.expand(query.shape[0], *mask.shape[1:])
    grouped = query.shape[1] != key.shape[1]
    return flex_attention(query, key, value, block_mask=visible_blocks(mask), scale=scaling, enable_gqa=grouped)


def flex_gqa_decode(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    import torch

    flex = (
        torch.compiler.is_compiling()
        and query.shape[2] == 1
        and attention_mask is not None
        and attention_mask.dtype == torch.bool
        and key.shape[2] % KV_BLOCK == 0
        and kwargs.get("position_bias") is None
        and not (dropout and module.training)
    )
    if not flex:
        return gqa_decode_sdpa(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    return flex_decode_step(query, key, value, attention_mask, scaling).transpose(1, 2).contiguous(), None


def static_cache_length(longest_prompt: int, max_new_tokens: int, flex: bool) -> int:
    """The static cache's length: the longest prompt + max new tokens, whole KV_BLOCKs for FLEX_DECODE."""
    length = longest_prompt + max_new_tokens
    return -(-length // KV_BLOCK) * KV_BLOCK if flex else length


def packed_lengths(position_ids: Any) -> dict[str, Any] | None:
    """Flash-attention style boundaries of the examples in one packed row (positions restart at 0)."""
    import torch

    if position_ids is None or position_ids.shape[0] != 1:
        return None
    flat = position_ids.reshape(-1)
    starts = torch.nonzero(flat == 0).reshape(-1)
    if starts.numel() == 0 or int(starts[0]) != 0:
        return None
    total = torch.tensor([flat.numel()], device=flat.device)
    cu_lengths = torch.cat([starts, total]).to(torch.int32)
    longest = int((cu_lengths[1:] - cu_lengths[:-1]).max())
    return {"cu_seq_lens_q": cu_lengths, "cu_seq_lens_k": cu_lengths, "max_length_q": longest, "max_length_k": longest}


# How this torch's `varlen_attn` is asked for causal attention, and whether it takes GQA heads
# (both differ between torch releases); filled outside any compiled region by `use_varlen`.
VARLEN_OPTIONS: dict[str, Any] = {}


def inspect_varlen_attn() -> dict[str, Any]:
    import inspect

    from torch.nn.attention.varlen import varlen_attn

    accepts = inspect.signature(varlen_attn).parameters
    causal = {"is_causal": True} if "is_causal" in accepts else {"window_size": (-1, 0)}
    VARLEN_OPTIONS.update(causal=causal, gqa="enable_gqa" in accepts)
    return VARLEN_OPTIONS


def causal_varlen(query: Any, key: Any, value: Any, cu_lengths: Any, longest: int, scale: float | None) -> Any:
    """Causal attention within each example of a packed row: (tokens, heads, dim) in and out.

    CUDA: torch's flash-attention varlen kernel. Elsewhere: one causal SDPA call per example (the
    same arithmetic, for CPU tests).
    """
    import torch

    groups = query.shape[1] // key.shape[1]
    if query.is_cuda:
        from torch.nn.attention.varlen import varlen_attn

        options = VARLEN_OPTIONS or inspect_varlen_attn()
        causal, gqa = options["causal"], options["gqa"]
        if groups > 1 and not gqa:
            key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
        gqa_option = {"enable_gqa": True} if groups > 1 and gqa else {}
        return varlen_attn(
            query, key, value, cu_lengths, cu_lengths, longest, longest, scale=scale, **causal, **gqa_option
        )
    bounds = cu_lengths.tolist()
    pieces = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        q, k, v = (t[start:end].transpose(0, 1) for t in (query, key, value))
        pieces.append(
            torch.nn.functional.scaled_dot_product_attention(
                q, k, v, is_causal=True, scale=scale, enable_gqa=groups > 1
            )
        )
    return torch.cat([p.transpose(0, 1) for p in pieces])


def varlen_sdpa(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    cu_lengths = kwargs.get("cu_seq_lens_q")
    # Sliding-window layers (Gemma's local ones), non-causal modules and attention dropout keep SDPA and its mask.
    plain_causal = getattr(module, "is_causal", True) and not getattr(module, "sliding_window", None)
    packed = cu_lengths is not None and query.shape[0] == 1 and query.shape[2] == key.shape[2]
    if not (packed and plain_causal) or (dropout and module.training):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    output = causal_varlen(
        query[0].transpose(0, 1), key[0].transpose(0, 1), value[0].transpose(0, 1),
        cu_lengths, kwargs["max_length_q"], scaling,
    )  # fmt: skip
    return output.unsqueeze(0), None


def register() -> None:
    """Make GQA_DECODE, FLEX_DECODE and VARLEN names transformers accepts as attention implementations
    (masks: SDPA's)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(GQA_DECODE, gqa_decode_sdpa)
    AttentionMaskInterface.register(GQA_DECODE, sdpa_mask)
    AttentionInterface.register(FLEX_DECODE, flex_gqa_decode)
    AttentionMaskInterface.register(FLEX_DECODE, sdpa_mask)
    AttentionInterface.register(VARLEN, varlen_sdpa)
    AttentionMaskInterface.register(VARLEN, sdpa_mask)


def use_gqa_decode(model: Any, flex: bool = False) -> str:
    """Switch a loaded transformers model (or a PEFT model around one) to GQA_DECODE, or FLEX_DECODE."""
    register()
    inner = loading.unwrap_peft(model)
    inner.set_attn_implementation(FLEX_DECODE if flex else GQA_DECODE)
    return inner.config._attn_implementation


def skip_cudnn_attention() -> bool:
    """Take torch's cuDNN backend out of scaled_dot_product_attention's choices, for the process,
    on a CUDA GPU. That backend builds an execution plan for every new key length, and a decode
    loop over a growing (dynamic) KV cache has a new one at every step. On an H100 (torch 2.11,
    SmolLM2-135M, 64 rows) the plans took 2.9 ms of CPU per attention call, 87 ms a step over 30
    layers; without them the eager decode ran 2.8x faster. Returns whether it was in use before."""
    import torch

    if not torch.cuda.is_available():
        return False
    was_on = torch.backends.cuda.cudnn_sdp_enabled()
    torch.backends.cuda.enable_cudnn_sdp(False)
    return was_on


def use_varlen(model: Any) -> str:
    """Switch a loaded transformers model (or a PEFT model around one) to VARLEN for packed training.

    A hook on the decoder adds the example boundaries to every forward pass that has packed
    position ids and no padding mask; other batches take the SDPA path.
    """
    register()
    inner = loading.unwrap_peft(model)
    inner.set_attn_implementation(VARLEN)
    if inner.device.type == "cuda":
        inspect_varlen_attn()

    def add_packed_lengths(module: Any, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        if kwargs.get("attention_mask") is None and "cu_seq_lens_q" not in kwargs:
            lengths = packed_lengths(kwargs.get("position_ids"))
            if lengths:
                kwargs.update(lengths)
        return args, kwargs

    inner.get_decoder().register_forward_pre_hook(add_packed_lengths, with_kwargs=True)
    return inner.config._attn_implementation
