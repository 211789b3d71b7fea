"""NF4 dequantization written in torch, so that a compiled 4-bit decode step fuses it.

At a batched decode step bitsandbytes' 4-bit linear layer dequantizes its whole weight to bf16
with its own CUDA kernel and then calls a bf16 matmul. On the Llama-3.1-8B shape (H100, 181 rows,
compiled with CUDA graphs) that made each step 59.7 ms against 21.7 ms in bf16
(h100_2026-11-27_s5/bench_generate_compiled_quant.json under docs/runs/ at commit fac9ff7): the dequantization alone cost
more than the rest of the step. Written as plain tensor operations on the same packed weights
(the same bytes, the same lookup table and scales, nothing requantized), torch.compile turns it
into one fused kernel that reads half a byte and writes two bytes per weight.

The layout read here is bitsandbytes' NF4 storage: two 4-bit codes per byte, the first in the high
nibble; one absmax per block of `blocksize` weights; with double quantization the absmaxes are
themselves 8-bit codes with one float scale per `state2.blocksize` of them, plus an offset.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def dequantize_absmax(codes: torch.Tensor, code: torch.Tensor, scales: torch.Tensor, blocksize: int, offset: Any):
    """The float32 per-block absmax of a double-quantized weight."""
    block = torch.arange(codes.numel(), device=codes.device) // blocksize
    return code[codes.long()] * scales[block] + offset


def dequantize_nf4(
    packed: torch.Tensor, code: torch.Tensor, absmax: torch.Tensor, blocksize: int, shape: tuple[int, ...], dtype
) -> torch.Tensor:
    """The weight of `shape` in `dtype` from its packed 4-bit codes and float32 block absmax."""
    flat = packed.reshape(-1)
    # Interleaving the nibbles before the table lookup: on the H100 the other order (a lookup per
    # nibble, then interleaving the values) made a compiled 8B decode step 53.6 ms instead of 37.5.
    codes = torch.stack((flat >> 4, flat & 0xF), dim=-1).reshape(-1, blocksize).long()
    return (code[codes] * absmax[:, None]).reshape(shape).to(dtype)


class CompiledNF4Linear(torch.nn.Module):
    """A bitsandbytes NF4 `Linear4bit`'s forward pass with the dequantization in torch.

    It holds the original layer's tensors (no copies) and gives the same output as that layer's
    dequantize-then-matmul path. Meant for compiled decoding only: run eagerly, it is slower.
    """

    def __init__(self, layer: Any) -> None:
        super().__init__()
        state = layer.weight.quant_state
        self.in_features, self.out_features = layer.in_features, layer.out_features
        self.blocksize = state.blocksize
        self.dtype = layer.compute_dtype or state.dtype
        self.nested = bool(state.nested)
        self.register_buffer("packed", layer.weight.data, persistent=False)
        self.register_buffer("code", state.code, persistent=False)
        self.register_buffer("absmax", state.absmax, persistent=False)
        self.bias = layer.bias
        if self.nested:
            self.absmax_blocksize = state.state2.blocksize
            self.register_buffer("absmax_code", state.state2.code, persistent=False)
            self.register_buffer("absmax_scales", state.state2.absmax, persistent=False)
            self.register_buffer("absmax_offset", torch.as_tensor(state.offset), persistent=False)

    def weight_absmax(self) -> torch.Tensor:
        if not self.nested:
            return self.absmax.float()
        return dequantize_absmax(
            self.absmax, self.absmax_code, self.absmax_scales, self.absmax_blocksize, self.absmax_offset
        )

    def dequantized_weight(self) -> torch.Tensor:
        shape = (self.out_features, self.in_features)
        return dequantize_nf4(self.packed, self.code, self.weight_absmax(), self.blocksize, shape, self.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(self.dtype)
        return torch.nn.functional.linear(x.to(self.dtype), self.dequantized_weight(), bias).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, nested={self.nested}"


def replace_nf4_layers(model: Any, make: Callable[[Any], torch.nn.Module]) -> int:
    """Replace every NF4 `Linear4bit` in `model` (PEFT wrappers included) by `make(layer)`.

    Returns how many layers were replaced. Layers of other 4-bit types are left as they are.
    """
    from bitsandbytes.nn import Linear4bit

    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Linear4bit) and child.weight.quant_state.quant_type == "nf4":
                setattr(parent, name, make(child))
                replaced += 1
    return replaced


def use_compiled_nf4(model: Any) -> int:
    """Every NF4 layer dequantizes its weight in torch code at each call (for compiled decoding)."""
    return replace_nf4_layers(model, CompiledNF4Linear)


def dequantized_linear(layer: Any) -> torch.nn.Linear:
    """A plain `Linear` holding the layer's weight as bitsandbytes dequantizes it, bit for bit."""
    source = CompiledNF4Linear(layer)
    with torch.no_grad():
        weight = source.dequantized_weight()
    linear = torch.nn.Linear(source.in_features, source.out_features, bias=False, device="meta")
    linear.weight = torch.nn.Parameter(weight, requires_grad=False)
    if layer.bias is not None:
        linear.bias = torch.nn.Parameter(layer.bias.data.to(weight.dtype), requires_grad=False)
    return linear


def dequantized_bytes(model: Any) -> int:
    """Bytes the NF4 layers' weights take once dequantized to bf16."""
    from bitsandbytes.nn import Linear4bit

    return sum(
        2 * layer.in_features * layer.out_features
        for layer in model.modules()
        if isinstance(layer, Linear4bit) and layer.weight.quant_state.quant_type == "nf4"
    )


def dequantize_once(model: Any) -> int:
    """Every NF4 layer becomes a bf16 `Linear` with its dequantized weight, once, at load.

    The weights are bitsandbytes' own, bit for bit, so a run keeps the 4-bit model's answers up to
    the matmul's rounding, at bf16's speed and with bf16's memory. bitsandbytes 0.50 picks per
    layer shape and GPU between its fused 4-bit kernel and dequantize-then-`F.linear`, which is this
    exact arithmetic: on the Llama-3.1-8B shapes it takes the latter from 33 rows a batch on an H100
    and from 65 on an A100 (its `_gemm_4bit_use_custom_cuda`), while on SmolLM2's small MLP weights
    it keeps the fused kernel up to 512 rows, and there the greedy answers drift apart.
    """
    return replace_nf4_layers(model, dequantized_linear)
