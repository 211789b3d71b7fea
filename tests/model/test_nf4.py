"""The torch NF4 dequantization gives bitsandbytes' own weights, bit for bit (bitsandbytes runs on a CPU)."""

import pytest
import torch

from sfteval.model import nf4


def load_4bit(model_dir, double_quant: bool, device: str = "cpu"):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    return AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=config, device_map=device)


def bnb_weights(model) -> dict[str, torch.Tensor]:
    """Each 4-bit layer's weight as bitsandbytes itself dequantizes it."""
    from bitsandbytes.functional import dequantize_4bit
    from bitsandbytes.nn import Linear4bit

    return {
        name: dequantize_4bit(module.weight.data, module.weight.quant_state)
        for name, module in model.named_modules()
        if isinstance(module, Linear4bit)
    }


def reference_bf16(model_dir, weights: dict[str, torch.Tensor]):
    """The bf16 model with bitsandbytes' dequantized weights in place of its own."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16)
    for name, weight in weights.items():
        model.get_submodule(name.removesuffix(".base_layer")).weight.data.copy_(weight)
    return model


@pytest.mark.parametrize("double_quant", [True, False])
def test_dequantized_weights_equal_bitsandbytes(tiny_llama_dir, double_quant):
    model = load_4bit(tiny_llama_dir, double_quant)
    expected = bnb_weights(model)
    assert len(expected) == 2 * 7  # q k v o gate up down in each of the 2 layers
    for name, weight in expected.items():
        layer = nf4.CompiledNF4Linear(model.get_submodule(name))
        assert layer.nested is double_quant
        got = layer.dequantized_weight()
        assert got.dtype == weight.dtype == torch.bfloat16
        assert torch.equal(got, weight), name


def test_swapped_model_gives_the_logits_of_bitsandbytes_weights(tiny_llama_dir):
    """Same logits as a bf16 model holding bitsandbytes' dequantized weights, also under torch.compile."""
    model = load_4bit(tiny_llama_dir, double_quant=True)
    reference = reference_bf16(tiny_llama_dir, bnb_weights(model))
    assert nf4.use_compiled_nf4(model) == 14
    assert not any(type(module).__name__ == "Linear4bit" for module in model.modules())
    ids = torch.randint(0, 1000, (3, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(ids).logits
        assert torch.equal(model(ids).logits, expected)
        compiled = torch.compile(model)(ids).logits
    # Inductor may fuse the scale multiply-adds differently; the weights stay within one bf16 step.
    torch.testing.assert_close(compiled, expected, rtol=0.02, atol=0.02)


def test_dequantized_once_model_gives_the_logits_of_bitsandbytes_weights(tiny_llama_dir):
    model = load_4bit(tiny_llama_dir, double_quant=True)
    reference = reference_bf16(tiny_llama_dir, bnb_weights(model))
    from bitsandbytes.nn import Linear4bit

    quantized = [name for name, m in model.named_modules() if isinstance(m, Linear4bit)]
    bf16_bytes = nf4.dequantized_bytes(model)
    assert nf4.dequantize_once(model) == 14 == len(quantized)
    made = [model.get_submodule(name).weight for name in quantized]
    assert bf16_bytes == sum(w.numel() * w.element_size() for w in made) and nf4.dequantized_bytes(model) == 0
    q_proj = model.model.layers[0].self_attn.q_proj
    assert type(q_proj) is torch.nn.Linear and q_proj.weight.dtype == torch.bfloat16
    assert not q_proj.weight.requires_grad and q_proj.weight.shape == (q_proj.out_features, q_proj.in_features)
    ids = torch.randint(0, 1000, (3, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference(ids).logits)


@pytest.mark.parametrize(
    "swap, layer_type", [(nf4.use_compiled_nf4, nf4.CompiledNF4Linear), (nf4.dequantize_once, torch.nn.Linear)]
)
def test_swap_reaches_inside_a_lora_wrapper(tiny_llama_dir, swap, layer_type):
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    torch.manual_seed(0)
    quantized = get_peft_model(load_4bit(tiny_llama_dir, double_quant=True), lora)
    reference = reference_bf16(tiny_llama_dir, bnb_weights(quantized.get_base_model()))
    torch.manual_seed(0)
    reference = get_peft_model(reference, lora)
    assert swap(quantized) == 14
    wrapped = quantized.get_base_model().model.layers[0].self_attn.q_proj
    assert type(wrapped.base_layer) is layer_type
    ids = torch.randint(0, 1000, (2, 5), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, expected = quantized(ids).logits, reference(ids).logits
        with reference.disable_adapter():
            without_adapter = reference(ids).logits
    # peft's 4-bit LoRA layer adds the adapter's output in another order than its bf16 one
    torch.testing.assert_close(got, expected, rtol=0.01, atol=0.01)
    assert (expected - without_adapter).abs().max() > 0.05  # the adapter really changes the output


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="bitsandbytes' CUDA kernels and CUDA graphs need a GPU")
def test_cuda_compiled_dequantization_and_logits_match_bitsandbytes(tiny_llama_dir):
    """On a GPU bitsandbytes' forward is its dequantization kernel then a bf16 matmul: the same
    arithmetic, so the eager swap and the weights dequantized once give equal logits; compiled,
    within one bf16 step of the weights."""
    bnb_model = load_4bit(tiny_llama_dir, double_quant=True, device="cuda")
    swapped = load_4bit(tiny_llama_dir, double_quant=True, device="cuda")
    dequantized = load_4bit(tiny_llama_dir, double_quant=True, device="cuda")
    expected_weights = bnb_weights(bnb_model)
    assert nf4.use_compiled_nf4(swapped) == 14 and nf4.dequantize_once(dequantized) == 14
    for name, weight in expected_weights.items():
        layer = swapped.get_submodule(name)
        assert torch.equal(layer.dequantized_weight(), weight), name
        compiled = torch.compile(layer.dequantized_weight)()
        step = weight.float().abs().clamp_min(1e-30) * 2**-7  # one bf16 ulp is at most 2**-7 of the value
        assert ((compiled.float() - weight.float()).abs() <= step).all(), name
    ids = torch.randint(0, 1000, (4, 11), generator=torch.Generator().manual_seed(2)).cuda()
    with torch.no_grad():
        expected = bnb_model(ids).logits
        assert torch.equal(swapped(ids).logits, expected)
        assert torch.equal(dequantized(ids).logits, expected)
        compiled_logits = torch.compile(swapped, mode="reduce-overhead")(ids).logits
    torch.testing.assert_close(compiled_logits, expected, rtol=0.02, atol=0.02)
