"""Files of the wrong shape or with wrong values are refused by their declared schema
(sfteval.schemas) as one line with exit code 2, in every script that reads them."""

from __future__ import annotations

import copy
import json

import pytest

from sfteval import cli, records, schemas
from sfteval.cli import UserError
from sfteval.ifeval import prompts as ifeval_prompts
from sfteval.ifeval import scoring
from tests.conftest import ROOT, load_script, write_jsonl
from tests.mmlu.test_mmlu_compare import results_file

compare_mmlu = load_script(ROOT / "compare_mmlu.py", "compare_mmlu")
compare_ifeval = load_script(ROOT / "compare_ifeval.py", "compare_ifeval")
eval_score = load_script(ROOT / "eval_score.py", "eval_score")
eval_wandb = load_script(ROOT / "eval_wandb.py", "eval_wandb")


def one_line_error(capsys, script, *args) -> str:
    code = cli.run(script.main, [str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture(scope="module")
def prompt_set(shared_data):
    return ifeval_prompts.load_prompt_set(str(shared_data / "ifeval" / "input_data.jsonl"))


@pytest.fixture(scope="module")
def scores_doc(shared_data, tmp_path_factory, prompt_set):
    """A real scores document: three shared Phi-3 responses scored against the real prompts."""
    official = [json.loads(line) for line in open(shared_data / "ifeval" / "phi3_eval_results_strict.jsonl")]
    source = write_jsonl(tmp_path_factory.mktemp("scores") / "three.jsonl", official[:3])
    return scoring.score_file(source, prompts=shared_data / "ifeval" / "input_data.jsonl")


def responses_doc(prompt_set, count=None):
    rows, info = prompt_set
    chosen = rows if count is None else rows[:count]
    metadata = {"n_prompts": len(chosen), "prompt_set": info}
    responses = [{**row, "response": "An answer."} for row in chosen]
    return {"schema_version": 1, "kind": "ifeval_responses", "metadata": metadata, "responses": responses}


# ---------------------------------------------------------------- tinyMMLU results


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda items: items[0].update(correct="false"), "items.0.correct: Input should be a valid boolean"),
        (lambda items: items[1].pop("idx"), "items.1.idx: Field required"),
        (lambda items: items.clear(), "holds no items"),
        (lambda items: items[2].update(idx=0), "a question (idx) appears twice"),
    ],
)
def test_compare_mmlu_refuses_wrong_values(tmp_path, shared_data, capsys, change, message):
    good = results_file(tmp_path / "a.json", shared_data, [i < 30 for i in range(100)])
    doc = json.loads(good.read_text())
    change(doc["items"])
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps(doc))
    assert message in one_line_error(capsys, compare_mmlu, "--model1", good, "--model2", bad)


# ---------------------------------------------------------------- IFEval scores


@pytest.mark.parametrize(
    "field, value",
    [("follow_all_strict", "true"), ("follow_instruction_list_loose", [1]), ("follow_all_loose", None)],
)
def test_non_boolean_verdicts_are_refused_by_compare_ifeval_and_eval_wandb(
    tmp_path, capsys, monkeypatch, scores_doc, field, value
):
    doc = copy.deepcopy(scores_doc)
    doc["per_prompt"][0][field] = value
    good = records.write_json_atomic(tmp_path / "good.scores.json", scores_doc)
    bad = records.write_json_atomic(tmp_path / "bad.scores.json", doc)
    err = one_line_error(capsys, compare_ifeval, "--model1", good, "--model2", bad)
    assert f"is not a valid ifeval_scores file (per_prompt.0.{field}" in err
    monkeypatch.chdir(tmp_path)
    err = one_line_error(capsys, eval_wandb, "--no-wandb", "--input", bad)
    assert f"per_prompt.0.{field}" in err and not (tmp_path / "results.md").exists()


def test_the_real_scores_document_fits_its_schema(scores_doc):
    assert schemas.validate(scores_doc, "ifeval_scores", "scores") is scores_doc


# ---------------------------------------------------------------- IFEval responses


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda doc: doc.update(schema_version="1"), "schema_version: Input should be a valid integer"),
        (lambda doc: doc.update(schema_version=2), "schema_version: Input should be less than or equal to 1"),
        (lambda doc: doc.update(metadata=[]), "metadata: Input should be a valid dictionary"),
        (lambda doc: doc["responses"][0].update(prompt=["a"]), "responses.0.prompt: Input should be a valid string"),
        (lambda doc: doc["responses"][1].update(kwargs="x"), "responses.1.kwargs: Input should be a valid list"),
        (lambda doc: doc["responses"][1].update(kwargs=[]), "instruction_id_list and kwargs differ in length"),
        (lambda doc: doc["responses"][2].update(response=None), "responses.2.response: Input should be a valid str"),
    ],
)
def test_eval_score_refuses_a_responses_file_of_the_wrong_shape(tmp_path, capsys, prompt_set, change, message):
    doc = responses_doc(prompt_set, count=3)
    change(doc)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    assert message in one_line_error(capsys, eval_score, "--input", path)
    assert not list(tmp_path.glob("*.scores.json"))


def test_eval_score_refuses_keys_that_are_not_those_of_the_named_prompt_set(tmp_path, capsys, prompt_set):
    doc = responses_doc(prompt_set)
    doc["responses"][5]["key"] = 999_999
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    err = one_line_error(capsys, eval_score, "--input", path)
    assert "are not those of the prompt set its metadata names" in err
    assert not list(tmp_path.glob("*.scores.json"))


def test_a_full_file_of_the_named_prompt_set_passes_the_fingerprint(prompt_set, tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(responses_doc(prompt_set)))
    responses = scoring.read_responses(path)
    assert len(responses.rows) == prompt_set[1]["n_prompts"] == 541


def test_validate_names_the_file_and_the_field():
    with pytest.raises(UserError, match=r"^x.json is not a valid tinymmlu_results file \(kind: Input should be"):
        schemas.validate(
            {"schema_version": 1, "kind": "other", "metadata": {}, "items": []}, "tinymmlu_results", "x.json"
        )
