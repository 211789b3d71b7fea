"""The controlled study's report (sfteval/report/study.py, bench/study_report.py) on a small study
folder: --limit runs of real IFEval prompts with the shared Phi-3 responses, some of them turned
into loops, echoes or empty answers, scored by the real scorer; tinyMMLU files on the real items;
adapters' train_config.json. File names are opaque on purpose: labels must come from metadata."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_report import check_png, tinymmlu_doc

from sfteval import records
from sfteval.ifeval import answers, compare
from sfteval.mmlu import letters
from sfteval.report import study
from sfteval.report.tables import format_acc
from tests.conftest import ROOT

GEMMA = "unsloth/gemma-3-270m"
# The reference as a dequantized GGUF's cache folder: files name it by its path, the report by its short name.
SMOL = "/tmp/sfteval_cache/gguf/smollm2-135m-instruct-a288f53a2014"
SHORT = {GEMMA: "gemma-3-270m", SMOL: "smollm2-135m-instruct"}
N = 24
LOOP_TAIL = " and so on" * 300
ADAPTERS = {"S1": ("seed", 3407), "S2": ("seed", 1234)}  # FAST is left out: its rows must be skipped

# (model, adapter, template, precision, loop answers, echoed answers, empty answers), each a run of prompts
# from the first one on: loops first, then echoes, then empty answers; the rest are Phi-3's answers.
CONDITIONS = (
    (GEMMA, None, "none", "bf16", 10, 4, 0),
    (GEMMA, None, "alpaca", "bf16", 6, 0, 2),
    (GEMMA, None, "none", "4bit", 12, 4, 0),
    (GEMMA, None, "alpaca", "4bit", 7, 0, 2),
    (GEMMA, "S1", "alpaca", "bf16", 1, 0, 0),
    (GEMMA, "S1", "none", "bf16", 4, 0, 2),
    (GEMMA, "S1", "alpaca", "4bit", 2, 0, 0),
    (GEMMA, "S2", "alpaca", "bf16", 0, 0, 3),
    (SMOL, None, "chat", "fp32", 0, 0, 5),
)
MMLU = ((GEMMA, None, "bf16"), (GEMMA, "S1", "bf16"), (SMOL, None, "fp32"))


def train_config(name: str) -> dict:
    recipe, seed = ADAPTERS[name]
    meta = records.run_metadata(recipe={"name": recipe, "file": f"recipes/{recipe}.yaml", "why": "as asked"})
    return records.envelope(
        "train_config", meta, base_model=GEMMA, template="alpaca", precision="4bit", hyperparameters={"seed": seed}
    )


def responses_doc(shared: Path, root: Path, model, adapter, template, precision, loops, echoes, empty) -> dict:
    from sfteval.ifeval import prompts as ifeval_prompts

    rows, prompt_set = ifeval_prompts.load_prompt_set(str(shared / "ifeval" / "input_data.jsonl"))
    with open(shared / "ifeval" / "phi3_eval_results_strict.jsonl", encoding="utf-8") as handle:
        phi3 = [json.loads(line)["response"] for line in handle]
    responses = []
    for i, row in enumerate(rows[:N]):
        if i < loops:
            response, stop = phi3[i] + LOOP_TAIL, "length"
        elif i < loops + echoes:
            response, stop = row["prompt"], "eos"
        elif i < loops + echoes + empty:
            response, stop = "", "eos"
        else:
            response, stop = phi3[i], "eos"
        responses.append(
            {**row, "response": response, "new_tokens": 1280 if stop == "length" else 100 + i, "stop_reason": stop}
        )
    meta = records.run_metadata(
        model=model,
        adapter=str(root / "adapters" / adapter) if adapter else None,
        adapter_train_config=train_config(adapter) if adapter else None,
        precision=precision,
        loader="hf",
        template=template,
        prompt_set=prompt_set,
        n_prompts=N,
        limit=N,
    )
    return records.envelope("ifeval_responses", meta, responses=responses)


@pytest.fixture(scope="module")
def study_dir(shared_data, tmp_path_factory) -> Path:
    from sfteval.ifeval import scoring

    root = tmp_path_factory.mktemp("study")
    for name in ADAPTERS:
        records.write_json_atomic(root / "adapters" / name / "train_config.json", train_config(name))
    for i, condition in enumerate(CONDITIONS):
        source = records.write_json_atomic(
            root / "eval_responses" / f"run_{i:02d}.json", responses_doc(shared_data, root, *condition)
        )
        records.write_json_atomic(root / "eval_responses" / f"run_{i:02d}.scores.json", scoring.score_file(source))
    for i, (model, adapter, precision) in enumerate(MMLU):
        doc = tinymmlu_doc(
            shared_data, adapter=str(root / "adapters" / adapter) if adapter else None, precision=precision
        )
        doc["metadata"]["model"] = model
        records.write_json_atomic(root / "eval_results" / f"mmlu_{i}_tinymmlu_x.json", doc)
    return root


@pytest.fixture(scope="module")
def loaded(study_dir):
    return study.load_study(study_dir)


@pytest.fixture(scope="module")
def found(loaded):
    return study.effects(loaded)


def effect(found, name: str, precision: str) -> study.Effect:
    return next(e for e in found[0] if e.name == name and e.b.precision == precision)


def test_conditions_are_labelled_from_their_metadata(loaded):
    labels = {c.label for c in loaded.conditions}
    assert labels == {
        f"{adapter or SHORT[model]} · {template} · {precision}"
        for model, adapter, template, precision, *_ in CONDITIONS
    }
    s2 = loaded.find("gemma-3-270m", "S2", "alpaca", "bf16")
    assert s2.scores_path.name == "run_07.scores.json"
    assert s2.weights == "S2: seed recipe, seed 1234"
    assert loaded.find("gemma-3-270m", None, "none", "bf16").weights == "no adapter"
    assert loaded.notes == []  # every tinyMMLU file matched; train configs agree with the eval files


def test_main_table_shows_each_files_figures(loaded):
    text = study.markdown(loaded, "python bench/study_report.py --study X --markdown Y")
    for c in loaded.conditions:
        row = next(line for line in text.splitlines() if line.startswith(f"| {c.label} |"))
        summary, block = c.scores["summary"], c.scores["answers"]
        for key, *_ in compare.METRICS:
            assert f"| {format_acc(summary[key], summary[f'{key}_ci'])} |" in row
        assert f"| {format_acc(block['loop']['rate'], block['loop']['ci'])} |" in row
        assert f"| {block['new_tokens']['median']} |" in row
    s1 = next(line for line in text.splitlines() if line.startswith("| S1 · alpaca · bf16 |"))
    assert "| S1: seed recipe, seed 3407 | alpaca | bf16 |" in s1


def test_tinymmlu_is_matched_by_model_adapter_and_precision_for_every_template(loaded):
    s1_alpaca = study.main_row(loaded.find("gemma-3-270m", "S1", "alpaca", "bf16"))
    s1_raw = study.main_row(loaded.find("gemma-3-270m", "S1", "none", "bf16"))
    s1_4bit = study.main_row(loaded.find("gemma-3-270m", "S1", "alpaca", "4bit"))
    doc = loaded.find("gemma-3-270m", "S1", "alpaca", "bf16").mmlu
    hits = sum(item["correct"] for item in doc["items"])
    assert hits == 66  # every third item of 100 answered wrong
    assert s1_alpaca[-2] == format_acc(0.66, doc["summary"]["accuracy_ci"])
    baseline = letters.letter_analysis(doc["items"])["constant_baseline"]
    assert s1_alpaca[-1] == f"{baseline['letter']}: {format_acc(baseline['accuracy'], baseline['ci'])}"
    assert s1_raw[-2:] == s1_alpaca[-2:]
    assert s1_4bit[-2:] == ["–", "–"]
    # A tinyMMLU file of a dequantized GGUF folder finds its IFEval rows through the short name.
    assert loaded.find("smollm2-135m-instruct", None, "chat", "fp32").mmlu is not None


def test_an_effect_is_the_difference_of_the_two_rows(found):
    for name, precision in (
        (study.TEMPLATE, "bf16"),
        (study.WEIGHTS_ALPACA, "4bit"),
        ("precision (4bit − bf16)", "4bit"),
    ):
        e = effect(found, name, precision)
        for key in ("prompt_level_strict_acc", "inst_level_strict_acc"):
            rows = e.b.scores["summary"][key] - e.a.scores["summary"][key]
            assert e.metric(key)["difference"] == pytest.approx(rows, abs=1e-12)
    template = effect(found, study.TEMPLATE, "bf16")
    assert (template.a.label, template.b.label) == ("gemma-3-270m · none · bf16", "gemma-3-270m · alpaca · bf16")


def test_total_is_template_plus_weights_exactly(found, loaded):
    sums = study.additivity(found[0])
    assert {s["precision"] for s in sums} == {"bf16", "4bit"}
    assert len(sums) == 8
    for s in sums:
        assert s["total"] == pytest.approx(s["template"] + s["weights"], abs=1e-12)
    total = effect(found, study.TOTAL, "bf16").metric("prompt_level_strict_acc")["difference"]
    assert total != 0
    text = study.markdown(loaded, "cmd")
    row = "| gemma-3-270m | bf16 | prompt-level strict |"
    line = next(x for x in text.splitlines() if x.startswith(row))
    *_, summed, shown_total, _ = line.split("|")
    assert summed.strip() == shown_total.strip() == compare.signed_points(total)


def test_missing_conditions_are_skipped_with_a_note(found, loaded):
    effects, notes = found
    assert not any(e.name == "recipe (FAST − S1, alpaca)" for e in effects)
    assert any(e.name == "training seed (S2 − S1, alpaca)" and e.b.precision == "bf16" for e in effects)
    assert (
        "recipe (FAST − S1, alpaca), gemma-3-270m at bf16: skipped, no scores file for FAST · alpaca · bf16." in notes
    )
    assert (
        "weights, raw prompt (S1 − base), gemma-3-270m at 4bit: skipped, no scores file for S1 · none · 4bit." in notes
    )
    assert f"- {notes[0]}" in study.markdown(loaded, "cmd")
    # The reference model has no adapter: it is a row of the main table, never part of an effect.
    assert not any("smollm2" in e.a.label or "smollm2" in e.b.label for e in effects)
    assert {e.name for e in effects if e.name.startswith("precision")} == {"precision (4bit − bf16)"}
    assert len([e for e in effects if e.name.startswith("precision")]) == 3  # base raw, base alpaca, S1 alpaca


def test_clean_in_both_and_passes_on_loops(found, loaded):
    template = effect(found, study.TEMPLATE, "bf16")
    # Unclean: base raw's 10 loops and 4 echoes (prompts 0-13), base alpaca's 6 loops (0-5); empty answers are clean.
    assert template.comparison["answers"]["clean_in_both"]["n_prompts"] == N - 14
    shares = {}
    for c in loaded.conditions:
        loops = next(x[4] for x in CONDITIONS if (x[1], x[2], x[3]) == (c.adapter, c.template, c.precision))
        rows = c.scores["per_prompt"]
        passes = [i for i, row in enumerate(rows) if row["follow_all_strict"]]
        shares[c.label] = study.loop_passes(c)
        assert shares[c.label] == (sum(i < loops for i in passes), len(passes))
    assert any(on_loops for on_loops, _ in shares.values())  # some loop answers do pass


def test_an_effect_splits_into_passes_on_clean_and_on_degenerate_answers(found, loaded):
    effects, _ = found
    assert any(study.pass_shares(e.a)[1] for e in effects)  # the fixture's loops and echoes do pass
    for e in effects:
        split = {}
        for side, c in (("a", e.a), ("b", e.b)):
            rows = c.scores["per_prompt"]
            flags = [answers.answer_flags(row)["clean"] for row in rows if row["follow_all_strict"]]
            split[side] = (flags.count(True) / len(rows), flags.count(False) / len(rows))
            assert study.pass_shares(c) == pytest.approx(split[side])
        on_clean = split["b"][0] - split["a"][0]
        on_degenerate = split["b"][1] - split["a"][1]
        assert on_clean + on_degenerate == pytest.approx(e.metric("prompt_level_strict_acc")["difference"])
    report = study.markdown(loaded, "cmd")
    assert "| effect | B − A | passes on clean answers | passes on degenerate answers | total |" in report


def test_cli_writes_report_and_charts(study_dir, tmp_path):
    out = tmp_path / "report" / "study.md"
    charts = tmp_path / "charts"
    args = ["--study", str(study_dir), "--markdown", str(out), "--charts-dir", str(charts)]
    done = subprocess.run(
        [sys.executable, "bench/study_report.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# Controlled study")
    assert "    python bench/study_report.py " + " ".join(args) + "\n" in text
    sha = records.sha256_file(study_dir / "eval_responses" / "run_04.scores.json")
    assert f"- `eval_responses/run_04.scores.json` {sha[:12]}" in text
    assert (
        f"- `adapters/S1/train_config.json` {records.sha256_file(study_dir / 'adapters' / 'S1' / 'train_config.json')[:12]}"
        in text
    )
    for name in study.CHART_NAMES:
        check_png(charts / name)
        assert f"![{Path(name).stem}](../charts/{name})" in text


def test_cli_refuses_a_missing_study_folder_in_one_line(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "bench/study_report.py",
            "--study",
            str(tmp_path / "nope"),
            "--markdown",
            str(tmp_path / "r.md"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr == f"error: --study {tmp_path / 'nope'}: no such folder\n"
    assert not (tmp_path / "r.md").exists()
