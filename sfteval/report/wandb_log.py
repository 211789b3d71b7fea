"""Weights & Biases logging: one run per results file, never twice, and one comparison view.

A run's config is the file's metadata, its summary the metrics and their intervals; tables
hold the per-prompt (or per-item) results, with a bar chart per instruction (or subject).
`<folder>/.wandb_index.json` maps each logged file's sha256 to its run, so a file is logged
once per project. `wandb` is imported only here, and only inside functions.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfteval import records
from sfteval.cli import UserError
from sfteval.report import tables as report

INDEX_NAME = ".wandb_index.json"
INDEX_KIND = "wandb_index"
DEFAULT_PROJECT = "sfteval"


class WandbUnavailable(Exception):
    """The wandb package is not installed: callers print a notice and write local files only."""


def load_wandb():
    try:
        import wandb
    except ImportError:
        raise WandbUnavailable("wandb is not installed (pip install wandb)") from None
    return wandb


@dataclass(frozen=True)
class Destination:
    project: str
    entity: str | None = None

    @classmethod
    def from_args(cls, project: str | None, entity: str | None) -> Destination:
        return cls(
            project=project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
            entity=entity or os.environ.get("WANDB_ENTITY") or None,
        )


# ---------------------------------------------------------------------------------------------
# The local index


class Index:
    """`<folder>/.wandb_index.json`: {"files": {sha256: [run, ...]}, "comparisons": {...}}, one
    entry per project/entity a file went to. Rewritten atomically after each run."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / INDEX_NAME
        self.data: dict[str, Any] = {"schema_version": records.SCHEMA_VERSION, "kind": INDEX_KIND}
        if self.path.exists():
            loaded = records.read_json(self.path, "W&B index")
            if not isinstance(loaded, dict) or loaded.get("kind") != INDEX_KIND:
                raise UserError(f"{self.path} is not a W&B index written by eval_wandb.py; move it away")
            self.data = loaded
        self.data.setdefault("files", {})
        self.data.setdefault("comparisons", {})

    def find(self, section: str, digest: str, dest: Destination) -> dict[str, Any] | None:
        """The entry of an earlier run of this file to `dest`. Online, an offline run does not count:
        it may never have been synced, and the user now wants the file on the server."""
        online = not offline_mode()
        for entry in self.data[section].get(digest, []):
            if entry.get("project") != dest.project or entry.get("entity") != dest.entity:
                continue
            if online and entry.get("mode") == "offline":
                continue
            return entry
        return None

    def add(self, section: str, digest: str, entry: dict[str, Any]) -> None:
        self.data[section].setdefault(digest, []).append(entry)
        records.write_json_atomic(self.path, self.data, overwrite=True)


# ---------------------------------------------------------------------------------------------
# What a run holds


@dataclass
class Payload:
    name: str
    job_type: str
    config: dict[str, Any]
    summary: dict[str, Any]
    tables: dict[str, tuple[list[str], list[list[Any]]]]
    bar_charts: list[tuple[str, str, str, str, str]]  # (key, table, label column, value column, title)
    tags: list[str]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _with_interval(summary: dict[str, Any], name: str, value: Any, ci: Any) -> None:
    if not _number(value):
        return
    summary[name] = float(value)
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_number(x) for x in ci):
        summary[f"{name}_ci"] = [float(ci[0]), float(ci[1])]
        summary[f"{name}_ci_low"] = float(ci[0])
        summary[f"{name}_ci_high"] = float(ci[1])


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".scores.json", ".json"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _tags(*values: Any) -> list[str]:
    return [str(v)[:64] for v in values if v]


