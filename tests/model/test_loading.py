import copy
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from sfteval import prompts
from sfteval.cli import UserError
from sfteval.model import generation, loading
from tests.conftest import ROOT


def test_missing_model_path_is_a_one_line_error():
    with pytest.raises(UserError, match="does not exist"):
        loading.load_model(loading.ModelSpec(model="./no/such/model", use_hf=True))


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        loading.load_model(loading.ModelSpec(model=str(tmp_path), use_hf=True))


def test_bad_adapter_folder(tmp_path, smollm2_dir):
    with pytest.raises(UserError, match="not a LoRA adapter folder"):
        loading.load_model(loading.ModelSpec(model=str(smollm2_dir), lora=str(tmp_path), use_hf=True))
    with pytest.raises(UserError, match="does not exist"):
        loading.load_model(loading.ModelSpec(model=str(smollm2_dir), lora=str(tmp_path / "x"), use_hf=True))


def test_an_adapter_of_another_base_is_a_one_line_error(tmp_path, tiny_llama_dir, llama3_tokenizer):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from sfteval import testmodels

    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    lora = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    lora.save_pretrained(tmp_path / "adapter")
    wider = testmodels.save_random_llama(
        tmp_path / "wider", llama3_tokenizer, hidden_size=96, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
    )  # fmt: skip
    spec = loading.ModelSpec(model=str(wider), lora=str(tmp_path / "adapter"), use_hf=True, precision="fp32")
    with pytest.raises(
        UserError, match=r"does not fit this base model \(size mismatch for .*pass that model with --model"
    ):
        loading.load_model(spec)


def test_unknown_precision():
    with pytest.raises(UserError, match="unknown precision"):
        loading.choose_loader("3bit", use_hf=True, has_cuda=False, has_unsloth=False)


@pytest.mark.parametrize("precision", ["8bit", "4bit"])
def test_quantized_without_gpu_says_what_this_machine_can_run(precision):
    with pytest.raises(UserError, match="needs a CUDA GPU") as refused:
        loading.choose_loader(precision, use_hf=False, has_cuda=False, has_unsloth=False)
    message = str(refused.value)
    assert "run_pipeline.py --smoke" in message and "requirements-score.txt" in message
    assert "--precision bf16" not in message  # bf16 of the default 8B model is no answer on a CPU


def test_a_machine_without_torch_is_told_which_requirements_load_models(monkeypatch):
    monkeypatch.setattr(loading, "torch_installed", lambda: False)
    with pytest.raises(UserError, match="torch is not installed.*requirements.txt \\(GPU\\).*requirements-test.txt"):
        loading.check_machine("bf16", use_hf=True)


def test_loader_choice():
    assert loading.choose_loader("bf16", use_hf=False, has_cuda=False, has_unsloth=False) == "hf"
    assert loading.choose_loader("4bit", use_hf=False, has_cuda=True, has_unsloth=True) == "unsloth"
    assert loading.choose_loader("4bit", use_hf=True, has_cuda=True, has_unsloth=True) == "hf"
    with pytest.raises(UserError, match="unsloth is not installed"):
        loading.choose_loader("bf16", use_hf=False, has_cuda=True, has_unsloth=False)


def test_pad_token_differs_from_eos_for_llama3(llama3_tokenizer):
    tok = copy.deepcopy(llama3_tokenizer)
    tok.pad_token = tok.eos_token  # the classic pad == eos setup
    loading.ensure_pad_token(tok)
    # Llama 3.0's vocabulary (this package) has no <|finetune_right_pad_id|>; 3.1's does.
    assert tok.pad_token == "<|reserved_special_token_0|>"
    assert tok.pad_token_id not in (tok.eos_token_id, tok.bos_token_id)


def test_smollm2_gguf_loads_with_correct_eos_and_distinct_pad(smollm2_dir):
    loaded = loading.load_model(loading.ModelSpec(model=str(smollm2_dir), use_hf=True))
    tok = loaded.tokenizer
    assert tok.eos_token == "<|im_end|>"
    assert tok.pad_token_id != tok.eos_token_id
    assert tok.padding_side == "left"
    assert loaded.info["loader"] == "hf" and loaded.info["precision"] == "bf16"


