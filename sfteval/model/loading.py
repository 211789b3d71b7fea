"""Load a model the way the user runs it: hub name, local folder or GGUF file; bf16, 8-bit or
4-bit; unsloth (GPU fast path) or transformers; optionally with a LoRA adapter.

unsloth and bitsandbytes are imported only inside the functions that need them, so a CPU-only
machine never needs either.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfteval import distributed, records
from sfteval.cli import PRECISIONS, UserError, terminal

# Tokens that several model families reserve for padding; the first one present in the
# vocabulary and different from EOS becomes the pad token (Llama 3 ships the first one unused).
PAD_TOKEN_CANDIDATES = (
    "<|finetune_right_pad_id|>",
    "<pad>",
    "<|pad|>",
    "[PAD]",
    "<|reserved_special_token_0|>",
    "<unk>",
    "<|endoftext|>",
)
QUANTIZED = ("8bit", "4bit")
ADAPTER_CONFIG = "adapter_config.json"
TRAIN_CONFIG = "train_config.json"


@dataclass
class ModelSpec:
    model: str | None
    precision: str = "bf16"
    use_hf: bool = False
    lora: str | None = None
    max_seq_length: int = 4096
    llm_int8_threshold: float = 6.0


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    info: dict[str, Any] = field(default_factory=dict)
    adapter_train_config: dict[str, Any] | None = None


# What a machine without a CUDA GPU can run instead of the GPU jobs.
ON_A_CPU = (
    "on this machine `python run_pipeline.py --smoke` runs train -> generate -> score -> report on SmolLM2-135M "
    "in a few minutes, a small local model runs with --use-hf --precision fp32 --model FOLDER, and scoring and "
    "reports (eval_score.py, compare_ifeval.py, eval_wandb.py) need only requirements-score.txt"
)


def torch_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def unsloth_installed() -> bool:
    return installed("unsloth")


def choose_loader(precision: str, use_hf: bool, has_cuda: bool, has_unsloth: bool) -> str:
    """`unsloth` on a CUDA GPU unless --use-hf; `hf` everywhere else. Quantized weights need a GPU."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if not has_cuda:
        if precision in QUANTIZED:
            raise UserError(
                f"--precision {precision} needs a CUDA GPU (bitsandbytes quantization) and torch sees none; {ON_A_CPU}"
            )
        return "hf"
    if precision in QUANTIZED and not installed("bitsandbytes"):
        raise UserError(
            f"--precision {precision} needs bitsandbytes, which is not installed: pip install -r requirements.txt"
        )
    if use_hf:
        return "hf"
    if not has_unsloth:
        raise UserError("unsloth is not installed; `pip install -r requirements.txt` or pass --use-hf")
    return "unsloth"


def check_machine(precision: str, use_hf: bool) -> tuple[str, bool]:
    """(loader, has_cuda) for this machine without importing unsloth: the first thing a training
    or generation run does, so a job this machine cannot run fails before any data or model loads."""
    if not torch_installed():
        raise UserError(
            "torch is not installed: this looks like the scoring set (requirements-score.txt), which scores, "
            "compares and reports; loading a model needs requirements.txt (GPU) or requirements-test.txt (CPU)"
        )
    has_cuda = cuda_available()
    return choose_loader(precision, use_hf, has_cuda, has_cuda and unsloth_installed()), has_cuda


