"""Sampling settings are checked where they are made (GenerationSettings), so every script that
generates refuses impossible values in one line, before a model loads."""

import pytest

from sfteval import cli
from sfteval.cli import UserError
from sfteval.model import generation
from tests.conftest import ROOT, load_script


@pytest.mark.parametrize(
    "values, message",
    [
        ({"temperature": -1.0}, "--temperature must be 0 (greedy) or above, got -1.0"),
        ({"temperature": float("nan")}, "--temperature must be 0 (greedy) or above"),
        ({"top_p": 5.0}, "--top-p is a probability mass: above 0 and at most 1, got 5.0"),
        ({"top_p": 0.0}, "--top-p is a probability mass"),
        ({"max_new_tokens": 0}, "--max-new-tokens must be at least 1"),
    ],
)
def test_impossible_values_are_refused(values, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        generation.GenerationSettings(**values)


def test_sampling_values_in_range_are_kept():
    settings = generation.GenerationSettings(temperature=0.7, top_p=1.0)
    assert not settings.greedy and settings.to_dict()["top_p"] == 1.0 and settings.to_dict()["do_sample"]


@pytest.mark.parametrize("flags", [["--temperature", "-1"], ["--temperature", "0.7", "--top-p", "5"]])
def test_inference_refuses_them_before_the_model_loads(tmp_path, capsys, flags):
    inference = load_script(ROOT / "inference.py", "inference")
    argv = ["--model", str(tmp_path / "not_loaded"), "--use-hf", "--prompt", "Hi.", *flags]
    assert cli.run(inference.main, argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("--temperature" in err or "--top-p" in err)
