import copy

import pytest

from sfteval import prompts
from sfteval.cli import UserError


def test_alpaca_with_input_renders_exactly():
    text = prompts.alpaca_prompt("Summarize.", "Cats sleep a lot.")
    assert text == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nSummarize.\n\n### Input:\nCats sleep a lot.\n\n### Response:\n"
    )


def test_alpaca_without_input_renders_exactly():
    for blank in ("", "   "):
        assert prompts.alpaca_prompt("Name a color.", blank) == (
            "Below is an instruction that describes a task. Write a response that appropriately completes the request."
            "\n\n### Instruction:\nName a color.\n\n### Response:\n"
        )


def test_alpaca_response_cuts_after_marker_and_survives_missing_marker():
    full = prompts.alpaca_prompt("Name a color.") + "Blue."
    assert prompts.alpaca_response(full) == "Blue."
    assert prompts.alpaca_response("no marker here") == "no marker here"


def test_llama3_chat_prompt_has_exactly_one_bos(llama3_tokenizer):
    text = prompts.render("chat", llama3_tokenizer, "Hello there")
    assert text.startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello there<|eot_id|>")
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    ids = prompts.encode(llama3_tokenizer, text)
    assert ids.count(llama3_tokenizer.bos_token_id) == 1
    assert ids[0] == llama3_tokenizer.bos_token_id


def test_plain_prompts_get_one_bos(llama3_tokenizer):
    for template in ("alpaca", "none"):
        ids = prompts.encode(llama3_tokenizer, prompts.render(template, llama3_tokenizer, "Hi"))
        assert ids.count(llama3_tokenizer.bos_token_id) == 1


def test_auto_template_prefers_adapter_then_chat_then_none(llama3_tokenizer):
    assert prompts.resolve_template("auto", llama3_tokenizer, "alpaca") == "alpaca"
    assert prompts.resolve_template("auto", llama3_tokenizer) == "chat"

    class NoChat:
        chat_template = None

    assert prompts.resolve_template("auto", NoChat()) == "none"
    with pytest.raises(UserError, match="no chat template"):
        prompts.resolve_template("chat", NoChat())


def test_alpaca_chat_template_gives_the_training_prompt_tokens(llama3_tokenizer):
    tokenizer = copy.copy(llama3_tokenizer)
    tokenizer.chat_template = prompts.alpaca_chat_template(tokenizer)
    chat = [{"role": "user", "content": "Name a color."}]
    ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert ids == prompts.encode(tokenizer, prompts.alpaca_prompt("Name a color."))
    assert ids.count(tokenizer.bos_token_id) == 1
    with pytest.raises(Exception, match="user and assistant messages only"):
        tokenizer.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_alpaca_chat_template_gives_the_training_prompt_and_answer(llama3_tokenizer, smollm2_dir):
    """As a chat template the alpaca prompt tokenizes to what training and `encode` give, BOS
    only where the tokenizer adds one; an assistant turn ends with EOS, a system turn is refused."""
    import copy

    from transformers import AutoTokenizer

    instruction = 'Quote "this" \\ and\nthat.'
    for original in (llama3_tokenizer, AutoTokenizer.from_pretrained(smollm2_dir)):
        tokenizer = copy.deepcopy(original)
        tokenizer.chat_template = prompts.alpaca_chat_template(tokenizer)
        user = [{"role": "user", "content": instruction}]
        text = prompts.render("chat", tokenizer, instruction)
        assert text.removeprefix(tokenizer.bos_token or "") == prompts.alpaca_prompt(instruction)
        expected = prompts.encode(tokenizer, prompts.alpaca_prompt(instruction))
        assert prompts.encode(tokenizer, text) == expected
        assert tokenizer.apply_chat_template(user, add_generation_prompt=True)["input_ids"] == expected
        assert text.startswith(tokenizer.bos_token or "") is prompts.tokenizer_adds_bos(tokenizer)
        answered = tokenizer.apply_chat_template([*user, {"role": "assistant", "content": "Done."}], tokenize=False)
        assert answered == text + "Done." + tokenizer.eos_token
        with pytest.raises(Exception, match="user and assistant messages only"):
            tokenizer.apply_chat_template([{"role": "system", "content": "x"}, *user], tokenize=False)