def read_adapter(lora_dir: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The adapter's PEFT config and, if train.py wrote it, its train_config.json."""
    path = Path(lora_dir)
    if not path.is_dir():
        raise UserError(f"adapter folder {lora_dir} does not exist")
    config_file = path / ADAPTER_CONFIG
    if not config_file.is_file():
        raise UserError(f"{lora_dir} is not a LoRA adapter folder: it has no {ADAPTER_CONFIG}")
    try:
        adapter_config = json.loads(config_file.read_text(encoding="utf-8"))
        train_file = path / TRAIN_CONFIG
        train_config = json.loads(train_file.read_text(encoding="utf-8")) if train_file.is_file() else None
    except json.JSONDecodeError as err:
        raise UserError(f"adapter folder {lora_dir} holds a broken JSON file ({err.msg})") from None
    return adapter_config, train_config


def resolve_base_model(model: str | None, lora: str | None) -> tuple[str, dict | None]:
    """The model to load: --model, else the adapter's recorded base model."""
    train_config = None
    if lora:
        adapter_config, train_config = read_adapter(lora)
        if model is None:
            model = (train_config or {}).get("base_model") or adapter_config.get("base_model_name_or_path")
    if not model:
        raise UserError("no model given: pass --model (a hub name, a local folder or a .gguf file)")
    return model, train_config


HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def looks_like_path(name: str) -> bool:
    return not HUB_ID.match(name) or name.lower().endswith(".gguf")


def check_model_source(name: str) -> None:
    """Reject a local path that is not there before any slow import or network call."""
    path = Path(name).expanduser()
    if path.exists():
        if path.is_dir() and not (path / "config.json").is_file():
            raise UserError(f"{name} is a folder but holds no config.json; point --model at a model folder")
        return
    if looks_like_path(name):
        raise UserError(f"model path {name} does not exist")


def gguf_cache_dir() -> Path:
    root = os.environ.get("SFTEVAL_CACHE") or Path.home() / ".cache" / "sfteval"
    return Path(root) / "gguf"


def materialize_gguf(gguf_path: str | Path, precision: str = "bf16") -> Path:
    """Dequantize a GGUF file once into a safetensors folder and return that folder: fp32 for
    `--precision fp32` (a bf16 folder would round the GGUF's weights to bf16 first), bf16 otherwise.

    Every loader (bitsandbytes quantization, unsloth, PEFT trainer) then works on an
    ordinary model folder; transformers needs `GgufConfig(dequantize=True)` for the GGUF
    weights to be trainable and savable at all.
    """
    gguf_path = Path(gguf_path).expanduser().resolve()
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    full = precision == "fp32"
    target = gguf_cache_dir() / (f"{gguf_path.stem}-fp32-{key}" if full else f"{gguf_path.stem}-{key}")
    if (target / "config.json").is_file() and (target / "tokenizer_config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    folder, filename = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    model = AutoModelForCausalLM.from_pretrained(
        folder,
        gguf_file=filename,
        quantization_config=GgufConfig(dequantize=True),
        dtype=torch.float32 if full else torch.bfloat16,
    )
    fix_gguf_eos(tokenizer, model)
    tokenizer = repair_gguf_tokenizer(tokenizer, gguf_path)
    check_gguf_tokenizer(tokenizer, gguf_path)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "sfteval_source.json").write_text(json.dumps({"gguf": str(gguf_path), "size": stat.st_size}))
    if target.exists():  # another process finished first
        return target
    os.replace(tmp, target)
    return target


def fix_gguf_eos(tokenizer: Any, model: Any) -> None:
    """Trust the GGUF's own EOS id (kept in the generation config) over the converted tokenizer's,
    which transformers can mislabel (SmolLM2 comes out with EOS = `<|im_start|>`)."""
    eos_id = model.generation_config.eos_token_id
    eos_id = eos_id[0] if isinstance(eos_id, list) else eos_id
    if eos_id is not None and eos_id != tokenizer.eos_token_id:
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos_id)


SAMPLE_SENTENCE = "The quick brown fox jumps over the lazy dog while the children watch."


def splits_into_characters(tokenizer: Any) -> bool:
    return len(tokenizer(SAMPLE_SENTENCE, add_special_tokens=False)["input_ids"]) > len(SAMPLE_SENTENCE) / 2


def repair_gguf_tokenizer(tokenizer: Any, gguf_path: Path) -> Any:
    """For a SentencePiece GGUF (Gemma, Llama 2), a tokenizer rebuilt from the file's own vocabulary
    and scores (sfteval.model.gguf_tokenizer); other GGUFs keep transformers' conversion.

    transformers 5.17's conversion of Gemma 3's tokenizer is not SentencePiece's: in memory it
    splits "quick brown" into "qu|ick|b|ro|wn", and once saved and reloaded into single characters.
    """
    from sfteval.model import gguf_tokenizer

    proto = gguf_tokenizer.spm_proto_from_gguf(gguf_path)
    if proto is None:
        return tokenizer
    rebuilt = gguf_tokenizer.fast_tokenizer_from_spm(proto)
    rebuilt.chat_template = getattr(tokenizer, "chat_template", None)
    return rebuilt


