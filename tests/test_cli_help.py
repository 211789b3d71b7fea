"""Every script answers --help quickly, without importing torch, unsloth or bitsandbytes."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT

SCRIPTS = [
    "train.py",
    "eval_generate.py",
    "eval_score.py",
    "eval_mmlu.py",
    "compare_ifeval.py",
    "compare_mmlu.py",
    "eval_wandb.py",
    "inference.py",
    "run_pipeline.py",
    "tools/carry_pieces.py",
    "bench/loader_parity.py",
    "bench/precision_report.py",
    "bench/train_throughput.py",
    "bench/generate_throughput.py",
    "bench/score_speed.py",
]
PROBE = (
    "import runpy, sys; sys.argv = [sys.argv[1], '--help']\n"
    "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\nexcept SystemExit as e:\n    code = e.code\n"
    "heavy = [m for m in ('torch', 'unsloth', 'bitsandbytes') if m in sys.modules]\n"
    "print('HEAVY', heavy); sys.exit(code)"
)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_is_light(script):
    done = subprocess.run([sys.executable, "-c", PROBE, script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
    assert "HEAVY []" in done.stdout