def test_batched_greedy_equals_one_by_one_on_smollm2(smollm2_dir):
    loaded = loading.load_model(loading.ModelSpec(model=str(smollm2_dir), use_hf=True, precision="fp32"))
    model, tok = loaded.model, loaded.tokenizer
    questions = [
        "Name three primary colors.",
        "What is the capital of France? Answer in one word.",
        "Write a haiku about the sea.",
        "List five fruits, one per line.",
    ]
    ids = [prompts.encode(tok, prompts.render("chat", tok, q)) for q in questions]
    assert len({len(x) for x in ids}) > 1, "prompts must differ in length so that padding happens"
    stop = generation.stop_token_ids(tok, model, "chat")
    settings = generation.GenerationSettings(max_new_tokens=40)
    batched = generation.generate_batch(model, tok, ids, settings, stop)
    single = [generation.generate_batch(model, tok, [x], settings, stop)[0] for x in ids]
    assert batched == single
    assert "Paris" in batched[1].text
    assert any(c.stop_reason == "eos" for c in batched)


def test_length_sorted_batches_cover_every_index_once():
    lengths = [5, 50, 7, 49, 8]
    batches = generation.length_sorted_batches(lengths, 2)
    assert batches == [[1, 3], [4, 2], [0]]


def test_character_level_gguf_tokenizer_is_refused(llama3_tokenizer):
    from pathlib import Path

    loading.check_gguf_tokenizer(llama3_tokenizer, Path("llama.gguf"))  # a real subword tokenizer passes

    class CharTokenizer:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": list(range(len(text)))}

    with pytest.raises(UserError, match="splits text into single characters"):
        loading.check_gguf_tokenizer(CharTokenizer(), Path("gemma-3-270m-q4_k_m.gguf"))


def test_the_bitsandbytes_cpu_kernel_probe_says_nothing_once_silenced():
    """peft imports bitsandbytes, whose CPU backend asks for `pip install kernels`, advice for a
    4-bit CPU path that the loaders never take."""
    probe = "from sfteval.model import loading\n{}import peft\n"
    plain = subprocess.run([sys.executable, "-c", probe.format("")], capture_output=True, text=True, cwd=ROOT)
    if "pip install kernels" not in plain.stderr:
        pytest.skip("bitsandbytes does not probe for its fused CPU kernel on this CPU (no AVX512-BF16)")
    silenced = probe.format("loading.silence_bitsandbytes_cpu_probe()\n")
    quiet = subprocess.run([sys.executable, "-c", silenced], capture_output=True, text=True, cwd=ROOT)
    assert quiet.returncode == 0 and "kernels" not in quiet.stderr, quiet.stderr


def test_a_training_load_leaves_the_trainer_no_special_token_to_align(smollm2_dir):
    """The pad token ensure_pad_token picks is in the model's configs, so transformers' Trainer
    has nothing to realign and prints no "tokenizer has new PAD/BOS/EOS tokens" warning."""
    from transformers.trainer_utils import align_special_tokens

    spec = loading.ModelSpec(model=str(smollm2_dir), precision="fp32", use_hf=True)
    loaded = loading.load_for_training(spec, loading.LoraSettings(gradient_checkpointing=False))
    base, pad_id = loading.unwrap_peft(loaded.model), loaded.tokenizer.pad_token_id
    assert base.config.pad_token_id == base.generation_config.pad_token_id == pad_id != loaded.tokenizer.eos_token_id
    before = base.config.to_dict()
    align_special_tokens(loaded.model, loaded.tokenizer)  # every token it aligns lands in model.config
    assert base.config.to_dict() == before


