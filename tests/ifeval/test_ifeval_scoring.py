"""sfteval.ifeval.scoring against the official Google verdicts on real Phi-3 responses, determinism,
the ifeval_scores format, and the ifeval_responses input."""

import json
import os
import random
import subprocess
import sys

import pytest

from sfteval import stats
from sfteval.cli import UserError
from sfteval.ifeval import scoring as ifeval
from sfteval.ifeval.prompts import load_prompt_set
from tests.conftest import LANGDETECT_IDS, ROOT, read_jsonl, without_times, write_jsonl

# Items the official scorer decides at random (see the module docstring of sfteval.ifeval.scoring).
LETTER_FREQUENCY_NON_LETTERS = {1122: "#", 1129: "!"}


def responses_document(rows, n_prompts, limit=None):
    """An ifeval_responses file as eval_generate.py writes it (the fields scoring reads)."""
    return {
        "schema_version": 1,
        "kind": "ifeval_responses",
        "metadata": {"model": "phi-3", "n_prompts": n_prompts, "limit": limit, "prompt_set": {"n_prompts": 541}},
        "responses": [{**r, "new_tokens": 1, "stop_reason": "eos"} for r in rows],
    }


def verdicts_only(per_prompt):
    """Scored rows without what generation recorded (official JSONL has no stop reasons)."""
    return [{k: v for k, v in row.items() if k not in ifeval.RUN_FIELDS} for row in per_prompt]


@pytest.fixture(scope="module")
def ifeval_dir(shared_data):
    return shared_data / "ifeval"


@pytest.fixture(scope="module")
def prompt_rows(ifeval_dir):
    return load_prompt_set(str(ifeval_dir / "input_data.jsonl"))[0]


@pytest.fixture(scope="module")
def phi3_rows(ifeval_dir, prompt_rows):
    """The Phi-3 responses joined to their prompts, in prompt-set order."""
    official = read_jsonl(ifeval_dir / "phi3_eval_results_strict.jsonl")
    assert [o["prompt"] for o in official] == [p["prompt"] for p in prompt_rows]
    return [{**p, "response": o["response"]} for p, o in zip(prompt_rows, official)]


@pytest.fixture(scope="module")
def phi3_scores(ifeval_dir):
    return ifeval.score_file(ifeval_dir / "phi3_eval_results_strict.jsonl", prompts=ifeval_dir / "input_data.jsonl")


def test_verdicts_equal_the_official_ones_except_where_the_official_scorer_draws(phi3_scores, ifeval_dir):
    official = {mode: read_jsonl(ifeval_dir / f"phi3_eval_results_{mode}.jsonl") for mode in ("strict", "loose")}
    differences = set()
    checked = 0
    for index, ours in enumerate(phi3_scores["per_prompt"]):
        for mode in ("strict", "loose"):
            theirs = official[mode][index]
            assert ours["prompt"] == theirs["prompt"] and ours["response"] == theirs["response"]
            assert ours["instruction_id_list"] == theirs["instruction_id_list"]
            for position, (a, b) in enumerate(
                zip(ours[f"follow_instruction_list_{mode}"], theirs["follow_instruction_list"])
            ):
                checked += 1
                if a != b:
                    differences.add((ours["key"], ours["instruction_id_list"][position], mode))
    assert checked == 2 * 834
    # Key 1122 asks for "at least 4" of the letter "#". The checker swaps a non-letter for a
    # random one; this response has 14 letters with fewer than 4 occurrences, and the official
    # strict run drew one of them (False) while its loose run drew another (True). Our seeded
    # draw is "t" (12 times): True for both. Key 1129 ("!", at least 6) is random too, but 22
    # of 26 letters pass, as both the official draw and ours ("s") do. The 95 langdetect-based
    # verdicts (response_language, english_capital, english_lowercase) all agree with seed 0.
    assert differences == {(1122, "keywords:letter_frequency", "strict")}


def test_totals_against_the_official_totals(phi3_scores):
    summary = phi3_scores["summary"]
    assert (summary["n_prompts"], summary["n_instructions"]) == (541, 834)
    # Official: strict 264/541 prompts and 501/834 instructions; loose 294/541 and 539/834.
    # Strict instructions are 502 here: the one verdict of key 1122 above. Its prompt fails
    # strict anyway (its english_lowercase verdict is False), so prompt-level totals agree.
    assert round(summary["prompt_level_strict_acc"] * 541) == 264
    assert round(summary["inst_level_strict_acc"] * 834) == 502
    assert round(summary["prompt_level_loose_acc"] * 541) == 294
    assert round(summary["inst_level_loose_acc"] * 834) == 539


