"""The report of the controlled study on one base model: base weights with the raw prompt and with
the alpaca template, adapters S1 (seed recipe), S2 (seed recipe, another training seed) and FAST
(fast-80gb recipe), at bf16 and 4bit, plus a reference model of another family.

Reads one folder STUDY:

    STUDY/eval_responses/*.scores.json          eval_score.py, one per condition
    STUDY/eval_results/*_tinymmlu_*.json        eval_mmlu.py
    STUDY/adapters/<name>/train_config.json     train.py

A condition is named from its scores file's metadata (model, the adapter folder's name, the
recipe and seed of its train_config, template, precision), never from file names. Every figure
of the report is read or recomputed from these files; paired effects come from
sfteval.ifeval.compare.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfteval import records, stats
from sfteval.cli import UserError
from sfteval.ifeval import answers, compare
from sfteval.ifeval.compare import p_text, signed_points
from sfteval.mmlu import letters
from sfteval.report import tables
from sfteval.report.tables import format_acc, model_name

# The adapters' folder names the effects are defined on.
SEED_ADAPTER, OTHER_SEED_ADAPTER, FAST_ADAPTER = "S1", "S2", "FAST"
RAW, ALPACA = "none", "alpaca"
TEMPLATE_ORDER = {RAW: 0, ALPACA: 1}
REFERENCE_PRECISION = "bf16"

# (effect, run A, run B) as (adapter, template) of one model at one precision; the effect is B - A.
EFFECTS = (
    ("template, base weights (alpaca − raw)", (None, RAW), (None, ALPACA)),
    ("weights, alpaca template (S1 − base)", (None, ALPACA), (SEED_ADAPTER, ALPACA)),
    ("weights, raw prompt (S1 − base)", (None, RAW), (SEED_ADAPTER, RAW)),
    ("total as a user sees it (S1 + alpaca − base + raw)", (None, RAW), (SEED_ADAPTER, ALPACA)),
    ("training seed (S2 − S1, alpaca)", (SEED_ADAPTER, ALPACA), (OTHER_SEED_ADAPTER, ALPACA)),
    ("recipe (FAST − S1, alpaca)", (SEED_ADAPTER, ALPACA), (FAST_ADAPTER, ALPACA)),
)
TOTAL, TEMPLATE, WEIGHTS_ALPACA = EFFECTS[3][0], EFFECTS[0][0], EFFECTS[1][0]
STRICT_COLUMNS = (("prompt_level_strict_acc", "prompt strict"), ("inst_level_strict_acc", "inst strict"))
DIFFERENCE_COLUMNS = (
    *STRICT_COLUMNS,
    ("prompt_level_loose_acc", "prompt loose"),
    ("inst_level_loose_acc", "inst loose"),
)


def short_model_name(model: str) -> str:
    """The model's last path part, without a .gguf suffix or the cache key of a dequantized GGUF folder:
    the name IFEval and tinyMMLU files of one model are matched by."""
    name = model_name(model).split("/")[-1].removesuffix(".gguf")
    return re.sub(r"-[0-9a-f]{12}$", "", name)


@dataclass
class Condition:
    model: str
    adapter: str | None  # the adapter folder's name
    recipe: str | None
    seed: int | None
    template: str
    precision: str
    scores_path: Path
    scores: dict[str, Any]
    mmlu_path: Path | None = None
    mmlu: dict[str, Any] | None = None

    @property
    def model_short(self) -> str:
        return short_model_name(self.model)

    @property
    def label(self) -> str:
        return f"{self.adapter or self.model_short} · {self.template} · {self.precision}"

    @property
    def weights(self) -> str:
        if self.adapter is None:
            return "no adapter"
        return f"{self.adapter}: {self.recipe or 'recipe not recorded'} recipe, seed {self.seed}"

    @property
    def answers(self) -> dict[str, Any] | None:
        return self.scores.get("answers")


@dataclass
class Study:
    folder: Path
    conditions: list[Condition]
    inputs: list[tuple[Path, str]]  # (path, sha256) of every file read
    notes: list[str] = field(default_factory=list)

    def find(self, model: str, adapter: str | None, template: str, precision: str) -> Condition | None:
        for c in self.conditions:
            if (c.model_short, c.adapter, c.template, c.precision) == (model, adapter, template, precision):
                return c
        return None


# ---------------------------------------------------------------------------------------------
# Reading


def adapter_identity(meta: dict[str, Any]) -> tuple[str | None, str | None, int | None]:
    """(adapter folder name, recipe, training seed) from a scores file's metadata."""
    if not meta.get("adapter"):
        return None, None, None
    config = meta.get("adapter_train_config") or {}
    recipe = ((config.get("metadata") or {}).get("recipe") or {}).get("name")
    return records.slug(meta["adapter"]), recipe, (config.get("hyperparameters") or {}).get("seed")


