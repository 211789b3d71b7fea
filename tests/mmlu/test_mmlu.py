"""tinyMMLU scoring: prompt text, answer-letter tokens, data checks, summary, IRT gating, and
scores on the real SmolLM2 model checked against an independent one-prompt-at-a-time forward."""

import hashlib
import json
import math
import sys
import textwrap

import pytest

from sfteval import stats
from sfteval.cli import UserError
from sfteval.mmlu import evaluate as mmlu

# Llama 3 BPE: " A" .. " D" and "A" .. "D", as the published vocabulary numbers them.
LLAMA3_SPACE_LETTERS = [362, 426, 356, 423]
LLAMA3_BARE_LETTERS = [32, 33, 34, 35]
# SmolLM2 (GPT-2 style BPE, 49,152 tokens)
SMOLLM2_SPACE_LETTERS = [330, 389, 340, 422]
SMOLLM2_BARE_LETTERS = [49, 50, 51, 52]


@pytest.fixture(scope="module")
def tinymmlu_file(shared_data):
    return shared_data / "tinymmlu" / "tinyMMLU_test.jsonl"


@pytest.fixture(scope="module")
def items(tinymmlu_file):
    loaded, _ = mmlu.load_items(str(tinymmlu_file))
    return loaded


@pytest.fixture(scope="module")
def smollm2_tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


# ----------------------------------------------------------------------------------- prompts


def test_prompt_is_the_standard_mmlu_zero_shot_text(items):
    item = items[0]
    assert item.subject == "high_school_statistics"
    assert mmlu.question_text(item) == (
        "The following are multiple choice questions (with answers) about high school statistics.\n\n"
        + item.question.strip()
        + "\nA. 15.4%\nB. 17.8%\nC. 20.0%\nD. 82.1%\nAnswer:"
    )


def test_letter_continuations_follow_the_prompt_end():
    assert mmlu.letter_continuations("...\nAnswer:") == [" A", " B", " C", " D"]
    assert mmlu.letter_continuations("<|start_header_id|>assistant<|end_header_id|>\n\n") == ["A", "B", "C", "D"]
    assert mmlu.letter_continuations("### Response:\n") == ["A", "B", "C", "D"]


