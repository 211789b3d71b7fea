"""Merge a LoRA adapter into its base model and save a standalone Hugging Face model folder;
optionally push it to the hub.

python export.py --lora lora_model_4bit                              # -> lora_model_4bit_merged/ (bf16)
python export.py --lora lora_model_bf16 --output-dir llama31-alpaca \\
    --ifeval-scores eval_responses/RUN.scores.json --tinymmlu eval_results/RUN_tinymmlu_T.json
python export.py --lora lora_model_bf16 --push-to-hub user/llama31-alpaca --private   # after `hf auth login`
python export.py --lora lora_cpu --precision fp32                    # CPU reference

The folder holds safetensors weights, the adapter's tokenizer with the alpaca template as its
chat_template, a generation config whose EOS is the trained one, README.md (model card with
train_config and the given scores), train_config.json and sfteval_export.json. A 4-bit-trained
(QLoRA) adapter is merged onto the bf16 base, with a note on what that changes. The largest logit
difference between the merged model and base + adapter on a few prompts is printed and recorded.
The merged folder loads with plain transformers, `eval_generate.py --model DIR` and
`inference.py --model DIR`. The hub token is read by huggingface_hub; it is never printed or written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sfteval import cli


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lora", metavar="DIR", required=True, help="adapter folder written by train.py")
    parser.add_argument("--model", help="base model (default: the adapter's recorded base model)")
    parser.add_argument(
        "--output-dir", metavar="DIR", help="merged model folder, must not exist (default: <lora>_merged)"
    )
    parser.add_argument(
        "--precision",
        choices=("bf16", "fp32"),
        default="bf16",
        help="weights of the merged model; a quantized base cannot take the merge (default: %(default)s)",
    )
    parser.add_argument("--ifeval-scores", metavar="FILE", help="eval_score.py's scores file, for the model card")
    parser.add_argument("--tinymmlu", metavar="FILE", help="eval_mmlu.py's results file, for the model card")
    parser.add_argument(
        "--push-to-hub", metavar="REPO", help="upload the folder to this hub repo (user/name) with your hub login"
    )
    parser.add_argument("--private", action="store_true", help="with --push-to-hub: create the repo as private")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if args.private and not args.push_to_hub:
        raise cli.UserError("--private needs --push-to-hub REPO")
    from sfteval.model import export

    result = export.run(
        export.ExportSettings(
            lora=args.lora,
            output_dir=args.output_dir,
            model=args.model,
            precision=args.precision,
            ifeval_scores=args.ifeval_scores,
            tinymmlu=args.tinymmlu,
            push_to_hub=args.push_to_hub,
            private=args.private,
        )
    )
    if result.hub_url:
        print(f"uploaded to {result.hub_url}", file=sys.stderr)
    print(result.output)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
