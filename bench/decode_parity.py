"""Do two decode paths give the same greedy answers? Responses files of one model (eval_generate.py
with another --speed, kernel or machine) against a reference file: how many answers are identical,
where the others part, and how close a judge model finds the two choices at that first diverging
token. bf16 keeps 8 significant bits, so two logits near 16-32 that differ by 0.125 or less can
swap order under any change of kernel: such a divergence is rounding, not a different model.

  python bench/decode_parity.py --model M --reference eager.json --runs compiled.json layers_once.json
  python bench/decode_parity.py --model M --precision fp32 --reference a.json --runs b.json   # on a CPU

The judge is --model at --precision (default bf16 on a GPU, fp32 on a CPU), fed the prompt as the
reference file's template renders it plus the common prefix of the two answers. Answers are
compared as the tokenizer encodes their text. Writes eval_results/decode_parity_<time>.json
(--output to choose) and prints one line per run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sfteval import cli, records, schemas  # noqa: E402


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the judge: the model that wrote the files (folder or .gguf)")
    parser.add_argument("--reference", required=True, help="responses file of the reference decode path")
    parser.add_argument("--runs", nargs="+", required=True, help="responses files to compare with it")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default=None, help="judge precision")
    parser.add_argument("--output", type=Path, default=None)
    return parser


def read_responses(path: str) -> dict[str, Any]:
    return schemas.validate(records.read_json(path, "responses file"), "ifeval_responses", path)


def answer_ids(tokenizer: Any, row: dict[str, Any]) -> list[int]:
    return tokenizer(row["response"], add_special_tokens=False)["input_ids"]


def compare_run(model: Any, tokenizer: Any, reference: dict, run: dict, path: str) -> dict[str, Any]:
    from sfteval import prompts
    from sfteval.model import parity

    template = reference["metadata"]["template"]
    stop_ids = reference["metadata"]["generation"]["stop_token_ids"]
    theirs = {row["key"]: row for row in run["responses"]}
    shared = [row for row in reference["responses"] if row["key"] in theirs]
    if not shared:
        raise cli.UserError(f"{path} shares no prompt key with --reference")
    margins = []
    for row in shared:
        prompt_ids = prompts.encode(tokenizer, prompts.render(template, tokenizer, row["prompt"]))
        margin = parity.divergence_margin(
            model, prompt_ids, answer_ids(tokenizer, row), answer_ids(tokenizer, theirs[row["key"]]), stop_ids
        )
        margins.append(margin and {"key": row["key"], **margin})
    return {"file": path, **parity.margin_summary(margins), "rows": [m for m in margins if m]}


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    reference = read_responses(args.reference)
    runs = {path: read_responses(path) for path in args.runs}
    output = records.check_new_file(
        args.output or Path("eval_results") / f"decode_parity_{records.timestamp()}.json", "--output"
    )
    import torch

    from sfteval.model import loading

    precision = args.precision or ("bf16" if torch.cuda.is_available() else "fp32")
    loaded = loading.load_model(loading.ModelSpec(model=args.model, precision=precision, use_hf=True))
    results = []
    for path, run in runs.items():
        result = compare_run(loaded.model, loaded.tokenizer, reference, run, path)
        results.append(result)
        print(
            f"{Path(path).name}: {result['identical']} of {result['n']} identical; the others part at token "
            f"{result['median_first_divergence']} (median), logit gap there {result['median_logit_gap']} (median), "
            f"{result['gap_at_most_0.125']} within 0.125, {result['both_in_top2']} with both tokens in the top 2"
        )
    document = records.envelope(
        "decode_parity",
        records.run_metadata(judge=args.model, judge_precision=precision, reference=args.reference),
        runs=results,
    )
    records.write_json_atomic(output, document)
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