def test_llama3_letter_tokens(llama3_tokenizer, items):
    plain = mmlu.encode_items(llama3_tokenizer, items, "none")
    assert plain.letter_ids == LLAMA3_SPACE_LETTERS
    assert [llama3_tokenizer.decode([i]) for i in plain.letter_ids] == [" A", " B", " C", " D"]
    assert all(
        ids[0] == llama3_tokenizer.bos_token_id and ids.count(llama3_tokenizer.bos_token_id) == 1
        for ids in plain.prompt_ids
    )
    chat = mmlu.encode_items(llama3_tokenizer, items, "chat")
    assert chat.letter_ids == LLAMA3_BARE_LETTERS
    assert all(ids.count(llama3_tokenizer.bos_token_id) == 1 for ids in chat.prompt_ids)
    text = mmlu.render("chat", llama3_tokenizer, items[0])
    assert text.endswith("Answer:<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    assert mmlu.encode_items(llama3_tokenizer, items[:3], "alpaca").letter_ids == LLAMA3_BARE_LETTERS


def test_smollm2_letter_tokens(smollm2_tokenizer, items):
    plain = mmlu.encode_items(smollm2_tokenizer, items, "none")
    assert plain.letter_ids == SMOLLM2_SPACE_LETTERS
    assert plain.letter_tokens == ["ĠA", "ĠB", "ĠC", "ĠD"]
    chat = mmlu.encode_items(smollm2_tokenizer, items, "chat")
    assert chat.letter_ids == SMOLLM2_BARE_LETTERS
    assert mmlu.render("chat", smollm2_tokenizer, items[0]).endswith("Answer:<|im_end|>\n<|im_start|>assistant\n")


def test_a_letter_that_merges_with_the_prompt_end_is_refused(llama3_tokenizer):
    # "Answer: " ends in a space token that " A" would swallow: the next-token log-prob of
    # "A" after it is not the log-prob of the answer, so this must not be scored.
    with pytest.raises(UserError, match="does not encode the answer 'A' as one token"):
        mmlu.letter_token_ids(llama3_tokenizer, "Question?\nAnswer: ")


# ---------------------------------------------------------------------------------------- data


def test_shared_file_is_the_tinymmlu_test_split(tinymmlu_file, items):
    _, data = mmlu.load_items(str(tinymmlu_file))
    assert len(items) == 100 and [i.idx for i in items] == list(range(100))
    assert data["sha256"] == mmlu.TINYMMLU_TEST_SHA256 and data["is_tinymmlu_test"]
    assert data["file_sha256"] == "48da64a1e24f85d4b7281b9a5c4b9fb4d89fb51160dcaa8e2c87085a2066aa8e"
    assert all(len(i.choices) == 4 and 0 <= i.answer < 4 for i in items)


def test_checksum_ignores_idx_and_extra_fields(tmp_path, tinymmlu_file):
    rows = [json.loads(line) for line in tinymmlu_file.read_text().splitlines()]
    stripped = tmp_path / "copy.jsonl"
    stripped.write_text("".join(json.dumps({**r, "idx": r["idx"] + 1000, "input_formatted": "x"}) + "\n" for r in rows))
    _, data = mmlu.load_items(str(stripped))
    assert data["sha256"] == mmlu.TINYMMLU_TEST_SHA256
    reordered = tmp_path / "reordered.jsonl"
    reordered.write_text("".join(json.dumps(r) + "\n" for r in reversed(rows)))
    assert not mmlu.load_items(str(reordered))[1]["is_tinymmlu_test"]


GOOD_ROW = {"question": "2+2?", "subject": "elementary_mathematics", "choices": ["3", "4", "5", "6"], "answer": 1}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("this is not json\n", "line 1 is not valid JSON"),
        (json.dumps({"prompt": "x", "label": 1}) + "\n", "row 1 lacks question, subject, choices, answer"),
        (json.dumps({**GOOD_ROW, "answer": 4}) + "\n", "`answer` must be 0-3"),
        (json.dumps({**GOOD_ROW, "answer": "B"}) + "\n", "`answer` must be 0-3"),
        (json.dumps({**GOOD_ROW, "answer": True}) + "\n", "`answer` must be 0-3"),
        (json.dumps({**GOOD_ROW, "choices": ["3", "4", "5"]}) + "\n", "exactly 4 answers .A-D., got 3"),
        (json.dumps({**GOOD_ROW, "choices": "3 4 5 6"}) + "\n", "exactly 4 answers"),
        (json.dumps(GOOD_ROW) + "\n" + json.dumps({**GOOD_ROW, "subject": ""}) + "\n", "row 2: `subject`"),
        (json.dumps({**GOOD_ROW, "idx": 0}) + "\n" + json.dumps({**GOOD_ROW, "idx": 0}) + "\n", "duplicate idx"),
        ("\n\n", "is empty"),
        ("[1, 2]\n", "not a JSON object"),
    ],
)
def test_bad_data_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(UserError, match=message) as caught:
        mmlu.load_items(str(path))
    assert "\n" not in str(caught.value)


def test_binary_and_missing_files(tmp_path):
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UserError, match="not UTF-8"):
        mmlu.load_items(str(binary))
    with pytest.raises(UserError, match="does not exist"):
        mmlu.load_items(str(tmp_path / "nope.jsonl"))


def test_hub_failure_says_to_pass_data(monkeypatch):
    class Offline:
        @staticmethod
        def load_dataset(*args, **kwargs):
            raise ConnectionError("no network")

    monkeypatch.setitem(sys.modules, "datasets", Offline)
    with pytest.raises(UserError, match=r"could not load tinyBenchmarks/tinyMMLU .*ConnectionError.*pass --data"):
        mmlu.load_items(None)


def test_hub_rows_are_read_from_the_all_config(monkeypatch):
    seen = {}

    class Hub:
        @staticmethod
        def load_dataset(name, config, split):
            seen.update(name=name, config=config, split=split)
            return [{**GOOD_ROW, "input_formatted": "5-shot text"}]

    monkeypatch.setitem(sys.modules, "datasets", Hub)
    loaded, data = mmlu.load_items(mmlu.HUB_DATASET)
    assert seen == {"name": "tinyBenchmarks/tinyMMLU", "config": "all", "split": "test"}
    assert loaded[0].idx == 0 and loaded[0].answer == 1 and data["source"].startswith(mmlu.HUB_DATASET)


# ------------------------------------------------------------------------------------- summary


def make_score(idx, subject, answer, prediction):
    logprobs = [-3.0] * 4
    logprobs[prediction] = -0.5
    return mmlu.ItemScore(idx, subject, answer, logprobs, prediction, prediction == answer, f"question {idx}")


