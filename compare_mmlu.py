"""Compare two tinyMMLU runs from eval_mmlu.py question by question: both accuracies with 95%
intervals, the paired difference and the exact McNemar p-value. CPU only.

python compare_mmlu.py --model1 eval_results/base_bf16_tinymmlu_X.json --model2 eval_results/lora_bf16_tinymmlu_Y.json
python compare_mmlu.py --model1 A.json --model2 B.json --names base lora --json eval_results/mmlu_base_vs_lora.json
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sfteval import cli


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model1", required=True, metavar="FILE", help="first run (A)")
    parser.add_argument("--model2", required=True, metavar="FILE", help="second run (B), compared as B - A")
    parser.add_argument(
        "--names",
        nargs=2,
        default=("A", "B"),
        metavar=("NAME1", "NAME2"),
        help="labels for the two runs in the output, e.g. base lora (default: A B)",
    )
    parser.add_argument("--json", metavar="OUT.json", help="also write the comparison (never overwritten)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    from sfteval import records
    from sfteval.mmlu import compare as mmlu_compare

    result = mmlu_compare.compare(args.model1, args.model2)
    print(mmlu_compare.format_text(result, args.names))
    if args.json:
        document = records.derived_document(
            mmlu_compare.COMPARISON_KIND, [args.model1, args.model2], {**result, "names": list(args.names)}
        )
        print(f"wrote {records.write_json_atomic(args.json, document)}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