def ifeval_payload(result: report.ResultFile) -> Payload:
    doc = result.doc
    meta = dict(doc.get("metadata") or {})
    summary_in = doc.get("summary") or {}
    summary: dict[str, Any] = {}
    for key, _ in report.IFEVAL_METRICS:
        _with_interval(summary, key, summary_in.get(key), summary_in.get(f"{key}_ci"))
    for key in ("n_prompts", "n_instructions"):
        if _number(summary_in.get(key)):
            summary[key] = summary_in[key]
    for key in ("tokens_per_second", "peak_gpu_memory_gb", "wall_seconds", "tokens_generated"):
        if _number(meta.get(key)):
            summary[key] = meta[key]
    per_inst = doc.get("per_instruction") or {}
    for inst, values in per_inst.items():
        summary[f"per_instruction/{inst}/strict_acc"] = values.get("strict_acc")
        summary[f"per_instruction/{inst}/loose_acc"] = values.get("loose_acc")
    prompt_rows = []
    for p in doc.get("per_prompt") or []:
        failed = [i for i, ok in zip(p["instruction_id_list"], p["follow_instruction_list_strict"]) if not ok]
        prompt_rows.append(
            [
                p.get("key"),
                p.get("prompt"),
                p.get("response"),
                " ".join(p["instruction_id_list"]),
                len(p["instruction_id_list"]),
                sum(bool(v) for v in p["follow_instruction_list_strict"]),
                sum(bool(v) for v in p["follow_instruction_list_loose"]),
                bool(p["follow_all_strict"]),
                bool(p["follow_all_loose"]),
                " ".join(failed),
            ]
        )
    inst_rows = [
        [inst, inst.split(":", 1)[0], v.get("n"), v.get("strict_acc"), v.get("loose_acc")]
        for inst, v in sorted(per_inst.items())
    ]
    config = {**meta, "benchmark": "ifeval", "logged_file": result.path.name, "logged_file_sha256": result.sha256}
    return Payload(
        name=_stem(result.path),
        job_type="ifeval",
        config=config,
        summary=summary,
        tables={
            "per_prompt": (
                [
                    "key",
                    "prompt",
                    "response",
                    "instruction_ids",
                    "n_instructions",
                    "n_followed_strict",
                    "n_followed_loose",
                    "follow_all_strict",
                    "follow_all_loose",
                    "failed_strict",
                ],
                prompt_rows,
            ),
            "per_instruction": (["instruction_id", "category", "n", "strict_acc", "loose_acc"], inst_rows),
        },
        bar_charts=[
            (
                "per_instruction_strict_chart",
                "per_instruction",
                "instruction_id",
                "strict_acc",
                "IFEval strict accuracy per instruction",
            ),
            (
                "per_instruction_loose_chart",
                "per_instruction",
                "instruction_id",
                "loose_acc",
                "IFEval loose accuracy per instruction",
            ),
        ],
        tags=_tags("ifeval", meta.get("precision"), "adapter" if meta.get("adapter") else "no-adapter"),
    )


def tinymmlu_payload(result: report.ResultFile) -> Payload:
    doc = result.doc
    meta = dict(doc.get("metadata") or {})
    summary_in = doc.get("summary") or {}
    summary: dict[str, Any] = {}
    _with_interval(summary, "tinymmlu_accuracy", summary_in.get("accuracy"), summary_in.get("accuracy_ci"))
    if _number(summary_in.get("n")):
        summary["tinymmlu_n"] = summary_in["n"]
    for key, value in (summary_in.get("irt") or {}).items():
        if _number(value):
            summary[f"tinymmlu_{key}"] = float(value)
    for key in ("wall_seconds", "peak_gpu_memory_gb"):
        if _number(meta.get(key)):
            summary[key] = meta[key]
    subjects = summary_in.get("per_subject") or {}
    subject_rows = [[name, v.get("n"), v.get("accuracy")] for name, v in sorted(subjects.items())]
    item_rows = [
        [i.get("idx"), i.get("subject"), i.get("answer"), i.get("prediction"), bool(i.get("correct"))]
        for i in doc.get("items") or []
    ]
    config = {**meta, "benchmark": "tinymmlu", "logged_file": result.path.name, "logged_file_sha256": result.sha256}
    return Payload(
        name=_stem(result.path),
        job_type="tinymmlu",
        config=config,
        summary=summary,
        tables={
            "per_subject": (["subject", "n", "accuracy"], subject_rows),
            "items": (["idx", "subject", "answer", "prediction", "correct"], item_rows),
        },
        bar_charts=[("per_subject_chart", "per_subject", "subject", "accuracy", "tinyMMLU accuracy per subject")],
        tags=_tags("tinymmlu", meta.get("precision"), "adapter" if meta.get("adapter") else "no-adapter"),
    )


