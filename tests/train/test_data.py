"""Alpaca data for training: what the model is trained on, token by token."""

import copy
import json

import pytest

from sfteval import prompts
from sfteval.cli import UserError
from sfteval.model import loading
from sfteval.train import data

ALPACA_FILE = "alpaca_cleaned/alpaca_data_cleaned_first5000.json"


@pytest.fixture(scope="module")
def tok(llama3_tokenizer):
    tokenizer = copy.deepcopy(llama3_tokenizer)
    loading.ensure_pad_token(tokenizer)
    return tokenizer


RECORDS = [
    {"instruction": "Name three primary colors.", "input": "", "output": "Red, blue and yellow."},
    {"instruction": "Translate to French.", "input": "The cat sleeps.", "output": "Le chat dort."},
]


def test_prompt_masked_answer_and_eos_labelled(tok):
    examples, stats = data.tokenize_records(tok, RECORDS, max_length=512)
    assert stats["n_examples"] == 2 and stats["n_overlong"] == 0
    for record, example in zip(RECORDS, examples):
        ids, labels = example["input_ids"], example["labels"]
        prompt_ids = prompts.encode(tok, prompts.render("alpaca", tok, record["instruction"], record["input"]))
        n = len(prompt_ids)
        # The prompt is exactly what inference.py feeds the model, BOS included once.
        assert ids[:n] == prompt_ids
        assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
        assert labels[:n] == [data.IGNORE_INDEX] * n
        # Every answer token and the final EOS are trained on.
        assert labels[n:] == ids[n:]
        assert ids[-1] == labels[-1] == tok.eos_token_id
        assert tok.decode(labels[n:-1]) == record["output"]
    assert tok.pad_token_id != tok.eos_token_id


def test_input_field_goes_into_the_prompt(tok):
    examples, _ = data.tokenize_records(tok, RECORDS, max_length=512)
    text = tok.decode(examples[1]["input_ids"])
    assert "### Input:\nThe cat sleeps.\n\n### Response:\nLe chat dort." in text
    assert "### Input:" not in tok.decode(examples[0]["input_ids"])


def test_padded_collator_masks_padding_but_never_eos(tok):
    examples, _ = data.tokenize_records(tok, RECORDS, max_length=512)
    batch = data.PaddedCollator(tok.pad_token_id)(examples)
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    lengths = [len(ex["input_ids"]) for ex in examples]
    assert ids.shape == (2, max(lengths)) and lengths[0] != lengths[1]
    short = lengths.index(min(lengths))
    assert (ids[short, min(lengths) :] == tok.pad_token_id).all()
    assert (labels[short, min(lengths) :] == data.IGNORE_INDEX).all()
    assert (mask[short, min(lengths) :] == 0).all() and (mask[short, : min(lengths)] == 1).all()
    # EOS is labelled in both rows, padding is never labelled.
    assert int((labels == tok.eos_token_id).sum()) == 2
    assert int((labels == tok.pad_token_id).sum()) == 0


def test_pad_equal_to_eos_is_refused(llama3_tokenizer):
    bad = copy.deepcopy(llama3_tokenizer)
    bad.pad_token = bad.eos_token
    with pytest.raises(UserError, match="differ from EOS"):
        data.tokenize_records(bad, RECORDS, max_length=512)


def test_padding_free_collator_layout(tok):
    examples, _ = data.tokenize_records(tok, RECORDS, max_length=512)
    batch = data.PaddingFreeCollator()(examples)
    n0, n1 = (len(ex["input_ids"]) for ex in examples)
    assert batch["input_ids"].shape == (1, n0 + n1) and "attention_mask" not in batch
    assert batch["use_cache"] is False
    assert batch["position_ids"][0].tolist() == list(range(n0)) + list(range(n1))
    assert batch["input_ids"][0].tolist() == examples[0]["input_ids"] + examples[1]["input_ids"]
    # No label at an example's first token, so no loss is computed across the boundary.
    assert batch["labels"][0, n0].item() == data.IGNORE_INDEX
    assert int((batch["labels"] == tok.eos_token_id).sum()) == 2


