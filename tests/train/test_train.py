"""train.py end to end on CPU: real SmolLM2 and the shared alpaca records, the tiny Llama 3
fixture for resume, and the command line's errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import train
from sfteval import cli, prompts
from sfteval.model import generation, loading
from sfteval.train import data

ROOT = Path(__file__).resolve().parents[2]
ALPACA_FILE = "alpaca_cleaned/alpaca_data_cleaned_first5000.json"
CPU = ["--use-hf", "--precision", "fp32", "--no-gradient-checkpointing", "--report-to", "none"]
# train.py with the kill and batch-log hooks of the resume tests added from the test side.
HOOKED_TRAIN = "tests/train/train_with_hooks.py"


def script_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.update(extra)
    return env


def run_script(script: str, *args: str, env: dict[str, str] | None = None, timeout: int = 300):
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        capture_output=True,
        text=True,
        env=env or script_env(),
        cwd=ROOT,
        timeout=timeout,
    )


def run_main(capsys, *args: str) -> tuple[int, str]:
    code = cli.run(train.main, list(args))
    return code, capsys.readouterr().err


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


# ---------------------------------------------------------------- command line


def test_help_is_instant_and_complete():
    result = run_script("train.py", "--help")
    assert result.returncode == 0, result.stderr
    for flag in (
        "--dataset",
        "--precision",
        "--use-hf",
        "--epochs",
        "--max-steps",
        "--limit",
        "--val-size",
        "--resume",
    ):
        assert flag in result.stdout
    for flag in ("--packing", "--no-gradient-checkpointing", "--estimate-memory", "--report-to", "--wandb-project"):
        assert flag in result.stdout
    bench = run_script("bench/train_throughput.py", "--help")
    assert bench.returncode == 0 and "--configs" in bench.stdout and "--steps" in bench.stdout


def test_estimate_memory_prints_the_table_offline():
    result = run_script("train.py", "--estimate-memory", "--precision", "4bit", "--rank", "16")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "llama-3.1-8b" in out and "8.03 B parameters" in out
    for word in ("full finetune", "LoRA (bf16)", "QLoRA (4-bit) *", "optimizer state", "activations", "logits"):
        assert word in out
    total = next(line for line in out.splitlines() if line.startswith("total "))
    full, lora, qlora = (float(x) for x in total.split()[1:4])
    assert 95 < full < 110 and lora < 40 and qlora < lora


BAD = {
    "wrong_keys.json": (json.dumps([{"question": "a", "answer": "b"}]), "alpaca format needs instruction, output"),
    "empty.json": ("", "is empty"),
    "not_json.json": ("{this is not json", "not valid JSON"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_dataset_is_a_one_line_error_before_any_model_loads(tmp_path, capsys, name):
    text, expected = BAD[name]
    (tmp_path / name).write_text(text)
    code, err = run_main(capsys, *CPU, "--dataset", str(tmp_path / name), "--output-dir", str(tmp_path / "out"))
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_offline_hub_dataset_is_a_one_line_error(tmp_path):
    env = script_env(HF_HOME=str(tmp_path / "hf"))
    result = run_script(
        "train.py", *CPU, "--dataset", "yahma/alpaca-cleaned", "--output-dir", str(tmp_path / "o"), env=env
    )
    lines = error_lines(result.stderr)
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "could not load dataset 'yahma/alpaca-cleaned'" in lines[0] and "local alpaca .json" in lines[0]


def test_the_gpu_recipe_on_a_cpu_fails_first_and_names_what_runs_here(tmp_path, capsys, monkeypatch):
    # the README's `python train.py` (4-bit) on a machine without CUDA: refused before the dataset is read
    monkeypatch.setattr(loading, "cuda_available", lambda: False)
    code, err = run_main(capsys, "--dataset", str(tmp_path / "not_read.json"), "--output-dir", str(tmp_path / "out"))
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: --precision 4bit needs a CUDA GPU") and "not_read.json" not in lines[0]
    assert "run_pipeline.py --smoke" in lines[0] and "requirements-score.txt" in lines[0]
    assert not (tmp_path / "out.partial").exists()


def test_output_folders_are_never_overwritten(tmp_path, capsys, shared_data):
    dataset = str(shared_data / ALPACA_FILE)
    (tmp_path / "done").mkdir()
    code, err = run_main(capsys, *CPU, "--dataset", dataset, "--output-dir", str(tmp_path / "done"))
    assert code == 2 and "already exists" in err
    code, err = run_main(capsys, *CPU, "--dataset", dataset, "--output-dir", str(tmp_path / "new"), "--resume")
    assert code == 2 and "no unfinished run" in err
    (tmp_path / "half.partial").mkdir()
    code, err = run_main(capsys, *CPU, "--dataset", dataset, "--output-dir", str(tmp_path / "half"))
    assert code == 2 and "pass --resume" in err
    (tmp_path / "notes").write_text("mine\n")
    code, err = run_main(capsys, *CPU, "--dataset", dataset, "--output-dir", str(tmp_path / "notes" / "lora"))
    assert code == 2 and len(error_lines(err)) == 1 and "is a file, not a folder" in err


# ---------------------------------------------------------------- real training on SmolLM2


@pytest.mark.slow
def test_smollm2_on_real_alpaca_lowers_the_held_out_loss(tmp_path, capsys, smollm2_dir, shared_data):
    out = tmp_path / "lora"
    args = [
        "--model", str(smollm2_dir), *CPU,
        "--dataset", str(shared_data / ALPACA_FILE), "--limit", "120", "--max-length", "96",
        "--val-size", "8", "--eval-on-start", "--max-steps", "20", "--batch-size", "2", "--grad-accum", "1",
        "--lr", "1e-3", "--warmup-steps", "2", "--logging-steps", "5", "--output-dir", str(out),
    ]  # fmt: skip
    code, err = run_main(capsys, *args)
    assert code == 0, err
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in out.iterdir()}
    assert (out / "tokenizer.json").is_file() and not (tmp_path / "lora.partial").exists()
    config = json.loads((out / "train_config.json").read_text())
    assert config["kind"] == "train_config" and config["schema_version"] == 1
    assert config["base_model"] == str(smollm2_dir) and config["template"] == "alpaca"
    assert (config["loader"], config["precision"]) == ("hf", "fp32")
    results, stats, hyper = config["results"], config["data"], config["hyperparameters"]
    # Held-out loss goes down after 20 steps.
    assert results["eval_loss_final"] < results["eval_loss_initial"] - 0.05
    assert results["global_step"] == 20 and results["tokens_seen"] > 20 * 2 * 40
    assert results["tokens_per_second"] > 0 and results["train_seconds"] > 0
    # The rate after the first steps (compile, warm-up): steps 5 to 20.
    assert (results["steady_from_step"], results["steady_steps"]) == (5, 15)
    assert results["steady_tokens_per_second"] > 0
    assert "tokens/s from step 5 on)" in err
    # Overlong examples: counted, recorded and printed.
    assert stats["n_dropped_overlong"] > 0 and stats["n_train"] + stats["n_val"] + stats["n_dropped_overlong"] == 120
    assert f"dropped {stats['n_dropped_overlong']} of 120 examples" in err
    assert hyper["optim"] == "adamw_8bit" and hyper["optim_used"] == "adamw_torch" and "CPU" in hyper["optim_fallback"]
    assert hyper["effective_batch"] == 2 and hyper["learning_rate"] == 1e-3
    assert config["dataset"]["sha256"] == "5f9b70e54ff1d5a87cd3ca9074502fdb5d5312eaf76f736431f636be2183662c"
    assert config["model"]["pad_token_id"] != config["model"]["eos_token_id"]
    assert config["metadata"]["library_versions"]["transformers"] and "git_commit" in config["metadata"]
    assert any("eval_loss" in entry for entry in config["log_history"])


TOY = [
    {"instruction": "Tell me the secret word.", "input": "", "output": "The secret word is zephyr."},
    {"instruction": "What colour is the sky on Planet Quux?", "input": "", "output": "Mauve, always."},
    {"instruction": "Repeat the code.", "input": "K7-Q2", "output": "K7-Q2"},
]


@pytest.mark.slow
def test_toy_set_teaches_the_answer_and_the_stop(tmp_path, capsys, smollm2_dir):
    """A few dozen steps on three records: greedy generation reproduces each answer and stops on
    EOS, in-process and through inference.py (bf16, the adapter's recorded base and template)."""
    dataset = tmp_path / "toy.json"
    dataset.write_text(json.dumps(TOY))
    out = tmp_path / "toy_lora"
    args = [
        "--model", str(smollm2_dir), *CPU, "--dataset", str(dataset), "--max-steps", "14",
        "--batch-size", "3", "--grad-accum", "1", "--lr", "3e-3", "--warmup-steps", "2", "--packing",
        "--logging-steps", "4", "--output-dir", str(out),
    ]  # fmt: skip
    code, err = run_main(capsys, *args)
    assert code == 0, err
    config = json.loads((out / "train_config.json").read_text())
    assert config["hyperparameters"]["packing_used"] is True
    assert config["results"]["train_loss_final"] < 0.2 < config["results"]["train_loss_first"]

    loaded = loading.load_model(loading.ModelSpec(model=None, lora=str(out), use_hf=True, precision="fp32"))
    tok = loaded.tokenizer
    stop = generation.stop_token_ids(tok, loaded.model, "alpaca")
    ids = [prompts.encode(tok, prompts.render("alpaca", tok, r["instruction"], r["input"])) for r in TOY]
    completions = generation.generate_batch(
        loaded.model, tok, ids, generation.GenerationSettings(max_new_tokens=24), stop
    )
    assert [c.text for c in completions] == [r["output"] for r in TOY]
    assert [c.stop_reason for c in completions] == ["eos"] * 3

    # The adapter's own tokenizer carries the template it was trained with, for apply_chat_template users.
    from transformers import AutoTokenizer

    saved = AutoTokenizer.from_pretrained(out)
    chat = [{"role": "user", "content": TOY[0]["instruction"]}]
    chat_ids = saved.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert chat_ids == prompts.encode(tok, prompts.alpaca_prompt(TOY[0]["instruction"]))
    answered = saved.apply_chat_template([*chat, {"role": "assistant", "content": "Blue."}], tokenize=False)
    assert answered == prompts.alpaca_prompt(TOY[0]["instruction"]) + "Blue." + tok.eos_token

    result = run_script(
        "inference.py", "--use-hf", "--precision", "bf16", "--lora", str(out), "--prompt", TOY[0]["instruction"],
        "--max-new-tokens", "24",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == TOY[0]["output"]
    assert f"[{smollm2_dir} | adapter {out} | bf16 | hf | template alpaca]" in result.stderr
    assert "stopped at --max-new-tokens" not in result.stderr


# ---------------------------------------------------------------- resume after a kill, W&B offline


def read_batches(path: Path) -> list[list[str]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_resume_after_a_kill_continues_where_it_stopped(tmp_path, tiny_llama_dir, shared_data):
    common = [
        "--model", str(tiny_llama_dir), "--use-hf", "--precision", "fp32", "--no-gradient-checkpointing",
        "--dataset", str(shared_data / ALPACA_FILE), "--limit", "80", "--max-length", "128", "--packing",
        "--batch-size", "2", "--grad-accum", "2", "--max-steps", "6", "--save-steps", "2", "--lr", "1e-3",
        "--warmup-steps", "1", "--logging-steps", "1",
    ]  # fmt: skip
    # 1. Uninterrupted, reporting to W&B with no login: a notice, then an offline run.
    home = tmp_path / "home"
    home.mkdir()
    env = script_env(HOME=str(home), WANDB_DIR=str(tmp_path))
    full = run_script(
        HOOKED_TRAIN, "--batch-log", str(tmp_path / "full.jsonl"),
        *common, "--report-to", "wandb", "--output-dir", str(tmp_path / "full"), env=env,
    )  # fmt: skip
    assert full.returncode == 0, full.stderr
    assert "notice: no W&B login found" in full.stderr
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))
    # Offline runs keep their records in the binary run-*.wandb file: metric and config names
    # are stored there as plain strings.
    blob = b"".join(path.read_bytes() for path in runs[0].glob("run-*.wandb"))
    for key in ("train/loss", "train/learning_rate", "train/grad_norm", "train/tokens_per_second", "effective_batch"):
        assert key.encode() in blob, key

    # 2. The same run, SIGKILLed right after its step-4 checkpoint.
    killed_dir = tmp_path / "resumed"
    killed = run_script(
        HOOKED_TRAIN, "--kill-after-step", "3", "--batch-log", str(tmp_path / "part1.jsonl"),
        *common, "--report-to", "none", "--output-dir", str(killed_dir),
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    partial = tmp_path / "resumed.partial"
    assert not killed_dir.exists() and (partial / "checkpoints" / "checkpoint-4").is_dir()

    # A kill while step 6 was being saved leaves a checkpoint folder holding only its README.
    torn = partial / "checkpoints" / "checkpoint-6"
    torn.mkdir()
    (torn / "README.md").write_text("---\nlibrary_name: peft\n---\n")

    # 3. --resume refuses changed settings, then skips the torn checkpoint and continues from step 4.
    changed = [*common[:-6], "--lr", "5e-4", *common[-4:]]
    refused = run_script("train.py", *changed, "--report-to", "none", "--output-dir", str(killed_dir), "--resume")
    assert refused.returncode == 2 and "learning_rate" in refused.stderr
    resumed = run_script(
        HOOKED_TRAIN, "--batch-log", str(tmp_path / "part2.jsonl"),
        *common, "--report-to", "none", "--output-dir", str(killed_dir), "--resume",
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr and "checkpoint-4" in resumed.stderr
    assert "checkpoint-6 is incomplete" in resumed.stderr

    # Same micro-batches in the same order, none repeated, none skipped.
    batches_full = read_batches(tmp_path / "full.jsonl")
    part1, part2 = read_batches(tmp_path / "part1.jsonl"), read_batches(tmp_path / "part2.jsonl")
    assert len(batches_full) == 6 * 2 and len(part1) == 4 * 2 and len(part2) == 2 * 2
    assert part1 + part2 == batches_full
    seen = [fp for batch in batches_full for fp in batch]
    assert len(seen) == 6 * 2 * 2 == len(set(seen))

    # Same end point: step count, tokens seen, losses and adapter weights.
    a = json.loads((tmp_path / "full" / "train_config.json").read_text())["results"]
    b = json.loads((killed_dir / "train_config.json").read_text())["results"]
    assert a["global_step"] == b["global_step"] == 6 and b["resumed_from"].endswith("checkpoint-4")
    assert a["tokens_seen"] == b["tokens_seen"]
    assert b["train_loss_final"] == pytest.approx(a["train_loss_final"], rel=1e-4)
    # With --logging-steps 1 every step's loss is in the log: the session means follow from it.
    full_log = json.loads((tmp_path / "full" / "train_config.json").read_text())["log_history"]
    step_losses = {entry["step"]: entry["loss"] for entry in full_log if "loss" in entry}
    assert a["steps_this_session"] == 6 and b["steps_this_session"] == 2
    assert a["train_loss_mean_this_session"] == pytest.approx(sum(step_losses.values()) / 6, rel=1e-3)
    assert b["train_loss_mean_this_session"] == pytest.approx((step_losses[5] + step_losses[6]) / 2, rel=1e-3)
    from safetensors.torch import load_file

    wa = load_file(tmp_path / "full" / "adapter_model.safetensors")
    wb = load_file(killed_dir / "adapter_model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        assert (wa[key] - wb[key]).abs().max().item() < 1e-5, key
    assert data.IGNORE_INDEX == -100


# ---------------------------------------------------------------- the GPU trainer's setup, checked on CPU


@pytest.mark.parametrize("packing", [True, False])
def test_trl_trainer_for_the_gpu_keeps_our_labels(tiny_llama_dir, shared_data, tmp_path, packing):
    """On a GPU, TRL's SFTTrainer gets the pre-tokenized data; it must train on our labels
    unchanged (prompt masked, EOS kept) with its own collator. TRL cannot train on a CPU, but
    it can be built and its data pipeline checked."""
    from sfteval.train import trainer

    settings = trainer.TrainSettings(
        model=str(tiny_llama_dir), dataset=str(shared_data / ALPACA_FILE), precision="fp32", use_hf=True,
        limit=12, val_size=2, packing=packing, report_to="none", max_steps=3,
    )  # fmt: skip
    loaded = trainer.load_model(settings)
    rows, _ = data.load_records(settings.dataset, limit=settings.limit)
    tokenized = data.prepare(loaded.tokenizer, rows, settings.max_length, val_size=2, seed=settings.seed)
    built = trainer.build_trainer(settings, loaded, tokenized, str(tmp_path), use_trl=True)
    trainer = built.trainer
    assert type(trainer).__name__ == "SFTTrainer" and built.backend == "trl" and built.packing_used is packing
    assert trainer.args.max_length is None and trainer.args.include_num_input_tokens_seen == "non_padding"
    assert trainer.args.optim == "adamw_torch" and built.optimizer_note
    prepared = trainer.train_dataset
    assert prepared.column_names == ["input_ids", "labels"]
    assert [prepared[i]["labels"] for i in range(len(prepared))] == [ex["labels"] for ex in tokenized.train]
    batch = trainer.data_collator([prepared[0], prepared[1]])
    pad, eos = loaded.tokenizer.pad_token_id, loaded.tokenizer.eos_token_id
    assert int((batch["labels"] == eos).sum()) == 2 and pad != eos
    if packing:
        assert batch["input_ids"].shape[0] == 1 and "position_ids" in batch and "attention_mask" not in batch
    else:
        assert batch["input_ids"].shape[0] == 2
        assert ((batch["input_ids"] == pad) == (batch["attention_mask"] == 0)).all()
        assert (batch["labels"][batch["attention_mask"] == 0] == data.IGNORE_INDEX).all()


@pytest.mark.parametrize("use_trl", [True, False])
def test_group_by_length_fills_each_batch_with_similar_lengths(tiny_llama_dir, shared_data, tmp_path, use_trl):
    """--group-by-length: both trainers sample through transformers' LengthGroupedSampler, so an
    effective batch holds examples of similar length (little padding) in a seeded order."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from sfteval.train import trainer

    settings = trainer.TrainSettings(
        model=str(tiny_llama_dir), dataset=str(shared_data / ALPACA_FILE), precision="fp32", use_hf=True,
        limit=256, batch_size=4, grad_accum=2, group_by_length=True, report_to="none", max_steps=3,
    )  # fmt: skip
    loaded = trainer.load_model(settings)
    rows, _ = data.load_records(settings.dataset, limit=settings.limit)
    tokenized = data.prepare(loaded.tokenizer, rows, settings.max_length, seed=settings.seed)
    built = trainer.build_trainer(settings, loaded, tokenized, str(tmp_path), use_trl=use_trl)
    sampler = built.trainer._get_train_sampler()
    assert isinstance(sampler, LengthGroupedSampler)
    order = list(sampler)
    assert sorted(order) == list(range(len(tokenized.train)))
    lengths = [len(ex["input_ids"]) for ex in tokenized.train]

    def padded_share(indices: list[int]) -> float:
        groups = [indices[i : i + 8] for i in range(0, len(indices), 8)]
        padded = sum(max(lengths[j] for j in g) * len(g) for g in groups)
        return 1 - sum(lengths) / padded

    shuffled = list(range(len(lengths)))
    __import__("random").Random(0).shuffle(shuffled)
    assert padded_share(order) < padded_share(shuffled) / 2


def test_train_bench_runs_a_grouped_config_and_profiles_it_on_cpu(tiny_llama_dir, shared_data, tmp_path):
    out = tmp_path / "bench.json"
    result = run_script(
        "bench/train_throughput.py", "--model", str(tiny_llama_dir), "--data", str(shared_data / ALPACA_FILE),
        "--examples", "64", "--configs", "hf-bf16-b4-a1-pad-nogc-gl", "--steps", "2", "--warmup-steps", "1",
        "--profile", "1", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = json.loads(out.read_text())["results"]
    assert row["group_by_length"] is True and row["timed_steps"] == 2 and row["tokens_per_second"] > 0
    assert len(row["losses"]) == 3 and row["final_loss"] == pytest.approx(sum(row["losses"]) / 3)
    profile = row["profile"]
    assert profile["steps"] == 1 and profile["wall_seconds"] > 0 and profile["top_ops_and_kernels"]
    assert any("mm" in k["name"] or "linear" in k["name"] for k in profile["top_ops_and_kernels"])


@pytest.mark.slow
def test_recipe_check_trains_both_recipes_and_compares_held_out_loss(tiny_llama_dir, shared_data, tmp_path):
    out = tmp_path / "recipe.json"
    result = run_script(
        "bench/train_throughput.py", "--recipe-check", "--model", str(tiny_llama_dir),
        "--data", str(shared_data / ALPACA_FILE), "--examples", "48", "--val-size", "8", "--recipe-precision", "fp32",
        "--seed-recipe", "--use-hf --no-gradient-checkpointing --max-steps 3",
        "--fast-recipe", "--use-hf --packing --batch-size 8 --grad-accum 1 --no-gradient-checkpointing --lr 4e-4 --max-steps 2",
        "--fast-recipe", "--use-hf --packing --batch-size 8 --grad-accum 1 --no-gradient-checkpointing --lr 8e-4 --max-steps 1",
        "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    check = json.loads(out.read_text())["recipe_check"]
    seed, fast = check["seed"], check["fast"]
    assert (seed["effective_batch"], seed["steps"], fast["effective_batch"], fast["steps"]) == (8, 3, 8, 2)
    assert fast["learning_rate"] == 4e-4 and seed["learning_rate"] == 2e-4
    assert seed["eval_loss_initial"] > 0 and fast["eval_loss_final"] > 0
    assert check["fast_minus_seed_eval_loss"] == fast["eval_loss_final"] - seed["eval_loss_final"]
    second = check["fast_2"]
    assert (second["steps"], second["learning_rate"]) == (1, 8e-4)
    assert check["fast_2_minus_seed_eval_loss"] == second["eval_loss_final"] - seed["eval_loss_final"]


def train_three_steps(tiny_llama_dir, shared_data, out_dir, **overrides):
    """Three logged steps of the transformers loader on the tiny Llama; returns (built, losses)."""
    from sfteval.train import trainer

    options = dict(
        model=str(tiny_llama_dir), dataset=str(shared_data / ALPACA_FILE), precision="fp32", use_hf=True,
        limit=32, batch_size=4, grad_accum=1, gradient_checkpointing=False, report_to="none", max_steps=3,
        logging_steps=1,
    )  # fmt: skip
    settings = trainer.TrainSettings(**{**options, **overrides})
    loaded = trainer.load_model(settings)
    rows, _ = data.load_records(settings.dataset, limit=settings.limit)
    tokenized = data.prepare(loaded.tokenizer, rows, settings.max_length, seed=settings.seed)
    built = trainer.build_trainer(settings, loaded, tokenized, str(out_dir), save=False)
    built.trainer.train()
    return built, [e["loss"] for e in built.trainer.state.log_history if "loss" in e]


@pytest.mark.slow
def test_compile_trains_the_same_steps(tiny_llama_dir, shared_data, tmp_path):
    """--compile (each decoder layer torch.compiled, dynamic shapes, --use-hf): the same optimizer
    steps to the same losses as eager, on padding-free rows whose length changes every step."""
    losses = {}
    for compiled in (False, True):
        built, losses[compiled] = train_three_steps(
            tiny_llama_dir, shared_data, tmp_path / str(compiled), compile=compiled, packing=True
        )
        layers = built.trainer.model.get_base_model().get_decoder().layers
        assert all((layer._compiled_call_impl is not None) is compiled for layer in layers)
    assert len(losses[True]) == 3 and losses[True] == pytest.approx(losses[False], abs=1e-3)


def test_varlen_attention_trains_the_same_steps(tiny_llama_dir, shared_data, tmp_path, monkeypatch):
    """--attention varlen: padding-free rows reach the attention with their example boundaries
    (the decoder hook) and train to the same losses as SDPA's dense block mask."""
    from sfteval.model import attention

    calls = []
    original = attention.causal_varlen

    def spy(query, key, value, cu_lengths, longest, scale):
        calls.append(len(cu_lengths) - 1)
        return original(query, key, value, cu_lengths, longest, scale)

    monkeypatch.setattr(attention, "causal_varlen", spy)
    _, sdpa = train_three_steps(tiny_llama_dir, shared_data, tmp_path / "sdpa", packing=True)
    assert not calls
    _, varlen = train_three_steps(tiny_llama_dir, shared_data, tmp_path / "varlen", packing=True, attention="varlen")
    assert calls and set(calls) == {4}  # 4 examples per packed row, in every layer
    assert len(varlen) == 3 and varlen == pytest.approx(sdpa, abs=1e-4)


def test_dropping_peft_input_casts_changes_no_number_under_autocast(tiny_llama_dir):
    """peft copies each LoRA input to the adapter's fp32 and bf16 autocast copies it back: the
    logits and gradients are the same without those copies."""
    import torch
    from peft.tuners.tuners_utils import BaseTunerLayer

    from sfteval.train import trainer

    settings = trainer.TrainSettings(model=str(tiny_llama_dir), precision="bf16", use_hf=True, report_to="none")
    loaded = trainer.load_model(settings)
    model = loaded.model
    batch = loaded.tokenizer(["Give three tips for staying healthy."], return_tensors="pt")
    for module in model.modules():  # a LoRA that is not a no-op, so its path counts
        if hasattr(module, "lora_B"):
            torch.nn.init.normal_(module.lora_B["default"].weight, std=0.5)

    def logits_and_grads():
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(**batch).logits
        logits.float().square().mean().backward()
        return logits.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]

    lora_params = [p for p in model.parameters() if p.requires_grad]
    assert lora_params and all(p.dtype == torch.float32 for p in lora_params)
    with_casts = logits_and_grads()
    assert trainer.speed_up_hf_model(settings, loaded, autocast=True) == []
    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    assert layers and not any(m.cast_input_dtype_enabled for m in layers)
    without = logits_and_grads()
    assert torch.equal(with_casts[0], without[0])
    assert all(torch.equal(a, b) for a, b in zip(with_casts[1], without[1]))


def test_train_bench_refuses_to_overwrite_its_output(tmp_path, shared_data):
    out = tmp_path / "bench.json"
    out.write_text("{}")
    result = run_script(
        "bench/train_throughput.py", "--data", str(shared_data / ALPACA_FILE), "--model", "unused", "--out", str(out)
    )
    assert result.returncode != 0 and "exists" in result.stderr and "Traceback" not in result.stderr
    assert out.read_text() == "{}"


def test_transformers_is_not_imported_before_the_model_loads(shared_data, tmp_path):
    """unsloth (train.py's default loader) patches transformers, trl and peft only when imported first."""
    probe = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from sfteval.train import trainer

def load_model(settings):
    print("imported first:", [name for name in ("transformers", "trl", "peft") if name in sys.modules])
    raise SystemExit(0)

trainer.load_model = load_model
trainer.run(trainer.TrainSettings(model={str(tmp_path)!r}, dataset={str(shared_data / ALPACA_FILE)!r},
    output_dir={str(tmp_path / "out")!r}, limit=10, report_to="none", precision="bf16"))
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.strip() == "imported first: []", result.stderr[-2000:]