LM_EVAL_CONFIG_KEYS = (
    "config",
    "versions",
    "n-shot",
    "n-samples",
    "higher_is_better",
    "model_source",
    "model_name",
    "lm_eval_version",
    "transformers_version",
    "git_hash",
    "date",
    "total_evaluation_time_seconds",
    "chat_template_sha",
    "system_instruction_sha",
    "fewshot_as_multiturn",
    "task_hashes",
)


def lm_eval_payload(result: report.ResultFile) -> Payload:
    doc = result.doc
    ident = report.lm_eval_identity(doc)
    metrics = report.lm_eval_metrics(doc)
    summary: dict[str, Any] = {}
    rows = []
    for task, values in sorted(metrics.items()):
        for metric, value in sorted(values.items()):
            summary[f"lm_eval/{task}/{metric}"] = value
            rows.append([task, metric, value])
    tiny = metrics.get("tinyMMLU") or {}
    if "acc_norm" in tiny:
        summary["tinymmlu_acc_norm"] = tiny["acc_norm"]
    seconds = doc.get("total_evaluation_time_seconds")
    try:
        summary["wall_seconds"] = float(seconds)
    except (TypeError, ValueError):
        pass
    config = {
        **ident,
        "benchmark": "lm_eval",
        "tasks": sorted(metrics),
        "logged_file": result.path.name,
        "logged_file_sha256": result.sha256,
        "lm_eval": {k: doc[k] for k in LM_EVAL_CONFIG_KEYS if k in doc},
    }
    name = f"{result.path.parent.name}_{_stem(result.path)}" if result.path.parent.name else _stem(result.path)
    return Payload(
        name=name,
        job_type="lm_eval",
        config=config,
        summary=summary,
        tables={"metrics": (["task", "metric", "value"], rows)},
        bar_charts=[],
        tags=_tags("lm_eval", *sorted(metrics)[:5], ident["precision"]),
    )


def payload_for(result: report.ResultFile) -> Payload:
    builders = {"ifeval_scores": ifeval_payload, "tinymmlu_results": tinymmlu_payload, "lm_eval": lm_eval_payload}
    return builders[result.kind](result)


# ---------------------------------------------------------------------------------------------
# Runs


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _settings(wandb):
    """No console capture, code saving or system metrics: a run here only uploads a file's
    numbers. `x_disable_stats` is a private setting; a wandb without it gets the rest."""
    try:
        return wandb.Settings(console="off", save_code=False, x_disable_stats=True)
    except Exception:
        return wandb.Settings(console="off", save_code=False)


def start_run(wandb, dest: Destination, **kwargs: Any):
    """A new run; each one is finished before the next starts."""
    try:
        return wandb.init(project=dest.project, entity=dest.entity, settings=_settings(wandb), **kwargs)
    except Exception as err:  # no API key, no network, bad entity: all end the same way for the user
        raise UserError(
            f"could not start a W&B run ({_first_line(err)}); run `wandb login`, "
            "set WANDB_MODE=offline to log locally and `wandb sync` later, or pass --no-wandb"
        ) from None


def run_entry(run, dest: Destination, **extra: Any) -> dict[str, Any]:
    offline = bool(getattr(run, "offline", False))
    entry = {
        "project": dest.project,
        "entity": dest.entity,
        "run_id": run.id,
        "run_name": run.name,
        "mode": "offline" if offline else "online",
        "logged_at": records.now_iso(),
        **extra,
    }
    if offline:
        entry["offline_dir"] = str(Path(run.dir).parent)
    else:
        entry["url"] = getattr(run, "url", None)
    return entry


def _log_payload(wandb, run, payload: Payload) -> None:
    tables = {key: wandb.Table(columns=cols, data=rows) for key, (cols, rows) in payload.tables.items()}
    logged: dict[str, Any] = dict(tables)
    for key, table, label, value, title in payload.bar_charts:
        if payload.tables[table][1]:
            logged[key] = wandb.plot.bar(tables[table], label, value, title=title)
    run.log(logged)
    run.summary.update(payload.summary)


@dataclass
class Outcome:
    path: Path
    status: str  # "logged", "already logged", "not recorded (W&B disabled)"
    entry: dict[str, Any] | None


