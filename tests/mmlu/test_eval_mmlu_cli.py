"""eval_mmlu.py as a user runs it: --help, one-line errors with exit code 2, and a small real
run on SmolLM2 whose file follows docs/FORMATS.md (`tinymmlu_results`) and never overwrites."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import eval_mmlu
from sfteval import cli, records
from sfteval.mmlu import evaluate as mmlu

ROOT = Path(__file__).resolve().parents[2]

GOOD_ROW = {"question": "2+2?", "subject": "elementary_mathematics", "choices": ["3", "4", "5", "6"], "answer": 1}


def test_help_is_instant_and_lists_the_options():
    done = subprocess.run(
        [sys.executable, "eval_mmlu.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    for flag in ("--model", "--lora", "--precision", "--use-hf", "--data", "--batch-size", "--limit", "--irt-params"):
        assert flag in done.stdout
    assert "--template {none,chat,alpaca}" in done.stdout and "python eval_mmlu.py" in done.stdout


def test_template_defaults_to_none_and_refuses_auto():
    from sfteval import cli
    from sfteval.model.settings import ModelSettings

    model, settings = cli.parse_settings([ModelSettings, eval_mmlu.MmluSettings], [], None)
    assert (
        settings.template == "none" and model.precision == "bf16" and model.model_to_load == "unsloth/Meta-Llama-3.1-8B"
    )
    with pytest.raises(SystemExit):
        cli.parse_settings([ModelSettings, eval_mmlu.MmluSettings], ["--template", "auto"], None)


@pytest.mark.parametrize(
    ("argv", "use_hf", "printed"),
    [
        ([], True, "loader: transformers (--loader auto"),
        (["--use-hf"], True, "loader: transformers (--loader auto"),
        (["--loader", "hf"], True, "loader: hf (as flagged)"),
        (["--loader", "unsloth"], False, "loader: unsloth (as flagged)"),
    ],
)
def test_the_default_loader_is_transformers_and_unsloth_is_on_request(argv, use_hf, printed):
    from sfteval.model.settings import ModelSettings

    model, settings = cli.parse_settings([ModelSettings, eval_mmlu.MmluSettings], argv, None)
    assert eval_mmlu.choose_loader(model, settings.loader).startswith(printed)
    assert model.use_hf is use_hf


def test_use_hf_contradicting_loader_unsloth_is_a_one_line_error(capsys):
    assert cli.run(eval_mmlu.main, ["--use-hf", "--loader", "unsloth"]) == 2
    assert "--use-hf contradicts --loader unsloth" in capsys.readouterr().err


def test_output_name_follows_the_convention():
    assert (
        eval_mmlu.output_name("unsloth/Meta-Llama-3.1-8B", "out/lora_model_4bit/", "4bit", "20250101_120000")
        == "Meta-Llama-3.1-8B_lora_model_4bit_4bit_tinymmlu_20250101_120000.json"
    )
    assert eval_mmlu.output_name("m", None, "bf16", "t") == "m_bf16_tinymmlu_t.json"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json\n", "is not valid JSON"),
        (json.dumps({"q": "x", "options": [], "label": 0}) + "\n", "lacks question, subject, choices, answer"),
        (json.dumps({**GOOD_ROW, "answer": 7}) + "\n", "`answer` must be 0-3"),
        (json.dumps({**GOOD_ROW, "choices": ["a", "b", "c", "d", "e"]}) + "\n", "exactly 4 answers"),
    ],
)
def test_bad_data_is_a_one_line_error_with_exit_2(tmp_path, capsys, content, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    code = cli.run(eval_mmlu.main, ["--data", str(bad), "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_bad_data_from_the_shell_has_no_traceback(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**GOOD_ROW, "answer": -1}) + "\n")
    done = subprocess.run(
        [sys.executable, "eval_mmlu.py", "--data", str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {bad} row 1: `answer` must be 0-3 (the index of the right choice), got -1"
    ]


def test_missing_data_file(tmp_path, capsys):
    assert cli.run(eval_mmlu.main, ["--data", str(tmp_path / "none.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_an_output_folder_that_is_a_file_is_refused_before_the_model_loads(tmp_path, capsys, shared_data):
    blocker = tmp_path / "eval_results"
    blocker.write_text("notes\n")
    data = shared_data / "tinymmlu" / "tinyMMLU_test.jsonl"
    argv = ["--model", str(tmp_path / "no_model"), "--data", str(data), "--output-dir", str(blocker)]
    assert cli.run(eval_mmlu.main, argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a file, not a folder" in err and blocker.read_text() == "notes\n"


def test_4bit_goes_through_load_model_and_needs_a_gpu(smollm2_dir, shared_data, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this checks the CPU-only message")
    data = shared_data / "tinymmlu" / "tinyMMLU_test.jsonl"
    code = cli.run(eval_mmlu.main, ["--model", str(smollm2_dir), "--precision", "4bit", "--data", str(data)])
    assert code == 2
    assert "--precision 4bit needs a CUDA GPU" in capsys.readouterr().err


def test_small_run_writes_a_self_describing_file_and_never_overwrites(
    smollm2_dir, shared_data, tmp_path, monkeypatch, capsys
):
    data = shared_data / "tinymmlu" / "tinyMMLU_test.jsonl"
    out = tmp_path / "eval_results"
    monkeypatch.setattr(records, "timestamp", lambda: "20250101_120000")
    argv = ["--model", str(smollm2_dir), "--use-hf", "--precision", "fp32", "--data", str(data)]
    argv += ["--batch-size", "2", "--output-dir", str(out), "--no-progress"]
    assert cli.run(eval_mmlu.main, [*argv, "--limit", "2"]) == 0
    printed = capsys.readouterr().out
    assert "tinyMMLU accuracy" in printed and "95% CI" in printed and "IRT skipped" in printed
    assert "always answering" in printed
    assert cli.run(eval_mmlu.main, [*argv, "--limit", "1"]) == 0

    first = out / f"{smollm2_dir.name}_fp32_tinymmlu_20250101_120000.json"
    second = out / f"{smollm2_dir.name}_fp32_tinymmlu_20250101_120000_1.json"
    assert sorted(p.name for p in out.iterdir()) == sorted([first.name, second.name])
    result = json.loads(first.read_text())
    assert result["schema_version"] == 1 and result["kind"] == "tinymmlu_results"
    meta = result["metadata"]
    for key in ("created_at", "command", "host", "platform", "git_commit", "library_versions", "gpu"):
        assert key in meta
    assert meta["model"] == str(smollm2_dir) and meta["adapter"] is None
    assert (meta["precision"], meta["loader"], meta["template"]) == ("fp32", "hf", "none")
    assert (
        meta["data"]["n_items"] == 2
        and meta["data"]["n_items_in_source"] == 100
        and meta["data"]["sha256"] == mmlu.TINYMMLU_TEST_SHA256
    )
    assert meta["data"]["file_sha256"] == records.sha256_file(data)
    assert meta["wall_seconds"] > 0 and meta["peak_gpu_memory_gb"] is None and meta["limit"] == 2
    assert meta["scoring"]["letter_tokens"] == ["ĠA", "ĠB", "ĠC", "ĠD"] and meta["scoring"]["batch_size"] == 2

    summary, rows = result["summary"], result["items"]
    assert [r["idx"] for r in rows] == [0, 1]
    assert summary["n"] == 2 and summary["accuracy"] == pytest.approx(sum(r["correct"] for r in rows) / 2)
    assert re.match(r"2 items: the 95% interval is about \+-\d+\.\d points", summary["note"])
    assert summary["irt"] is None and summary["irt_note"].startswith("IRT skipped")
    assert sum(v["n"] for v in summary["per_subject"].values()) == 2
    questions = mmlu.load_items(str(data))[0]
    for row, item in zip(rows, questions):
        assert set(row) == {"idx", "subject", "answer", "logprobs", "prediction", "correct", "prompt"}
        assert row["prompt"] == mmlu.question_text(item)  # --template none: the plain text itself
        assert len(row["logprobs"]) == 4 and row["prediction"] == max(range(4), key=row["logprobs"].__getitem__)
        assert row["correct"] == (row["prediction"] == row["answer"])
    assert json.loads(second.read_text())["items"][0]["logprobs"] == pytest.approx(rows[0]["logprobs"], abs=1e-4)


def test_lora_adapter_run_takes_the_base_from_train_config(smollm2_dir, shared_data, tmp_path, capsys):
    """A fresh LoRA adapter (B = 0) must leave every log-prob as the base model has it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    adapter = tmp_path / "lora_model_test"
    get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"])).save_pretrained(adapter)
    (adapter / "train_config.json").write_text(json.dumps({"base_model": str(smollm2_dir), "template": "alpaca"}))
    data = shared_data / "tinymmlu" / "tinyMMLU_test.jsonl"
    out = tmp_path / "out"
    common = ["--use-hf", "--precision", "fp32", "--data", str(data), "--limit", "1", "--output-dir", str(out)]
    assert cli.run(eval_mmlu.main, ["--lora", str(adapter), *common, "--no-progress"]) == 0
    assert "trained on the alpaca template; scoring with none" in capsys.readouterr().err
    (path,) = out.glob("*_lora_model_test_fp32_tinymmlu_*.json")
    doc = json.loads(path.read_text())
    assert doc["metadata"]["adapter"] == str(adapter) and doc["metadata"]["model"] == str(smollm2_dir)
    assert doc["metadata"]["adapter_train_config"]["template"] == "alpaca" and doc["metadata"]["template"] == "none"

    from sfteval.model import loading

    plain = loading.load_model(loading.ModelSpec(model=str(smollm2_dir), use_hf=True, precision="fp32"))
    item = mmlu.load_items(str(data))[0][:1]
    (expected,), _ = mmlu.score_items(plain.model, plain.tokenizer, item, "none", 1, progress=False)
    assert doc["items"][0]["logprobs"] == pytest.approx(expected.logprobs, abs=1e-5)
