"""Log evaluation results to Weights & Biases (one run per file, never twice) and write
results.md, the one table to paste into a write-up, with its charts.

python eval_wandb.py                               # every eval_responses/*.scores.json not logged yet
python eval_wandb.py --mmlu                        # also eval_results/: tinyMMLU files and lm-eval results_*.json
python eval_wandb.py --mmlu --compare              # then one comparison view, plus results.md and its PNGs
python eval_wandb.py --input eval_responses/x.scores.json --project sfteval --entity my-team
python eval_wandb.py --no-wandb                    # results.md and PNGs only, from both folders
WANDB_MODE=offline python eval_wandb.py --mmlu     # log without network; `wandb sync wandb/offline-run-*` later

Each run's config is the file's metadata and its summary the metrics with their 95%
intervals; tables hold the per-prompt (per-item) results, with per-instruction (per-subject)
bar charts. `<folder>/.wandb_index.json` maps each file's sha256 to its run, so re-running
logs only new files. --compare saves a W&B Report when wandb-workspaces is installed and
W&B is online, else a comparison run holding the combined table and grouped bar charts.
results.md (rows model x adapter x precision, from the --input files, else from both
folders) is written by --compare, --markdown or --no-wandb, and whenever wandb is not
installed; it is left alone when it already shows the same rows, and a changed table goes
to a free `results_N.md` (nothing is overwritten).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sfteval import cli

LOGGABLE = ("ifeval_scores", "tinymmlu_results", "lm_eval")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--input",
        nargs="+",
        metavar="FILE",
        help="files to log (ifeval_scores, tinymmlu_results or lm-eval results JSON) instead of the folders",
    )
    parser.add_argument("--mmlu", action="store_true", help="also log --results-dir (tinyMMLU and lm-eval files)")
    parser.add_argument("--compare", action="store_true", help="build one comparison view of every run, and results.md")
    parser.add_argument(
        "--markdown", metavar="OUT.md", help="write the results table here (default with --compare: results.md)"
    )
    parser.add_argument("--no-wandb", action="store_true", help="log nothing; write only results.md and its charts")
    parser.add_argument("--project", help="W&B project (default: $WANDB_PROJECT, else sfteval)")
    parser.add_argument("--entity", help="W&B entity (default: $WANDB_ENTITY, else your default entity)")
    parser.add_argument("--responses-dir", default="eval_responses", help="IFEval scores folder (default: %(default)s)")
    parser.add_argument("--results-dir", default="eval_results", help="tinyMMLU/lm-eval folder (default: %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    from sfteval.report import tables as report

    if args.input:
        from sfteval import records

        to_log = [records.require_file(p, "--input") for p in args.input]
    else:
        to_log = report.find_scores(args.responses_dir)
        if args.mmlu:
            mmlu = report.find_mmlu(args.results_dir)
            if not mmlu:
                print(f"notice: no tinyMMLU or lm-eval results in {args.results_dir}/", file=sys.stderr)
            to_log += mmlu
        if not to_log:
            searched = f"{args.responses_dir}/*.scores.json" + (f" or {args.results_dir}/" if args.mmlu else "")
            raise cli.UserError(f"nothing to log: no {searched}; run eval_score.py first, or pass --input FILE")
    results = [report.read_result_file(p, LOGGABLE) for p in to_log]

    wandb = None
    if not args.no_wandb:
        from sfteval.report import wandb_log

        try:
            wandb = wandb_log.load_wandb()
        except wandb_log.WandbUnavailable as err:
            print(f"notice: {err}; nothing is logged, results.md is written locally", file=sys.stderr)

    rows, written = [], []
    if args.compare or args.markdown or wandb is None:
        table = results if args.input else _all_results(args)
        rows = report.build_rows(table)
        if not rows:
            raise cli.UserError("no results to tabulate")
        written, changed = report.write_results(rows, args.markdown or "results.md")
        if changed:
            print("wrote " + ", ".join(str(p) for p in written))
        else:
            print(f"{written[0]} is up to date (same rows); nothing written")
    if wandb is None:
        return 0

    dest = wandb_log.Destination.from_args(args.project, args.entity)
    for result in results:
        outcome = wandb_log.log_file(result, dest, wandb)
        run = (outcome.entry or {}).get("run_id")
        print(
            f"{outcome.status}: {result.path}" + (f" -> run {run}" if run else "") + wandb_log.sync_hint(outcome.entry)
        )
    if args.compare:
        index_folder = results[0].path.parent
        markdown = report.results_markdown(rows)
        outcome = wandb_log.log_comparison(rows, written[1:], markdown, dest, index_folder, wandb)
        where = (outcome.entry or {}).get("report_url") or (outcome.entry or {}).get("run_id") or ""
        print(f"comparison {outcome.status}" + (f": {where}" if where else "") + wandb_log.sync_hint(outcome.entry))
    return 0


def _all_results(args: argparse.Namespace) -> list:
    from sfteval.report import tables as report

    paths = report.find_scores(args.responses_dir) + report.find_mmlu(args.results_dir)
    return [report.read_result_file(p, LOGGABLE) for p in paths]


if __name__ == "__main__":
    sys.exit(cli.run(main))