def test_padding_free_loss_equals_padded_loss(tiny_llama_dir, tok):
    """Packed rows must not leak attention between examples: the same loss as padded rows."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    examples, _ = data.tokenize_records(tok, RECORDS * 2, max_length=512)
    padded = data.PaddedCollator(tok.pad_token_id)(examples)
    packed = data.PaddingFreeCollator()(examples)
    with torch.no_grad():
        loss_padded = model(**padded).loss.item()
        loss_packed = model(**packed).loss.item()
        # Controls: without position resets, or with a KV cache (transformers then skips the
        # packed-sequence check), the examples see each other.
        leaky = model(input_ids=packed["input_ids"], labels=packed["labels"]).loss.item()
        cached = model(**{**packed, "use_cache": True}).loss.item()
    assert loss_packed == pytest.approx(loss_padded, abs=1e-5)
    assert abs(leaky - loss_padded) > 1e-4 and abs(cached - loss_padded) > 1e-4


def test_overlong_examples_are_counted_dropped_or_cut(tok):
    rows = [*RECORDS, {"instruction": "Count.", "input": "", "output": " ".join(str(i) for i in range(300))}]
    lengths = [len(ex["input_ids"]) for ex in data.tokenize_records(tok, rows, max_length=4096)[0]]
    limit = max(lengths[:2]) + 5
    kept, stats = data.tokenize_records(tok, rows, max_length=limit)
    assert len(kept) == 2 and stats["n_dropped_overlong"] == 1 and stats["n_truncated"] == 0
    assert "dropped 1 of 3 examples" in data.overlong_message(stats)
    cut, stats = data.tokenize_records(tok, rows, max_length=limit, overlong="truncate")
    assert len(cut) == 3 and stats["n_truncated"] == 1 and stats["n_dropped_overlong"] == 0
    assert len(cut[2]["input_ids"]) == limit and cut[2]["input_ids"][-1] != tok.eos_token_id
    # A prompt that alone does not fit is dropped even when truncating.
    _, stats = data.tokenize_records(tok, rows, max_length=10, overlong="truncate")
    assert stats["n_dropped_overlong"] == 3 and stats["n_prompt_too_long"] == 3


def test_real_alpaca_lengths_with_llama3_tokenizer(shared_data, tok):
    rows, info = data.load_records(str(shared_data / ALPACA_FILE))
    assert info.n_records == 5000 and info.source == "local"
    assert info.sha256 == "5f9b70e54ff1d5a87cd3ca9074502fdb5d5312eaf76f736431f636be2183662c"
    assert sum(1 for r in rows if r["input"]) == 1990
    examples, stats = data.tokenize_records(tok, rows, max_length=2048)
    lengths = stats["lengths_all_records"]
    assert (lengths["mean"], lengths["median"], lengths["p95"]) == (179.75, 147.0, 414.0)
    assert lengths["total"] == 898_775 and stats["n_dropped_overlong"] == 0
    _, stats = data.tokenize_records(tok, rows[:500], max_length=256)
    assert stats["n_dropped_overlong"] == sum(1 for n in [len(e["input_ids"]) for e in examples[:500]] if n > 256)


def test_limit_and_validation_split(shared_data, tok):
    rows, info = data.load_records(str(shared_data / ALPACA_FILE), limit=40)
    assert len(rows) == 40 and info.limit == 40
    prepared = data.prepare(tok, rows, max_length=2048, val_size=0.25, seed=1)
    assert (prepared.stats["n_train"], prepared.stats["n_val"]) == (30, 10)
    again = data.prepare(tok, rows, max_length=2048, val_size=10, seed=1)
    assert again.val == prepared.val and again.train == prepared.train
    train_ids = {tuple(ex["input_ids"]) for ex in prepared.train}
    assert not train_ids & {tuple(ex["input_ids"]) for ex in prepared.val}
    with pytest.raises(UserError, match="leaves no training examples"):
        data.prepare(tok, rows, max_length=2048, val_size=40)


BAD_FILES = {
    "wrong_keys.json": (json.dumps([{"prompt": "a", "response": "b"}]), "alpaca format needs instruction, output"),
    "empty.json": ("", "is empty"),
    "empty_list.json": ("[]", "is empty"),
    "not_json.json": ("instruction: hi\noutput: there", "not valid JSON"),
    "object.json": (json.dumps({"instruction": "a", "output": "b"}), "must hold a JSON list"),
    "number_output.json": (json.dumps([{"instruction": "a", "output": 3}]), "'output' is a int"),
    "strings.json": (json.dumps(["a", "b"]), "record 0 is a str"),
    "lines.json": ('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": "d"}\n', "name it .jsonl"),
    "bad_line.jsonl": ('{"instruction": "a", "output": "b"}\nnot json\n', "line 2 is not valid JSON"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_dataset_file_is_a_one_line_error(tmp_path, name):
    text, expected = BAD_FILES[name]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError, match=expected) as err:
        data.load_records(str(path))
    assert "\n" not in str(err.value)


def test_missing_local_file_and_jsonl_input(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        data.load_records(str(tmp_path / "nope.json"))
    path = tmp_path / "ok.jsonl"
    path.write_text('{"instruction": "a", "output": "b", "input": null}\n\n{"instruction": "c", "output": "d"}\n')
    rows, info = data.load_records(str(path))
    assert rows == [{"instruction": "a", "output": "b", "input": ""}, {"instruction": "c", "output": "d", "input": ""}]
    assert info.sha256 and info.records_sha256


def test_hub_name_detection():
    assert not data.is_local_dataset("yahma/alpaca-cleaned")
    assert data.is_local_dataset("my_data.jsonl") and data.is_local_dataset("./folder/x")
