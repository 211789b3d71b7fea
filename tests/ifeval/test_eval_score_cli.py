"""eval_score.py as a user runs it: output names, official files, bad inputs as one-line
errors with exit code 2, offline nltk data, and identical files from separate processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sfteval import cli
from sfteval.ifeval import scoring as ifeval
from tests.conftest import LANGDETECT_IDS, ROOT, load_script, read_jsonl, without_times, write_jsonl


def run_script(*args, env=None):
    return subprocess.run(
        [sys.executable, str(ROOT / "eval_score.py"), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


@pytest.fixture(scope="module")
def eval_score():
    return load_script(ROOT / "eval_score.py", "eval_score")


@pytest.fixture(scope="module")
def prompts_file(shared_data):
    return shared_data / "ifeval" / "input_data.jsonl"


@pytest.fixture(scope="module")
def phi3_official(shared_data):
    return {
        mode: read_jsonl(shared_data / "ifeval" / f"phi3_eval_results_{mode}.jsonl") for mode in ("strict", "loose")
    }


@pytest.fixture(scope="module")
def prompt_rows(prompts_file):
    return [json.loads(line) for line in open(prompts_file)]


@pytest.fixture
def call(eval_score, capsys):
    """Run main in this process through cli.run; (exit code, stdout, stderr)."""

    def run(*args):
        code = cli.run(eval_score.main, [str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def official_subset(path, phi3_official, indices):
    rows = [
        {"prompt": phi3_official["strict"][i]["prompt"], "response": phi3_official["strict"][i]["response"]}
        for i in indices
    ]
    return write_jsonl(path, rows)


def own_file(path, prompt_rows, phi3_official, count, n_prompts, limit=None):
    rows = [{**p, "response": o["response"]} for p, o in zip(prompt_rows[:count], phi3_official["strict"])]
    document = {
        "schema_version": 1,
        "kind": "ifeval_responses",
        "metadata": {"n_prompts": n_prompts, "limit": limit},
        "responses": rows,
    }
    path.write_text(json.dumps(document))
    return path


def test_help_is_instant_and_shows_examples():
    done = run_script("--help")
    assert done.returncode == 0
    assert "python eval_score.py --input" in done.stdout and "--official-out" in done.stdout


def test_scores_go_next_to_the_input_under_a_free_name(call, tmp_path, phi3_official, prompts_file):
    source = official_subset(tmp_path / "run.official.jsonl", phi3_official, range(12))
    code, out, err = call("--input", source, "--prompts", prompts_file)
    assert code == 0, err
    first = tmp_path / "run.official.scores.json"
    document = json.loads(first.read_text())
    assert document["kind"] == "ifeval_scores" and document["summary"]["n_prompts"] == 12
    assert "prompt-level" in out and "instruction-level" in out and f"wrote {first}" in out
    assert "answers 12 of the 541 prompts in the prompt set" in out
    code, out, _ = call("--input", source, "--prompts", prompts_file)
    assert code == 0 and (tmp_path / "run_1.official.scores.json").exists()
    assert json.loads(first.read_text()) == document  # untouched


def test_an_explicit_output_that_exists_is_refused(call, tmp_path, phi3_official, prompts_file):
    source = official_subset(tmp_path / "run.jsonl", phi3_official, range(3))
    taken = tmp_path / "taken.json"
    taken.write_text("{}")
    code, out, err = call("--input", source, "--prompts", prompts_file, "--output", taken)
    assert code == 2 and err.count("\n") == 1 and "already exists" in err
    assert taken.read_text() == "{}"


def test_official_files_keep_the_input_order_and_the_official_verdicts(call, tmp_path, phi3_official, prompts_file):
    indices = [40, 3, 17, 200, 5]  # not prompt-set order
    source = official_subset(tmp_path / "shuffled.jsonl", phi3_official, indices)
    out_dir = tmp_path / "official"
    code, _, err = call("--input", source, "--prompts", prompts_file, "--official-out", out_dir)
    assert code == 0, err
    for mode in ("strict", "loose"):
        rows = read_jsonl(out_dir / f"eval_results_{mode}.jsonl")
        assert [list(r) for r in rows] == [
            ["prompt", "response", "instruction_id_list", "follow_all_instructions", "follow_instruction_list"]
        ] * len(indices)
        expected = [phi3_official[mode][i] for i in indices]
        assert [r["prompt"] for r in rows] == [e["prompt"] for e in expected]
        assert [r["follow_instruction_list"] for r in rows] == [e["follow_instruction_list"] for e in expected]
    code, _, err = call("--input", source, "--prompts", prompts_file, "--official-out", out_dir)
    assert code == 2 and "already exist" in err


BAD_INPUTS = {
    "not_json": ("hello world\n", "is not JSON or JSONL"),
    "empty": ("", "is empty"),
    "other_kind": (json.dumps({"schema_version": 1, "kind": "tinymmlu_results"}), "'tinymmlu_results' file"),
    "unknown_rows": ('{"instruction": "a", "output": "b"}\n', "unknown format"),
    "json_array": ("[1, 2]", "unknown format"),
    "foreign_prompt": (
        '{"prompt": "Write a limerick about a cat.", "response": "x"}\n',
        "1 of 1 prompts are not in the prompt set",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_code_2(call, tmp_path, prompts_file, case):
    content, message = BAD_INPUTS[case]
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    code, out, err = call("--input", path, "--prompts", prompts_file)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert not list(tmp_path.glob("*.scores.json"))


def test_duplicate_prompts_are_refused(call, tmp_path, phi3_official, prompts_file):
    source = official_subset(tmp_path / "dup.jsonl", phi3_official, [0, 1, 0])
    code, _, err = call("--input", source, "--prompts", prompts_file)
    assert code == 2 and err.count("\n") == 1 and "two responses for the prompt" in err


def test_a_missing_file_is_one_line(call, tmp_path):
    code, _, err = call("--input", tmp_path / "nope.json")
    assert code == 2 and err == f"error: responses file {tmp_path / 'nope.json'} does not exist\n"


def test_a_crashed_run_is_refused_with_the_count_then_scored_with_allow_missing(
    call, tmp_path, prompt_rows, phi3_official
):
    source = own_file(tmp_path / "crashed.json", prompt_rows, phi3_official, count=5, n_prompts=541)
    code, _, err = call("--input", source)
    assert code == 2 and err.count("\n") == 1
    assert "holds 5 of the 541 responses" in err and "--allow-missing" in err
    code, out, err = call("--input", source, "--allow-missing")
    assert code == 0, err
    assert "scored 5 of 541 promised responses, 536 missing" in out
    assert json.loads((tmp_path / "crashed.scores.json").read_text())["metadata"]["n_prompts_scored"] == 5


def test_a_limit_file_is_complete_and_prints_its_n(call, tmp_path, prompt_rows, phi3_official):
    source = own_file(tmp_path / "limit.json", prompt_rows, phi3_official, count=8, n_prompts=8, limit=8)
    code, out, err = call("--input", source)
    assert code == 0, err
    assert "8 prompts" in out and "--limit 8; n = 8 prompts" in out


def test_a_real_process_prints_no_traceback(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    done = run_script("--input", path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_missing_punkt_tab_offline_is_one_line_with_the_fix(tmp_path, phi3_official):
    import nltk

    home = tmp_path / "home"
    home.mkdir()
    system_paths = [p for p in nltk.data.path if not p.startswith((str(Path.home()), os.environ.get("NLTK_DATA", "@")))]
    if any((Path(p) / "tokenizers" / "punkt_tab").exists() for p in system_paths):
        pytest.skip("this machine has punkt_tab in a system folder")
    source = official_subset(tmp_path / "r.jsonl", phi3_official, range(2))
    closed = "http://127.0.0.1:9"  # no download even where there is a network
    env = {"NLTK_DATA": str(tmp_path / "empty"), "HOME": str(home), "https_proxy": closed, "HTTPS_PROXY": closed}
    done = run_script("--input", source, "--prompts", ROOT.parent / "shared/data/ifeval/input_data.jsonl", env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "python -m nltk.downloader punkt_tab" in done.stderr and "NLTK_DATA" in done.stderr


def test_separate_processes_write_identical_files(tmp_path, phi3_official, prompts_file):
    """The items the official scorer decides at random, scored by two processes with other
    hash seeds and by this one: the same file but for the timestamps."""
    indices = [
        i
        for i, row in enumerate(phi3_official["strict"])
        if LANGDETECT_IDS & set(row["instruction_id_list"]) or "keywords:letter_frequency" in row["instruction_id_list"]
    ]
    source = official_subset(tmp_path / "random_prone.jsonl", phi3_official, indices)
    documents = []
    for seed in ("0", "4242"):
        output = tmp_path / f"run{seed}.json"
        done = run_script(
            "--input", source, "--prompts", prompts_file, "--output", output, env={"PYTHONHASHSEED": seed}
        )
        assert done.returncode == 0, done.stderr
        documents.append(without_times(json.loads(output.read_text())))
    documents.append(without_times(ifeval.score_file(source, prompts=prompts_file)))
    assert documents[0]["summary"]["n_prompts"] == len(indices)
    assert documents[0] == documents[1] == documents[2]


@pytest.mark.parametrize("flag", ["--output", "--official-out"])
def test_an_output_under_a_file_is_refused_before_scoring(call, tmp_path, phi3_official, prompts_file, flag):
    source = official_subset(tmp_path / "run.jsonl", phi3_official, range(3))
    blocker = tmp_path / "blocker"
    blocker.write_text("notes\n")
    code, out, err = call("--input", source, "--prompts", prompts_file, flag, blocker / "inside" / "x.json")
    assert code == 2 and err.count("\n") == 1 and "is a file, not a folder" in err
    assert out == "" and not list(tmp_path.glob("*.scores.json"))  # no half output: nothing scored or written


def test_an_empty_input_name_is_one_line_that_says_no_run_exists(call, tmp_path):
    # `--input "$(ls -t eval_responses/*[0-9].json | head -1)"` before any run gives ""
    code, out, err = call("--input", "")
    assert code == 2 and out == ""
    assert err.startswith("error: --input is empty") and err.count("\n") == 1 and "eval_generate.py" in err


def test_a_folder_as_input_is_one_line(call, tmp_path):
    code, _, err = call("--input", tmp_path)
    assert (
        code == 2
        and err == f"error: --input {tmp_path} is a folder; name a responses .json (or official .jsonl) file in it\n"
    )


def test_captured_output_holds_no_progress_bar(tmp_path, phi3_official, prompts_file):
    source = official_subset(tmp_path / "three.jsonl", phi3_official, range(3))
    done = run_script("--input", source, "--prompts", prompts_file)
    assert done.returncode == 0, done.stderr
    assert "scoring" not in done.stderr and "\r" not in done.stderr  # tqdm redraws with carriage returns
