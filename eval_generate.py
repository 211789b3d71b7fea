"""IFEval responses for any model, precision and adapter: fast, resumable, self-describing.

python eval_generate.py --model unsloth/Meta-Llama-3.1-8B --precision bf16          # base
python eval_generate.py --model unsloth/Meta-Llama-3.1-8B-Instruct --precision bf16 # instruct
python eval_generate.py --lora lora_model_4bit --precision 4bit      # base model and template from the adapter
python eval_generate.py --model M --precision 4bit --dequantize-once # 4-bit weights, bf16's decode speed
python eval_generate.py --model M --prompts ../shared/data/ifeval/input_data.jsonl --limit 20 --max-new-tokens 64
python eval_generate.py --config my_run.yaml --precision 8bit        # settings from YAML, flags override
python eval_generate.py --model M --precision 4bit --resume          # complete the newest matching run

On a CUDA GPU the default is the fast path: the transformers loader, GQA decode, the largest
balanced batches the free memory holds, and a compiled static-cache decode step when the run is
long enough to repay the compile; the first line printed says what was chosen and why.
--speed eager, --loader unsloth and the single knobs override it.

Writes eval_responses/<model>[_<adapter>]_<precision>_<YYYYmmdd_HHMMSS>.json (format
`ifeval_responses`, docs/FORMATS.md) and, next to it, <same stem>.official.jsonl for Google's
scorer. While it runs, every finished batch is appended to <same stem>.partial.jsonl; after a
crash, the same command with --resume completes the run (and refuses if the settings differ).
Nothing is ever overwritten. Greedy decoding; each answer stops at its own EOS or at
--max-new-tokens (1280 by default, lm-eval's IFEval setting).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from sfteval import cli
from sfteval.ifeval.run import RunConfig


def main(argv: Sequence[str] | None = None) -> int:
    (config,) = cli.parse_settings([RunConfig], argv, __doc__)
    if not config.compile and config.speed == "eager":
        # The dynamic KV cache grows by one token per step; expandable segments keep the
        # allocator from fragmenting into an out-of-memory error (left alone for CUDA graphs).
        os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    from sfteval.ifeval import run as ifeval_run

    result = ifeval_run.run(config)
    if result.status == "already complete":
        print(f"{result.output} is already complete; nothing to do", file=sys.stderr)
    else:
        s = result.summary
        reasons = ", ".join(f"{n} {reason}" for reason, n in s["stop_reasons"].items())
        peak = "" if s["peak_gpu_memory_gb"] is None else f", peak {s['peak_gpu_memory_gb']} GB"
        print(
            f"{s['n_prompts']} responses ({reasons}); {s['tokens_generated']} tokens in {s['wall_seconds']:.1f} s "
            f"= {s['tokens_per_second'] or 0:.0f} tokens/s{peak}",
            file=sys.stderr,
        )
    print(result.output)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
