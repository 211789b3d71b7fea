"""Answer measures (sfteval.ifeval.answers): the loop and echo rules on hand-made strings and
on real answers of the Gemma-3-270M runs, and the `answers` block that eval_score.py and
compare_ifeval.py write.

The real answers are fixtures cut by tools/cut_test_fixtures.py from the run files in history (docs/runs/ at commit fac9ff7) (see
tests/fixtures/README.md): the base and LoRA bf16 runs on the first 36 prompts of the prompt set
plus the 4 prompts the LoRA run echoes, with n_prompts and stop_reasons recomputed for those rows,
and the base run's old scores file (no stop reasons) on the same prompts."""

from __future__ import annotations

import gzip
import json

import pytest

import eval_score
from sfteval import cli, records
from sfteval.ifeval import answers, compare, scoring
from tests.conftest import ROOT

GEMMA_RESPONSES = ROOT / "tests" / "fixtures" / "gemma_2026-11-27" / "eval_responses"
BASE_BF16 = GEMMA_RESPONSES / "gemma3-270m_base_hf_bf16.json.gz"
ADAPTER_BF16 = GEMMA_RESPONSES / "gemma3-270m_alpaca5k_hf_bf16.json.gz"


def real_responses(path):
    return json.loads(gzip.decompress(path.read_bytes()))


def distinct_prose(shared_data, chars):
    """Real, non-repeating text: alpaca answers joined until `chars` long."""
    text = ""
    for row in json.loads((shared_data / "alpaca_cleaned" / "alpaca_data_cleaned_first5000.json").read_text()):
        if len(row["output"]) > 200:
            text += row["output"] + "\n\n"
        if len(text) > chars:
            return text
    raise AssertionError("not enough alpaca text")


@pytest.mark.parametrize(
    "tail",
    [
        "".join(f"{n}. Vans\n" for n in range(1, 400)),  # a numbered list of one line: counters change
        "!" * 3000,
        "0" * 1500,
        "The answer is yes. " * 200,
        "".join(f"Day {n}: Tokyo Station\nWe visit the station again and take photos.\n" for n in range(60)),
    ],
)
def test_repetitive_tails_at_the_limit_are_loops(tail):
    response = "Here is my answer.\n" + tail
    assert answers.is_loop(response, "length") is True
    assert answers.is_loop(response, "eos") is False  # the rule needs the token limit
    assert answers.is_loop(response, None) is None  # unknown stop reason: not measured


def test_real_prose_at_the_limit_is_not_a_loop(shared_data):
    prose = distinct_prose(shared_data, 4 * answers.LOOP_TAIL_CHARS)
    assert answers.tail_repeated_share(prose) < 0.1
    assert answers.is_loop(prose, "length") is False
    assert answers.is_loop("short", "length") is False  # shorter than one window


