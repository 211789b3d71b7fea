"""The GQA decode attention: the same attention as transformers' SDPA path, without repeat_kv."""

import types

import pytest

torch = pytest.importorskip("torch")

from transformers.integrations.sdpa_attention import sdpa_attention_forward  # noqa: E402

from sfteval import attention  # noqa: E402


def module(groups: int) -> types.SimpleNamespace:
    return types.SimpleNamespace(num_key_value_groups=groups, is_causal=True, training=False)


@pytest.mark.parametrize("groups", [1, 3, 4])
@pytest.mark.parametrize("q_length", [1, 5])
def test_matches_transformers_sdpa_with_a_padding_mask(groups, q_length):
    torch.manual_seed(0)
    batch, kv_heads, kv_length, dim = 3, 2, 9, 16
    query = torch.randn(batch, kv_heads * groups, q_length, dim)
    key, value = torch.randn(2, batch, kv_heads, kv_length, dim).unbind(0)
    # Left padding: row 0 none, row 1 two positions, row 2 five; causal over the last q_length positions.
    pad = torch.tensor([0, 2, 5])
    positions = torch.arange(kv_length)
    visible = positions[None, :] >= pad[:, None]
    causal = positions[None, :] <= (kv_length - q_length + torch.arange(q_length))[:, None]
    mask = (visible[:, None, :] & causal[None, :, :])[:, None]  # (batch, 1, q, kv)
    expected, _ = sdpa_attention_forward(module(groups), query, key, value, mask, scaling=dim**-0.5)
    got, weights = attention.gqa_decode_sdpa(module(groups), query, key, value, mask, scaling=dim**-0.5)
    assert weights is None and got.shape == expected.shape == (batch, q_length, kv_heads * groups, dim)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_registered_name_loads_and_generates_like_sdpa(tiny_llama_dir, monkeypatch):
    """Batched, left-padded greedy generation gives the same tokens with either implementation,
    and its decode steps (one query, a padding mask) do go through the grouped path."""
    calls = []
    original = attention.gqa_decode_sdpa

    def spy(module, query, key, value, attention_mask, **kwargs):
        calls.append((query.shape[2], attention_mask is not None))
        return original(module, query, key, value, attention_mask, **kwargs)

    monkeypatch.setattr(attention, "gqa_decode_sdpa", spy)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sfteval import modeling

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    modeling.ensure_pad_token(tokenizer)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    assert model.config.num_attention_heads != model.config.num_key_value_heads
    batch = tokenizer(["a much longer prompt than the other one", "short"], return_tensors="pt", padding=True)
    kwargs = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    with torch.no_grad():
        reference = model.generate(**batch, **kwargs)
        assert attention.use_gqa_decode(model) == attention.GQA_DECODE
        got = model.generate(**batch, **kwargs)
    assert torch.equal(got, reference)
    assert (1, True) in calls and any(q > 1 for q, _ in calls)
