"""SIGKILL in the middle of eval_score.py and eval_mmlu.py, then the same command again: the
killed run leaves no file where the finished one goes, and the rerun writes what an
uninterrupted run writes, with no prompt or question lost or repeated.

The kill comes at a fixed point: a runner script (written in tmp_path, nothing in the
package) wraps one function of the child process and SIGKILLs it on that function's N-th
call. eval_generate.py and train.py are killed the same way by their own tests
(tests/ifeval/test_eval_generate.py::test_killed_run_resumes_to_the_same_responses,
tests/train/test_train.py::test_resume_after_a_kill_continues_where_it_stopped).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, read_jsonl, without_times

KILL_RUNNER = """\
import importlib, os, runpy, signal, sys

module_name, function_name, when, calls, script = sys.argv[1:6]
module = importlib.import_module(module_name)
original = getattr(module, function_name)
seen = 0


def killing(*args, **kwargs):
    global seen
    seen += 1
    if when == "before" and seen == int(calls):
        os.kill(os.getpid(), signal.SIGKILL)
    result = original(*args, **kwargs)
    if when == "after" and seen == int(calls):
        os.kill(os.getpid(), signal.SIGKILL)
    return result


setattr(module, function_name, killing)
sys.argv = sys.argv[5:]
runpy.run_path(script, run_name="__main__")
"""

ENV = {
    **os.environ,
    "PYTHONPATH": str(ROOT),
    "OMP_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def run_script(script: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd, env=ENV, capture_output=True, text=True
    )


def run_killed(script: str, kill_at: tuple[str, str, str, int], *args, cwd: Path) -> subprocess.CompletedProcess:
    runner = cwd / "kill_runner.py"
    runner.write_text(KILL_RUNNER, encoding="utf-8")
    module, function, when, calls = kill_at
    command = [sys.executable, str(runner), module, function, when, str(calls), str(ROOT / script), *map(str, args)]
    done = subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    return done


def responses_file(folder: Path, shared_data: Path, count: int) -> Path:
    prompts = read_jsonl(shared_data / "ifeval" / "input_data.jsonl")[:count]
    official = read_jsonl(shared_data / "ifeval" / "phi3_eval_results_strict.jsonl")[:count]
    rows = [{**prompt, "response": row["response"]} for prompt, row in zip(prompts, official)]
    document = {
        "schema_version": 1,
        "kind": "ifeval_responses",
        "metadata": {"model": "m", "n_prompts": count, "limit": None},
        "responses": rows,
    }
    folder.mkdir()
    path = folder / "run.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    "kill_at",
    [
        ("sfteval.ifeval.scoring", "score_prompt", "after", 4),  # while scoring
        ("os", "replace", "before", 1),  # the scores are in a temporary file, not yet renamed into place
    ],
    ids=["while-scoring", "before-the-rename"],
)
def test_eval_score_killed_then_run_again(shared_data, tmp_path, kill_at):
    count = 6
    reference = responses_file(tmp_path / "uninterrupted", shared_data, count)
    assert run_script("eval_score.py", "--input", reference, cwd=tmp_path).returncode == 0
    expected = json.loads(reference.with_suffix(".scores.json").read_text(encoding="utf-8"))

    source = responses_file(tmp_path / "killed", shared_data, count)
    run_killed("eval_score.py", kill_at, "--input", source, cwd=tmp_path)
    scores = source.with_suffix(".scores.json")
    assert not scores.exists() and not list(source.parent.glob("*.scores*.json"))
    assert json.loads(source.read_text(encoding="utf-8"))["responses"]  # the input is untouched

    again = run_script("eval_score.py", "--input", source, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    written = json.loads(scores.read_text(encoding="utf-8"))
    assert [row["key"] for row in written["per_prompt"]] == [row["key"] for row in expected["per_prompt"]]
    assert len(written["per_prompt"]) == count
    assert without_times(written) == without_times(expected)


def mmlu_results(folder: Path) -> list[Path]:
    return sorted(folder.glob("*_tinymmlu_*.json")) if folder.is_dir() else []


@pytest.mark.slow
def test_eval_mmlu_killed_then_run_again(shared_data, tiny_llama_dir, tmp_path):
    limit, batch = 8, 2
    args = [
        "--model", tiny_llama_dir, "--use-hf", "--precision", "fp32",
        "--data", shared_data / "tinymmlu" / "tinyMMLU_test.jsonl",
        "--limit", limit, "--batch-size", batch, "--no-progress",
    ]  # fmt: skip
    full = run_script("eval_mmlu.py", *args, "--output-dir", tmp_path / "uninterrupted", cwd=tmp_path)
    assert full.returncode == 0, full.stderr[-3000:]
    [reference] = mmlu_results(tmp_path / "uninterrupted")
    expected = json.loads(reference.read_text(encoding="utf-8"))

    killed_dir = tmp_path / "killed"
    run_killed(
        "eval_mmlu.py",
        ("sfteval.mmlu.evaluate", "score_indexed", "after", 2),
        *args,
        "--output-dir",
        killed_dir,
        cwd=tmp_path,
    )
    assert mmlu_results(killed_dir) == []
    assert not killed_dir.exists() or not [p for p in killed_dir.iterdir() if not p.name.startswith(".")]

    again = run_script("eval_mmlu.py", *args, "--output-dir", killed_dir, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    [result] = mmlu_results(killed_dir)
    written = json.loads(result.read_text(encoding="utf-8"))
    assert [item["idx"] for item in written["items"]] == list(range(limit))
    assert written["items"] == expected["items"]
    assert written["summary"] == expected["summary"]
