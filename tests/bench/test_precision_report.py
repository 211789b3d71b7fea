"""bench/precision_report.py on the run files committed under docs/runs (real GPU outputs)."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

RUNS = ROOT / "docs" / "runs"
INPUTS = [
    RUNS / "h100_2026-11-27" / "bench_generate.json",
    RUNS / "h100_2026-11-27" / "bench_generate_compile.json",
    RUNS / "gemma_2026-11-27" / "eval_results" / "parity_gemma3-270m_hf_4bit.json",
    RUNS / "gemma_2026-11-27" / "eval_responses" / "gemma3-270m_base_hf_bf16.scores.json.gz",
    RUNS / "gemma_2026-11-27" / "compare_base_bf16_vs_4bit.json",
]


def report(tmp_path, *inputs):
    out = tmp_path / "PRECISION.md"
    done = subprocess.run(
        [
            sys.executable,
            "bench/precision_report.py",
            "--inputs",
            *(str(p.relative_to(ROOT)) if isinstance(p, Path) and p.is_relative_to(ROOT) else str(p) for p in inputs),
            "--output",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, out


def test_every_row_names_its_file_and_figures_come_from_it(tmp_path):
    done, out = report(tmp_path, *INPUTS)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    for path in INPUTS:
        assert f"`{path.relative_to(ROOT).as_posix()}`" in text
    scores = json.loads(gzip.decompress(INPUTS[3].read_bytes()))["summary"]
    assert f"{scores['prompt_level_strict_acc']:.1%}" in text
    comparison = json.loads(INPUTS[4].read_text())
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


def test_hand_written_advice_comes_first_and_is_named(tmp_path):
    advice = tmp_path / "advice.md"
    advice.write_text("## Which to pick\n\nbf16, from the rows below.\n")
    done, out = report(tmp_path, INPUTS[0], "--advice", advice)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert text.index("## Which to pick") < text.index("## Generation speed")
    assert f"written by hand in `{advice.as_posix()}`" in text
    done, _ = report(tmp_path, INPUTS[0], "--advice", tmp_path / "missing.md")
    assert done.returncode == 2 and "missing.md" in done.stderr and done.stderr.count("\n") == 1


def test_speed_ratios_compare_runs_with_the_same_prompts_and_attention(tmp_path):
    """Left-padded GQA-decode runs are compared with the hf bf16 run of that kind, not the first one."""
    ragged = RUNS / "h100_2026-11-27_s4" / "bench_generate_ragged.json"
    quant = RUNS / "h100_2026-11-27_s4" / "bench_generate_ragged_quant.json"
    done, out = report(tmp_path, INPUTS[0], ragged, quant)
    assert done.returncode == 0, done.stderr
    rows = {line.split("|")[-2].strip(): line for line in out.read_text().splitlines() if "| 4bit |" in line}
    results = {r["run"]: r for f in (ragged, quant) for r in json.loads(f.read_text())["results"]}
    expected = results["hf-bf16-gqa"]["tokens_per_second"] / results["hf-4bit-gqa"]["tokens_per_second"]
    line = rows[f"`{quant.relative_to(ROOT).as_posix()}`"]
    assert "| left-padded | GQA decode |" in line and f"| {expected:.2f}x |" in line


def test_runs_without_a_result_get_a_row_that_says_why(tmp_path):
    """unsloth bf16 ran out of memory and unsloth 8-bit was stopped by the parent, which recorded only its name."""
    unsloth = RUNS / "h100_2026-11-27_s5" / "bench_generate_unsloth.json"
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
    eager = RUNS / "h100_2026-11-27_s5" / "eval_responses" / "smollm2_hf_4bit.scores.json.gz"
    compiled = RUNS / "h100_2026-11-27_s6" / "eval_responses" / "smollm2_hf_4bit_compiled.scores.json.gz"
    t6 = RUNS / "h100_2026-11-27_s6" / "eval_responses" / "smollm2_hf_8bit.scores.json.gz"
    done, out = report(tmp_path, eager, compiled, t6)
    assert done.returncode == 0, done.stderr
    rows = {line.split("|")[-2].strip(): line for line in out.read_text().splitlines() if "| hf |" in line}
    assert "| hf | 4bit | chat |" in rows[f"`{eager.relative_to(ROOT).as_posix()}`"]
    assert (
        "| hf | 4bit, compiled, NF4 dequantized in torch | chat |" in rows[f"`{compiled.relative_to(ROOT).as_posix()}`"]
    )
    assert "| 19.6% [16.1%, 22.7%] |" in rows[f"`{compiled.relative_to(ROOT).as_posix()}`"]
    assert "| hf | 8bit (threshold 6) | chat |" in rows[f"`{t6.relative_to(ROOT).as_posix()}`"]