def test_summary_accuracy_interval_subjects_and_letters():
    scores = [make_score(i, "anatomy" if i < 4 else "virology", i % 4, 0) for i in range(10)]
    summary = mmlu.summarize(scores)
    assert summary["n"] == 10 and summary["n_correct"] == 3  # answers 0,1,2,3,0,1,2,3,0,1 vs always A
    assert summary["accuracy"] == pytest.approx(0.3)
    assert summary["accuracy_ci"] == pytest.approx(list(stats.wilson_interval(3, 10)))
    assert summary["per_subject"] == {
        "anatomy": {"n": 4, "accuracy": 0.25},
        "virology": {"n": 6, "accuracy": pytest.approx(2 / 6)},
    }
    assert summary["prediction_counts"] == {"A": 10, "B": 0, "C": 0, "D": 0}
    assert summary["answer_counts"] == {"A": 3, "B": 3, "C": 2, "D": 2}
    # A and B are both right 3 times: the tie goes to A, whose baseline equals always-A's accuracy here
    assert summary["constant_baseline"] == {
        "letter": "A",
        "n_correct": 3,
        "accuracy": pytest.approx(0.3),
        "ci": pytest.approx(list(stats.wilson_interval(3, 10))),
    }
    assert summary["letter_prob_mass_mean"] == pytest.approx(math.exp(-0.5) + 3 * math.exp(-3.0))
    assert summary["irt"] is None


def test_hundred_items_note_states_the_interval_width():
    scores = [make_score(i, "x", 0, 0 if i < 64 else 1) for i in range(100)]
    summary = mmlu.summarize(scores)
    low, high = summary["accuracy_ci"]
    assert 9.0 < (high - low) / 2 * 100 < 10.0
    assert summary["note"].startswith("100 items: the 95% interval is about +-9.")


def test_argmax_takes_the_first_of_a_tie():
    assert mmlu.argmax([-1.0, -0.5, -0.5, -2.0]) == 1
    assert mmlu.argmax([-0.1, -0.5, -0.2, -2.0]) == 0


def test_out_of_memory_batches_are_halved_and_keep_order(monkeypatch):
    calls = []

    def fake_score_batch(model, pad_id, batch, letter_ids):
        calls.append(len(batch))
        if len(batch) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")
        return [[-float(ids[0]), 0.0, 0.0, 0.0] for ids in batch]

    monkeypatch.setattr(mmlu, "score_batch", fake_score_batch)
    prompt_ids = [[10], [11], [12], [13], [14]]
    out = mmlu.score_indexed(None, 0, prompt_ids, [4, 0, 2, 1, 3], [1, 2, 3, 4])
    assert [i for i, _ in out] == [4, 0, 2, 1, 3]
    assert [row[0] for _, row in out] == [-14.0, -10.0, -12.0, -11.0, -13.0]
    assert calls[0] == 5 and max(calls[1:]) <= 3


# -------------------------------------------------------------------------------------- IRT


FAKE_TINYBENCHMARKS = textwrap.dedent(
    """
    import os, pickle
    calls = []

    def evaluate(y, bench):
        with open("tinyBenchmarks.pkl", "rb") as handle:  # the real package reads it from the cwd
            params = pickle.load(handle)
        calls.append({"y": [float(v) for v in y], "bench": bench, "cwd": os.getcwd(), "params": params})
        mean = float(sum(y)) / len(y)
        return {"mmlu": {"irt": mean, "pirt": mean + 0.01, "gpirt": mean + 0.02}}
    """
)


