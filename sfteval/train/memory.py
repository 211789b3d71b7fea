"""How much GPU memory finetuning needs: full finetuning vs LoRA vs QLoRA, from a model's config.

The arithmetic (bytes per parameter, bytes per token) is spelled out next to each term so the
table can be checked by hand. It estimates what the tensors need, not allocator slack, CUDA
context (~0.5 GB) or kernel workspaces, so a real peak sits somewhat above it.

Assumptions:
- Full finetuning: bf16 weights and bf16 gradients, AdamW with two fp32 moments (8 bytes per
  parameter), no fp32 master copy (a master copy adds 4 bytes per parameter).
- LoRA: frozen bf16 base; adapters, their gradients and optimizer state in fp32.
- QLoRA: base linear layers in NF4 with double quantization (~4.13 bits per weight);
  embeddings, norms and the LM head stay bf16, as bitsandbytes leaves them.
- Activations, bf16: with gradient checkpointing, each decoder layer's input is kept
  (2*hidden bytes per token per layer) plus one layer's full set during its recomputation;
  without it, every layer keeps its full set. A layer's full set is what its backward reads:
  the two norm inputs and outputs, q/k/v and the attention output, the MLP's gate, up,
  activation and product, i.e. 2 * (6*hidden + 2*kv_dim + 4*intermediate) bytes per token.
- Logits: unfused, a bf16 copy, an fp32 copy, fp32 log-softmax and its fp32 gradient
  (14 bytes per token per vocabulary entry); a fused/chunked loss keeps only a chunk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfteval.cli import UserError

GB = 1e9
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
NF4_BYTES_PER_WEIGHT = 0.5 + 0.5 / 64 + 4 / (64 * 256)  # 4 bits + 8-bit absmax per 64 + fp32 per 256 absmax
LOGIT_BYTES_UNFUSED = 2 + 4 + 4 + 4
FUSED_CHUNK_TOKENS = 1024  # tokens whose logits a chunked loss holds at once

# Offline fallback: Llama 3.1 8B's published config.
BUILTIN_SHAPES: dict[str, dict[str, Any]] = {
    "llama-3.1-8b": {
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": 14336,
        "vocab_size": 128256,
        "tie_word_embeddings": False,
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5,
        "rope_parameters": {
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        "model_type": "llama",
    }
}
# Hub names with that shape, so `--estimate-memory` works offline with the default model.
BUILTIN_ALIASES = {
    "unsloth/meta-llama-3.1-8b": "llama-3.1-8b",
    "unsloth/meta-llama-3.1-8b-instruct": "llama-3.1-8b",
    "unsloth/meta-llama-3.1-8b-bnb-4bit": "llama-3.1-8b",
    "unsloth/meta-llama-3.1-8b-instruct-bnb-4bit": "llama-3.1-8b",
    "unsloth/llama-3.1-8b": "llama-3.1-8b",
    "meta-llama/llama-3.1-8b": "llama-3.1-8b",
    "meta-llama/meta-llama-3.1-8b": "llama-3.1-8b",
    "meta-llama/llama-3.1-8b-instruct": "llama-3.1-8b",
    "meta-llama/meta-llama-3.1-8b-instruct": "llama-3.1-8b",
}


@dataclass(frozen=True)
class Shape:
    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each projection in one decoder layer."""
        h, i = self.hidden, self.intermediate
        return {
            "q_proj": (h, self.q_dim),
            "k_proj": (h, self.kv_dim),
            "v_proj": (h, self.kv_dim),
            "o_proj": (self.q_dim, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    def linear_params(self) -> int:
        return self.layers * sum(a * b for a, b in self.linear_shapes().values())

    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    def norm_params(self) -> int:
        return (2 * self.layers + 1) * self.hidden

    def total_params(self) -> int:
        return self.linear_params() + self.embedding_params() + self.norm_params()

    def lora_params(self, rank: int, targets: tuple[str, ...] = DEFAULT_TARGETS) -> int:
        shapes = self.linear_shapes()
        unknown = [t for t in targets if t not in shapes]
        if unknown:
            raise UserError(f"unknown LoRA target module(s) {unknown} for a Llama-style shape")
        return self.layers * sum(rank * (shapes[t][0] + shapes[t][1]) for t in targets)

    def layer_activation_bytes(self) -> int:
        """bf16 bytes per token that one decoder layer keeps for its backward."""
        return 2 * (6 * self.hidden + 2 * self.kv_dim + 4 * self.intermediate)


def shape_from_config(name: str, config: dict[str, Any]) -> Shape:
    config = config.get("text_config", config) if isinstance(config.get("text_config"), dict) else config
    try:
        hidden = int(config["hidden_size"])
        heads = int(config["num_attention_heads"])
        return Shape(
            name=name,
            hidden=hidden,
            layers=int(config["num_hidden_layers"]),
            heads=heads,
            kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads),
            intermediate=int(config["intermediate_size"]),
            vocab=int(config["vocab_size"]),
            tied=bool(config.get("tie_word_embeddings", False)),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"the config of {name} lacks a decoder-only field ({err}); cannot estimate memory") from None


def load_shape(model: str) -> tuple[Shape, str]:
    """The model's shape and where it came from: built-in name, local folder, or hub config
    (falling back to the built-in shape for known Llama 3.1 8B names when offline)."""
    key = model.strip().lower()
    if key in BUILTIN_SHAPES:
        return shape_from_config(key, BUILTIN_SHAPES[key]), "built-in"
    path = Path(model).expanduser()
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise UserError(f"{model} holds no config.json")
        return shape_from_config(model, json.loads(config_file.read_text(encoding="utf-8"))), str(config_file)
    if path.exists() or model.lower().endswith(".gguf"):
        raise UserError(f"{model}: point --model at a model folder, a hub name or one of {sorted(BUILTIN_SHAPES)}")
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model)
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        return shape_from_config(model, text.to_dict()), "hub config.json"
    except (OSError, ValueError) as err:
        alias = BUILTIN_ALIASES.get(key)
        if alias:
            return shape_from_config(alias, BUILTIN_SHAPES[alias]), f"built-in shape {alias}; the hub was unreachable"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"could not read the config of {model} ({first}); offline, pass a local model folder "
            f"or one of {sorted(BUILTIN_SHAPES)}"
        ) from None