def log_file(result: report.ResultFile, dest: Destination, wandb=None) -> Outcome:
    """One run for one results file, unless this file (same sha256) is already in the
    index of its folder for this project."""
    index = Index(result.path.parent)
    found = index.find("files", result.sha256, dest)
    if found:
        return Outcome(result.path, "already logged", found)
    wandb = wandb or load_wandb()
    payload = payload_for(result)
    run = start_run(wandb, dest, name=payload.name, job_type=payload.job_type, config=payload.config, tags=payload.tags)
    try:
        _log_payload(wandb, run, payload)
    finally:
        run.finish()
    if getattr(run, "disabled", False):
        return Outcome(result.path, "not recorded (W&B disabled)", None)
    entry = run_entry(run, dest, file=result.path.name, kind=result.kind)
    index.add("files", result.sha256, entry)
    return Outcome(result.path, "logged", entry)


# ---------------------------------------------------------------------------------------------
# The comparison view


COMPARISON_METRICS = (
    *((key, f"IFEval {label}", "ifeval") for key, label in report.IFEVAL_METRICS),
    ("tinymmlu", "tinyMMLU", "tinymmlu"),
)


def comparison_tables(rows: Sequence[report.Row]) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """A wide table (one line per model x adapter x precision) and a long one (one line per
    row x metric, to group by model, precision or metric in W&B's table view). Values in %."""
    wide_cols = ["label", "model", "adapter", "precision"]
    for key, _ in report.IFEVAL_METRICS:
        wide_cols += [key, f"{key}_ci_low", f"{key}_ci_high"]
    wide_cols += [
        "ifeval_n_prompts",
        "tinymmlu",
        "tinymmlu_metric",
        "tokens_per_second",
        "peak_gpu_memory_gb",
        "sources",
    ]
    wide, long = [], []
    for r in rows:
        line: list[Any] = [r.label, r.model, r.adapter or "", r.precision]
        for key, _ in report.IFEVAL_METRICS:
            value = r.ifeval[key] if r.ifeval else None
            ci = (r.ifeval or {}).get(f"{key}_ci") or [None, None]
            line += [_pct(value), _pct(ci[0]), _pct(ci[1])]
        line += [
            (r.ifeval or {}).get("n_prompts"),
            _pct(r.tinymmlu["value"]) if r.tinymmlu else None,
            r.tinymmlu["metric"] if r.tinymmlu else "",
            r.tokens_per_second,
            r.peak_gpu_memory_gb,
            " ".join(r.sources),
        ]
        wide.append(line)
        for key, label, bench in COMPARISON_METRICS:
            if bench == "ifeval" and r.ifeval:
                value, ci = r.ifeval[key], r.ifeval.get(f"{key}_ci") or [None, None]
            elif bench == "tinymmlu" and r.tinymmlu:
                value, ci = r.tinymmlu["value"], r.tinymmlu.get("ci") or [None, None]
            else:
                continue
            long.append(
                [r.label, r.model, r.adapter or "", r.precision, bench, label, _pct(value), _pct(ci[0]), _pct(ci[1])]
            )
    long_cols = ["label", "model", "adapter", "precision", "benchmark", "metric", "value", "ci_low", "ci_high"]
    return {"results": (wide_cols, wide), "results_long": (long_cols, long)}


def _pct(value: Any) -> float | None:
    return round(100 * float(value), 2) if _number(value) else None


def comparison_digest(rows: Sequence[report.Row]) -> str:
    return records.sha256_json([r.as_dict() for r in rows])


