"""Write docs/PRECISION.md from files the project wrote: generation benchmarks
(`bench/generate_throughput.py --json`), parity runs (`bench/loader_parity.py`), IFEval scores of
real runs (`eval_score.py`) and paired comparisons between precisions (`compare_ifeval.py --json`).
The run files are in history under docs/runs/ (commit fac9ff7):
    mkdir ../runs && git archive fac9ff7 docs/runs | tar -x -C ../runs --strip-components=2

    G=../runs/gemma_2026-11-27 S4=../runs/h100_2026-11-27_s4 S5=../runs/h100_2026-11-27_s5
    S6=../runs/h100_2026-11-27_s6 S7=../runs/h100_2026-11-27_s7
    python bench/precision_report.py --advice docs/precision_advice.md --inputs \
        ../runs/h100_2026-11-27/bench_generate*.json $S4/bench_generate*.json $S5/bench_generate*.json \
        $S6/bench_generate_torchnf4.json $S6/bench_generate_torchnf4_512.json $S6/bench_generate_autotune.json \
        $S6/bench_generate_bf16_ref.json $S7/bench_generate*.json \
        ../runs/cpu/parity_smollm2_fp32_vs_bf16.json $G/eval_results/parity_*.json $S5/eval_results/parity_*.json \
        $G/eval_responses/*.scores.json.gz $S5/eval_responses/smollm2_hf_*.scores.json.gz \
        $S6/eval_responses/*.scores.json.gz $S7/eval_responses/*.scores.json.gz \
        $G/compare_*_bf16_vs_4bit.json $G/compare_hf_vs_unsloth_*.json $G/compare_*_vs_8bit_t0.json \
        $S5/compare_*.json $S6/compare_*.json $S7/compare_*.json \
        --output docs/PRECISION.md --overwrite

($S6/bench_generate_torchnf4_v2.json is left out: it measured a dequantization that was not kept.
$S5's unsloth bf16 and 4-bit IFEval runs are left out: $S7 holds their reruns after the import-order
fix, with the same 541 responses each; $S5's comparisons made from them stand for that reason.)

Every figure in the output names the file it came from; nothing is typed in by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sfteval import cli, records  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate_throughput import describe_run, parse_run  # noqa: E402


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", nargs="+", type=Path, required=True)
    parser.add_argument("--output", type=Path, default=Path("docs/PRECISION.md"))
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output (it is generated)")
    parser.add_argument(
        "--advice",
        type=Path,
        help="a hand-written markdown section ('Which to pick'), reasoned from these tables, put first",
    )
    return parser


def speed_results(doc: dict) -> list[dict]:
    """A benchmark file's records, each saying how its run was made: older files recorded a run
    that the parent stopped by its name alone, so the rest is read from the name and the command."""
    ragged = "--ragged" in doc["metadata"].get("command", "")
    return [r if "loader" in r else {**describe_run(parse_run(r["run"]), ragged), **r} for r in doc["results"]]


def speed_key(result: dict) -> tuple[bool, bool]:
    """Runs are compared with the hf bf16 dynamic-cache run of the same prompts and decode attention."""
    return bool(result.get("ragged_prompts")), bool(result.get("gqa_decode"))


def speed_labels(result: dict) -> tuple[str, str, str]:
    """How a speed run was made: its prompts, decode attention and KV cache, as the table says them."""
    ragged, gqa = speed_key(result)
    cache = CACHE_LABELS.get(result.get("cache", "dynamic"), result.get("cache"))
    cache += ", NF4 dequantized in torch" if result.get("torch_nf4") else ""
    cache += ", NF4 dequantized to bf16 at load" if result.get("dequantize_once") else ""
    cache += f", mode {result['compile_mode']}" if result.get("compile_mode") else ""
    decode = "unsloth's own" if result["loader"] == "unsloth" else "GQA decode" if gqa else "SDPA"
    return "left-padded" if ragged else "equal", decode, cache


def speed_rows(files: list[tuple[Path, dict]]) -> list[str]:
    rows = []
    reference = {
        speed_key(r): r["tokens_per_second"]
        for _, d in files
        for r in speed_results(d)
        if "tokens_per_second" in r
        and (r["loader"], r["precision"], r.get("cache", "dynamic")) == ("hf", "bf16", "dynamic")
    }
    for path, doc in files:
        for r in speed_results(doc):
            if "skipped" in r:
                continue
            prompts, decode, cache = speed_labels(r)
            threshold = r.get("llm_int8_threshold", "-") if r["precision"] == "8bit" else "-"
            run = f"| {r['loader']} | {r['precision']} | {threshold} | {prompts} | {decode} | {cache} "
            if "tokens_per_second" not in r:
                rows.append(f"{run}| failed: {short_error(r)} | | | | | | | `{path.as_posix()}` |")
                continue
            base = reference.get(speed_key(r))
            ratio = f"{base / r['tokens_per_second']:.2f}x" if base else "-"
            rows.append(
                f"{run}| {r['batch_rows']} x {r['n_batches']} | {r['tokens_per_second']:,.0f} | {r['ms_per_step']:.1f} "
                f"| {r['ifeval_minutes']:.1f} | {ratio} | {r['peak_gpu_gb']:.1f} | {r['load_s']:.1f} | `{path.as_posix()}` |"
            )
    return rows


def short_error(record: dict) -> str:
    """The first sentence of a failed run's error, e.g. 'OutOfMemoryError: CUDA out of memory'."""
    return record.get("error", "no result").split(". ")[0][:100]