def load_study(folder: str | Path) -> Study:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--study {folder}: no such folder")
    score_paths = tables.find_scores(folder / "eval_responses")
    if not score_paths:
        raise UserError(
            f"{folder / 'eval_responses'} holds no *.scores.json file; score the responses first: "
            "python eval_score.py --input FILE"
        )
    study = Study(folder=folder, conditions=[], inputs=[])
    seen: dict[tuple, Path] = {}
    for path in score_paths:
        result = tables.read_result_file(path, ["ifeval_scores"])
        meta = result.doc["metadata"]
        adapter, recipe, seed = adapter_identity(meta)
        condition = Condition(
            model=str(meta.get("model") or "?"),
            adapter=adapter,
            recipe=recipe,
            seed=seed,
            template=str(meta.get("template") or "?"),
            precision=str(meta.get("precision") or "?"),
            scores_path=path,
            scores=result.doc,
        )
        key = (condition.model_short, adapter, condition.template, condition.precision)
        if key in seen:
            raise UserError(f"{seen[key].name} and {path.name} are both {condition.label}; keep one of them")
        seen[key] = path
        study.conditions.append(condition)
        study.inputs.append((path, result.sha256))
    attach_mmlu(study)
    check_train_configs(study)
    studied = study_models(study)
    study.conditions.sort(
        key=lambda c: (
            c.model_short not in studied,  # the reference model last
            c.model_short,
            c.adapter or "",
            TEMPLATE_ORDER.get(c.template, 9),
            tables.PRECISION_ORDER.get(c.precision, 9),
        )
    )
    return study


def attach_mmlu(study: Study) -> None:
    """Each tinyMMLU file goes to every condition of its model + adapter + precision (all templates)."""
    taken: dict[tuple, Path] = {}
    for path in sorted((study.folder / "eval_results").glob("*_tinymmlu_*.json")):
        result = tables.read_result_file(path, ["tinymmlu_results"])
        meta = result.doc["metadata"]
        adapter = records.slug(meta["adapter"]) if meta.get("adapter") else None
        key = (short_model_name(str(meta.get("model") or "?")), adapter, str(meta.get("precision")))
        if key in taken:
            raise UserError(
                f"{taken[key].name} and {path.name} are tinyMMLU runs of the same {' · '.join(map(str, key))}"
            )
        taken[key] = path
        study.inputs.append((path, result.sha256))
        matched = [c for c in study.conditions if (c.model_short, c.adapter, c.precision) == key]
        for c in matched:
            c.mmlu_path, c.mmlu = path, result.doc
        if not matched:
            study.notes.append(f"{path.name} matches no IFEval condition ({' · '.join(map(str, key))}); not shown.")


def check_train_configs(study: Study) -> None:
    """STUDY/adapters/<name>/train_config.json must say the recipe and seed the eval files recorded."""
    for path in sorted((study.folder / "adapters").glob("*/train_config.json")):
        config = records.read_json(path, "train config")
        study.inputs.append((path, records.sha256_file(path)))
        _, recipe, seed = adapter_identity({"adapter": path.parent.name, "adapter_train_config": config})
        for c in study.conditions:
            if c.adapter == path.parent.name and (c.recipe, c.seed) != (recipe, seed):
                study.notes.append(
                    f"{c.scores_path.name} records {c.adapter} as recipe {c.recipe}, seed {c.seed}, but {path} says "
                    f"recipe {recipe}, seed {seed}."
                )


