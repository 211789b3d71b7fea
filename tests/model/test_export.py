"""export.py on CPU: a tiny adapter trained by the real train.py on the tiny random Llama 3, merged
and saved; the folder loads in plain transformers (another process, no project code) and in
eval_generate / inference and gives the adapter's greedy tokens; --push-to-hub with the upload
mocked never prints or writes the token; the one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sfteval import cli, prompts, records
from sfteval.model import export, generation, loading
from tests.conftest import ROOT, load_script

ALPACA_FILE = "alpaca_cleaned/alpaca_data_cleaned_first5000.json"
INSTRUCTIONS = ["Name three primary colors.", "Give me a word that rhymes with cat."]
NEW_TOKENS = 12
SECRET = "hf_sfteval_test_secret_token_do_not_leak"

export_script = load_script(ROOT / "export.py", "export_script")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def adapter(tiny_llama_dir, shared_data, tmp_path_factory) -> Path:
    """Four steps at a high learning rate: an adapter that visibly moves the base's logits."""
    out = tmp_path_factory.mktemp("adapter") / "lora"
    done = subprocess.run(
        [
            sys.executable, str(ROOT / "train.py"), "--model", str(tiny_llama_dir), "--use-hf", "--precision", "fp32",
            "--no-gradient-checkpointing", "--report-to", "none", "--dataset", str(shared_data / ALPACA_FILE),
            "--limit", "16", "--max-length", "128", "--max-steps", "4", "--batch-size", "4", "--grad-accum", "1",
            "--lr", "1e-2", "--warmup-steps", "0", "--output-dir", str(out),
        ],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "HOME": str(out.parent)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def score_files(folder: Path) -> tuple[Path, Path]:
    """A scores file and a tinyMMLU file in the formats of docs/FORMATS.md, for the model card."""
    ifeval = records.envelope(
        "ifeval_scores",
        {},
        summary={
            "n_prompts": 541,
            "prompt_level_strict_acc": 0.4121,
            "prompt_level_strict_acc_ci": [0.37, 0.45],
            "inst_level_strict_acc": 0.5312,
            "inst_level_strict_acc_ci": [0.5, 0.56],
        },
    )
    mmlu = records.envelope("tinymmlu_results", {}, summary={"n": 100, "accuracy": 0.37, "accuracy_ci": [0.28, 0.47]})
    return (
        records.write_json_atomic(folder / "run.scores.json", ifeval),
        records.write_json_atomic(folder / "run_tinymmlu.json", mmlu),
    )


@pytest.fixture(scope="module")
def merged(adapter, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("merged")
    ifeval, mmlu = score_files(folder)
    out = folder / "model"
    code = cli.run(
        export_script.main,
        ["--lora", str(adapter), "--precision", "fp32", "--output-dir", str(out), "--ifeval-scores", str(ifeval),
         "--tinymmlu", str(mmlu)],
    )  # fmt: skip
    assert code == 0
    return out


def adapter_greedy(adapter: Path) -> list[list[int]]:
    """Greedy new tokens of base + adapter (unmerged, through peft), one prompt at a time."""
    loaded = loading.load_model(loading.ModelSpec(model=None, lora=str(adapter), use_hf=True, precision="fp32"))
    tokenizer = loaded.tokenizer
    out = []
    for text in INSTRUCTIONS:
        ids = prompts.encode(tokenizer, prompts.alpaca_prompt(text))
        settings = generation.GenerationSettings(max_new_tokens=NEW_TOKENS)
        (completion,) = generation.generate_batch(
            loaded.model, tokenizer, [ids], settings, [tokenizer.eos_token_id], min_new_tokens=NEW_TOKENS
        )
        out.append(completion.token_ids)
    return out


PLAIN_TRANSFORMERS = """
import json, sys
from transformers import AutoModelForCausalLM, AutoTokenizer
folder, instructions, n = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
tokenizer = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder)
out = []
for text in instructions:
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                           return_tensors="pt")
    ids = model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False)
    out.append(ids[0, inputs["input_ids"].shape[1]:].tolist())
print(json.dumps({"tokens": out, "eos": model.generation_config.eos_token_id,
                  "project_imported": any(m.startswith("sfteval") for m in sys.modules)}))
"""


def test_plain_transformers_gives_the_adapters_greedy_tokens(merged, adapter, tmp_path):
    """Another interpreter, outside the project and without it on the path, loads the folder with
    AutoModelForCausalLM/AutoTokenizer, prompts through the chat template and decodes greedily."""
    done = subprocess.run(
        [sys.executable, "-c", PLAIN_TRANSFORMERS, str(merged), json.dumps(INSTRUCTIONS), str(NEW_TOKENS)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    plain = json.loads(done.stdout.strip().splitlines()[-1])
    assert plain["project_imported"] is False
    trained_eos = json.loads((adapter / "train_config.json").read_text())["model"]["eos_token_id"]
    assert plain["eos"] == trained_eos
    assert plain["tokens"] == adapter_greedy(adapter)


def test_the_folder_describes_itself(merged, adapter):
    names = {p.name for p in merged.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "README.md"} <= names
    assert {"train_config.json", export.EXPORT_FILE} <= names and "adapter_config.json" not in names
    record = json.loads((merged / export.EXPORT_FILE).read_text())
    assert record["kind"] == export.EXPORT_KIND and record["metadata"]["dtype"] == "fp32"
    check = record["logit_check"]
    # fp32: the merge changes rounding only, while the adapter itself moves the logits a lot.
    assert check["max_abs_logit_difference_merged_vs_adapter"] < 1e-4
    assert check["max_abs_logit_difference_adapter_vs_base"] > 1e-2
    assert check["same_argmax_every_position"] is True and check["prompts"] == len(export.CHECK_INSTRUCTIONS)
    train_config = json.loads((adapter / "train_config.json").read_text())
    assert json.loads((merged / "train_config.json").read_text()) == train_config
    card = (merged / "README.md").read_text()
    assert card.startswith("---\nbase_model: ") and 'library_name: "transformers"' in card
    assert '"learning_rate": 0.01' in card and '"lora_r": 16' in card
    assert "| prompt_level_strict_acc | 0.412 | [0.370, 0.450] |" in card and "accuracy 0.370 [0.280, 0.470]" in card
    assert f"{check['max_abs_logit_difference_merged_vs_adapter']:.3g}" in card
    assert "no adapter or project code is needed" in card


def test_eval_generate_and_inference_load_the_folder(merged, adapter, shared_data, tmp_path):
    """eval_generate's run with --model DIR (template auto = the folder's alpaca chat template)
    writes the adapter run's responses; inference.py --model DIR answers the same."""
    from sfteval.ifeval import run as ifeval_run

    common = dict(precision="fp32", prompts=str(shared_data / "ifeval" / "input_data.jsonl"), limit=2,
                  max_new_tokens=NEW_TOKENS, batch_size=1, progress=False)  # fmt: skip
    via_adapter = ifeval_run.run(
        ifeval_run.RunConfig(model=None, adapter=str(adapter), output=str(tmp_path / "a.json"), **common)
    )
    via_merged = ifeval_run.run(ifeval_run.RunConfig(model=str(merged), output=str(tmp_path / "m.json"), **common))
    rows = [json.loads(result.output.read_text())["responses"] for result in (via_adapter, via_merged)]
    assert json.loads(via_merged.output.read_text())["metadata"]["template"] == "chat"
    assert [r["response"] for r in rows[0]] == [r["response"] for r in rows[1]]
    assert all(r["new_tokens"] > 0 for r in rows[1])

    done = subprocess.run(
        [sys.executable, str(ROOT / "inference.py"), "--model", str(merged), "--use-hf", "--precision", "fp32",
         "--prompt", INSTRUCTIONS[0], "--max-new-tokens", str(NEW_TOKENS)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "template chat]" in done.stderr and done.stdout.strip()


def test_push_to_hub_uploads_the_folder_and_never_shows_the_token(adapter, tmp_path, monkeypatch, capsys):
    """The upload is mocked (no network). The token reaches huggingface_hub only; it is in no output
    line and no file of the folder. A 4-bit-trained adapter gets the QLoRA merge note."""
    import huggingface_hub

    qlora = tmp_path / "qlora"
    shutil.copytree(adapter, qlora)
    train_config = json.loads((qlora / "train_config.json").read_text())
    train_config["precision"] = "4bit"
    (qlora / "train_config.json").write_text(json.dumps(train_config))
    monkeypatch.setenv("HF_TOKEN", SECRET)
    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, folder_path, repo_id, **kwargs):
        files = sorted(p.name for p in Path(folder_path).iterdir())
        calls.append(("upload_folder", repo_id, files))
        return huggingface_hub.CommitInfo(
            commit_url=f"https://huggingface.co/{repo_id}/commit/abc",
            commit_message="m",
            commit_description="",
            oid="abc",
        )

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    out = tmp_path / "pushed"
    code = cli.run(
        export_script.main,
        [
            "--lora",
            str(qlora),
            "--precision",
            "fp32",
            "--output-dir",
            str(out),
            "--push-to-hub",
            "me/tiny",
            "--private",
        ],
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert [c[0] for c in calls] == ["create_repo", "upload_folder"]
    assert calls[0][2]["private"] is True and calls[1][1] == "me/tiny" and "model.safetensors" in calls[1][2]
    assert "uploaded to https://huggingface.co/me/tiny/commit/abc" in captured.err
    assert "QLoRA" in captured.err and "bf16 base" in captured.err
    assert SECRET not in captured.out + captured.err
    for path in out.rglob("*"):
        assert SECRET.encode() not in path.read_bytes(), path
    assert 'from_pretrained("me/tiny")' in (out / "README.md").read_text()


def test_one_line_errors_before_any_model_loads(adapter, tmp_path, monkeypatch, capsys):
    def fails(*args):
        code = cli.run(export_script.main, ["--lora", str(adapter), *args])
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
        return lines[0]

    (tmp_path / "taken").mkdir()
    assert "already exists" in fails("--output-dir", str(tmp_path / "taken"))
    assert "needs --push-to-hub" in fails("--output-dir", str(tmp_path / "x"), "--private")
    wrong = records.write_json_atomic(tmp_path / "wrong.json", records.envelope("tinymmlu_results", {}, summary={}))
    assert "is not a ifeval_scores file" in fails("--output-dir", str(tmp_path / "x"), "--ifeval-scores", str(wrong))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no_login"))
    assert "needs a Hugging Face login" in fails("--output-dir", str(tmp_path / "x"), "--push-to-hub", "me/tiny")
    with pytest.raises(cli.UserError, match="cannot take the merge"):
        export.plan(export.ExportSettings(lora=str(adapter), output_dir=str(tmp_path / "x"), precision="4bit"))
    assert not (tmp_path / "x").exists()
