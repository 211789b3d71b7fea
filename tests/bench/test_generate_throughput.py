"""bench/generate_throughput.py: run specs, the projection arithmetic, and one real tiny run on CPU."""

import argparse
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, load_script

BENCH = ROOT / "bench" / "generate_throughput.py"
bench = load_script(BENCH, "generate_throughput")


def test_run_specs():
    assert bench.parse_run("hf-8bit-t0") == {
        "name": "hf-8bit-t0", "loader": "hf", "precision": "8bit", "llm_int8_threshold": 0.0, "cache": "dynamic",
        "gqa_decode": False, "torch_nf4": False, "dequantize_once": False, "compile_mode": None,
    }  # fmt: skip
    assert bench.parse_run("hf-4bit-compile-gqa-torchnf4")["torch_nf4"]
    assert bench.describe_run(bench.parse_run("hf-4bit-compile-torchnf4"), True)["torch_nf4"] is True
    assert "torch_nf4" not in bench.describe_run(bench.parse_run("hf-4bit-compile"), True)
    assert bench.parse_run("hf-4bit-compile-gqa-torchnf4-autotune")["compile_mode"] == "max-autotune"
    once = bench.parse_run("hf-4bit-compile-gqa-once")
    assert once["dequantize_once"] and not once["torch_nf4"] and bench.describe_run(once, True)["dequantize_once"]
    assert bench.describe_run(bench.parse_run("hf-bf16-compile-autotune"), False)["compile_mode"] == "max-autotune"
    assert bench.parse_run("hf-bf16-compile")["cache"] == "compile"
    assert bench.parse_run("hf-bf16-static-gqa")["gqa_decode"] and bench.parse_run("hf-bf16-gqa")["cache"] == "dynamic"
    assert bench.parse_run("unsloth-4bit")["loader"] == "unsloth"
    for bad in (
        "hf-3bit",
        "vllm-bf16",
        "hf-bf16-t6",
        "hf-bf16-fast",
        "unsloth-bf16-gqa",
        "hf-bf16-gqa-static",
        "hf-4bit-torchnf4",
        "hf-bf16-compile-torchnf4",
        "hf-bf16-once",
        "unsloth-4bit-once",
        "hf-4bit-compile-torchnf4-once",
        "hf-bf16-static-autotune",
    ):
        with pytest.raises(argparse.ArgumentTypeError):
            bench.parse_run(bad)
    assert [bench.parse_run(name)["precision"] for name in bench.ALL_RUNS] == [
        "bf16", "bf16", "4bit", "8bit", "8bit", "bf16", "4bit",
    ]  # fmt: skip


def test_batches_match_eval_generate_and_targets_follow_bf16():
    assert bench.balanced(541, 256) == (181, 3)
    assert bench.balanced(541, 32) == (32, 17)
    assert bench.balanced(541, 1000) == (541, 1)
    results = [
        {"run": "hf-bf16", "precision": "bf16", "ifeval_minutes": 1.5},
        {"run": "hf-4bit", "precision": "4bit", "ifeval_minutes": 2.4},
        {"run": "hf-8bit-t6", "precision": "8bit", "ifeval_minutes": 3.1},
        {"run": "unsloth-4bit", "precision": "4bit", "skipped": "unsloth is not installed"},
    ]
    bench.mark_targets(results)
    assert [r.get("target") for r in results] == ["ok <=2.0", "miss <=2.2", "miss <=3.0", None]
    assert bench.progress_line(results[3]) == "unsloth-4bit: skipped: unsloth is not installed"
    table = bench.table(results).splitlines()
    assert table[0].split()[:3] == ["run", "rows", "x"] and table[-1].startswith("unsloth-4bit: skipped")


def test_tiny_run_on_cpu_prints_figures_and_writes_them(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable, str(BENCH), "--shape", "tiny", "--runs", "hf-bf16", "hf-4bit",
        "--batch-sizes", "200", "--new-tokens", "16", "--prompt-tokens", "8", "--sample-steps", "2",
        "--model-dir", str(tmp_path / "model"), "--json", str(out),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tok/s" in result.stdout and "IFEval min" in result.stdout
    doc = json.loads(out.read_text())
    assert doc["kind"] == "generate_throughput" and doc["metadata"]["shape"] == "tiny"
    measured, skipped = doc["results"]
    assert (measured["batch_rows"], measured["n_batches"]) == (181, 3)
    assert measured["method"] == "sampled 2" and measured["tokens_per_second"] > 0
    # the projection is the measured pieces put together: 3 batches of prefill + 15 decode steps
    batch_seconds = measured["prefill_s"] + 15 * measured["ms_per_step"] / 1e3
    assert measured["ifeval_minutes"] == pytest.approx(3 * batch_seconds / 60, rel=0.02, abs=0.01)
    assert measured["tokens_per_second"] == pytest.approx(181 * 16 / batch_seconds, rel=0.02)
    assert skipped["skipped"] == "needs a CUDA GPU"
    shape = json.loads((tmp_path / "model" / "bench_shape.json").read_text())
    assert shape["config"]["num_key_value_heads"] == 2


def test_ragged_prompts_spread_around_the_mean_length():
    rows = bench.random_prompts(5, 80, 1000, seed=1, spread=40)
    assert [len(r) for r in rows] == [40, 60, 80, 100, 120]
    assert [len(r) for r in bench.random_prompts(3, 80, 1000, seed=1)] == [80, 80, 80]


def test_tiny_ragged_run_with_gqa_decode_on_cpu(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable, str(BENCH), "--shape", "tiny", "--runs", "hf-fp32-gqa", "--ragged",
        "--batch-sizes", "8", "--n-prompts", "8", "--new-tokens", "12", "--prompt-tokens", "8", "--sample-steps", "2",
        "--model-dir", str(tmp_path / "model"), "--json", str(out),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (measured,) = json.loads(out.read_text())["results"]
    assert measured["gqa_decode"] is True and measured["ragged_prompts"] is True
    assert measured["attn_implementation"] == "sdpa_gqa_decode" and measured["tokens_per_second"] > 0
