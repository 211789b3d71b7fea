"""Score IFEval responses on a CPU: strict and loose, prompt- and instruction-level, per
instruction and per category, with 95% bootstrap intervals. Built on lm-eval's checkers,
matching Google's scorer, and deterministic (the official one is random on a few items).

python eval_score.py --input eval_responses/Meta-Llama-3.1-8B_lora_model_4bit_4bit_20250101_120000.json
python eval_score.py --input responses.official.jsonl --prompts input_data.jsonl --official-out eval_results/official
python eval_score.py --input crashed_run.json --allow-missing --output crashed_run.partial.scores.json
python eval_score.py --self-check

Input: an `ifeval_responses` JSON file from eval_generate.py, or official IFEval JSONL with
one {"prompt", "response"} per line (its prompts come from --prompts, else the hub's
google/IFEval). Output: `<input stem>.scores.json` next to the input (a gzipped input is read as it is), never overwritten
(format `ifeval_scores` in docs/FORMATS.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from sfteval import cli

OFFICIAL_NAMES = {"strict": "eval_results_strict.jsonl", "loose": "eval_results_loose.jsonl"}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--input", metavar="FILE", help="responses: ifeval_responses .json or official .jsonl")
    what.add_argument(
        "--self-check",
        action="store_true",
        help="score two built-in responses and check their verdicts (tests the install; needs no data)",
    )
    parser.add_argument(
        "--output", metavar="FILE", help="scores file (default: <input stem>.scores.json, a free name next to it)"
    )
    parser.add_argument(
        "--prompts",
        metavar="FILE",
        help="prompt set: a local input_data.jsonl or google/IFEval; official JSONL input defaults to the hub's",
    )
    parser.add_argument(
        "--official-out",
        metavar="DIR",
        help="also write eval_results_strict.jsonl and eval_results_loose.jsonl (Google's format) in DIR",
    )
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="score a file holding fewer responses than its metadata promises (e.g. a crashed run)",
    )
    return parser


def input_path(text: str) -> Path:
    """The responses file to score; an empty name (what `$(ls -t ...)` gives when no run exists yet)
    or a folder is refused in one line."""
    if not text.strip():
        raise cli.UserError(
            "--input is empty: no responses file was named (no run yet? make one with eval_generate.py, "
            "or on a CPU try `python run_pipeline.py --smoke`)"
        )
    path = Path(text)
    if path.is_dir():
        raise cli.UserError(f"--input {path} is a folder; name a responses .json (or official .jsonl) file in it")
    return path


def run_stem(source: Path) -> str:
    """The name without .gz and the format suffix: run.json.gz and run.json both give `run`."""
    name = source.name[: -len(".gz")] if source.name.endswith(".gz") else source.name
    return Path(name).stem


def output_paths(args: argparse.Namespace) -> tuple[Path, dict[str, Path]]:
    """Where the scores and official files go; refused before any scoring if taken."""
    from sfteval import records

    source = input_path(args.input)
    if args.output:
        scores = records.check_new_file(args.output, "--output")
    else:
        scores = records.check_new_file(records.unique_path(source.with_name(f"{run_stem(source)}.scores.json")))
    official = {}
    if args.official_out:
        if Path(args.official_out).exists() and not Path(args.official_out).is_dir():
            raise cli.UserError(f"--official-out {args.official_out} is a file, not a folder; name a folder")
        official = {mode: Path(args.official_out) / name for mode, name in OFFICIAL_NAMES.items()}
        taken = [str(p) for p in official.values() if p.exists()]
        if taken:
            raise cli.UserError(f"{', '.join(taken)} already exist(s); choose another --official-out folder")
        records.check_writable_folder(args.official_out, "--official-out folder")
    return scores, official


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    from sfteval import records
    from sfteval.ifeval import scoring as ifeval

    if args.self_check:
        print(ifeval.self_check())
        return 0
    scores_path, official_paths = output_paths(args)
    document = ifeval.score_file(args.input, prompts=args.prompts, allow_missing=args.allow_missing, progress=True)
    metadata = document["metadata"]
    print(ifeval.summary_table(document))
    promised = metadata.get("n_prompts")
    scored = metadata["n_prompts_scored"]
    if metadata.get("limit"):
        print(f"note: the file was made with --limit {metadata['limit']}; n = {scored} prompts")
    in_set = (metadata.get("prompt_set") or {}).get("n_prompts")
    if metadata.get("input_format") == "official_jsonl" and isinstance(in_set, int) and in_set > scored:
        print(f"note: the file answers {scored} of the {in_set} prompts in the prompt set")
    if isinstance(promised, int) and promised > scored:
        print(f"note: --allow-missing: scored {scored} of {promised} promised responses, {promised - scored} missing")
    records.write_json_atomic(scores_path, document)
    print(f"wrote {scores_path}")
    for mode, path in official_paths.items():
        rows = ifeval.official_rows(document["per_prompt"], mode)
        records.write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