CACHE_LABELS = {"dynamic": "dynamic", "static": "static", "compile": "static + compiled decode"}
COMBINATIONS = [(loader, precision) for loader in ("unsloth", "hf") for precision in ("4bit", "8bit", "bf16")]


def reading(files: list[tuple[Path, dict]]) -> list[str]:
    """What the table says, computed from it, and which of the six combinations it lacks."""
    every = [r for _, d in files for r in speed_results(d)]
    results = [r for r in every if "tokens_per_second" in r]
    if not results:
        return ["No speed measurements were given."]
    failed = [
        f"{r['loader']} {r['precision']}{' at batch size ' + str(r['batch_size']) if r.get('batch_size') else ''} "
        f"({short_error(r)})"
        for r in every
        if "error" in r
    ]
    fastest = max(results, key=lambda r: r["tokens_per_second"])
    smallest = min(results, key=lambda r: r["peak_gpu_gb"])
    prompts, decode, cache = speed_labels(fastest)
    return [
        f"Fastest measured: {fastest['loader']} {fastest['precision']}, {prompts} prompts, {decode}, {cache} KV cache "
        f"({fastest['tokens_per_second']:,.0f} tokens/s, "
        f"{fastest['ifeval_minutes']:.1f} min for the worst-case IFEval run). Least memory: {smallest['loader']} "
        f"{smallest['precision']} ({smallest['peak_gpu_gb']:.1f} GB peak, KV cache included).",
        *([f"Tried without a result: {'; '.join(failed)}."] if failed else []),
        *missing_combinations({(r["loader"], r["precision"]) for r in results}),
    ]


def missing_combinations(present: set[tuple[str, str]], what: str | None = None) -> list[str]:
    """The line naming which of the six loader/precision combinations `present` lacks, if any."""
    missing = [f"{lo} {pr}" for lo, pr in COMBINATIONS if (lo, pr) not in present]
    label = f" ({what})" if what else ""
    return [f"Not measured in these files{label}: {', '.join(missing)}."] if missing else []