@dataclass
class Estimate:
    method: str  # "full", "lora", "qlora"
    params_total: int
    params_trainable: int
    weights_gb: float
    trainable_gb: float
    gradients_gb: float
    optimizer_gb: float
    activations_gb: float
    logits_gb: float

    @property
    def total_gb(self) -> float:
        return (
            self.weights_gb
            + self.trainable_gb
            + self.gradients_gb
            + self.optimizer_gb
            + self.activations_gb
            + self.logits_gb
        )


def activation_bytes(shape: Shape, tokens: int, checkpointing: bool) -> float:
    per_layer = shape.layer_activation_bytes()
    if checkpointing:
        return tokens * (shape.layers * 2 * shape.hidden + per_layer)
    return tokens * shape.layers * per_layer


def logits_bytes(shape: Shape, tokens: int, fused: bool) -> float:
    return (
        min(tokens, FUSED_CHUNK_TOKENS if fused else tokens) * shape.vocab * (4 + 4 if fused else LOGIT_BYTES_UNFUSED)
    )


def estimate(
    shape: Shape,
    method: str,
    batch_size: int,
    seq_len: int,
    rank: int = 16,
    targets: tuple[str, ...] = DEFAULT_TARGETS,
    optimizer_8bit: bool = True,
    checkpointing: bool = True,
    fused_loss: bool = False,
) -> Estimate:
    """Memory for one training step of `batch_size` sequences of `seq_len` tokens.
    Full finetuning always uses fp32 AdamW (8 bytes per parameter); LoRA and QLoRA use the
    8-bit AdamW (2 bytes per trainable parameter) when `optimizer_8bit`."""
    tokens = batch_size * seq_len
    total = shape.total_params()
    if method == "full":
        trainable = total
        weights = 2 * total
        trainable_extra = 0.0
        grads = 2 * total
        optim = 8 * total
    elif method in ("lora", "qlora"):
        trainable = shape.lora_params(rank, targets)
        if method == "lora":
            weights = 2 * total
        else:
            weights = NF4_BYTES_PER_WEIGHT * shape.linear_params() + 2 * (
                shape.embedding_params() + shape.norm_params()
            )
        trainable_extra = 4 * trainable
        grads = 4 * trainable
        optim = (2 if optimizer_8bit else 8) * trainable
    else:
        raise UserError(f"unknown method {method!r}")
    return Estimate(
        method=method,
        params_total=total,
        params_trainable=trainable,
        weights_gb=weights / GB,
        trainable_gb=trainable_extra / GB,
        gradients_gb=grads / GB,
        optimizer_gb=optim / GB,
        activations_gb=activation_bytes(shape, tokens, checkpointing) / GB,
        logits_gb=logits_bytes(shape, tokens, fused_loss) / GB,
    )


