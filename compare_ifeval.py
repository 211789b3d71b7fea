"""Compare two IFEval runs prompt by prompt: both runs' four accuracies with 95% intervals,
the paired differences, exact McNemar tests, per-instruction changes and the prompts that
flipped, with excerpts of both responses. Runs on the light scoring install (no torch).

python compare_ifeval.py --model1 eval_responses/base_4bit.scores.json --model2 eval_responses/lora_4bit.scores.json
python compare_ifeval.py --model1 base.json --model2 lora.json --names base lora --markdown cmp.md --plot cmp.png
python compare_ifeval.py --model1 a.jsonl --model2 b.jsonl --prompts ../shared/data/ifeval/input_data.jsonl
python compare_ifeval.py --model1 full_run.scores.json --model2 limit50.scores.json --common-only

Inputs: `.scores.json` files from eval_score.py are read; `ifeval_responses` files from
eval_generate.py and official {"prompt", "response"} JSONL are scored on the fly (official
JSONL takes its prompts from --prompts, else the hub's google/IFEval). Runs on different
prompt sets are refused unless --common-only pairs them on the prompts they share.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sfteval import cli


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model1", required=True, metavar="FILE", help="first run (A): scores, responses or official JSONL"
    )
    parser.add_argument("--model2", required=True, metavar="FILE", help="second run (B), compared as B - A")
    parser.add_argument(
        "--prompts",
        metavar="FILE",
        help="prompt set for scoring on the fly: a local input_data.jsonl or google/IFEval (official JSONL: the hub's by default)",
    )
    parser.add_argument(
        "--names", nargs=2, metavar=("NAME1", "NAME2"), default=("A", "B"), help="labels of the two runs (default: A B)"
    )
    parser.add_argument(
        "--common-only",
        action="store_true",
        help="pair the runs on the prompts both hold (same key, text and instructions) instead of refusing",
    )
    parser.add_argument("--markdown", metavar="OUT.md", help="also write the full report as markdown")
    parser.add_argument("--plot", metavar="OUT.png", help="also write a chart: accuracies and per-instruction changes")
    parser.add_argument("--json", metavar="OUT.json", help="also write the comparison as JSON (kind ifeval_comparison)")
    parser.add_argument(
        "--max-flips",
        type=cli.positive_int,
        metavar="N",
        default=10,
        help="flipped prompts printed per direction (all go to --markdown/--json; default: %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    outputs = [Path(p) for p in (args.markdown, args.plot, args.json) if p]
    for path in outputs:
        if path.exists():
            raise cli.UserError(f"{path} already exists; choose another output name (nothing is overwritten)")
    if len(set(outputs)) != len(outputs):
        raise cli.UserError("--markdown, --plot and --json must name different files")

    from sfteval import records
    from sfteval.ifeval import compare

    docs = [compare.load_run(path, args.prompts) for path in (args.model1, args.model2)]
    comparison = compare.compare(docs[0], docs[1], common_only=args.common_only, names=tuple(args.names))
    print(compare.format_text(comparison, max_flips=args.max_flips), end="")

    if args.json:
        document = records.derived_document(
            compare.KIND, [args.model1, args.model2], comparison, common_only=args.common_only, prompts=args.prompts
        )
        print(f"wrote {records.write_json_atomic(args.json, document)}")
    plot_link = None
    if args.plot:
        from sfteval.report import tables as report

        plot = report.plot_comparison(comparison, args.plot)
        print(f"wrote {plot}")
        if args.markdown:
            plot_link = Path(os.path.relpath(plot.resolve(), Path(args.markdown).resolve().parent)).as_posix()
    if args.markdown:
        text = compare.format_markdown(comparison, plot_name=plot_link)
        print(f"wrote {records.write_text_atomic(args.markdown, text)}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