def parity_rows(files: list[tuple[Path, dict]]) -> list[str]:
    rows = []
    for path, doc in files:
        reference = doc["metadata"]["reference"]
        for name, s in doc["summary"].items():
            if "error" in s:
                rows.append(f"| {name} | {reference} | failed: {s['error']} | | | | `{path.as_posix()}` |")
                continue
            rows.append(
                f"| {name} | {reference} | {s.get('identical_to_reference', 1.0):.0%} "
                f"| {s.get('median_first_divergence') or '-'} | {s.get('mean_abs_logprob_diff_per_token', 0.0):.4f} "
                f"| {s['batched_equals_single']:.0%} | `{path.as_posix()}` |"
            )
    return rows


def _ci_pct(acc: float, ci) -> str:
    return f"{acc:.1%} [{ci[0]:.1%}, {ci[1]:.1%}]"


def ifeval_rows(files: list[tuple[Path, dict]]) -> list[str]:
    rows = []
    for path, doc in files:
        m, s = doc["metadata"], doc["summary"]
        gpu = m.get("gpu") or {}
        gpu_name = gpu.get("name", "-") if isinstance(gpu, dict) else str(gpu)
        adapter = Path(m["adapter"]).name if m.get("adapter") else "-"
        precision = m["precision"]
        if precision == "8bit" and m.get("llm_int8_threshold") is not None:
            precision += f" (threshold {m['llm_int8_threshold']:g})"
        dequantized = {session.get("nf4_dequantize") for session in m.get("sessions", [])}
        if m.get("generation", {}).get("compiled"):
            precision += ", compiled" + (", NF4 dequantized in torch" if "torch" in dequantized else "")
        if "once" in dequantized:
            precision += ", NF4 dequantized to bf16 at load"
        rows.append(
            f"| {Path(m['model']).name} | {adapter} | {m['loader']} | {precision} | {m['template']} | {gpu_name} "
            f"| {_ci_pct(s['prompt_level_strict_acc'], s['prompt_level_strict_acc_ci'])} "
            f"| {_ci_pct(s['inst_level_strict_acc'], s['inst_level_strict_acc_ci'])} "
            f"| {_ci_pct(s['prompt_level_loose_acc'], s['prompt_level_loose_acc_ci'])} "
            f"| {m['tokens_per_second']:,.0f} | {m['peak_gpu_memory_gb']:.1f} | `{path.as_posix()}` |"
        )
    return rows


def comparison_rows(files: list[tuple[Path, dict]]) -> list[str]:
    rows = []
    for path, doc in files:
        a, b = doc["names"]
        for m in doc["metrics"]:
            if m["metric"] not in ("prompt_level_strict_acc", "inst_level_strict_acc"):
                continue
            low, high = m["difference_ci"]
            rows.append(
                f"| {b} - {a} | {m['label']} | {m['difference'] * 100:+.1f} [{low * 100:+.1f}, {high * 100:+.1f}] "
                f"| {m['mcnemar']['p_value']:.3g} | {m['mcnemar']['pass_to_fail']} / {m['mcnemar']['fail_to_pass']} "
                f"| `{path.as_posix()}` |"
            )
    return rows