# ---------------------------------------------------------------------------------------------
# Figures


def loop_passes(condition: Condition) -> tuple[int, int] | None:
    """(prompt-level strict passes on loop answers, all strict passes); None without stop reasons."""
    rows = condition.scores["per_prompt"]
    if not answers.stop_reasons_known(rows):
        return None
    passes = [row for row in rows if row["follow_all_strict"]]
    return sum(bool(answers.answer_flags(row)["loop"]) for row in passes), len(passes)


def pass_shares(condition: Condition) -> tuple[float, float] | None:
    """Prompt-level strict passes on clean answers and on degenerate ones (a loop or an echo), each as
    a share of all the condition's prompts; None without stop reasons."""
    rows = condition.scores["per_prompt"]
    if not answers.stop_reasons_known(rows):
        return None
    passes = [answers.answer_flags(row)["clean"] for row in rows if row["follow_all_strict"]]
    return sum(passes) / len(rows), (len(passes) - sum(passes)) / len(rows)


def mmlu_figures(doc: dict[str, Any]) -> dict[str, Any]:
    """Accuracy with its Wilson interval and the best constant-letter baseline, from the items."""
    items = doc["items"]
    hits = sum(bool(item["correct"]) for item in items)
    return {
        "accuracy": hits / len(items),
        "ci": list(stats.wilson_interval(hits, len(items))),
        "baseline": letters.letter_analysis(items)["constant_baseline"],
    }


@dataclass
class Effect:
    name: str
    a: Condition
    b: Condition
    comparison: dict[str, Any]

    def metric(self, key: str, clean: bool = False) -> dict[str, Any] | None:
        block = self.comparison["answers"]["clean_in_both"] if clean else self.comparison
        if block is None:
            return None
        return next(m for m in block["metrics"] if m["metric"] == key)


def paired(name: str, a: Condition, b: Condition, notes: list[str]) -> Effect | None:
    try:
        return Effect(name, a, b, compare.compare(a.scores, b.scores, names=(a.label, b.label)))
    except UserError as err:
        notes.append(f"{name}, {a.label} vs {b.label}: not compared ({err}).")
        return None


def study_models(study: Study) -> list[str]:
    """Models that carry an adapter: the ones whose effects are decomposed."""
    return sorted({c.model_short for c in study.conditions if c.adapter})


def effects(study: Study) -> tuple[list[Effect], list[str]]:
    """The paired effects per model and precision, and a note for each one whose files are absent."""
    found: list[Effect] = []
    notes: list[str] = []
    for model in study_models(study):
        precisions = sorted(
            {c.precision for c in study.conditions if c.model_short == model},
            key=lambda p: tables.PRECISION_ORDER.get(p, 9),
        )
        for precision in precisions:
            for name, (adapter_a, template_a), (adapter_b, template_b) in EFFECTS:
                a = study.find(model, adapter_a, template_a, precision)
                b = study.find(model, adapter_b, template_b, precision)
                if a and b:
                    effect = paired(name, a, b, notes)
                    found += [effect] if effect else []
                    continue
                missing = [
                    f"{adapter or model} · {template} · {precision}"
                    for cond, adapter, template in ((a, adapter_a, template_a), (b, adapter_b, template_b))
                    if cond is None
                ]
                notes.append(f"{name}, {model} at {precision}: skipped, no scores file for {' and '.join(missing)}.")
    for c in study.conditions:
        if c.precision == REFERENCE_PRECISION:
            continue
        reference = study.find(c.model_short, c.adapter, c.template, REFERENCE_PRECISION)
        if reference:
            effect = paired(f"precision ({c.precision} − {REFERENCE_PRECISION})", reference, c, notes)
            found += [effect] if effect else []
    return found, notes


