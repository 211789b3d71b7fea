"""Talk to a base, instruct or finetuned model: one prompt, or an interactive loop.

python inference.py --lora lora_model_4bit --prompt "Name three primary colors."
python inference.py --model unsloth/Meta-Llama-3.1-8B-Instruct --precision bf16
python inference.py --model path/to/model.gguf --use-hf --precision bf16 --prompt "Hi"
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sfteval import cli

DEFAULT_MODEL = "unsloth/Meta-Llama-3.1-8B"


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_model_args(parser, default_model=DEFAULT_MODEL)
    parser.set_defaults(precision="4bit")
    parser.add_argument("--prompt", help="answer this one prompt and exit; without it, an interactive loop")
    parser.add_argument("--input", default="", help="optional alpaca `input` field for the prompt")
    parser.add_argument("--max-new-tokens", type=cli.positive_int, default=512)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling, used only with --temperature > 0")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    from sfteval import prompts
    from sfteval.model import generation, loading

    # First: bad sampling values fail before a model loads.
    settings = generation.GenerationSettings(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p
    )
    model_name = None if (args.lora and args.model == DEFAULT_MODEL) else args.model
    loaded = loading.load_model(
        loading.ModelSpec(model=model_name, precision=args.precision, use_hf=args.use_hf, lora=args.lora)
    )
    adapter_template = (loaded.adapter_train_config or {}).get("template")
    template = prompts.resolve_template(args.template, loaded.tokenizer, adapter_template)
    stop_ids = generation.stop_token_ids(loaded.tokenizer, loaded.model, template)
    info = loaded.info
    print(
        f"[{info['model']} | adapter {info['adapter']} | {info['precision']} | {info['loader']} | template {template}]",
        file=sys.stderr,
    )

    def answer(text: str) -> None:
        ids = prompts.encode(loaded.tokenizer, prompts.render(template, loaded.tokenizer, text, args.input))
        completion = generation.stream_one(loaded.model, loaded.tokenizer, ids, settings, stop_ids)
        if completion.stop_reason == "length":
            print(f"[stopped at --max-new-tokens {args.max_new_tokens}]", file=sys.stderr)

    if args.prompt is not None:
        answer(args.prompt)
        return 0
    print("Type a prompt and press Enter; an empty line or Ctrl-D quits.", file=sys.stderr)
    while True:
        try:
            text = input("> ").strip()
        except EOFError:
            break
        if not text:
            break
        answer(text)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
