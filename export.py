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

import sys
from collections.abc import Sequence

from sfteval import cli
from sfteval.model.export import ExportSettings


def main(argv: Sequence[str] | None = None) -> int:
    (settings,) = cli.parse_settings([ExportSettings], argv, __doc__)
    from sfteval.model import export

    result = export.run(settings)
    if result.hub_url:
        print(f"uploaded to {result.hub_url}", file=sys.stderr)
    print(result.output)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