def additivity(found: Sequence[Effect]) -> list[dict[str, Any]]:
    """Per precision: total and template + weights (alpaca) on each metric. The three share the
    same prompts, so the point estimates add exactly: (S1a − Br) = (Ba − Br) + (S1a − Ba)."""
    out = []
    for total in (e for e in found if e.name == TOTAL):
        parts = {
            e.name: e
            for e in found
            if e.name in (TEMPLATE, WEIGHTS_ALPACA)
            and e.b.precision == total.b.precision
            and e.b.model_short == total.b.model_short
        }
        if len(parts) < 2:
            continue
        for key, label, _, _ in compare.METRICS:
            out.append(
                {
                    "model": total.b.model_short,
                    "precision": total.b.precision,
                    "metric": label,
                    "total": total.metric(key)["difference"],
                    "template": parts[TEMPLATE].metric(key)["difference"],
                    "weights": parts[WEIGHTS_ALPACA].metric(key)["difference"],
                }
            )
    return out


# ---------------------------------------------------------------------------------------------
# Markdown


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|")


def _rate(measure: dict[str, Any] | None) -> str:
    return format_acc(measure["rate"], measure["ci"]) if measure else "–"


def main_row(c: Condition) -> list[str]:
    summary, block = c.scores["summary"], c.answers or {}
    cells = [c.label, c.model_short, c.weights, c.template, c.precision]
    cells += [format_acc(summary[key], summary.get(f"{key}_ci")) for key, *_ in compare.METRICS]
    cells += [_rate(block.get(m)) for m in ("stopped", "loop", "echo")]
    cells.append(str((block.get("new_tokens") or {}).get("median", "–")))
    clean = block.get("clean_accuracy")
    cells.append(
        f"{format_acc(clean['prompt_level_strict_acc'], clean['prompt_level_strict_acc_ci'])} (n {clean['n_prompts']})"
        if clean
        else "–"
    )
    if c.mmlu:
        mmlu = mmlu_figures(c.mmlu)
        base = mmlu["baseline"]
        cells += [
            format_acc(mmlu["accuracy"], mmlu["ci"]),
            f"{base['letter']}: {format_acc(base['accuracy'], base['ci'])}",
        ]
    else:
        cells += ["–", "–"]
    return cells


MAIN_HEADER = [
    "condition",
    "model",
    "weights",
    "template",
    "precision",
    "prompt strict",
    "prompt loose",
    "inst strict",
    "inst loose",
    "stopped",
    "loops",
    "echoes",
    "median new tokens",
    "prompt strict, clean answers (n)",
    "tinyMMLU",
    "always one letter",
]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(_cell(x) for x in row) + " |" for row in rows),
    ]


def _difference(metric: dict[str, Any] | None) -> str:
    if metric is None:
        return "–"
    low, high = metric["difference_ci"]
    text = f"{signed_points(metric['difference'])} [{signed_points(low)}, {signed_points(high)}], p {p_text(metric['mcnemar']['p_value'])}"
    if metric.get("clustered_mcnemar"):
        text += f" (clustered {p_text(metric['clustered_mcnemar']['p_value'])})"
    return text


def _effect_name(e: Effect) -> str:
    return e.name if e.name.startswith("precision") else f"{e.name}, {e.b.precision}"


