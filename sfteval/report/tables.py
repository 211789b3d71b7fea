"""The results table (rows model x adapter x precision) as markdown, and the charts that go
with it and with an IFEval comparison (matplotlib, Agg backend, PNG).

Inputs: `ifeval_scores` files, this project's `tinymmlu_results` files and lm-eval's
`--output_path` results JSON (`results_<timestamp>.json`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfteval import records, schemas, stats
from sfteval.cli import UserError
from sfteval.model.loading import looks_like_path

IFEVAL_METRICS = (
    ("prompt_level_strict_acc", "prompt strict"),
    ("prompt_level_loose_acc", "prompt loose"),
    ("inst_level_strict_acc", "inst strict"),
    ("inst_level_loose_acc", "inst loose"),
)
STAMP_PREFIX = "_Written by eval_wandb.py on "
PRECISION_ORDER = {"bf16": 0, "fp16": 1, "8bit": 2, "4bit": 3, "fp32": 4}


# ---------------------------------------------------------------------------------------------
# Reading result files


@dataclass
class ResultFile:
    """One results file, classified: `kind` is ifeval_scores, tinymmlu_results or lm_eval."""

    path: Path
    kind: str
    doc: dict[str, Any]
    sha256: str


def classify(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return None
    if doc.get("kind"):
        return str(doc["kind"])
    if isinstance(doc.get("results"), dict) and isinstance(doc.get("config"), dict):
        return "lm_eval"
    return None


def read_result_file(path: str | Path, allowed: Iterable[str]) -> ResultFile:
    path = Path(path)
    doc = records.read_json(path, "results file")
    kind = classify(doc)
    allowed = tuple(allowed)
    if kind not in allowed:
        what = f"holds {kind}" if kind else "is not a results file of this project or lm-eval (no `kind`)"
        hint = "; score it first: python eval_score.py --input FILE" if kind == "ifeval_responses" else ""
        raise UserError(f"{path} {what}, expected {', '.join(allowed)}{hint}")
    if kind in schemas.SCHEMAS:
        schemas.validate(doc, kind, path)
    return ResultFile(path=path, kind=kind, doc=doc, sha256=records.sha256_file(path))


def find_scores(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    return sorted(p for p in folder.glob("*.scores.json") if p.is_file()) if folder.is_dir() else []


def find_mmlu(folder: str | Path) -> list[Path]:
    """tinyMMLU files of this project and lm-eval results files, searched recursively (lm-eval
    writes `<output_path>/<model>/results_<timestamp>.json`)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.rglob("*.json")):
        if path.name.startswith(".") or not path.is_file():
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if classify(doc) in ("tinymmlu_results", "lm_eval"):
            found.append(path)
    return found


# ---------------------------------------------------------------------------------------------
# lm-eval results


def parse_model_args(model_args: Any) -> dict[str, Any]:
    """lm-eval's `model_args`, a 'k=v,k=v' string or a dict, as a dict."""
    if isinstance(model_args, dict):
        return dict(model_args)
    out: dict[str, Any] = {}
    for part in str(model_args or "").split(","):
        if "=" in part:
            key, value = part.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def _true(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def lm_eval_identity(doc: dict[str, Any]) -> dict[str, Any]:
    """Model, adapter and precision of an lm-eval run, from `config.model_args`."""
    config = doc.get("config") or {}
    args = parse_model_args(config.get("model_args"))
    model = args.get("pretrained") or args.get("model") or config.get("model") or doc.get("model_name") or "?"
    adapter = args.get("peft") or args.get("delta")
    if _true(args.get("load_in_4bit")):
        precision = "4bit"
    elif _true(args.get("load_in_8bit")):
        precision = "8bit"
    else:
        dtype = str(args.get("dtype") or args.get("torch_dtype") or config.get("model_dtype") or "")
        dtype = dtype.replace("torch.", "")
        precision = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "fp32", "float": "fp32"}.get(
            dtype, dtype or "?"
        )
    return {"model": str(model), "adapter": adapter, "precision": precision}