def check_gguf_tokenizer(tokenizer: Any, gguf_path: Path) -> None:
    """Refuse a GGUF whose tokenizer came out of the conversion without its merges.

    The last guard after `repair_gguf_tokenizer`: a model fed single characters reads input it
    never saw in training and every result is garbage. A real subword tokenizer needs far fewer
    tokens than characters for plain English.
    """
    if splits_into_characters(tokenizer):
        raise UserError(
            f"the tokenizer converted from {gguf_path.name} splits text into single characters; load the model "
            "from its hub name or a folder with the original tokenizer instead of this GGUF"
        )


def local_source(name: str, precision: str = "bf16") -> str:
    """Hub name or folder as given; a .gguf file becomes its dequantized folder (fp32 for fp32)."""
    check_model_source(name)
    path = Path(name).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise UserError(f"{name} is a file but not a .gguf model; point --model at a folder, hub name or .gguf")
        return str(materialize_gguf(path, precision))
    return name


def ensure_pad_token(tokenizer: Any) -> None:
    """Give the tokenizer a pad token that is not EOS, so EOS is never masked as padding."""
    eos = tokenizer.eos_token
    if tokenizer.pad_token is not None and tokenizer.pad_token != eos:
        return
    vocab = tokenizer.get_vocab()
    for candidate in PAD_TOKEN_CANDIDATES:
        if candidate in vocab and candidate != eos and candidate != tokenizer.bos_token:
            tokenizer.pad_token = candidate
            return
    raise UserError(
        "the tokenizer has no token usable as padding besides EOS; add one (e.g. tokenizer.add_special_tokens) first"
    )


def load_tokenizer(source: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise UserError(f"could not load the tokenizer of {source}: {first_line(err)}") from None
    ensure_pad_token(tokenizer)
    return tokenizer


class MessageFilter(logging.Filter):
    """Drops the log messages that start with `message_start`, or all but the first of them."""

    def __init__(self, message_start: str, keep_first: bool) -> None:
        super().__init__()
        self.message_start, self.keep_first, self.seen = message_start, keep_first, False

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.message_start):
            return True
        first, self.seen = not self.seen, True
        return first and self.keep_first


def filter_log(logger_name: str, message_start: str, keep_first: bool) -> None:
    """Install a MessageFilter once per process; works before the logging module is imported,
    since getLogger hands the module the same logger later."""
    logger = logging.getLogger(logger_name)
    if not any(getattr(f, "message_start", None) == message_start for f in logger.filters):
        logger.addFilter(MessageFilter(message_start, keep_first))


def log_once(logger_name: str, message_start: str) -> None:
    """Let a log message that starts with `message_start` through once per process. bitsandbytes
    logs its bf16 -> fp16 input cast on every 8-bit matmul: 100,000+ lines in one IFEval run."""
    filter_log(logger_name, message_start, keep_first=True)


def silence_bitsandbytes_cpu_probe() -> None:
    """bitsandbytes, imported by peft in every process, probes for an optional fused CPU 4-bit
    kernel and warns to `pip install kernels` when it is absent. 4-bit runs only on a CUDA GPU
    here (choose_loader), so the advice can never help; the warning is dropped."""
    filter_log("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward", keep_first=False)


