"""bench/precision_report.py on small run files written by tests/bench/run_files.py in the formats of
the real GPU outputs (those are on the `runs` branch); each figure checked is one an input holds."""

import gzip
import json
import subprocess
import sys

import pytest

from tests.bench import run_files as rf
from tests.conftest import ROOT

OOM = (
    "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.01 GiB. GPU 0 has a total capacity of 79.18 GiB "
    "of which 630.19 MiB is free."
)


def report(tmp_path, *inputs):
    out = tmp_path / "PRECISION.md"
    done = subprocess.run(
        [sys.executable, "bench/precision_report.py", "--inputs", *map(str, inputs), "--output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, out


def file_cell(path) -> str:
    return f"`{path.as_posix()}`"


@pytest.fixture
def inputs(tmp_path):
    """One file of each kind: two equal-prompt speed files (dynamic and compiled cache), a 4-bit parity
    run, the scores of an hf bf16 IFEval run (gzipped) and a bf16 vs 4-bit comparison."""
    runs = tmp_path / "runs"
    speed = rf.write_speed(
        runs / "h100" / "bench_generate.json",
        [rf.speed_result("hf-bf16", 1978.1, peak_gpu_gb=47.28), rf.speed_result("hf-4bit", 1705.8, peak_gpu_gb=36.93)],
    )
    compiled = rf.write_speed(
        runs / "h100" / "bench_generate_compile.json", [rf.speed_result("hf-bf16-compile", 1680.9)]
    )
    parity = rf.write_parity(
        runs / "gemma" / "eval_results" / "parity_gemma_hf_4bit.json",
        "hf:bf16",
        {
            "hf:bf16": rf.parity_run("hf:bf16", 0.75),
            "hf:4bit": rf.parity_run(
                "hf:4bit",
                0.625,
                identical_to_reference=0.125,
                median_first_divergence=1,
                mean_abs_logprob_diff_per_token=0.0529,
            ),
        },
    )
    scores = rf.write_scores(
        runs / "gemma" / "eval_responses" / "gemma_base_hf_bf16.scores.json.gz",
        model="/cache/gemma-3-270m",
        loader="hf",
        precision="bf16",
        template="none",
        prompt_strict=rf.accuracy(0.1738, 0.1423, 0.2070),
        inst_strict=rf.accuracy(0.2854, 0.2546, 0.3153),
        prompt_loose=rf.accuracy(0.1811, 0.1479, 0.2144),
    )
    comparison = rf.write_comparison(
        runs / "gemma" / "compare_base_bf16_vs_4bit.json",
        ("base-bf16", "base-4bit"),
        [
            rf.paired_metric(
                "prompt_level_strict_acc", -0.0351, -0.0592, -0.0092, p_value=0.011, pass_to_fail=35, fail_to_pass=16
            ),
            rf.paired_metric(
                "prompt_level_loose_acc", -0.0296, -0.0555, -0.0018, p_value=0.036, pass_to_fail=34, fail_to_pass=18
            ),
            rf.paired_metric(
                "inst_level_strict_acc", -0.0252, -0.0480, -0.0010, p_value=0.053, pass_to_fail=64, fail_to_pass=43
            ),
        ],
    )
    return [speed, compiled, parity, scores, comparison]


def test_every_row_names_its_file_and_figures_come_from_it(tmp_path, inputs):
    done, out = report(tmp_path, *inputs)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    for path in inputs:
        assert file_cell(path) in text
    scores = json.loads(gzip.decompress(inputs[3].read_bytes()))["summary"]
    assert f"{scores['prompt_level_strict_acc']:.1%}" in text
    comparison = json.loads(inputs[4].read_text())
    strict = next(m for m in comparison["metrics"] if m["metric"] == "prompt_level_strict_acc")
    assert f"{strict['difference'] * 100:+.1f} [" in text
    assert "static + compiled decode" in text
    # what the given files leave unmeasured is said, per section
    assert "(IFEval): unsloth 4bit, unsloth 8bit, unsloth bf16, hf 4bit, hf 8bit." in text
    assert "(parity, any model): unsloth 4bit, unsloth 8bit, unsloth bf16, hf 8bit." in text


def test_other_files_are_a_one_line_error(tmp_path):
    other = tmp_path / "x.json"
    other.write_text(json.dumps({"kind": "tinymmlu_results"}))
    done, _ = report(tmp_path, other)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "x.json" in done.stderr


def test_hand_written_advice_comes_first_and_is_named(tmp_path, inputs):
    advice = tmp_path / "advice.md"
    advice.write_text("## Which to pick\n\nbf16, from the rows below.\n")
    done, out = report(tmp_path, inputs[0], "--advice", advice)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert text.index("## Which to pick") < text.index("## Generation speed")
    assert f"written by hand in `{advice.as_posix()}`" in text
    done, _ = report(tmp_path, inputs[0], "--advice", tmp_path / "missing.md")
    assert done.returncode == 2 and "missing.md" in done.stderr and done.stderr.count("\n") == 1


def test_speed_ratios_compare_runs_with_the_same_prompts_and_attention(tmp_path, inputs):
    """Left-padded GQA-decode runs are compared with the hf bf16 run of that kind, not the first one."""
    ragged = rf.write_speed(
        tmp_path / "s4" / "bench_generate_ragged.json",
        [
            rf.speed_result("hf-bf16", 897.8, ragged=True),
            rf.speed_result("hf-bf16-gqa", 2236.7, ragged=True),
            rf.speed_result("hf-bf16-compile-gqa", 8106.6, ragged=True),
        ],
        ragged=True,
    )
    quant = rf.write_speed(
        tmp_path / "s4" / "bench_generate_ragged_quant.json",
        [
            rf.speed_result("hf-4bit-gqa", 1672.4, ragged=True),
            rf.speed_result("hf-8bit-t0-gqa", 1517.2, ragged=True),
            rf.speed_result("hf-8bit-t6-gqa", 730.1, ragged=True),
        ],
        ragged=True,
    )
    done, out = report(tmp_path, inputs[0], ragged, quant)
    assert done.returncode == 0, done.stderr
    rows = {line.split("|")[-2].strip(): line for line in out.read_text().splitlines() if "| 4bit |" in line}
    results = {r["run"]: r for f in (ragged, quant) for r in json.loads(f.read_text())["results"]}
    expected = results["hf-bf16-gqa"]["tokens_per_second"] / results["hf-4bit-gqa"]["tokens_per_second"]
    line = rows[file_cell(quant)]
    assert "| left-padded | GQA decode |" in line and f"| {expected:.2f}x |" in line


def test_runs_without_a_result_get_a_row_that_says_why(tmp_path):
    """unsloth bf16 ran out of memory and unsloth 8-bit was stopped by the parent, which recorded only its name."""
    unsloth = rf.write_speed(
        tmp_path / "s5" / "bench_generate_unsloth.json",
        [
            rf.speed_result("hf-bf16", 1032.7, ragged=True),
            rf.failed_result("unsloth-bf16", OOM, ragged=True),
            rf.speed_result("unsloth-4bit", 670.2, ragged=True),
            rf.stopped_result("unsloth-8bit", 120),
        ],
        ragged=True,
    )
    done, out = report(tmp_path, unsloth)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| unsloth |")]
    failed = {line.split("|")[2].strip(): line for line in rows if "failed:" in line}
    assert "| failed: OutOfMemoryError: CUDA out of memory |" in failed["bf16"]
    assert "| left-padded | unsloth's own | dynamic | failed: stopped after --worker-timeout 120 s |" in failed["8bit"]
    (measured,) = [line for line in rows if "failed:" not in line]
    assert "| 4bit |" in measured and "| 670 |" in measured
    assert (
        "Tried without a result: unsloth bf16 at batch size 256 (OutOfMemoryError: CUDA out of memory); unsloth 8bit"
        in text
    )


def test_ifeval_rows_say_how_a_run_decoded(tmp_path):
    """The compiled 4-bit run with sfteval.model.nf4 is told apart from the eager bitsandbytes one."""
    figures = {
        "prompt_strict": rf.accuracy(0.2052, 0.1719, 0.2403),
        "inst_strict": rf.accuracy(0.3118, 0.2805, 0.3447),
        "prompt_loose": rf.accuracy(0.2107, 0.1756, 0.2458),
    }
    model = "/cache/smollm2-135m-instruct"
    responses = tmp_path / "eval_responses"
    eager = rf.write_scores(
        responses / "smollm2_hf_4bit.scores.json.gz", model=model, loader="hf", precision="4bit", **figures
    )
    compiled = rf.write_scores(
        responses / "smollm2_hf_4bit_compiled.scores.json.gz",
        model=model,
        loader="hf",
        precision="4bit",
        compiled=True,
        nf4_dequantize="torch",
        **{**figures, "prompt_strict": rf.accuracy(0.1959, 0.1608, 0.2274)},
    )
    t6 = rf.write_scores(
        responses / "smollm2_hf_8bit.scores.json.gz",
        model=model,
        loader="hf",
        precision="8bit",
        llm_int8_threshold=6.0,
        **figures,
    )
    done, out = report(tmp_path, eager, compiled, t6)
    assert done.returncode == 0, done.stderr
    rows = {line.split("|")[-2].strip(): line for line in out.read_text().splitlines() if "| hf |" in line}
    assert "| hf | 4bit | chat |" in rows[file_cell(eager)]
    assert "| hf | 4bit, compiled, NF4 dequantized in torch | chat |" in rows[file_cell(compiled)]
    assert "| 19.6% [16.1%, 22.7%] |" in rows[file_cell(compiled)]
    assert "| hf | 8bit (threshold 6) | chat |" in rows[file_cell(t6)]
