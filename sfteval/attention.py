"""SDPA attention whose decode step reads each key/value head once under grouped-query attention.

transformers' SDPA path copies every key/value head `num_key_value_groups` times (`repeat_kv`)
whenever an attention mask is present, and batched IFEval generation always has one (left
padding). For Llama-3.1-8B that is 4 copies of the whole KV cache written and read at every new
token. At a decode step there is one query per head, so the query heads that share a key/value
head can instead stand in for the query positions of that head: one SDPA call over
(batch, kv_heads, groups, head_dim) queries against the cache as it is, with the same padding
mask. The arithmetic is the same attention; prefill and models without grouped heads take
transformers' own SDPA path unchanged.
"""

from __future__ import annotations

from typing import Any

GQA_DECODE = "sdpa_gqa_decode"


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


def register() -> str:
    """Make GQA_DECODE a name transformers accepts as an attention implementation (its masks are SDPA's)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(GQA_DECODE, gqa_decode_sdpa)
    AttentionMaskInterface.register(GQA_DECODE, sdpa_mask)
    return GQA_DECODE


def use_gqa_decode(model: Any) -> str:
    """Switch a loaded transformers model (or a PEFT model around one) to GQA_DECODE."""
    register()
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner.set_attn_implementation(GQA_DECODE)
    return inner.config._attn_implementation
