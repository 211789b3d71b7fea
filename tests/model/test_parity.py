import json
import subprocess
import sys

import pytest

from sfteval.model import parity
from tests.conftest import ROOT


def test_first_divergence():
    assert parity.first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert parity.first_divergence([1, 2, 3], [1, 5, 3]) == 1
    assert parity.first_divergence([1, 2], [1, 2, 3]) == 2


@pytest.mark.slow
def test_hf_fp32_batched_equals_one_by_one_on_smollm2(smollm2_dir, shared_data):
    rows = [json.loads(line) for line in (shared_data / "ifeval" / "input_data.jsonl").open()][:6]
    run = parity.run_worker(str(smollm2_dir), "hf", "fp32", rows, max_new_tokens=24, batch_size=3)
    summary = parity.summarize(run, None)
    assert summary["batch_invariant"] and summary["batched_equals_single"] == 1.0
    assert all(item["batched_ids"] for item in run["items"])
    # Against itself as the reference: identical outputs and zero log-prob difference.
    for item in run["items"]:
        item["reference_logprob"] = item["own_logprob"]
    against_self = parity.summarize(run, run)
    assert against_self["identical_to_reference"] == 1.0
    assert against_self["mean_abs_logprob_diff_per_token"] == 0.0


def test_cli_rejects_a_bad_run_spec():
    done = subprocess.run(
        [sys.executable, "bench/loader_parity.py", "--model", "x", "--prompts", "y", "--runs", "vllm:bf16"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "expected LOADER:PRECISION" in done.stderr