def decomposition_lines(found: Sequence[Effect], notes: Sequence[str]) -> list[str]:
    rows = [
        [_effect_name(e), f"{e.b.label} − {e.a.label}", str(e.comparison["n_prompts"])]
        + [_difference(e.metric(key)) for key, _ in DIFFERENCE_COLUMNS]
        for e in found
    ]
    lines = [
        "## Decomposition: paired effects",
        "",
        "B − A in points, paired by prompt: 95% paired bootstrap interval over prompts and the exact McNemar p; "
        "at instruction level also McNemar clustered by prompt (docs/ANALYSES.md).",
        "",
        *_table(["effect", "B − A", "prompts", *(label for _, label in DIFFERENCE_COLUMNS)], rows),
        "",
    ]
    sums = additivity(found)
    if sums:
        lines.append(
            "Total = template + weights (alpaca template) holds exactly for the point estimates, since the three "
            "pairs are on the same prompts: (S1 + alpaca − base + raw) = (base + alpaca − base + raw) + "
            "(S1 + alpaca − base + alpaca). Their intervals do not add."
        )
        lines.append("")
        lines += _table(
            ["model", "precision", "metric", "template", "weights (alpaca)", "sum", "total"],
            [
                [
                    s["model"],
                    s["precision"],
                    s["metric"],
                    signed_points(s["template"]),
                    signed_points(s["weights"]),
                    signed_points(s["template"] + s["weights"]),
                    signed_points(s["total"]),
                ]
                for s in sums
            ],
        )
        lines.append("")
    lines += [f"- {n}" for n in notes]
    return lines


def degeneracy_lines(study: Study, found: Sequence[Effect]) -> list[str]:
    lines = [
        "## Length and degeneracy",
        "",
        "The same pairs on the prompts whose answers are clean (neither a loop nor a prompt echo) in both runs.",
        "",
    ]
    rows = []
    for e in found:
        clean = e.comparison["answers"]["clean_in_both"]
        rows.append(
            [_effect_name(e), f"{e.b.label} − {e.a.label}", str(clean["n_prompts"]) if clean else "0"]
            + [_difference(e.metric(key, clean=True)) for key, _ in STRICT_COLUMNS]
        )
    lines += _table(["effect", "B − A", "prompts clean in both", *(label for _, label in STRICT_COLUMNS)], rows)
    lines += [
        "",
        "Share of each condition's prompt-level strict passes that are repetition loops (a loop of short lines "
        "can pass checks such as no commas or all lowercase).",
        "",
    ]
    rows = []
    for c in study.conditions:
        counts = loop_passes(c)
        if counts is None:
            rows.append([c.label, "–", "–", "stop reasons not recorded"])
        else:
            on_loops, passes = counts
            rows.append([c.label, str(passes), str(on_loops), f"{100 * on_loops / passes:.1f}%" if passes else "–"])
    lines += _table(["condition", "strict passes", "passes on loop answers", "share"], rows)
    lines += [
        "",
        "Where each effect on prompt-level strict comes from: the change in passes on clean answers and in passes "
        "on degenerate answers (loops or echoes), in points of all the pair's prompts; the two add up to the "
        "effect. A model that stops instead of looping loses the passes its loops scored by chance.",
        "",
    ]
    rows = []
    for e in found:
        a, b = pass_shares(e.a), pass_shares(e.b)
        if a is None or b is None:
            rows.append([_effect_name(e), f"{e.b.label} − {e.a.label}", "–", "–", "stop reasons not recorded"])
            continue
        on_clean, on_degenerate = b[0] - a[0], b[1] - a[1]
        rows.append(
            [_effect_name(e), f"{e.b.label} − {e.a.label}"]
            + [signed_points(x) for x in (on_clean, on_degenerate, on_clean + on_degenerate)]
        )
    lines += _table(["effect", "B − A", "passes on clean answers", "passes on degenerate answers", "total"], rows)
    return lines


def markdown(study: Study, command: str, charts: Sequence[str] = (), chart_note: str | None = None) -> str:
    found, skipped = effects(study)
    lines = [
        "# Controlled study: template, weights, seed, recipe and precision",
        "",
        "Made by:",
        "",
        f"    {command}",
        "",
        "## Conditions",
        "",
        *_table(MAIN_HEADER, [main_row(c) for c in study.conditions]),
        "",
        "Accuracies and rates in %, with 95% intervals: IFEval accuracies with the scores files' bootstrap "
        "intervals over prompts; stopped (EOS), loops and echoes with Wilson intervals (rules in docs/ANALYSES.md); "
        "prompt strict on the clean answers only, n of them. tinyMMLU: accuracy on its items with a Wilson interval, "
        "and the best constant-letter baseline (always answering that letter) with its own.",
        "",
        "tinyMMLU has no template dimension: its file is matched to a condition by model + adapter + precision, "
        "so the raw and alpaca rows of one model, adapter and precision show the same tinyMMLU run.",
        "",
        *[f"- {n}" for n in study.notes],
        *([""] if study.notes else []),
        *decomposition_lines(found, skipped),
        "",
        *degeneracy_lines(study, found),
        "",
    ]
    if charts or chart_note:
        lines += ["## Charts", ""]
        lines += [f"![{Path(chart).stem}]({chart})" for chart in charts]
        lines += [chart_note] if chart_note else []
        lines.append("")
    lines += ["## Inputs", "", "sha256 (first 12 hex digits) of every file read:", ""]
    lines += [f"- `{path.relative_to(study.folder).as_posix()}` {sha[:12]}" for path, sha in study.inputs]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Charts


