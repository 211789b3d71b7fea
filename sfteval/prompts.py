"""Prompt formats shared by training and inference: alpaca, the tokenizer's chat template, raw.

`resolve_template` decides what `--template auto` means for a given tokenizer and adapter;
`render` turns one instruction into prompt text; `encode` tokenizes it without a double BOS.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from sfteval.cli import UserError

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
CONCRETE_TEMPLATES = ("alpaca", "chat", "none")


@cache
def alpaca_template() -> dict[str, str]:
    return json.loads((TEMPLATE_DIR / "alpaca.json").read_text(encoding="utf-8"))


def alpaca_prompt(instruction: str, input_text: str = "") -> str:
    template = alpaca_template()
    if input_text and input_text.strip():
        return template["prompt_input"].format(instruction=instruction, input=input_text)
    return template["prompt_no_input"].format(instruction=instruction)


def alpaca_response(full_text: str) -> str:
    """The answer part of a decoded alpaca text; the whole text if the marker is missing."""
    marker = alpaca_template()["response_split"]
    head, found, tail = full_text.partition(marker)
    return tail.strip() if found else full_text.strip()


def alpaca_chat_template(tokenizer: Any) -> str:
    """The alpaca template as a Jinja chat template, for a tokenizer saved with an adapter or a
    merged model: a user turn renders exactly `alpaca_prompt(content)` (so it already ends where
    the answer starts), an assistant turn is its content and EOS, as training wrote it. BOS leads
    when the tokenizer adds one on encode, so `apply_chat_template(..., tokenize=True)` gives the
    token ids training and `encode` give."""
    head, _, tail = alpaca_template()["prompt_no_input"].partition("{instruction}")
    bos = "{{ bos_token }}" if tokenizer_adds_bos(tokenizer) else ""
    return (
        bos + "{% for message in messages %}"
        "{% if message['role'] == 'user' %}"
        f"{{{{ {json.dumps(head)} + message['content'] + {json.dumps(tail)} }}}}"
        "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
        "{% else %}{{ raise_exception('the alpaca template has only user and assistant turns') }}"
        "{% endif %}{% endfor %}"
    )


def tokenizer_adds_bos(tokenizer: Any) -> bool:
    bos_id = getattr(tokenizer, "bos_token_id", None)
    ids = tokenizer("x")["input_ids"]
    return bos_id is not None and bool(ids) and ids[0] == bos_id


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def resolve_template(requested: str, tokenizer: Any, adapter_template: str | None = None) -> str:
    """Turn `auto` into a concrete template; refuse `chat` for a tokenizer without one."""
    if requested == "auto":
        if adapter_template:
            return adapter_template
        return "chat" if has_chat_template(tokenizer) else "none"
    if requested == "chat" and not has_chat_template(tokenizer):
        raise UserError("this tokenizer has no chat template; use --template alpaca or --template none")
    if requested not in CONCRETE_TEMPLATES:
        raise UserError(f"unknown template {requested!r}; choose one of auto, {', '.join(CONCRETE_TEMPLATES)}")
    return requested


def render(template: str, tokenizer: Any, instruction: str, input_text: str = "") -> str:
    """Prompt text for one instruction; generation continues right after it."""
    if template == "alpaca":
        return alpaca_prompt(instruction, input_text)
    user_text = instruction if not input_text else f"{instruction}\n\n{input_text}"
    if template == "chat":
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": user_text}], tokenize=False, add_generation_prompt=True
        )
    if template == "none":
        return user_text
    raise UserError(f"unknown template {template!r}")


def adds_bos(tokenizer: Any, text: str) -> bool:
    """Whether tokenizing `text` should add special tokens: not when it already starts with BOS
    (chat templates write `<|begin_of_text|>` themselves, and a second one hurts quality)."""
    bos = getattr(tokenizer, "bos_token", None)
    return not (bos and text.startswith(bos))


def encode(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=adds_bos(tokenizer, text))["input_ids"]
