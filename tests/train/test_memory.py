"""Memory arithmetic: parameter counts from the config, and the seed's own claims."""

import json

import pytest

from sfteval.cli import UserError
from sfteval.train import memory


@pytest.fixture(scope="module")
def llama8b():
    shape, source = memory.load_shape("llama-3.1-8b")
    assert source == "built-in"
    return shape


def test_llama_31_8b_parameter_counts(llama8b):
    # Published: 8,030,261,248 parameters; LoRA r=16 on all 7 projections: 41,943,040.
    assert llama8b.total_params() == 8_030_261_248
    assert llama8b.lora_params(16) == 41_943_040
    assert llama8b.lora_params(8, ("q_proj", "v_proj")) == 32 * 8 * (4096 + 4096 + 4096 + 1024)


def test_seed_claims(llama8b):
    full = memory.estimate(llama8b, "full", batch_size=1, seq_len=2048)
    lora = memory.estimate(llama8b, "lora", batch_size=2, seq_len=2048)
    qlora = memory.estimate(llama8b, "qlora", batch_size=2, seq_len=2048)
    # Full finetuning with AdamW at 2048 tokens: about 100 GB (16 weights + 16 grads + 64 Adam).
    assert 95 < full.total_gb < 110
    assert full.optimizer_gb == pytest.approx(8 * 8_030_261_248 / 1e9)
    # LoRA fits a 40 GB A100; QLoRA's weights are about a third of bf16's.
    assert lora.total_gb < 40 * 0.92
    assert qlora.weights_gb < lora.weights_gb / 2.5
    assert qlora.total_gb < lora.total_gb
    # Activations grow with tokens; checkpointing shrinks them by an order of magnitude.
    assert memory.estimate(llama8b, "lora", 4, 2048).activations_gb == pytest.approx(2 * lora.activations_gb)
    no_ckpt = memory.estimate(llama8b, "lora", 2, 2048, checkpointing=False)
    assert no_ckpt.activations_gb > 10 * lora.activations_gb
    fused = memory.estimate(llama8b, "lora", 2, 2048, fused_loss=True)
    assert fused.logits_gb < lora.logits_gb / 4


def test_shape_from_local_folder(tiny_llama_dir):
    shape, source = memory.load_shape(str(tiny_llama_dir))
    config = json.loads((tiny_llama_dir / "config.json").read_text())
    assert source.endswith("config.json")
    assert (shape.hidden, shape.layers, shape.kv_heads, shape.vocab) == (64, 2, 2, config["vocab_size"])
    # The tiny model's own parameter count matches the arithmetic.
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    assert shape.total_params() == sum(p.numel() for p in model.parameters())


def test_offline_default_model_falls_back_to_builtin(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import transformers

    def offline(*args, **kwargs):
        raise OSError("offline")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", offline)
    shape, source = memory.load_shape("unsloth/Meta-Llama-3.1-8B")
    assert shape.total_params() == 8_030_261_248 and "hub was unreachable" in source
    with pytest.raises(UserError, match="could not read the config"):
        memory.load_shape("someone/unknown-model")


def test_table_lists_every_component(llama8b):
    table = memory.format_table(llama8b, "built-in", batch_size=2, seq_len=2048, rank=16, precision="4bit")
    for word in ("weights", "trainable parameters", "gradients", "optimizer state", "activations", "logits", "total"):
        assert word in table
    assert "QLoRA (4-bit) *" in table and "41.9 M" in table and "8,030.3 M" in table
