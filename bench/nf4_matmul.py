"""One decode step's 4-bit matmuls on the Llama-3.1-8B shape: how long each way of computing them takes.

For each linear-layer shape of the 8B (q/o, k/v, gate/up, down) at ROWS input rows (one decode step
of a batch), times on one CUDA GPU:
  bf16         the bf16 weight's matmul (cuBLAS): what a 4-bit step is compared with
  bnb          bitsandbytes' Linear4bit forward (its dequantization kernel, then a bf16 matmul)
  bnb-dequant  bitsandbytes' dequantization alone
  torch-dequant        sfteval.model.nf4's dequantization, compiled (the same bytes, one fused kernel)
  torch-dequant-lookup-first  the other order (a table lookup per nibble, then the values interleaved),
                       compiled: slower on the H100, so sfteval.model.nf4 interleaves first
  torch                sfteval.model.nf4's linear, compiled as eval_generate.py --compile does (mode reduce-overhead)
  torch-autotune       the same with mode max-autotune: Triton matmul templates that can fuse the
                       dequantization into the matmul's loads (inductor's prologue fusion)
and prints milliseconds per call, the sum over one decode step (32 layers), the dequantization's
effective bandwidth (half a byte read and two written per weight), and each output's largest
difference from bitsandbytes'.

  python bench/nf4_matmul.py --rows 181 --json eval_results/nf4_matmul.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sfteval import cli, records  # noqa: E402

# (out_features, in_features) and how many of each one decoder layer of Llama-3.1-8B has
SHAPES = {"q/o": ((4096, 4096), 2), "k/v": ((1024, 4096), 2), "gate/up": ((14336, 4096), 2), "down": ((4096, 14336), 1)}
LAYERS = 32
WAYS = ("bf16", "bnb", "bnb-dequant", "torch-dequant", "torch-dequant-lookup-first", "torch", "torch-autotune")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=cli.positive_int, default=181, help="input rows (default: %(default)s)")
    parser.add_argument("--iters", type=cli.positive_int, default=50, help="timed calls per way (default: %(default)s)")
    parser.add_argument("--ways", nargs="+", choices=WAYS, default=list(WAYS))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser


def time_ms(fn, iters: int) -> float:
    import torch

    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def nf4_layer(weight):
    """A bitsandbytes NF4 layer (double-quantized, bf16 compute, as loading.bnb_config loads) of `weight`."""
    import torch
    from bitsandbytes.nn import Linear4bit, Params4bit

    out_features, in_features = weight.shape
    layer = Linear4bit(in_features, out_features, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4")
    layer.weight = Params4bit(weight.cpu(), requires_grad=False, quant_type="nf4", compress_statistics=True)
    return layer.cuda()


def dequantize_lookup_first(layer):
    """NF4 dequantization with a table lookup per nibble before interleaving the values."""
    import torch

    pairs = layer.packed.reshape(-1, layer.blocksize // 2)
    high, low = layer.code[(pairs >> 4).long()], layer.code[(pairs & 0xF).long()]
    values = torch.stack((high, low), dim=-1).reshape(-1, layer.blocksize) * layer.weight_absmax()[:, None]
    return values.reshape(layer.out_features, layer.in_features).to(layer.dtype)


def measure_shape(shape: tuple[int, int], rows: int, ways: list[str], iters: int) -> dict[str, dict]:
    import torch
    from bitsandbytes.functional import dequantize_4bit

    from sfteval.model import nf4

    torch.manual_seed(0)
    weight = torch.randn(shape, dtype=torch.bfloat16, device="cuda") * 0.02
    layer = nf4_layer(weight)
    x = torch.randn(rows, shape[1], dtype=torch.bfloat16, device="cuda")
    swapped = nf4.CompiledNF4Linear(layer)
    with torch.no_grad():
        reference = layer(x)
        calls = {
            "bf16": lambda: torch.nn.functional.linear(x, weight),
            "bnb": lambda: layer(x),
            "bnb-dequant": lambda: dequantize_4bit(layer.weight.data, layer.weight.quant_state),
            "torch-dequant": torch.compile(swapped.dequantized_weight),
            "torch-dequant-lookup-first": torch.compile(lambda: dequantize_lookup_first(swapped)),
            "torch": lambda: compiled(x),
            "torch-autotune": lambda: autotuned(x),
        }
        compiled = torch.compile(swapped, mode="reduce-overhead")
        autotuned = torch.compile(swapped, mode="max-autotune")
        figures = {}
        for way in ways:
            started = time.perf_counter()
            output = calls[way]().clone()  # a CUDA graph overwrites its output at the next call
            first_s = time.perf_counter() - started
            entry = {"ms": round(time_ms(calls[way], iters), 4), "first_call_s": round(first_s, 1)}
            if output.shape == reference.shape:
                entry["max_abs_diff_vs_bnb"] = float((output.float() - reference.float()).abs().max())
            figures[way] = entry
    return figures


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    import torch
    import torch._dynamo

    if not torch.cuda.is_available():
        raise SystemExit("error: this benchmark needs a CUDA GPU")
    torch._dynamo.config.cache_size_limit = 64  # one compiled graph per shape and mode
    results = {}
    for name, (shape, _count) in SHAPES.items():
        results[name] = measure_shape(shape, args.rows, args.ways, args.iters)
        print(name, json.dumps(results[name]), flush=True)
    per_step = {
        way: round(sum(results[n][way]["ms"] * count * LAYERS for n, (_, count) in SHAPES.items()), 2)
        for way in args.ways
    }
    weights = sum(out * inp * count * LAYERS for (out, inp), count in SHAPES.values())
    print(f"\n{args.rows} rows; ms per decode step of the 8B's {LAYERS} layers ({weights / 1e9:.2f}B weights):")
    for way, ms in per_step.items():
        bandwidth = f"  ({weights * 2.5 / ms / 1e9:.2f} TB/s at 2.5 bytes a weight)" if "dequant" in way else ""
        print(f"  {way:15s} {ms:8.2f}{bandwidth}")
    if args.json:
        document = records.envelope(
            "nf4_matmul",
            records.run_metadata(rows=args.rows, iters=args.iters),
            shapes={name: list(shape) for name, (shape, _) in SHAPES.items()},
            per_shape_ms=results,
            per_step_ms=per_step,
        )
        records.write_json_atomic(args.json, document)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
