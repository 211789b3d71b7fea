"""Every script answers --help quickly, without importing torch, unsloth or bitsandbytes."""

import pytest

from tests.conftest import help_probe

SCRIPTS = [
    "train.py",
    "eval_generate.py",
    "eval_score.py",
    "eval_mmlu.py",
    "compare_ifeval.py",
    "compare_mmlu.py",
    "eval_wandb.py",
    "inference.py",
    "export.py",
    "merge_shards.py",
    "run_pipeline.py",
    "tools/carry_pieces.py",
    "bench/loader_parity.py",
    "bench/precision_report.py",
    "bench/train_throughput.py",
    "bench/generate_throughput.py",
    "bench/score_speed.py",
]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_is_light(script):
    done, loaded = help_probe(script, ("torch", "unsloth", "bitsandbytes"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
    assert loaded == "LOADED []"
