"""train.py with test hooks added from outside, for the resume tests:

    python tests/train/train_with_hooks.py [--kill-after-step N] [--batch-log PATH] <train.py arguments>

(or launched in train.py's place by `accelerate launch`). It wraps `sfteval.train.trainer.build_trainer`
and then runs train.py as `__main__`, so the process takes the real train.py code path plus the hooks.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import runpy
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TRAIN_SCRIPT = ROOT / "train.py"


def fingerprint(ids: Sequence[int]) -> str:
    """A short stable id of one example's tokens."""
    return hashlib.sha1(",".join(map(str, ids)).encode()).hexdigest()[:12]


def micro_batch_rows(args: tuple, kwargs: dict[str, Any]) -> list[list[int]] | None:
    """The token ids of each example in the model's forward call (None when it gets no input_ids)."""
    ids = kwargs.get("input_ids", args[0] if args else None)
    if ids is None:
        return None
    if "position_ids" in kwargs and kwargs.get("attention_mask") is None and ids.shape[0] == 1:
        # Padding-free: one packed row, each example starting where its positions restart at 0.
        flat, positions = ids[0].tolist(), kwargs["position_ids"][0].tolist()
        starts = [i for i, position in enumerate(positions) if position == 0] + [len(flat)]
        return [flat[a:b] for a, b in zip(starts, starts[1:])]
    mask = kwargs.get("attention_mask")
    return [(ids[r] if mask is None else ids[r][mask[r].bool()]).tolist() for r in range(ids.shape[0])]


def install_batch_log(model: Any, path: str) -> None:
    """Append one JSON line per training micro-batch: the fingerprints of its examples."""

    def hook(module, args, kwargs):
        rows = micro_batch_rows(args, kwargs) if module.training else None
        if rows is not None:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps([fingerprint(row) for row in rows]) + "\n")

    model.register_forward_pre_hook(hook, with_kwargs=True)


def kill_after_checkpoint(step: int) -> Any:
    """A callback that SIGKILLs the process right after the checkpoint of a step >= `step`."""
    from transformers import TrainerCallback

    from sfteval import distributed

    class KillAfterCheckpoint(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step >= step:
                # Several processes: only once every one has written its part of the checkpoint.
                distributed.barrier()
                sys.stdout.flush()
                sys.stderr.flush()
                os.kill(os.getpid(), signal.SIGKILL)

    return KillAfterCheckpoint()


def add_hooks(kill_after_step: int | None, batch_log: str | None) -> None:
    from sfteval.train import trainer

    build_trainer = trainer.build_trainer

    def build_trainer_with_hooks(settings, loaded, *args, **kwargs):
        built = build_trainer(settings, loaded, *args, **kwargs)
        if kill_after_step is not None:
            built.trainer.add_callback(kill_after_checkpoint(kill_after_step))
        if batch_log is not None:
            install_batch_log(loaded.model, batch_log)
        return built

    trainer.build_trainer = build_trainer_with_hooks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("--kill-after-step", type=int, help="SIGKILL right after the checkpoint of step >= N")
    parser.add_argument("--batch-log", help="append one JSON line per training micro-batch to this file")
    hooks, train_args = parser.parse_known_args()
    # As if train.py had been started itself: its folder first on sys.path, its name in argv.
    sys.path[0] = str(ROOT)
    sys.argv = [str(TRAIN_SCRIPT), *train_args]
    add_hooks(hooks.kill_after_step, hooks.batch_log)
    runpy.run_path(str(TRAIN_SCRIPT), run_name="__main__")


if __name__ == "__main__":
    main()