def test_scores_document_follows_the_documented_format(phi3_scores, ifeval_dir):
    doc = phi3_scores
    assert (doc["schema_version"], doc["kind"]) == (1, "ifeval_scores")
    meta = doc["metadata"]
    assert meta["source_file"] == "phi3_eval_results_strict.jsonl"
    assert len(meta["source_sha256"]) == 64
    assert meta["n_prompts_scored"] == 541 and meta["missing_keys"] == []
    assert meta["prompt_set"]["n_prompts"] == 541 and meta["input_format"] == "official_jsonl"
    scorer = meta["scorer"]
    assert scorer["name"] == "sfteval.ifeval" and scorer["lm_eval_version"] == "0.4.13"
    assert (scorer["langdetect_seed"], scorer["bootstrap_samples"], scorer["bootstrap_seed"]) == (0, 2000, 1234)
    assert {"created_at", "host", "platform", "git_commit", "library_versions"} <= meta.keys()

    summary = doc["summary"]
    assert list(summary) == [
        "n_prompts",
        "n_instructions",
        "prompt_level_strict_acc",
        "prompt_level_strict_acc_ci",
        "inst_level_strict_acc",
        "inst_level_strict_acc_ci",
        "prompt_level_loose_acc",
        "prompt_level_loose_acc_ci",
        "inst_level_loose_acc",
        "inst_level_loose_acc_ci",
        "mean_of_four_acc",
    ]
    four = [summary[f"{level}_level_{mode}_acc"] for level in ("prompt", "inst") for mode in ("strict", "loose")]
    assert summary["mean_of_four_acc"] == pytest.approx(sum(four) / 4)
    for name in ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc"):
        low, high = summary[f"{name}_ci"]
        assert low < summary[name] < high and high - low < 0.1
    per_prompt = doc["per_prompt"]
    units = [p["follow_instruction_list_loose"] for p in per_prompt]
    assert summary["inst_level_loose_acc_ci"] == list(stats.bootstrap_interval(units))

    assert len(doc["per_instruction"]) == 25
    assert sum(v["n"] for v in doc["per_instruction"].values()) == 834
    assert doc["per_instruction"]["punctuation:no_comma"] == doc["per_category"]["punctuation"]
    assert set(doc["per_category"]) == {
        "change_case",
        "combination",
        "detectable_content",
        "detectable_format",
        "keywords",
        "language",
        "length_constraints",
        "punctuation",
        "startend",
    }
    strict_hits = sum(v["strict_acc"] * v["n"] for v in doc["per_category"].values())
    assert round(strict_hits) == round(summary["inst_level_strict_acc"] * 834)
    assert list(per_prompt[0]) == [
        "key",
        "prompt",
        "response",
        "instruction_id_list",
        "follow_instruction_list_strict",
        "follow_instruction_list_loose",
        "follow_all_strict",
        "follow_all_loose",
    ]
    assert per_prompt[0]["key"] == 1000
    json.dumps(doc)  # JSON-clean


def test_repeated_scoring_is_identical_in_any_order(phi3_rows, phi3_scores):
    first = phi3_scores["per_prompt"]
    for _ in range(3):
        assert ifeval.score_rows(phi3_rows) == first
    assert ifeval.score_rows(phi3_rows[::-1])[::-1] == first