@pytest.fixture
def fake_tinybenchmarks(tmp_path, monkeypatch):
    package = tmp_path / "site" / "tinyBenchmarks"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(FAKE_TINYBENCHMARKS)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "tinyBenchmarks", raising=False)
    monkeypatch.setenv("SFTEVAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(mmlu.TINYBENCHMARKS_PKL_ENV, raising=False)
    monkeypatch.delenv(mmlu.TINYBENCHMARKS_SHA256_ENV, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    yield tmp_path
    sys.modules.pop("tinyBenchmarks", None)


TINY_DATA = {"source": "x.jsonl", "is_tinymmlu_test": True}


def test_irt_skipped_without_the_package(monkeypatch):
    monkeypatch.setattr(mmlu.importlib.util, "find_spec", lambda name: None)
    estimates, note, provenance = mmlu.irt_estimates([True] * 100, TINY_DATA)
    assert estimates is None and provenance is None
    assert "tinyBenchmarks package is not installed" in note


def test_irt_skipped_without_parameter_file(fake_tinybenchmarks):
    estimates, note, _ = mmlu.irt_estimates([True] * 100, TINY_DATA)
    assert estimates is None and "no tinyBenchmarks.pkl found" in note and "--irt-params" in note


def test_irt_needs_all_hundred_tinymmlu_items(fake_tinybenchmarks):
    assert "this run scored 10" in mmlu.irt_estimates([True] * 10, TINY_DATA)[1]
    other = {"source": "mine.jsonl", "is_tinymmlu_test": False}
    assert "not the tinyMMLU test split" in mmlu.irt_estimates([True] * 100, other)[1]


def test_irt_refuses_a_parameter_file_with_another_hash(fake_tinybenchmarks):
    import pickle

    params = fake_tinybenchmarks / "work" / "tinyBenchmarks.pkl"
    params.write_bytes(pickle.dumps({"mmlu": "tampered"}))
    estimates, note, provenance = mmlu.irt_estimates([True] * 100, TINY_DATA)
    assert estimates is None and "not unpickled" in note
    assert provenance["expected_sha256"] == mmlu.TINYBENCHMARKS_PKL_SHA256
    assert provenance["sha256"] == hashlib.sha256(params.read_bytes()).hexdigest()
    assert "tinyBenchmarks" not in sys.modules  # the package never ran


def test_irt_runs_on_verified_bytes_in_a_scratch_folder(fake_tinybenchmarks, monkeypatch):
    import pickle

    params = fake_tinybenchmarks / "elsewhere.pkl"
    params.write_bytes(pickle.dumps({"mmlu": "params"}))
    monkeypatch.setenv(mmlu.TINYBENCHMARKS_SHA256_ENV, hashlib.sha256(params.read_bytes()).hexdigest())
    correct = [i % 3 == 0 for i in range(100)]
    estimates, note, provenance = mmlu.irt_estimates(correct, TINY_DATA, str(params))
    assert estimates == pytest.approx({"irt": 0.34, "pirt": 0.35, "gpirt": 0.36})
    assert "indicative" in note and provenance["expected_from"] == "environment"
    (call,) = sys.modules["tinyBenchmarks"].calls
    assert call["y"] == [float(c) for c in correct] and call["bench"] == "mmlu" and call["params"] == {"mmlu": "params"}
    assert call["cwd"] != str(fake_tinybenchmarks / "work")
    assert not (fake_tinybenchmarks / "work" / "tinyBenchmarks.pkl").exists()


# ------------------------------------------------------------------ scores on the real SmolLM2


@pytest.fixture(scope="module")
def smollm2_fp32(smollm2_dir):
    from sfteval.model import loading

    return loading.load_model(loading.ModelSpec(model=str(smollm2_dir), use_hf=True, precision="fp32"))


@pytest.fixture(scope="module")
def short_items(items, smollm2_tokenizer):
    """The 8 questions with the shortest prompts (46-57 tokens), so that batches mix lengths."""
    by_length = sorted(items, key=lambda i: (len(smollm2_tokenizer(mmlu.question_text(i))["input_ids"]), i.idx))
    return by_length[:8]


@pytest.fixture(scope="module")
def scored_batch3(smollm2_fp32, short_items):
    return mmlu.score_items(smollm2_fp32.model, smollm2_fp32.tokenizer, short_items, "none", 3, progress=False)


def independent_logprobs(model, tokenizer, item):
    """One prompt, no padding, full logits; the prompt and letter tokens written out here."""
    import torch

    letters = "ABCD"
    text = (
        f"The following are multiple choice questions (with answers) about {item.subject.replace('_', ' ')}.\n\n"
        f"{item.question.strip()}\n" + "".join(f"{letters[k]}. {item.choices[k]}\n" for k in range(4)) + "Answer:"
    )
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, -1].float()
    letter_ids = tokenizer.convert_tokens_to_ids(["ĠA", "ĠB", "ĠC", "ĠD"])
    return torch.log_softmax(logits, dim=-1)[letter_ids].tolist()


def test_scores_equal_an_independent_forward(smollm2_fp32, short_items, scored_batch3):
    scores, info = scored_batch3
    assert info["letter_token_ids"] == SMOLLM2_SPACE_LETTERS and info["prompt_tokens_min"] < info["prompt_tokens_max"]
    for item, score in zip(short_items, scores):
        expected = independent_logprobs(smollm2_fp32.model, smollm2_fp32.tokenizer, item)
        assert score.idx == item.idx and score.answer == item.answer and score.subject == item.subject
        assert score.logprobs == pytest.approx(expected, abs=1e-4)
        assert score.prediction == max(range(4), key=lambda k: expected[k])
        assert score.correct == (score.prediction == item.answer)
        assert all(v < 0 for v in score.logprobs) and sum(math.exp(v) for v in score.logprobs) <= 1.0


@pytest.mark.parametrize("batch_size", [1, 8])
def test_batch_size_changes_no_prediction(smollm2_fp32, short_items, scored_batch3, batch_size):
    reference, _ = scored_batch3
    scores, _ = mmlu.score_items(
        smollm2_fp32.model, smollm2_fp32.tokenizer, short_items, "none", batch_size, progress=False
    )
    assert [s.prediction for s in scores] == [s.prediction for s in reference]
    for got, ref in zip(scores, reference):
        assert got.logprobs == pytest.approx(ref.logprobs, abs=1e-4)
