"""Small run files in the formats bench/precision_report.py reads, with the figures a test gives:
generation benchmarks (bench/generate_throughput.py --json), parity runs (bench/loader_parity.py),
IFEval scores (eval_score.py, gzipped where the name ends in .gz, as scores kept from GPU runs are)
and paired IFEval comparisons (compare_ifeval.py --json). Each holds the fields the report reads and
the envelope every project file has; the per-prompt parts a real file also holds are left out."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from sfteval import records
from tests.conftest import ROOT, load_script

bench = load_script(ROOT / "bench" / "generate_throughput.py", "generate_throughput")

NEW_TOKENS = 1280
IFEVAL_PROMPTS = 541


def speed_result(
    run: str, tokens_per_second: float, *, ragged: bool = False, peak_gpu_gb: float = 40.0, load_s: float = 15.0
) -> dict:
    """A measured run, described as the benchmark describes it (`run` as for --runs, e.g. hf-8bit-t0-gqa),
    181 rows x 3 batches as 541 prompts at --batch-sizes 256 make."""
    rows, batches = 181, 3
    ms_per_step = rows * 1000 / tokens_per_second
    return {
        **bench.describe_run(bench.parse_run(run), ragged),
        "device": "NVIDIA H100 80GB HBM3",
        "load_s": load_s,
        "batch_size": 256,
        "batch_rows": rows,
        "n_batches": batches,
        "ms_per_step": round(ms_per_step, 2),
        "tokens_per_second": tokens_per_second,
        "ifeval_minutes": round(batches * NEW_TOKENS * ms_per_step / 60_000, 2),
        "peak_gpu_gb": peak_gpu_gb,
    }


def failed_result(run: str, error: str, *, ragged: bool = False) -> dict:
    """A run whose worker reported an error (e.g. out of memory) at --batch-sizes 256."""
    return {**bench.describe_run(bench.parse_run(run), ragged), "batch_size": 256, "error": error}


def stopped_result(run: str, seconds: int) -> dict:
    """A worker the parent stopped: older benchmark files recorded only its name and why."""
    return {"run": run, "error": f"stopped after --worker-timeout {seconds} s"}


def write_speed(path: Path, results: list[dict], *, ragged: bool = False) -> Path:
    """A generate_throughput file; its command says --ragged when the runs had left-padded prompts."""
    command = (
        f"generate_throughput.py --runs {' '.join(r['run'] for r in results)} --batch-sizes 256"
        f"{' --ragged' if ragged else ''} --json {path.name}"
    )
    metadata = {"command": command, "prompt_tokens": 80, "new_tokens": NEW_TOKENS, "n_prompts": IFEVAL_PROMPTS}
    return records.write_json_atomic(path, records.envelope("generate_throughput", metadata, results=results))


def parity_run(name: str, batched_equals_single: float, **versus_reference: float | None) -> dict:
    """One run's parity summary (`name` is LOADER:PRECISION); `versus_reference` holds
    identical_to_reference, median_first_divergence and mean_abs_logprob_diff_per_token,
    which the reference run's own entry lacks."""
    loader, precision = name.split(":")
    return {
        "loader": loader,
        "precision": precision,
        "n": 8,
        "batched_equals_single": batched_equals_single,
        **versus_reference,
    }


def write_parity(path: Path, reference: str, summary: dict[str, dict]) -> Path:
    """A loader_parity file: `summary` maps each run's name to its parity_run."""
    metadata = {"command": f"loader_parity.py --runs {' '.join(summary)}", "reference": reference, "limit": 8}
    return records.write_json_atomic(path, records.envelope("loader_parity", metadata, summary=summary))


def accuracy(acc: float, low: float, high: float) -> dict:
    return {"acc": acc, "ci": [low, high]}


def write_scores(
    path: Path,
    *,
    model: str,
    loader: str,
    precision: str,
    template: str = "chat",
    prompt_strict: dict,
    inst_strict: dict,
    prompt_loose: dict,
    tokens_per_second: float = 1000.0,
    peak_gb: float = 8.0,
    llm_int8_threshold: float | None = None,
    compiled: bool = False,
    nf4_dequantize: str | None = None,
) -> Path:
    """An ifeval_scores file of one generation run (one session); gzipped when `path` ends in .gz."""
    metadata = {
        "command": f"eval_generate.py --model {model} --precision {precision}",
        "gpu": {"name": "NVIDIA H100 80GB HBM3", "count": 1, "peak_memory_gb": peak_gb},
        "model": model,
        "adapter": None,
        "precision": precision,
        "loader": loader,
        "template": template,
        "llm_int8_threshold": llm_int8_threshold,
        "generation": {"max_new_tokens": NEW_TOKENS, "do_sample": False, "compile": compiled, "compiled": compiled},
        "n_prompts": IFEVAL_PROMPTS,
        "tokens_per_second": tokens_per_second,
        "peak_gpu_memory_gb": peak_gb,
        "sessions": [{"index": 0, "rows": IFEVAL_PROMPTS, "nf4_dequantize": nf4_dequantize}],
    }
    summary = {"n_prompts": IFEVAL_PROMPTS, "n_instructions": 834}
    for metric, figure in (
        ("prompt_level_strict_acc", prompt_strict),
        ("inst_level_strict_acc", inst_strict),
        ("prompt_level_loose_acc", prompt_loose),
    ):
        summary[metric], summary[f"{metric}_ci"] = figure["acc"], figure["ci"]
    doc = records.envelope("ifeval_scores", metadata, summary=summary)
    if path.suffix != ".gz":
        return records.write_json_atomic(path, doc)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(json.dumps(doc).encode("utf-8")))
    return path


METRIC_LABELS = {
    "prompt_level_strict_acc": "prompt-level strict",
    "prompt_level_loose_acc": "prompt-level loose",
    "inst_level_strict_acc": "instruction-level strict",
    "inst_level_loose_acc": "instruction-level loose",
}


def paired_metric(
    metric: str, difference: float, low: float, high: float, *, p_value: float, pass_to_fail: int, fail_to_pass: int
) -> dict:
    """One metric of a comparison: the difference b - a with its interval and McNemar's test."""
    return {
        "metric": metric,
        "label": METRIC_LABELS[metric],
        "level": metric.split("_")[0],
        "difference": difference,
        "difference_ci": [low, high],
        "mcnemar": {
            "pass_to_fail": pass_to_fail,
            "fail_to_pass": fail_to_pass,
            "discordant": pass_to_fail + fail_to_pass,
            "p_value": p_value,
        },
    }


def write_comparison(path: Path, names: tuple[str, str], metrics: list[dict]) -> Path:
    """An ifeval_comparison file between the runs `names` (a, b)."""
    metadata = {"command": f"compare_ifeval.py --names {' '.join(names)}"}
    body = {"names": list(names), "n_prompts": IFEVAL_PROMPTS, "metrics": metrics}
    return records.write_json_atomic(path, records.envelope("ifeval_comparison", metadata, **body))