def comparison_reading(files: list[tuple[Path, dict]]) -> list[str]:
    found = [(doc["names"], m) for _, doc in files for m in doc["metrics"] if m["metric"] == "prompt_level_strict_acc"]
    if not found:
        return []
    parts = [
        f"{b} - {a} {m['difference'] * 100:+.1f} points (p = {m['mcnemar']['p_value']:.2g})" for (a, b), m in found
    ]
    significant = sum(m["mcnemar"]["p_value"] < 0.05 for _, m in found)
    return [
        f"Prompt-level strict: {'; '.join(parts)}; {significant} of {len(found)} differences have p < 0.05. "
        "Speeds in this table come from different GPUs, batch sizes and runs that shared one GPU with others, "
        "so they say little about the loaders' speed; the 8B-shape table above is the speed measurement."
    ]


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    docs = [(p, records.read_json(p, "input")) for p in args.inputs]
    speed = [(p, d) for p, d in docs if d.get("kind") == "generate_throughput"]
    parity = [(p, d) for p, d in docs if d.get("kind") == "loader_parity"]
    scores = [(p, d) for p, d in docs if d.get("kind") == "ifeval_scores"]
    comparisons = [(p, d) for p, d in docs if d.get("kind") == "ifeval_comparison"]
    known = ("generate_throughput", "loader_parity", "ifeval_scores", "ifeval_comparison")
    unknown = [str(p) for p, d in docs if d.get("kind") not in known]
    if unknown:
        raise cli.UserError(f"not a {', '.join(known)} file: {', '.join(unknown)}")
    advice = []
    if args.advice:
        if not args.advice.is_file():
            raise cli.UserError(f"--advice {args.advice}: no such file")
        advice = [args.advice.read_text(encoding="utf-8").strip(), ""]
    lines = [
        "# Precision and loader: speed and fidelity",
        "",
        f"_Generated by `bench/precision_report.py` from the files named in each row ({records.now_iso()})"
        + (f"; the first section is written by hand in `{args.advice.as_posix()}`" if args.advice else "")
        + "._",
        "",
        *advice,
        "## Generation speed, Llama-3.1-8B shape, IFEval worst case",
        "",
        "Random-init weights of the exact 8B shape, 80-token prompts, every answer forced to 1,280 new tokens,",
        "541 prompts in the batches `eval_generate.py --batch-size 256` makes. See bench/README.md for the method.",
        "Prompts: `equal` = all 80 tokens (no padding mask reaches the attention), `left-padded` = lengths spread",
        "over 40-120 tokens as in real IFEval batches. Decode attention: transformers' SDPA,",
        "`eval_generate.py --gqa-decode`, or unsloth's own. Time vs hf bf16: against the hf bf16 dynamic-cache",
        "row with the same prompts and decode attention (SDPA for unsloth rows). A run without a result says why.",
        "Dynamic-cache rows from before f483bc1 (no `cudnn_attention` in their records) let SDPA use cuDNN's kernel,",
        "which plans anew at every step of a growing cache; the eager path now leaves it out (bench/README.md).",
        "",
        "| loader | precision | int8 threshold | prompts | decode attention | KV cache | rows x batches | tokens/s | ms/step "
        "| IFEval min | time vs hf bf16 | peak GB | load s | file |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *speed_rows(speed),
        "",
        *reading(speed),
        "",
        "## Greedy-output parity",
        "",
        "Share of prompts whose greedy output equals the reference run's token for token, the median first",
        "diverging token among those that differ, the mean per-token log-prob difference on the reference's",
        "outputs, and whether each run's batched output equals its own one-by-one output.",
        "",
        "| run | reference | identical | median 1st divergence | abs dlogp / token | batched == one-by-one | file |",
        "|---|---|---|---|---|---|---|",
        *parity_rows(parity),
        "",
        *missing_combinations(
            {tuple(name.split(":", 1)) for _, d in parity for name in d["summary"] if ":" in name},
            "parity, any model",
        ),
        "",
        "## IFEval on a real model, per loader and precision",
        "",
        "All 541 prompts, greedy, up to 1,280 new tokens; 95% bootstrap intervals over prompts. Tokens/s",
        "and peak memory are those of the generation run (model size and GPU as named).",
        "",
        "| model | adapter | loader | precision | template | GPU | prompt strict | instruction strict | prompt loose | tokens/s | peak GB | file |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *ifeval_rows(scores),
        "",
        *missing_combinations({(d["metadata"]["loader"], d["metadata"]["precision"]) for _, d in scores}, "IFEval"),
        "",
        "Paired differences between runs of the same model (same prompts; paired bootstrap interval in",
        "points, exact McNemar test):",
        "",
        "| difference | metric | points [95% CI] | McNemar p | pass->fail / fail->pass | file |",
        "|---|---|---|---|---|---|",
        *comparison_rows(comparisons),
        "",
        *comparison_reading(comparisons),
        "",
    ]
    if args.output.exists() and args.overwrite:
        args.output.unlink()
    records.write_text_atomic(args.output, "\n".join(lines) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
