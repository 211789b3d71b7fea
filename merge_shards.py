"""Join the shard files of one IFEval generation run (eval_generate.py with shard i/N) into the
responses file one process would have written, plus its .official.jsonl.

python merge_shards.py eval_responses/RUN.shard0of2.json eval_responses/RUN.shard1of2.json   # -> eval_responses/RUN.json
python merge_shards.py eval_responses/RUN.shard*of4.json --output eval_responses/run_all.json

The shards must come from one run (same model, adapter, precision, template, generation settings
and prompts); each one's sessions, hosts and timings are kept in the metadata. Under
`accelerate launch` the main process merges by itself. Nothing is overwritten.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sfteval import cli


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shards", nargs="+", metavar="SHARD", help="the N files <name>.shard<i>of<N>.json")
    parser.add_argument("--output", metavar="FILE", help="the joined .json (default: <name>.json next to the shards)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    from sfteval.ifeval import shards

    print(shards.merge(args.shards, args.output))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
