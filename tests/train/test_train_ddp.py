"""train.py under `accelerate launch` with two processes on the CPU (DDP over gloo, transformers'
Trainer): one adapter folder, one W&B run, and a killed run resumed to the uninterrupted one's
weights. Multi-GPU scaling itself is not measured here."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train.test_train import ALPACA_FILE, HOOKED_TRAIN, ROOT, script_env

pytestmark = pytest.mark.slow

ACCELERATE = Path(sys.executable).with_name("accelerate")
STEPS = 4


def free_port() -> int:
    """Other test runs on the machine may hold accelerate's default port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_train(
    *args: str, env: dict[str, str], processes: int = 2, script: str = "train.py"
) -> subprocess.CompletedProcess:
    # --multi_gpu is accelerate's multi-process (torchrun) launcher; without GPUs it runs CPU processes.
    command = [
        str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        str(ROOT / script), *args,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def common_args(tiny_llama_dir: Path, shared_data: Path) -> list[str]:
    return [
        "--model", str(tiny_llama_dir), "--use-hf", "--precision", "fp32", "--no-gradient-checkpointing",
        "--dataset", str(shared_data / ALPACA_FILE), "--limit", "48", "--max-length", "128", "--val-size", "4",
        "--batch-size", "2", "--grad-accum", "1", "--max-steps", str(STEPS), "--save-steps", "2", "--lr", "1e-2",
        "--warmup-steps", "0",
    ]  # fmt: skip


def test_two_processes_train_save_once_log_once_and_resume(tiny_llama_dir, shared_data, tmp_path):
    from safetensors.torch import load_file

    common = common_args(tiny_llama_dir, shared_data)
    home = tmp_path / "home"
    home.mkdir()
    env = script_env(HOME=str(home), WANDB_DIR=str(tmp_path), OMP_NUM_THREADS="1")
    full_dir = tmp_path / "full"
    full = launch_train(*common, "--report-to", "wandb", "--output-dir", str(full_dir), env=env)
    assert full.returncode == 0, full.stderr[-3000:]
    # One W&B run (offline: no login) although two processes trained, and one "saved" line.
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 1
    assert full.stderr.count(f"saved {full_dir}") == 1 and "x 2 processes = 4 examples" in full.stderr
    config = json.loads((full_dir / "train_config.json").read_text())
    hyper, results = config["hyperparameters"], config["results"]
    assert (hyper["world_size"], hyper["effective_batch"], results["global_step"]) == (2, 4, STEPS)
    assert results["eval_loss_final"] is not None and not (tmp_path / "full.partial").exists()

    # Killed right after the step-2 checkpoint, then resumed by two processes again.
    killed_dir = tmp_path / "resumed"
    killed = launch_train(
        "--kill-after-step", "2", *common, "--report-to", "none", "--output-dir", str(killed_dir),
        env=script_env(OMP_NUM_THREADS="1"), script=HOOKED_TRAIN,
    )  # fmt: skip
    assert killed.returncode != 0 and not killed_dir.exists()
    assert (tmp_path / "resumed.partial" / "checkpoints" / "checkpoint-2").is_dir()
    one = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *common, "--report-to", "none", "--output-dir", str(killed_dir),
         "--resume"],
        capture_output=True, text=True, env=script_env(), cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert one.returncode == 2 and "world_size (2 before, 1 now)" in one.stderr
    resumed = launch_train(
        *common, "--report-to", "none", "--output-dir", str(killed_dir), "--resume",
        env=script_env(OMP_NUM_THREADS="1"),
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "checkpoint-2" in resumed.stderr
    again = json.loads((killed_dir / "train_config.json").read_text())["results"]
    assert again["global_step"] == STEPS and again["tokens_seen"] == results["tokens_seen"]
    assert again["train_loss_final"] == pytest.approx(results["train_loss_final"], rel=1e-4)
    weights_full = load_file(full_dir / "adapter_model.safetensors")
    weights_resumed = load_file(killed_dir / "adapter_model.safetensors")
    assert weights_full.keys() == weights_resumed.keys()
    for key in weights_full:
        assert (weights_full[key] - weights_resumed[key]).abs().max().item() < 1e-5, key


def test_resume_skips_a_checkpoint_cut_short(tmp_path):
    """A crash while a checkpoint is written (one process killed, the others stopped) leaves a
    folder without trainer_state.json; --resume takes the newest complete one."""
    from sfteval.train import trainer

    paths = trainer.RunPaths(output=tmp_path / "out", work=tmp_path / "out.partial")
    assert trainer.last_checkpoint(paths) is None
    for step, complete in ((2, True), (10, True), (12, False)):
        folder = paths.checkpoints / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        if complete:
            (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    assert trainer.last_checkpoint(paths) == str(paths.checkpoints / "checkpoint-10")