def test_the_random_items_get_the_same_verdicts_in_another_process(phi3_rows, tmp_path):
    """A fresh interpreter with another hash seed, the rows in reverse: the same verdicts."""
    random_prone = [
        r
        for r in phi3_rows
        if r["key"] in LETTER_FREQUENCY_NON_LETTERS or LANGDETECT_IDS & set(r["instruction_id_list"])
    ]
    assert len(random_prone) == 96  # 95 with langdetect checks (1122 among them) and 1129
    here = ifeval.score_rows(random_prone)
    rows_file = tmp_path / "rows.json"
    rows_file.write_text(json.dumps(random_prone[::-1]))
    code = (
        "import json, sys; from sfteval.ifeval import scoring as ifeval; "
        "print(json.dumps(ifeval.score_rows(json.load(open(sys.argv[1])))[::-1]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(rows_file)], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == here


def test_scoring_leaves_the_callers_random_state_alone(phi3_rows):
    random.seed(99)
    expected = random.random()
    random.seed(99)
    ifeval.score_rows(phi3_rows[:5])
    assert random.random() == expected


def test_score_file_twice_gives_the_same_document_but_the_scoring_time(ifeval_dir, phi3_rows, tmp_path):
    subset = write_jsonl(
        tmp_path / "subset.jsonl", [{"prompt": r["prompt"], "response": r["response"]} for r in phi3_rows[:40]]
    )
    prompts = ifeval_dir / "input_data.jsonl"
    first, second = (ifeval.score_file(subset, prompts=prompts) for _ in range(2))
    assert without_times(first) == without_times(second)
    assert first["summary"]["n_prompts"] == 40


def test_loose_variants_drop_duplicates_and_blanks():
    assert ifeval.loose_variants("only line") == ["only line"]
    assert ifeval.loose_variants("Sure:\n**Body**\nBye") == [
        "Sure:\n**Body**\nBye",
        "Sure:\nBody\nBye",
        "**Body**\nBye",
        "Sure:\n**Body**",
        "**Body**",
        "Body\nBye",
        "Sure:\nBody",
        "Body",
    ]
    assert ifeval.loose_variants("a\n*") == ["a\n*", "a\n", "*", "a"]


def test_an_empty_response_follows_nothing(prompt_rows):
    verdict = ifeval.score_rows([{**prompt_rows[0], "response": "  \n"}])[0]
    assert verdict["follow_instruction_list_strict"] == [False, False, False]
    assert verdict["follow_instruction_list_loose"] == [False, False, False]


def test_own_responses_file_scores_like_the_official_format(phi3_rows, phi3_scores, tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(responses_document(phi3_rows[:10], n_prompts=10, limit=10)))
    doc = ifeval.score_file(path)
    assert verdicts_only(doc["per_prompt"]) == phi3_scores["per_prompt"][:10]
    assert all(row["stop_reason"] == "eos" and row["new_tokens"] == 1 for row in doc["per_prompt"])
    assert doc["metadata"]["model"] == "phi-3" and doc["metadata"]["input_format"] == "ifeval_responses"
    assert doc["metadata"]["n_prompts_scored"] == 10


def test_hub_style_kwargs_with_none_values_score_the_same(phi3_rows, phi3_scores, tmp_path):
    padded = [{**r, "kwargs": [{**kw, "num_words": kw.get("num_words")} for kw in r["kwargs"]]} for r in phi3_rows[:20]]
    path = tmp_path / "hub.json"
    path.write_text(json.dumps(responses_document(padded, n_prompts=20)))
    assert verdicts_only(ifeval.score_file(path)["per_prompt"]) == phi3_scores["per_prompt"][:20]


def test_a_crashed_run_is_refused_unless_missing_responses_are_allowed(phi3_rows, ifeval_dir, tmp_path):
    path = tmp_path / "crashed.json"
    path.write_text(json.dumps(responses_document(phi3_rows[:30], n_prompts=541)))
    with pytest.raises(UserError, match="holds 30 of the 541 responses.*511 missing.*--allow-missing"):
        ifeval.score_file(path)
    doc = ifeval.score_file(path, prompts=ifeval_dir / "input_data.jsonl", allow_missing=True)
    assert doc["summary"]["n_prompts"] == 30 and doc["metadata"]["n_prompts"] == 541
    assert doc["metadata"]["missing_keys"] == [r["key"] for r in phi3_rows[30:]]


def test_own_rows_are_checked_against_an_explicit_prompt_set(phi3_rows, ifeval_dir, tmp_path):
    changed = [dict(r) for r in phi3_rows[:3]]
    assert changed[0]["kwargs"][1] == {"num_highlights": 3}
    changed[0]["kwargs"] = [{}, {"num_highlights": 2}, changed[0]["kwargs"][2]]
    path = tmp_path / "changed.json"
    path.write_text(json.dumps(responses_document(changed, n_prompts=3)))
    assert ifeval.score_file(path)["summary"]["n_prompts"] == 3
    with pytest.raises(UserError, match="key 1000 differs from the prompt set"):
        ifeval.score_file(path, prompts=ifeval_dir / "input_data.jsonl")


def test_unknown_instruction_ids_are_named(phi3_rows):
    row = {**phi3_rows[0], "instruction_id_list": ["keywords:made_up", "punctuation:no_comma", "x:y"]}
    with pytest.raises(UserError, match="unknown instruction id.*keywords:made_up, x:y"):
        ifeval.score_rows([row])


def test_self_check_passes(shared_data):  # its sentence-splitting needs punkt_tab, offline from ../shared/data
    assert ifeval.self_check().startswith("self-check passed: 2 responses, 6 instructions")


def test_missing_punkt_tab_fails_fast_with_a_hint(monkeypatch, tmp_path):
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nowhere")])
    monkeypatch.setenv("NLTK_DATA", str(tmp_path / "nltk_data"))
    # A closed local port as proxy: the download fails at once even where there is a network.
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    with pytest.raises(UserError, match=r"punkt_tab data is missing.*python -m nltk\.downloader punkt_tab") as info:
        ifeval.ensure_punkt_tab(download_timeout=5)
    assert "\n" not in str(info.value)