def test_log_once_lets_a_repeated_message_through_once(caplog):
    """bitsandbytes logs its fp16 cast on every 8-bit matmul; the loader keeps the first line."""
    name = "sfteval.test.log_once"
    loading.log_once(name, "MatMul8bitLt: inputs will be cast")
    loading.log_once(name, "MatMul8bitLt: inputs will be cast")  # a second load adds no second filter
    logger = logging.getLogger(name)
    with caplog.at_level(logging.WARNING, logger=name):
        for _ in range(3):
            logger.warning("MatMul8bitLt: inputs will be cast from %s to float16 during quantization", "bf16")
        logger.warning("something else")
        logger.warning("something else")
    messages = [r.getMessage() for r in caplog.records if r.name == name]
    assert messages == [
        "MatMul8bitLt: inputs will be cast from bf16 to float16 during quantization",
        "something else",
        "something else",
    ]
    assert len(logger.filters) == 1


@pytest.mark.parametrize(
    "quantizer_name", ["quantizer_bnb_4bit.Bnb4BitHfQuantizer", "quantizer_bnb_8bit.Bnb8BitHfQuantizer"]
)
def test_bitsandbytes_compile_lifts_transformers_block_only_for_that_model(monkeypatch, quantizer_name):
    """transformers 5.17 never compiles a bitsandbytes model's decode step; eval_generate --compile lifts that."""
    import importlib
    import importlib.metadata
    import types

    from transformers import BitsAndBytesConfig

    module_name, class_name = quantizer_name.split(".")
    quantizer_class = getattr(importlib.import_module(f"transformers.quantizers.{module_name}"), class_name)
    config = BitsAndBytesConfig(load_in_4bit=True) if "4bit" in module_name else BitsAndBytesConfig(load_in_8bit=True)
    lifted, untouched = quantizer_class(config), quantizer_class(config)
    assert not lifted.is_compileable  # if transformers starts compiling bnb models, this helper can go
    model = types.SimpleNamespace(hf_quantizer=lifted)

    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.45.5")
    assert loading.allow_bitsandbytes_compile(model) is False and not lifted.is_compileable
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.50.2")
    assert loading.allow_bitsandbytes_compile(model) is True
    assert lifted.is_compileable and isinstance(lifted, quantizer_class) and lifted.quantization_config is config
    assert not untouched.is_compileable
    assert loading.allow_bitsandbytes_compile(model) is False  # already compileable: nothing to lift
    assert loading.allow_bitsandbytes_compile(types.SimpleNamespace()) is False  # not quantized


def test_fp32_gguf_is_dequantized_to_fp32_and_records_its_weights_dtype(tmp_path, monkeypatch, smollm2_dir):
    """--precision fp32 on a GGUF: the GGUF's own values in fp32, not the bf16 cache folder's
    rounding of them; every load records the dtype its checkpoint really holds."""
    import torch
    from safetensors.torch import load_file

    from sfteval import testmodels

    monkeypatch.setenv("SFTEVAL_CACHE", str(tmp_path))
    fp32_dir = loading.local_source(str(testmodels.smollm2_gguf()), "fp32")
    assert "-fp32-" in Path(fp32_dir).name and Path(fp32_dir).parent == tmp_path / "gguf"
    assert loading.source_weights_dtype(fp32_dir) == "float32"
    assert loading.source_weights_dtype(str(smollm2_dir)) == "bfloat16"
    weights = load_file(str(next(Path(fp32_dir).glob("*.safetensors"))))
    name = next(k for k, v in weights.items() if v.ndim == 2 and "proj" in k)
    full = weights[name]
    assert full.dtype == torch.float32
    assert not torch.equal(full, full.to(torch.bfloat16).float())  # values a bf16 folder could not hold


def test_the_llama3_tokenizer_comes_from_llama3_tokenizer_when_set(tmp_path, monkeypatch):
    import shutil

    from sfteval import testmodels

    monkeypatch.delenv("LLAMA3_TOKENIZER", raising=False)
    packaged = testmodels.llama3_tokenizer_dir()
    shutil.copy(packaged / "tokenizer.json", tmp_path / "tokenizer.json")
    monkeypatch.setenv("LLAMA3_TOKENIZER", str(tmp_path))
    assert testmodels.llama3_tokenizer_dir() == tmp_path
    assert testmodels.llama3_tokenizer()("Hi")["input_ids"][0] == 128000  # <|begin_of_text|> added
    monkeypatch.setenv("LLAMA3_TOKENIZER", str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="holds no tokenizer.json"):
        testmodels.llama3_tokenizer_dir()
