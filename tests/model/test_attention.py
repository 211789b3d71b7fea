"""The GQA decode attention (the same attention as transformers' SDPA path, without repeat_kv) and the
varlen training attention (the same attention as the dense packed-sequence mask, example by example)."""

import types

import pytest

torch = pytest.importorskip("torch")

from transformers.integrations.sdpa_attention import sdpa_attention_forward  # noqa: E402

from sfteval.model import attention  # noqa: E402


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

    from sfteval.model import loading

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    loading.ensure_pad_token(tokenizer)
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


@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_decode_step_reads_the_visible_blocks_and_matches_sdpa(groups):
    """A decode step over a cache of 3 blocks, 2 of them visible to the last row only: the block mask
    lists just the blocks holding visible tokens, and the attention equals SDPA over the whole cache."""
    torch.manual_seed(0)
    batch, kv_heads, dim, length = 3, 2, 16, 3 * attention.KV_BLOCK
    query = torch.randn(batch, kv_heads * groups, 1, dim)
    key, value = torch.randn(2, batch, kv_heads, length, dim).unbind(0)
    first, last = torch.tensor([0, 37, 200]), 250  # left padding per row; the step's position
    positions = torch.arange(length)
    mask = ((positions[None, :] >= first[:, None]) & (positions[None, :] <= last))[:, None, None, :]
    blocks = attention.visible_blocks(mask)
    assert blocks.kv_num_blocks.reshape(-1).tolist() == [2, 2, 1]
    assert blocks.kv_indices[2, 0, 0, 0].item() == 1  # row 2's only visible block is the second
    expected = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, scale=dim**-0.5, enable_gqa=groups > 1
    )
    got = attention.flex_decode_step(query, key, value, mask, dim**-0.5)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_decode_generates_like_sdpa_over_a_static_cache(tiny_llama_dir, monkeypatch):
    """Greedy, left-padded generation over a static cache of whole blocks gives the same tokens through
    the flex step as through SDPA. The flex branch is taken where torch compiles; here it is forced
    (flex attention then runs unfused) to check the shapes and masks transformers hands it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sfteval.model import loading

    steps = []
    original = attention.flex_decode_step

    def spy(query, key, value, mask, scaling):
        steps.append(key.shape[2])
        return original(query, key, value, mask, scaling)

    monkeypatch.setattr(attention, "flex_decode_step", spy)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    loading.ensure_pad_token(tokenizer)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    batch = tokenizer(["a much longer prompt than the other one", "short"], return_tensors="pt", padding=True)
    cache = attention.static_cache_length(batch["input_ids"].shape[1], 12, flex=True)
    assert cache == attention.KV_BLOCK
    kwargs = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    kwargs.update(cache_implementation="static", max_cache_len=cache, disable_compile=True)
    with torch.no_grad():
        reference = model.generate(**batch, **kwargs)
        assert attention.use_gqa_decode(model, flex=True) == attention.FLEX_DECODE
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
        got = model.generate(**batch, **kwargs)
    assert torch.equal(got, reference)
    assert len(steps) == 11 * model.config.num_hidden_layers and set(steps) == {cache}


def test_packed_lengths_from_position_ids():
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])
    lengths = attention.packed_lengths(positions)
    assert lengths["cu_seq_lens_q"].tolist() == [0, 3, 5, 9] and lengths["cu_seq_lens_q"].dtype == torch.int32
    assert lengths["max_length_q"] == lengths["max_length_k"] == 4
    assert attention.packed_lengths(torch.tensor([[3, 4, 0, 1]])) is None  # not starting an example
    assert attention.packed_lengths(torch.tensor([[0, 1], [0, 1]])) is None  # padded batches are not packed
    assert attention.packed_lengths(None) is None


@pytest.mark.parametrize("groups", [1, 2])
def test_varlen_equals_sdpa_with_the_packed_block_mask(groups):
    """Transformers' SDPA path for a packed row: a dense causal mask that is block-diagonal over the
    examples. The varlen path must give the same output from the boundaries alone."""
    torch.manual_seed(0)
    kv_heads, dim, sizes = 2, 8, [3, 1, 5, 4]
    tokens = sum(sizes)
    query = torch.randn(1, kv_heads * groups, tokens, dim)
    key, value = torch.randn(2, 1, kv_heads, tokens, dim).unbind(0)
    example = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    index = torch.arange(tokens)
    mask = ((example[:, None] == example[None, :]) & (index[None, :] <= index[:, None]))[None, None]
    expected, _ = sdpa_attention_forward(module(groups), query, key, value, mask, scaling=dim**-0.5)
    positions = torch.cat([torch.arange(n) for n in sizes])[None]
    lengths = attention.packed_lengths(positions)
    got, weights = attention.varlen_sdpa(module(groups), query, key, value, mask, scaling=dim**-0.5, **lengths)
    assert weights is None and got.shape == expected.shape == (1, tokens, kv_heads * groups, dim)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_varlen_keeps_sdpa_for_sliding_window_layers(monkeypatch):
    """A sliding-window layer (Gemma 3's local layers) needs its mask: the boundaries are ignored."""
    monkeypatch.setattr(attention, "causal_varlen", None)  # would fail if called
    torch.manual_seed(2)
    query, key, value = torch.randn(3, 1, 2, 6, 8).unbind(0)
    mask = torch.ones(6, 6, dtype=torch.bool).tril().triu(-2)[None, None]
    local = types.SimpleNamespace(num_key_value_groups=1, is_causal=True, training=False, sliding_window=3)
    lengths = attention.packed_lengths(torch.arange(6)[None])
    expected, _ = sdpa_attention_forward(local, query, key, value, mask, scaling=0.3)
    got, _ = attention.varlen_sdpa(local, query, key, value, mask, scaling=0.3, **lengths)
    torch.testing.assert_close(got, expected)


def test_varlen_without_boundaries_is_sdpa():
    torch.manual_seed(1)
    query, key, value = torch.randn(3, 2, 2, 4, 8).unbind(0)
    expected, _ = sdpa_attention_forward(module(1), query, key, value, None, scaling=0.3, is_causal=True)
    got, _ = attention.varlen_sdpa(module(1), query, key, value, None, scaling=0.3, is_causal=True)
    torch.testing.assert_close(got, expected)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch's varlen_attn is a CUDA (flash attention) kernel")
def test_cuda_varlen_kernel_matches_the_dense_packed_mask():
    """On a GPU the varlen path is torch's flash kernel: bf16 outputs and gradients close to SDPA's
    dense block mask at the Llama-3.1-8B head layout (32 query heads, 8 key/value heads)."""
    torch.manual_seed(0)
    sizes, heads, kv_heads, dim = [180, 33, 414, 1, 97], 32, 8, 128
    tokens = sum(sizes)
    inputs = [torch.randn(1, h, tokens, dim, device="cuda", dtype=torch.bfloat16) for h in (heads, kv_heads, kv_heads)]
    example = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes)).cuda()
    index = torch.arange(tokens, device="cuda")
    mask = ((example[:, None] == example[None, :]) & (index[None, :] <= index[:, None]))[None, None]
    lengths = attention.packed_lengths(torch.cat([torch.arange(n) for n in sizes])[None].cuda())
    results = []
    for use_varlen in (False, True):
        leaves = [t.clone().requires_grad_() for t in inputs]
        kwargs = lengths if use_varlen else {}
        function = attention.varlen_sdpa if use_varlen else sdpa_attention_forward
        out, _ = function(module(heads // kv_heads), *leaves, mask, scaling=dim**-0.5, **kwargs)
        out.float().square().sum().backward()
        results.append([out.detach().float()] + [leaf.grad.float() for leaf in leaves])
    for reference, got in zip(*results):  # output, then the query, key and value gradients
        assert (got - reference).abs().max() <= 2e-2 * reference.abs().max()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch's varlen_attn is a CUDA (flash attention) kernel")
def test_cuda_varlen_compiled_with_dynamic_shapes_follows_each_packing():
    """train.py --compile compiles each layer with dynamic shapes: a packed row with a new length
    and a longer longest example must not reuse what the first call compiled for."""
    torch.manual_seed(0)
    compiled = torch.compile(attention.varlen_sdpa, dynamic=True)
    for sizes in ([40, 7, 90], [300, 12], [5, 5, 5, 500]):
        tokens = sum(sizes)
        q, k, v = (torch.randn(1, h, tokens, 64, device="cuda", dtype=torch.bfloat16) for h in (8, 2, 2))
        lengths = attention.packed_lengths(torch.cat([torch.arange(n) for n in sizes])[None].cuda())
        eager, _ = attention.varlen_sdpa(module(4), q, k, v, None, scaling=0.125, **lengths)
        got, _ = compiled(module(4), q, k, v, None, scaling=0.125, **lengths)
        assert (got.float() - eager.float()).abs().max() <= 1e-2 * eager.float().abs().max()


def test_skip_cudnn_attention_turns_the_backend_off_on_cuda_only(monkeypatch):
    was = torch.backends.cuda.cudnn_sdp_enabled()
    try:
        torch.backends.cuda.enable_cudnn_sdp(True)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        assert attention.skip_cudnn_attention() is False and torch.backends.cuda.cudnn_sdp_enabled()
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        assert attention.skip_cudnn_attention() is True and not torch.backends.cuda.cudnn_sdp_enabled()
        assert attention.skip_cudnn_attention() is False  # already off
    finally:
        torch.backends.cuda.enable_cudnn_sdp(was)
