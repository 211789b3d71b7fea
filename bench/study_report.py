"""Write the controlled study's report from the files of one study folder (layout in
sfteval/report/study.py): the conditions table, the paired effects (template, weights, seed, recipe,
precision), the same on answers clean in both runs, and two charts. Every figure is recomputed from
the files; the report starts with this command and ends with the inputs' sha256.

    python bench/study_report.py --study STUDY --markdown STUDY/report.md --charts-dir STUDY/charts
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sfteval import cli  # noqa: E402
from sfteval.report import study  # noqa: E402


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--study", type=Path, required=True, help="the study folder (eval_responses/, eval_results/, adapters/)"
    )
    parser.add_argument("--markdown", type=Path, required=True, help="the report to write (never overwritten)")
    parser.add_argument("--charts-dir", type=Path, help="where the PNG charts go (default: the report's folder)")
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = make_parser().parse_args(argv)
    command = shlex.join(["python", "bench/study_report.py", *argv])
    charts_dir = args.charts_dir or args.markdown.parent
    for path in study.write_report(args.study, args.markdown, charts_dir, command):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