GPU_SIZES_GB = (16, 24, 40, 48, 80)


def fits(total_gb: float) -> str:
    for size in GPU_SIZES_GB:
        if total_gb <= size * 0.92:  # leave room for the CUDA context and fragmentation
            return f"{size} GB"
    return f"> {GPU_SIZES_GB[-1]} GB"


def format_table(
    shape: Shape,
    source: str,
    batch_size: int,
    seq_len: int,
    rank: int,
    precision: str,
    optimizer_8bit: bool = True,
    checkpointing: bool = True,
    targets: tuple[str, ...] = DEFAULT_TARGETS,
) -> str:
    methods = ("full", "lora", "qlora")
    rows = {
        m: estimate(shape, m, batch_size, seq_len, rank, targets, optimizer_8bit, checkpointing, fused_loss=False)
        for m in methods
    }
    fused = {
        m: estimate(shape, m, batch_size, seq_len, rank, targets, optimizer_8bit, checkpointing, fused_loss=True)
        for m in methods
    }
    other_ckpt = {
        m: estimate(shape, m, batch_size, seq_len, rank, targets, optimizer_8bit, not checkpointing, fused_loss=False)
        for m in methods
    }
    chosen = {"bf16": "lora", "fp32": "lora", "8bit": "lora", "4bit": "qlora"}.get(precision, "lora")
    headers = {
        "full": "full finetune",
        "lora": "LoRA (bf16)" + (" *" if chosen == "lora" else ""),
        "qlora": "QLoRA (4-bit)" + (" *" if chosen == "qlora" else ""),
    }
    lora_opt = "8-bit AdamW" if optimizer_8bit else "fp32 AdamW"
    lines = [
        f"Memory estimate for {shape.name} ({source}): {shape.total_params() / 1e9:.2f} B parameters, "
        f"{shape.layers} layers, hidden {shape.hidden}, {shape.heads} heads / {shape.kv_heads} KV heads, "
        f"intermediate {shape.intermediate}, vocab {shape.vocab}",
        f"Step of {batch_size} x {seq_len} = {batch_size * seq_len} tokens; LoRA rank {rank} on "
        f"{', '.join(targets)}; gradient checkpointing {'on' if checkpointing else 'off'}; "
        f"full finetune with fp32 AdamW, LoRA/QLoRA with {lora_opt}. Decimal GB (1e9 bytes).",
        "",
    ]
    label_width = 34
    col = 16
    lines.append("component".ljust(label_width) + "".join(headers[m].rjust(col) for m in methods))
    lines.append("-" * (label_width + col * len(methods)))

    def row(label: str, values: list[str]) -> None:
        lines.append(label.ljust(label_width) + "".join(v.rjust(col) for v in values))

    row("trainable parameters", [f"{rows[m].params_trainable / 1e6:,.1f} M" for m in methods])
    row("weights", [f"{rows[m].weights_gb:.2f}" for m in methods])
    row("trainable copies (LoRA, fp32)", [f"{rows[m].trainable_gb:.2f}" for m in methods])
    row("gradients", [f"{rows[m].gradients_gb:.2f}" for m in methods])
    row("optimizer state", [f"{rows[m].optimizer_gb:.2f}" for m in methods])
    row(
        f"activations ({'checkpointed' if checkpointing else 'all layers'})",
        [f"{rows[m].activations_gb:.2f}" for m in methods],
    )
    row("logits + loss (unfused fp32)", [f"{rows[m].logits_gb:.2f}" for m in methods])
    lines.append("-" * (label_width + col * len(methods)))
    row("total", [f"{rows[m].total_gb:.1f}" for m in methods])
    row("smallest GPU that fits", [fits(rows[m].total_gb) for m in methods])
    row("total with a fused/chunked loss", [f"{fused[m].total_gb:.1f}" for m in methods])
    row(
        f"total with checkpointing {'off' if checkpointing else 'on'}",
        [f"{other_ckpt[m].total_gb:.1f}" for m in methods],
    )
    lines += [
        "",
        f"* = this run's method (--precision {precision}). Tensors only: add ~1-2 GB for the CUDA context,",
        "allocator slack and kernel workspaces. Unsloth's offloaded checkpointing keeps layer inputs in CPU RAM,",
        "and its fused loss never builds the full logits, so its peaks sit near the 'fused' line or below.",
    ]
    return "\n".join(lines)
