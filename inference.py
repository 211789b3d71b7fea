"""Talk to a base, instruct or finetuned model: one prompt, or an interactive loop.

python inference.py --lora lora_model_4bit --prompt "Name three primary colors."
python inference.py --model unsloth/Meta-Llama-3.1-8B-Instruct --precision bf16
python inference.py --model path/to/model.gguf --use-hf --precision bf16 --prompt "Hi"
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sfteval import cli
from sfteval.model.settings import ModelSettings


@dataclass
class ChatModelSettings(ModelSettings):
    precision: Literal["bf16", "8bit", "4bit", "fp32"] = cli.setting(
        "4bit", "weights precision (4bit by default: talking needs the least memory, not reference numbers)"
    )


@dataclass
class ChatSettings:
    template: Literal["auto", "chat", "alpaca", "none"] = cli.setting(
        "auto", "prompt format: auto = the adapter's training template, else the tokenizer's chat template, else none"
    )
    prompt: str | None = cli.setting(None, "answer this one prompt and exit; without it, an interactive loop")
    input: str = cli.setting("", "optional alpaca `input` field for the prompt")
    max_new_tokens: int = cli.setting(512, "new tokens at most per answer")
    temperature: float = cli.setting(0.0, "0 = greedy")
    top_p: float = cli.setting(0.9, "nucleus sampling, used only with --temperature above 0")


def main(argv: Sequence[str] | None = None) -> int:
    model_settings, args = cli.parse_settings([ChatModelSettings, ChatSettings], argv, __doc__)
    from sfteval import prompts
    from sfteval.model import generation, loading

    # First: bad sampling values fail before a model loads.
    settings = generation.GenerationSettings(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p
    )
    loaded = loading.load_model(model_settings.spec())
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