def plot_prompt_strict(conditions: Sequence[Condition], path: Path) -> Path:
    plt = tables._pyplot()
    values = [c.scores["summary"]["prompt_level_strict_acc"] for c in conditions]
    cis = [c.scores["summary"].get("prompt_level_strict_acc_ci") for c in conditions]
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(conditions) + 2), 5))
    bars = ax.bar(range(len(conditions)), [100 * v for v in values], 0.6, yerr=tables._errors(values, cis), capsize=3)
    tables.label_values(ax, bars, values, fontsize=7)
    ax.set_xticks(range(len(conditions)), [c.label.replace(" · ", "\n") for c in conditions], fontsize=7)
    ax.set_ylabel("prompt-level strict accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("IFEval prompt-level strict per condition (95% intervals)")
    fig.tight_layout()
    return tables._save(fig, path, plt)


def plot_endings(conditions: Sequence[Condition], path: Path) -> Path:
    """Stacked shares: stopped on EOS, cut at the limit and looping, cut without a loop."""
    plt = tables._pyplot()
    shown = [c for c in conditions if c.answers and c.answers.get("stopped")]
    parts = {
        "stopped (EOS)": [c.answers["stopped"]["count"] / c.answers["n"] for c in shown],
        "cut, looping": [c.answers["loop"]["count"] / c.answers["n"] for c in shown],
    }
    parts["cut, no loop"] = [1 - s - lp for s, lp in zip(*parts.values())]
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(shown) + 3), 5))
    bottom = [0.0] * len(shown)
    for (name, shares), color in zip(parts.items(), ("tab:green", "tab:red", "tab:orange")):
        ax.bar(
            range(len(shown)), [100 * s for s in shares], 0.6, bottom=[100 * b for b in bottom], label=name, color=color
        )
        bottom = [b + s for b, s in zip(bottom, shares)]
    ax.set_xticks(range(len(shown)), [c.label.replace(" · ", "\n") for c in shown], fontsize=7)
    ax.set_ylabel("% of answers")
    ax.set_ylim(0, 100)
    ax.set_title("How the answers end")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return tables._save(fig, path, plt)


CHART_NAMES = ("study_prompt_strict.png", "study_answer_endings.png")


def write_report(study_dir: str | Path, markdown_path: str | Path, charts_dir: str | Path, command: str) -> list[Path]:
    """The markdown report and, when matplotlib is installed, its two charts; nothing is overwritten."""
    markdown_path = records.check_new_file(markdown_path, "--markdown")
    chart_paths = [records.check_new_file(Path(charts_dir) / name, "chart") for name in CHART_NAMES]
    study = load_study(study_dir)
    written, chart_note = [], None
    try:
        import matplotlib  # noqa: F401
    except ModuleNotFoundError:
        chart_note = "No charts: matplotlib is not installed (pip install matplotlib)."
    else:
        written = [
            plot_prompt_strict(study.conditions, chart_paths[0]),
            plot_endings(study.conditions, chart_paths[1]),
        ]
    charts = [Path(os.path.relpath(p, markdown_path.parent)).as_posix() for p in written]
    records.write_text_atomic(markdown_path, markdown(study, command, charts, chart_note))
    return [markdown_path, *written]