def log_comparison(
    rows: Sequence[report.Row],
    charts: Sequence[Path],
    markdown: str,
    dest: Destination,
    index_folder: Path,
    wandb=None,
    use_report: bool | None = None,
) -> Outcome:
    """A W&B Report when wandb-workspaces is installed and W&B is online, else a comparison run
    holding the tables, a bar chart per metric and the grouped-bar PNGs. Not repeated while
    the rows are unchanged."""
    index = Index(index_folder)
    digest = comparison_digest(rows)
    found = index.find("comparisons", digest, dest)
    if found:
        return Outcome(index.path, "already logged", found)
    wandb = wandb or load_wandb()
    if use_report is None:
        use_report = report_possible()
    if use_report:
        try:
            url = save_report(rows, markdown, dest)
        except Exception as err:  # the report API is online-only and changes often: fall back
            print(f"notice: could not save a W&B Report ({_first_line(err)}); logging a comparison run instead")
        else:
            entry = {"project": dest.project, "entity": dest.entity, "report_url": url, "logged_at": records.now_iso()}
            index.add("comparisons", digest, entry)
            return Outcome(index.path, "logged", entry)
    stamp = dt.datetime.now().strftime("%Y%m%d_%H%M%S")
    run = start_run(
        wandb,
        dest,
        name=f"comparison_{stamp}",
        job_type="comparison",
        config={"benchmark": "comparison", "n_rows": len(rows), "rows": [r.label for r in rows]},
        tags=["comparison"],
    )
    try:
        tables = comparison_tables(rows)
        logged: dict[str, Any] = {k: wandb.Table(columns=c, data=d) for k, (c, d) in tables.items()}
        wide_cols, wide = tables["results"]
        chart_columns = [(key, f"IFEval {label} (%)") for key, label in report.IFEVAL_METRICS] + [
            ("tinymmlu", "tinyMMLU (%)"),
            ("tokens_per_second", "generation tokens/s"),
            ("peak_gpu_memory_gb", "peak GPU memory (GB)"),
        ]
        for column, title in chart_columns:
            i = wide_cols.index(column)
            data = [[line[0], line[i]] for line in wide if line[i] is not None]
            if data:
                table = wandb.Table(columns=["label", column], data=data)
                logged[f"chart_{column}"] = wandb.plot.bar(table, "label", column, title=title)
        for chart in charts:
            logged[f"png_{Path(chart).stem.split('_')[-1]}"] = wandb.Image(str(chart))
        logged["results_markdown"] = wandb.Html(f"<pre>{_html_escape(markdown)}</pre>")
        run.log(logged)
        run.summary.update({"n_rows": len(rows)})
    finally:
        run.finish()
    if getattr(run, "disabled", False):
        return Outcome(index.path, "not recorded (W&B disabled)", None)
    entry = run_entry(run, dest)
    index.add("comparisons", digest, entry)
    return Outcome(index.path, "logged", entry)


def _html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def offline_mode() -> bool:
    return os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun")


def sync_hint(entry: dict[str, Any] | None) -> str:
    """How to upload a run that was logged offline; empty for an online one."""
    if not entry or entry.get("mode") != "offline":
        return ""
    return f" (offline; upload it with `wandb sync {entry.get('offline_dir')}`)"


def report_possible() -> bool:
    """wandb-workspaces is installed and W&B is online (a Report is saved through the API)."""
    if offline_mode() or os.environ.get("WANDB_MODE", "").lower() == "disabled":
        return False
    try:
        import wandb_workspaces.reports.v2  # noqa: F401
    except ImportError:
        return False
    return True


def save_report(rows: Sequence[report.Row], markdown: str, dest: Destination) -> str:
    import wandb_workspaces.reports.v2 as wr

    runset = {"project": dest.project, **({"entity": dest.entity} if dest.entity else {})}
    panels = [
        wr.BarPlot(title=f"IFEval {label}", metrics=[key], orientation="h") for key, label in report.IFEVAL_METRICS
    ] + [
        wr.BarPlot(title="tinyMMLU accuracy", metrics=["tinymmlu_accuracy"], orientation="h"),
        wr.BarPlot(title="tinyMMLU acc_norm (lm-eval)", metrics=["tinymmlu_acc_norm"], orientation="h"),
        wr.BarPlot(title="generation tokens/s", metrics=["tokens_per_second"], orientation="h"),
        wr.BarPlot(title="peak GPU memory (GB)", metrics=["peak_gpu_memory_gb"], orientation="h"),
    ]
    kwargs = {"entity": dest.entity} if dest.entity else {}
    doc = wr.Report(
        project=dest.project,
        title="sfteval: base vs instruct vs finetuned",
        description=f"{len(rows)} configurations (model x adapter x precision); written by eval_wandb.py --compare",
        blocks=[
            wr.MarkdownBlock(text=markdown),
            wr.PanelGrid(runsets=[wr.Runset(name="all runs", **runset)], panels=panels),
        ],
        **kwargs,
    )
    doc.save()
    return doc.url