def test_echo_is_the_prompt_verbatim_up_to_whitespace_and_case():
    prompt = "Write a poem about tea.\nUse at least   three stanzas and no commas."
    assert answers.is_echo(prompt, "write a poem about tea. use at least three stanzas and no commas. Tea is warm")
    assert answers.is_echo(prompt, "Sure!\n\nWrite a poem about tea. Use at least three stanzas and no commas.")
    half = " ".join(prompt.split())[: len(" ".join(prompt.split())) // 2 + 2]
    assert answers.is_echo(prompt, half + " and then something else entirely")
    assert not answers.is_echo(prompt, "Write a poem? Here is one about tea, in three stanzas.")
    assert not answers.is_echo("", "anything")


def test_token_distribution_uses_nearest_rank():
    dist = answers.token_distribution(list(range(10, 0, -1)))
    assert (dist["min"], dist["p10"], dist["p25"], dist["median"], dist["p90"], dist["max"]) == (1, 1, 2, 5, 9, 10)
    assert dist["mean"] == 5.5 and dist["n"] == 10
    assert answers.token_distribution([]) is None


def test_real_loops_repeat_and_real_stops_are_never_loops():
    for path in (BASE_BF16, ADAPTER_BF16):
        rows = real_responses(path)["responses"]
        seen = {"eos": 0, "loop": 0, "echo": 0}
        for row in rows:
            flags = answers.answer_flags(row)
            seen["eos"] += row["stop_reason"] == "eos"
            seen["loop"] += bool(flags["loop"])
            seen["echo"] += flags["echo"]
            if row["stop_reason"] == "eos":
                assert flags["loop"] is False
            if flags["loop"]:
                # Independent check: some 20-character piece of the digit-masked tail occurs 3+ times.
                tail = answers.DIGIT.sub("0", row["response"])[-answers.LOOP_TAIL_CHARS :]
                step = answers.LOOP_WINDOW_CHARS
                assert any(tail.count(tail[i : i + step]) >= 3 for i in range(0, len(tail) - step, step))
            if flags["echo"]:
                head = answers.normalized(row["prompt"])[:20]
                assert head in answers.normalized(row["response"])
        assert all(seen.values()), f"{path.name} no longer holds real stops, loops and echoes: {seen}"


@pytest.fixture(scope="module")
def adapter_scores():
    return scoring.score_file(ADAPTER_BF16)


def test_scores_document_holds_the_answers_block(adapter_scores):
    block = adapter_scores["answers"]
    generated = real_responses(ADAPTER_BF16)
    assert block["n"] == len(generated["responses"]) and block["stop_reason_known"]
    assert block["stopped"]["count"] == generated["metadata"]["stop_reasons"]["eos"]
    low, high = block["loop"]["ci"]
    assert low <= block["loop"]["rate"] <= high
    assert block["new_tokens"]["max"] <= generated["metadata"]["generation"]["max_new_tokens"]
    clean_rows = [p for p in adapter_scores["per_prompt"] if answers.answer_flags(p)["clean"]]
    assert block["clean"]["count"] == len(clean_rows) == block["clean_accuracy"]["n_prompts"]
    assert block["clean_accuracy"] == scoring.summarize(clean_rows)
    assert {"stop_reason", "new_tokens"} <= set(adapter_scores["per_prompt"][0])


def test_old_scores_files_say_the_stop_measures_are_unknown():
    old = records.read_json(GEMMA_RESPONSES / "gemma3-270m_base_hf_bf16.scores.json.gz")
    block = answers.analyse(old["per_prompt"])
    assert not block["stop_reason_known"]
    assert block["stopped"] is block["loop"] is block["clean_accuracy"] is None
    assert block["echo"]["n"] == len(old["per_prompt"]) and "note" in block


def test_eval_score_reads_a_gzipped_run_and_prints_the_answers(tmp_path, capsys):
    source = tmp_path / ADAPTER_BF16.name
    source.write_bytes(ADAPTER_BF16.read_bytes())
    assert cli.run(eval_score.main, ["--input", str(source)]) == 0
    out = capsys.readouterr().out
    written = tmp_path / "gemma3-270m_alpaca5k_hf_bf16.scores.json"
    assert written.is_file() and "repetition loops" in out and "clean answers" in out


def test_compare_pairs_the_answer_measures(adapter_scores):
    base = scoring.score_file(BASE_BF16)
    result = compare.compare(base, adapter_scores, names=("base", "lora"))
    block = result["answers"]
    by_measure = {c["measure"]: c for c in block["changes"]}
    assert set(by_measure) == {"stopped", "loop", "echo", "clean"}
    for measure in ("stopped", "loop", "echo"):
        change = by_measure[measure]
        assert change["a"] == base["answers"][measure] and change["b"] == adapter_scores["answers"][measure]
        low, high = change["difference_ci"]
        assert low <= change["difference"] <= high
    both = [
        key
        for key, (a, b) in enumerate(zip(base["per_prompt"], adapter_scores["per_prompt"]))
        if answers.answer_flags(a)["clean"] and answers.answer_flags(b)["clean"]
    ]
    assert block["clean_in_both"]["n_prompts"] == len(both)
    inst = [m for m in result["metrics"] if m["level"] == "inst"]
    assert all(0 <= m["clustered_mcnemar"]["p_value"] <= 1 for m in inst)
    text = compare.format_text(result)
    assert "clustered p" in text and "clean in both runs" in text
    assert "clean in both runs" in compare.format_markdown(result)
