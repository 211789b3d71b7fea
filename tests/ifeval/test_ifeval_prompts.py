import json

import pytest

from sfteval.cli import UserError
from sfteval.ifeval import prompts as ifeval_prompts


def test_shared_prompt_set_loads_with_expected_counts(shared_data):
    rows, info = ifeval_prompts.load_prompt_set(str(shared_data / "ifeval" / "input_data.jsonl"))
    assert info["n_prompts"] == 541 and info["n_instructions"] == 834
    assert len({i for r in rows for i in r["instruction_id_list"]}) == 25


def test_hub_style_none_kwargs_give_the_same_checksum(shared_data, tmp_path):
    rows, info = ifeval_prompts.load_prompt_set(str(shared_data / "ifeval" / "input_data.jsonl"))
    padded = tmp_path / "hub_style.jsonl"
    with open(padded, "w") as out:
        for r in rows:
            kwargs = [{**kw, "num_words": kw.get("num_words"), "language": kw.get("language")} for kw in r["kwargs"]]
            out.write(json.dumps({**r, "kwargs": kwargs}) + "\n")
    assert ifeval_prompts.load_prompt_set(str(padded))[1]["sha256"] == info["sha256"]


def test_a_file_that_is_not_ifeval_is_refused(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n')
    with pytest.raises(UserError, match="not an IFEval prompt set"):
        ifeval_prompts.load_prompt_set(str(path))
    with pytest.raises(UserError, match="does not exist"):
        ifeval_prompts.load_prompt_set(str(tmp_path / "missing.jsonl"))