def unwrap_peft(model: Any) -> Any:
    """The transformers model inside a PEFT wrapper, or the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


# bitsandbytes registers its 4-bit and int8 kernels as torch custom ops from this release on,
# so torch.compile can trace a quantized model's decode step.
BNB_COMPILE_MIN = (0, 46)


def allow_bitsandbytes_compile(model: Any) -> bool:
    """Let transformers' generate compile the decode step of a bitsandbytes model.

    transformers 5.17 reports every bitsandbytes quantizer as not compileable and then silently
    generates eagerly (huggingface/transformers#38886, still open). This lifts that one check,
    and only where the installed bitsandbytes can be compiled. Returns whether it did.
    """
    quantizer = getattr(unwrap_peft(model), "hf_quantizer", None)
    config = getattr(quantizer, "quantization_config", None)
    if quantizer is None or quantizer.is_compileable or getattr(config, "quant_method", None) != "bitsandbytes":
        return False
    version = records.installed_version("bitsandbytes")
    if version is None or tuple(int(part) for part in re.findall(r"\d+", version)[:2]) < BNB_COMPILE_MIN:
        return False
    blocked = type(quantizer)
    quantizer.__class__ = type(blocked.__name__, (blocked,), {"is_compileable": property(lambda self: True)})
    return True


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def bnb_config(precision: str, llm_int8_threshold: float = 6.0) -> Any:
    import torch
    from transformers import BitsAndBytesConfig

    if precision == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=llm_int8_threshold)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def load_hf(source: str, spec: ModelSpec, has_cuda: bool) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch.float32 if spec.precision == "fp32" else torch.bfloat16}
    if spec.precision in QUANTIZED:
        kwargs["quantization_config"] = bnb_config(spec.precision, spec.llm_int8_threshold)
    if has_cuda:
        # One whole model per process: under a launcher each one on its own GPU.
        kwargs["device_map"] = {"": distributed.launch().local_rank}
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as err:
        raise UserError(f"could not load model {source}: {first_line(err)}") from None
    return model, load_tokenizer(source)


def load_unsloth(source: str, spec: ModelSpec) -> tuple[Any, Any]:
    from unsloth import FastLanguageModel  # lazy: GPU only

    if spec.precision == "fp32":
        raise UserError("unsloth loads bf16, 8bit or 4bit; for fp32 pass --use-hf")
    try:
        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=source,
            max_seq_length=spec.max_seq_length,
            dtype=None,
            load_in_4bit=spec.precision == "4bit",
            load_in_8bit=spec.precision == "8bit",
            load_in_16bit=spec.precision == "bf16",
        )
    except (OSError, ValueError) as err:
        raise UserError(f"could not load model {source} with unsloth: {first_line(err)}") from None
    ensure_pad_token(tokenizer)
    return model, tokenizer


def attach_adapter(model: Any, lora_dir: str) -> Any:
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, lora_dir)
    except (RuntimeError, ValueError) as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = next((line for line in lines if "size mismatch" in line), first_line(err))
        raise UserError(
            f"the adapter {lora_dir} does not fit this base model ({reason[:200]}); it was trained on another "
            "one: pass that model with --model, or leave --model out to use the base in its train_config.json"
        ) from None


def prepare_source(spec: ModelSpec, name: str) -> tuple[str, bool, str]:
    """(loader, has_cuda, source): bad precision or path fail before any slow import, unsloth is
    imported before transformers when it is the loader, and a .gguf becomes its bf16 folder."""
    if spec.precision not in PRECISIONS:
        raise UserError(f"unknown precision {spec.precision!r}; choose one of {', '.join(PRECISIONS)}")
    check_model_source(name)
    silence_bitsandbytes_cpu_probe()
    if spec.precision == "8bit":
        log_once("bitsandbytes.autograd._functions", "MatMul8bitLt: inputs will be cast")
    loader, has_cuda = pick_loader(spec.precision, spec.use_hf)
    if not terminal():  # after pick_loader: unsloth is imported before transformers
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # "Loading weights", hub downloads
    return loader, has_cuda, local_source(name, spec.precision)


def load_model(spec: ModelSpec) -> LoadedModel:
    """Load model + tokenizer per `spec`, ready for left-padded batched generation."""
    name, train_config = resolve_base_model(spec.model, spec.lora)
    loader, has_cuda, source = prepare_source(spec, name)
    started = time.perf_counter()
    model, tokenizer = load_unsloth(source, spec) if loader == "unsloth" else load_hf(source, spec, has_cuda)
    if spec.lora:
        model = attach_adapter(model, spec.lora)
    if loader == "unsloth":
        from unsloth import FastLanguageModel

        FastLanguageModel.for_inference(model)
    model.eval()
    tokenizer.padding_side = "left"
    info = load_info(name, source, spec, loader, has_cuda, started, tokenizer)
    info["adapter"] = spec.lora
    if spec.precision == "8bit":
        info["llm_int8_threshold"] = spec.llm_int8_threshold
    return LoadedModel(model, tokenizer, info, train_config)


def load_info(
    name: str, source: str, spec: ModelSpec, loader: str, has_cuda: bool, started: float, tokenizer: Any
) -> dict[str, Any]:
    """What every loaded model records about itself (inference and training add their own keys)."""
    return {
        "model": name,
        "model_source": source,
        "precision": spec.precision,
        "loader": loader,
        "device": "cuda" if has_cuda else "cpu",
        "load_seconds": round(time.perf_counter() - started, 2),
        "pad_token": tokenizer.pad_token,
        "eos_token": tokenizer.eos_token,
        "weights_dtype": source_weights_dtype(source),
    }


def source_weights_dtype(source: str) -> str | None:
    """The dtype the checkpoint stores its weights in (config.json's `dtype`/`torch_dtype`), so a file
    says when fp32 compute ran on bf16 weights; None for a hub model that is not in the local cache."""
    config_file = Path(source) / "config.json"
    if not config_file.is_file():
        try:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(source, local_files_only=True).to_dict()
        except (OSError, ValueError):
            return None
    else:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    dtype = config.get("dtype") or config.get("torch_dtype")
    return str(dtype).replace("torch.", "") if dtype else None


# ---------------------------------------------------------------- training (train.py)

DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = DEFAULT_LORA_TARGETS
    gradient_checkpointing: bool = True
    seed: int = 3407


def pick_loader(precision: str, use_hf: bool) -> tuple[str, bool]:
    """(loader, has_cuda) for this machine, importing unsloth right away when it is the loader,
    because it must patch transformers, trl and peft before anything else imports them."""
    loader, has_cuda = check_machine(precision, use_hf)
    if loader == "unsloth":
        import unsloth  # noqa: F401  (import order matters: before transformers/trl/peft)
    return loader, has_cuda


def load_for_training(spec: ModelSpec, lora: LoraSettings) -> LoadedModel:
    """Base model + fresh trainable LoRA adapter, tokenizer right-padded with pad != EOS.

    unsloth: `FastLanguageModel.from_pretrained` + `FastLanguageModel.get_peft_model`
    (offloaded "unsloth" gradient checkpointing when on). hf: transformers (+ bitsandbytes and
    `prepare_model_for_kbit_training` for 8/4-bit) + `peft.get_peft_model`.
    """
    if spec.lora:
        raise UserError("training starts a new adapter; continuing from --lora is not supported (use --resume)")
    name, _ = resolve_base_model(spec.model, None)
    loader, has_cuda, source = prepare_source(spec, name)
    started = time.perf_counter()
    if loader == "unsloth":
        model, tokenizer = load_unsloth(source, spec)
        model = add_lora_unsloth(model, lora)
    else:
        model, tokenizer = load_hf(source, spec, has_cuda)
        model = add_lora_hf(model, lora, quantized=spec.precision in QUANTIZED)
    tokenizer.padding_side = "right"
    align_pad_token(model, tokenizer)
    if getattr(model, "config", None) is not None:
        model.config.use_cache = False
    trainable, total = count_parameters(model)
    info = load_info(name, source, spec, loader, has_cuda, started, tokenizer)
    info.update(
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        trainable_parameters=trainable,
        total_parameters=total,
    )
    return LoadedModel(model, tokenizer, info, None)


def align_pad_token(model: Any, tokenizer: Any) -> None:
    """Record the pad token that ensure_pad_token chose in the model's config and generation
    config. transformers' Trainer otherwise does it itself, with a warning nobody can act on."""
    base = unwrap_peft(model)
    for config in (getattr(base, "config", None), getattr(base, "generation_config", None)):
        if config is not None:
            config.pad_token_id = tokenizer.pad_token_id


def add_lora_unsloth(model: Any, lora: LoraSettings) -> Any:
    from unsloth import FastLanguageModel

    try:
        return FastLanguageModel.get_peft_model(
            model,
            r=lora.r,
            target_modules=list(lora.target_modules),
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            bias="none",
            use_gradient_checkpointing="unsloth" if lora.gradient_checkpointing else False,
            random_state=lora.seed,
        )
    except (TypeError, ValueError) as err:
        raise UserError(f"could not add the LoRA adapter with unsloth: {first_line(err)}") from None


def add_lora_hf(model: Any, lora: LoraSettings, quantized: bool) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    gc_kwargs = {"use_reentrant": False}
    if quantized:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=lora.gradient_checkpointing, gradient_checkpointing_kwargs=gc_kwargs
        )
    elif lora.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gc_kwargs)
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(lora.seed)
    try:
        return get_peft_model(model, config)
    except ValueError as err:
        raise UserError(f"could not add the LoRA adapter: {first_line(err)}") from None


def count_parameters(model: Any) -> tuple[int, int]:
    if hasattr(model, "get_nb_trainable_parameters"):
        trainable, total = model.get_nb_trainable_parameters()
        return int(trainable), int(total)
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
