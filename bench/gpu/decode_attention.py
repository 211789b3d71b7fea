"""Times one decode step's attention on the GPU at the 8B shape: SDPA over the whole static cache
(GQA decode) against flex attention over its filled blocks (FLEX_DECODE), both compiled, at a few
filled lengths, and checks that they agree. Prints one line per length.

    python bench/gpu/decode_attention.py --batch 181 --cache 1792
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from sfteval.model import attention  # noqa: E402


def sdpa_step(query, key, value, mask, scaling):
    batch, heads, _, dim = query.shape
    grouped = query.reshape(batch, key.shape[1], heads // key.shape[1], dim)
    out = torch.nn.functional.scaled_dot_product_attention(grouped, key, value, attn_mask=mask, scale=scaling)
    return out.reshape(batch, heads, 1, dim)


def timed(step, *args, repeats: int = 50) -> float:
    for _ in range(3):
        step(*args)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        step(*args)
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=181)
    parser.add_argument("--cache", type=int, default=1792, help="static cache length (whole 128-token blocks)")
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--kv-heads", type=int, default=8)
    parser.add_argument("--dim", type=int, default=128)
    args = parser.parse_args()
    device, dtype = "cuda", torch.bfloat16
    query = torch.randn(args.batch, args.heads, 1, args.dim, device=device, dtype=dtype)
    key, value = torch.randn(2, args.batch, args.kv_heads, args.cache, args.dim, device=device, dtype=dtype).unbind(0)
    scaling = args.dim**-0.5
    # fullgraph: a graph break here would also break transformers' compiled decode step.
    sdpa = torch.compile(sdpa_step, fullgraph=True)
    flex = torch.compile(attention.flex_decode_step, fullgraph=True)
    positions = torch.arange(args.cache, device=device)
    first = torch.randint(0, 100, (args.batch,), device=device)  # left padding per row
    for filled in (args.cache // 8, args.cache // 2, args.cache - 1):
        mask = ((positions[None, :] >= first[:, None]) & (positions[None, :] < filled))[:, None, None, :]
        a, b = sdpa(query, key, value, mask, scaling), flex(query, key, value, mask, scaling)
        error = (a.float() - b.float()).abs().max().item()
        t_sdpa, t_flex = timed(sdpa, query, key, value, mask, scaling), timed(flex, query, key, value, mask, scaling)
        print(
            f"filled {filled:5d}/{args.cache}: sdpa {t_sdpa * 1e3:.3f} ms, flex {t_flex * 1e3:.3f} ms per layer "
            f"(x{t_sdpa / t_flex:.2f}); max |difference| {error:.2e}"
        )


if __name__ == "__main__":
    main()