def lm_eval_metrics(doc: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{task: {metric: value}} with lm-eval's filter suffix (`,none`) dropped and 'N/A'
    stderrs left out."""
    out: dict[str, dict[str, float]] = {}
    for task, values in (doc.get("results") or {}).items():
        for name, value in (values or {}).items():
            if "," not in name or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            metric, filt = name.split(",", 1)
            out.setdefault(task, {})[metric if filt == "none" else f"{metric}_{filt}"] = float(value)
    return out


# ---------------------------------------------------------------------------------------------
# Rows


@dataclass
class Row:
    model: str
    adapter: str | None
    precision: str
    ifeval: dict[str, Any] | None = None
    tinymmlu: dict[str, Any] | None = None
    tokens_per_second: float | None = None
    peak_gpu_memory_gb: float | None = None
    sources: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return " | ".join([model_name(self.model).split("/")[-1], self.adapter or "no adapter", self.precision])

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "adapter": self.adapter,
            "precision": self.precision,
            "ifeval": self.ifeval,
            "tinymmlu": self.tinymmlu,
            "tokens_per_second": self.tokens_per_second,
            "peak_gpu_memory_gb": self.peak_gpu_memory_gb,
            "sources": self.sources,
        }


def model_name(model: str) -> str:
    """A hub name as it is; a local folder or file by its own name, not by the whole path to it
    (the smoke run's model lies deep in a virtual environment's site-packages)."""
    return re.split(r"[/\\]", model.rstrip("/\\"))[-1] if looks_like_path(model) else model


def wilson_if_degenerate(acc: float, ci: Any, n: Any) -> list[float] | None:
    """The 95% Wilson interval over `n` items when the bootstrap interval is a single point,
    else None. Where every prompt got the same verdict (0 of 6 in a smoke run) every resample
    agrees, so the bootstrap says [0.0, 0.0], as if the accuracy were known exactly."""
    point = ci and len(ci) == 2 and ci[0] == ci[1]
    if not point or not isinstance(n, int) or n < 1:
        return None
    return list(stats.wilson_interval(round(acc * n), n))


def identity(meta: dict[str, Any]) -> tuple[str, str | None, str]:
    adapter = meta.get("adapter")
    return (
        str(meta.get("model") or "?"),
        records.slug(adapter) if adapter else None,
        str(meta.get("precision") or "?"),
    )


def answer_entry(block: dict[str, Any] | None) -> dict[str, Any] | None:
    """Loop rate and prompt-level strict accuracy on clean answers, from a scores file's `answers`
    block (sfteval.ifeval.answers); None for files scored before it existed or without stop reasons."""
    if not block or not block.get("loop"):
        return None
    clean = block.get("clean_accuracy") or {}
    return {
        "loop_rate": block["loop"]["rate"],
        "loop_ci": block["loop"]["ci"],
        "n_clean": (block.get("clean") or {}).get("count"),
        "clean_prompt_strict": clean.get("prompt_level_strict_acc"),
        "clean_prompt_strict_ci": clean.get("prompt_level_strict_acc_ci"),
    }


def ifeval_entry(result: ResultFile) -> tuple[tuple, dict[str, Any], dict[str, Any]]:
    doc = result.doc
    meta = doc.get("metadata") or {}
    summary = doc.get("summary") or {}
    entry = {"n_prompts": summary.get("n_prompts"), "n_instructions": summary.get("n_instructions"), "wilson": []}
    for key, _ in IFEVAL_METRICS:
        if not isinstance(summary.get(key), (int, float)):
            raise UserError(f"{result.path} has no summary.{key}; re-score it with eval_score.py")
        entry[key] = float(summary[key])
        entry[f"{key}_ci"] = summary.get(f"{key}_ci")
        n = entry["n_prompts"] if key.startswith("prompt_") else entry["n_instructions"]
        wilson = wilson_if_degenerate(entry[key], entry[f"{key}_ci"], n)
        if wilson is not None:
            entry[f"{key}_ci"] = wilson
            entry["wilson"].append(key)

    entry["answers"] = answer_entry(doc.get("answers"))
    entry["source"] = result.path.name
    extra = {"tokens_per_second": meta.get("tokens_per_second"), "peak_gpu_memory_gb": meta.get("peak_gpu_memory_gb")}
    return identity(meta), entry, extra


def mmlu_entry(result: ResultFile) -> tuple[tuple, dict[str, Any]] | None:
    doc = result.doc
    if result.kind == "tinymmlu_results":
        summary = doc.get("summary") or {}
        if not isinstance(summary.get("accuracy"), (int, float)):
            raise UserError(f"{result.path} has no summary.accuracy")
        entry = {
            "value": float(summary["accuracy"]),
            "ci": summary.get("accuracy_ci"),
            "n": summary.get("n"),
            "metric": "accuracy",
            "source": result.path.name,
        }
        return identity(doc.get("metadata") or {}), entry
    metrics = lm_eval_metrics(doc).get("tinyMMLU")
    if not metrics or "acc_norm" not in metrics:
        return None
    ident = lm_eval_identity(doc)
    n = ((doc.get("n-samples") or {}).get("tinyMMLU") or {}).get("effective")
    entry = {"value": metrics["acc_norm"], "ci": None, "n": n, "metric": "lm-eval acc_norm", "source": result.path.name}
    return (ident["model"], records.slug(ident["adapter"]) if ident["adapter"] else None, ident["precision"]), entry


def build_rows(results: Sequence[ResultFile]) -> list[Row]:
    """One row per model x adapter x precision. With several files for one row, the one with
    the most items wins, then the newest; the others are listed as skipped."""
    rows: dict[tuple, Row] = {}
    chosen: dict[tuple, tuple[int, str, ResultFile]] = {}

    def row_for(key: tuple) -> Row:
        if key not in rows:
            rows[key] = Row(model=key[0], adapter=key[1], precision=key[2])
        return rows[key]

    def better(slot: tuple, size: int, result: ResultFile) -> bool:
        stamp = str((result.doc.get("metadata") or {}).get("created_at") or result.doc.get("date") or "")
        previous = chosen.get(slot)
        if previous is not None and (previous[0], previous[1]) >= (size, stamp):
            row_for(slot[1:]).skipped.append(result.path.name)
            return False
        if previous is not None:
            row_for(slot[1:]).skipped.append(previous[2].path.name)
        chosen[slot] = (size, stamp, result)
        return True

    for result in results:
        if result.kind == "ifeval_scores":
            key, entry, extra = ifeval_entry(result)
            if better(("ifeval", *key), int(entry["n_prompts"] or 0), result):
                row = row_for(key)
                row.ifeval = entry
                row.tokens_per_second = extra["tokens_per_second"]
                row.peak_gpu_memory_gb = extra["peak_gpu_memory_gb"]
        elif result.kind in ("tinymmlu_results", "lm_eval"):
            found = mmlu_entry(result)
            if found is None:
                continue
            key, entry = found
            if better(("mmlu", *key), int(entry["n"] or 0), result):
                row_for(key).tinymmlu = entry
    for row in rows.values():
        row.sources = [x["source"] for x in (row.ifeval, row.tinymmlu) if x]
        row.skipped = sorted(set(row.skipped) - set(row.sources))
    return sorted(
        rows.values(),
        key=lambda r: (r.model, r.adapter or "", PRECISION_ORDER.get(r.precision, 9), r.precision),
    )


# ---------------------------------------------------------------------------------------------
# Markdown


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def format_acc(value: float | None, ci: Sequence[float] | None = None) -> str:
    """'48.8 [44.6, 53.0]': an accuracy and its 95% interval in percent."""
    if value is None:
        return "–"
    if ci and len(ci) == 2 and all(isinstance(x, (int, float)) for x in ci):
        return f"{pct(value)} [{pct(ci[0])}, {pct(ci[1])}]"
    return pct(value)


def _number(value: Any, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"


def table_cells(row: Row) -> list[str]:
    cells = [model_name(row.model), row.adapter or "–", row.precision]
    for key, _ in IFEVAL_METRICS:
        if row.ifeval:
            mark = " ‡" if key in row.ifeval.get("wilson", ()) else ""
            cells.append(format_acc(row.ifeval[key], row.ifeval[f"{key}_ci"]) + mark)
        else:
            cells.append("–")
    cells.append(str(row.ifeval["n_prompts"]) if row.ifeval else "–")
    answers = (row.ifeval or {}).get("answers")
    if answers:
        cells.append(format_acc(answers["loop_rate"], answers["loop_ci"]))
        clean = format_acc(answers["clean_prompt_strict"], answers["clean_prompt_strict_ci"])
        cells.append(f"{clean} (n {answers['n_clean']})")
    else:
        cells += ["–", "–"]
    if row.tinymmlu:
        mark = "" if row.tinymmlu["metric"] == "accuracy" else " †"
        cells.append(format_acc(row.tinymmlu["value"], row.tinymmlu["ci"]) + mark)
    else:
        cells.append("–")
    cells.append(_number(row.tokens_per_second, 1))
    cells.append(_number(row.peak_gpu_memory_gb, 1))
    return cells


HEADER = [
    "model",
    "adapter",
    "precision",
    "IFEval prompt strict",
    "IFEval prompt loose",
    "IFEval inst strict",
    "IFEval inst loose",
    "IFEval prompts",
    "IFEval loops",
    "IFEval prompt strict, clean answers",
    "tinyMMLU",
    "gen tokens/s",
    "peak GPU GB",
]


def results_markdown(rows: Sequence[Row], charts: Sequence[str] = ()) -> str:
    out = [
        "# Results",
        "",
        f"{STAMP_PREFIX}{records.now_iso()}._",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    for row in rows:
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in table_cells(row)) + " |")
    out += [
        "",
        "Accuracies in %, 95% intervals in brackets. IFEval: 541 prompts / 834 instructions for a full run "
        "(fewer in a --limit run: see the prompts column), with the scores files' bootstrap intervals over prompts. "
        "tinyMMLU: plain accuracy on its 100 items with a Wilson interval "
        "(about ±9.5 points).",
    ]
    if any(r.ifeval and r.ifeval.get("wilson") for r in rows):
        out.append(
            "‡ every prompt got the same verdict, so the bootstrap interval is a single point; shown instead: "
            "the Wilson interval (instructions counted as independent for the inst columns)."
        )
    if any(r.tinymmlu and r.tinymmlu["metric"] != "accuracy" for r in rows):
        out.append("† lm-eval's tinyMMLU `acc_norm`: its IRT-based estimate of full-MMLU accuracy, no interval.")
    out.append(
        "IFEval loops: answers cut at the token limit whose tail repeats itself; clean answers neither loop nor echo "
        "the prompt (rules in docs/ANALYSES.md; – for files scored without stop reasons). Paired tests between two "
        "rows come from compare_ifeval.py: its exact McNemar test at instruction level treats the instructions of "
        "one prompt as independent, which they are not, so read the McNemar test clustered by prompt beside it."
    )
    out.append("Generation tokens/s and peak GPU memory are those of the IFEval generation run (eval_generate.py).")
    for chart in charts:
        out += ["", f"![{Path(chart).stem}]({chart})"]
    out += ["", "Sources:", ""]
    for row in rows:
        line = f"- {row.label}: {', '.join(row.sources)}"
        if row.skipped:
            line += f" (not shown: {', '.join(row.skipped)})"
        out.append(line)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# Charts


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _errors(values: Sequence[float], cis: Sequence[Sequence[float] | None]) -> list[list[float]]:
    low, high = [], []
    for v, ci in zip(values, cis):
        ok = ci and len(ci) == 2 and all(isinstance(x, (int, float)) for x in ci)
        low.append(max(0.0, 100 * (v - ci[0])) if ok else float("nan"))  # nan: no error bar drawn
        high.append(max(0.0, 100 * (ci[1] - v)) if ok else float("nan"))
    return [low, high]


def plot_results(rows: Sequence[Row], accuracy_png: str | Path, efficiency_png: str | Path) -> list[Path]:
    """Grouped bars: one group per metric (4 IFEval + tinyMMLU), one bar per row, with 95%
    intervals; and throughput and peak memory per row. Returns the files written."""
    plt = _pyplot()
    written = []
    metrics = [*IFEVAL_METRICS] if any(r.ifeval for r in rows) else []
    if any(r.tinymmlu for r in rows):
        metrics.append(("tinymmlu", "tinyMMLU"))
    width = 0.8 / max(1, len(rows))
    fig, ax = plt.subplots(figsize=(max(10, 1.6 * len(metrics) + 0.5 * len(rows) + 4), 5))
    for i, row in enumerate(rows):
        values, cis, xs = [], [], []
        for j, (key, _) in enumerate(metrics):
            if key == "tinymmlu":
                if row.tinymmlu is None:
                    continue
                value, ci = row.tinymmlu["value"], row.tinymmlu["ci"]
            else:
                if row.ifeval is None:
                    continue
                value, ci = row.ifeval[key], row.ifeval[f"{key}_ci"]
            values.append(value)
            cis.append(ci)
            xs.append(j - 0.4 + width * (i + 0.5))
        if not xs:
            continue
        bars = ax.bar(xs, [100 * v for v in values], width, yerr=_errors(values, cis), capsize=3, label=row.label)
        label_values(ax, bars, values, fontsize=7)
    ax.set_xticks(range(len(metrics)), [label.replace(" ", "\n", 1) for _, label in metrics])
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(accuracy_title(metrics))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    written.append(_save(fig, accuracy_png, plt))

    panels = efficiency_panels(rows)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), max(3.0, 0.45 * len(rows) + 1.5)))
    axes = [axes] if len(panels) == 1 else list(axes)
    labels = [r.label for r in rows]
    for ax, (attr, title) in zip(axes, panels):
        values = [getattr(r, attr) if isinstance(getattr(r, attr), (int, float)) else 0.0 for r in rows]
        bars = ax.barh(range(len(rows)), values, height=0.6, color=[f"C{i % 10}" for i in range(len(rows))])
        ax.margins(x=0.18)
        ax.bar_label(bars, labels=[_number(getattr(r, attr), 1) for r in rows], fontsize=7, padding=2)
        ax.set_yticks(range(len(rows)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(title)
    for ax in axes[1:]:
        ax.set_yticks(range(len(rows)), [""] * len(rows))
    fig.tight_layout()
    written.append(_save(fig, efficiency_png, plt))
    return written


def accuracy_title(metrics: Sequence[tuple[str, str]]) -> str:
    """Names only the benchmarks that have bars."""
    keys = {key for key, _ in metrics}
    shown = (["IFEval"] if keys - {"tinymmlu"} else []) + (["tinyMMLU"] if "tinymmlu" in keys else [])
    return f"{' and '.join(shown) or 'No'} accuracy (95% intervals)"


EFFICIENCY_PANELS = (("tokens_per_second", "generation tokens/s"), ("peak_gpu_memory_gb", "peak GPU memory (GB)"))


def efficiency_panels(rows: Sequence[Row]) -> list[tuple[str, str]]:
    """(attribute, title) of the panels with a number in some row; tokens/s always, so the chart
    is never empty (runs on a CPU record no GPU memory)."""
    return [
        (attr, title)
        for attr, title in EFFICIENCY_PANELS
        if attr == "tokens_per_second" or any(isinstance(getattr(r, attr), (int, float)) for r in rows)
    ]


def label_values(ax, bars, values: Sequence[float], fontsize: int) -> None:
    """Each bar's value in white at its foot, clear of the error bars; above a bar too short to
    hold it (a 0% bar has no height at all), in black."""
    for bar, value in zip(bars, values):
        inside = 100 * value >= 8
        ax.text(
            bar.get_x() + bar.get_width() / 2,
            1.5 if inside else 100 * value + 1.5,
            pct(value),
            ha="center",
            va="bottom",
            fontsize=fontsize,
            color="white" if inside else "black",
        )


def plot_comparison(comparison: dict[str, Any], path: str | Path) -> Path:
    """Left: the four accuracies of both runs with intervals; right: per-instruction strict
    change (B - A), largest gains at the top."""
    plt = _pyplot()
    a, b = comparison["names"]
    per_inst = comparison["per_instruction"]
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(13, max(5, 0.28 * len(per_inst) + 1.5)), gridspec_kw={"width_ratios": [1, 1.3]}
    )
    metrics = comparison["metrics"]
    for offset, side, name in ((-0.2, "a", a), (0.2, "b", b)):
        values = [m[side]["acc"] for m in metrics]
        bars = left.bar(
            [i + offset for i in range(len(metrics))],
            [100 * v for v in values],
            0.4,
            yerr=_errors(values, [m[side]["ci"] for m in metrics]),
            capsize=3,
            label=name,
        )
        label_values(left, bars, values, fontsize=8)
    left.set_xticks(range(len(metrics)), [m["label"].replace(" ", "\n", 1) for m in metrics], fontsize=8)
    left.set_ylim(0, 100)
    left.set_ylabel("accuracy (%)")
    left.set_title(f"IFEval, {comparison['n_prompts']} paired prompts (95% intervals)")
    left.legend(fontsize=8)
    deltas = [100 * r["delta_strict"] for r in per_inst]
    colors = ["tab:green" if d > 0 else "tab:red" if d < 0 else "tab:gray" for d in deltas]
    bars = right.barh(range(len(per_inst)), deltas, color=colors)
    right.bar_label(bars, labels=[f"{d:+.1f}" if d else "" for d in deltas], fontsize=7, padding=2)
    right.set_yticks(range(len(per_inst)), [f"{r['instruction_id']} (n={r['n']})" for r in per_inst], fontsize=7)
    right.invert_yaxis()
    right.margins(x=0.12)
    right.axvline(0, color="black", linewidth=0.8)
    right.set_xlabel(f"strict accuracy change, {b} − {a} (points)")
    right.set_title("per instruction id")
    fig.tight_layout()
    return _save(fig, path, plt)


def _save(fig, path: str | Path, plt) -> Path:
    """PNG through a temporary name and a rename; never over an existing file."""
    path = Path(path)
    if path.exists():
        plt.close(fig)
        raise UserError(f"{path} already exists; choose another output name (nothing is overwritten)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    try:
        fig.savefig(tmp, dpi=120, format="png")
        tmp.replace(path)
    except OSError as err:
        raise UserError(f"chart {path} cannot be written ({err.strerror or err}); choose another folder") from None
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
    return path


def _version_paths(markdown: Path, n: int) -> tuple[Path, Path, Path]:
    stem = markdown.name[: -len(markdown.suffix)] if markdown.suffix else markdown.name
    tag = "" if n == 0 else f"_{n}"
    return (
        markdown.with_name(f"{stem}{tag}{markdown.suffix or '.md'}"),
        markdown.with_name(f"{stem}{tag}_accuracy.png"),
        markdown.with_name(f"{stem}{tag}_speed_memory.png"),
    )


def _without_stamp(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith(STAMP_PREFIX))


def write_results(rows: Sequence[Row], markdown: str | Path) -> tuple[list[Path], bool]:
    """results.md plus its two PNG charts next to it: (paths, markdown first; written).

    Nothing is overwritten: a taken name moves all three files to a free `_N` suffix. When
    the newest existing version already shows the same rows, it is kept and nothing is written.
    """
    markdown = Path(markdown)
    latest = None
    for n in range(10_000):
        paths = _version_paths(markdown, n)
        if not any(p.exists() for p in paths):
            break
        if all(p.exists() for p in paths):
            latest = paths
    else:
        raise UserError(f"could not find a free file name next to {markdown}")
    if latest is not None:
        same = results_markdown(rows, charts=[latest[1].name, latest[2].name])
        if _without_stamp(latest[0].read_text(encoding="utf-8")) == _without_stamp(same):
            return list(latest), False
    md_path, acc_png, eff_png = paths
    charts = plot_results(rows, acc_png, eff_png)
    text = results_markdown(rows, charts=[c.name for c in charts])
    records.write_text_atomic(md_path, text)
    return [md_path, *charts], True
