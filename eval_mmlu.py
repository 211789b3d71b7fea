"""tinyMMLU, 0-shot: score the four answer letters by next-token log-probability, for a base,
instruct or finetuned model, and write eval_results/<model>[_<adapter>]_<precision>_tinymmlu_<time>.json.

python eval_mmlu.py --model unsloth/Meta-Llama-3.1-8B --precision bf16
python eval_mmlu.py --lora lora_model_4bit --precision 4bit
python eval_mmlu.py --model unsloth/Meta-Llama-3.1-8B-Instruct --precision 4bit --template chat
python eval_mmlu.py --model path/to/model --precision fp32 --data ../shared/data/tinymmlu/tinyMMLU_test.jsonl --limit 10

Default prompt (--template none): the standard MMLU 0-shot text, "The following are multiple
choice questions (with answers) about <subject>.", the question, "A. ..." to "D. ..." and
"Answer:"; the letters scored are " A" ... " D". --template chat sends that text as one user
message through the tokenizer's chat template and scores "A" ... "D" as the reply's first token.
With 100 questions the 95% interval is about +-10 points: compare runs with that in mind.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sfteval import cli
from sfteval.mmlu.evaluate import HUB_DATASET
from sfteval.model.settings import ModelSettings


@dataclass
class MmluSettings:
    loader: Literal["auto", "hf", "unsloth"] = cli.setting(
        "auto",
        "auto = transformers: scoring is one forward pass per batch, over in seconds, while importing unsloth "
        "takes longer than that; unsloth on request",
    )
    template: Literal["none", "chat", "alpaca"] = cli.setting(
        "none",
        "prompt format: none = the plain 0-shot MMLU text, as for a base model (the same prompt for every model, "
        "so base, instruct and finetuned compare directly); chat = that text as a user message in the tokenizer's "
        "chat template; alpaca = that text as an alpaca instruction",
    )
    data: str = cli.setting(
        HUB_DATASET,
        "JSONL with question, subject, choices (4), answer (0-3), e.g. ../shared/data/tinymmlu/tinyMMLU_test.jsonl "
        "(default: the hub's test split)",
    )
    # 16 prompts of up to ~1,100 tokens fit next to an 8B model; a batch that does not fit is halved and retried.
    batch_size: int = cli.setting(16, "prompts per forward pass")
    limit: int | None = cli.setting(None, "score only the first N questions (a quick check)", metavar="N")
    output_dir: str = cli.setting("eval_results", "where the results file goes")
    irt_params: str | None = cli.setting(
        None,
        "tinyBenchmarks.pkl for the IRT estimates (also $SFTEVAL_TINYBENCHMARKS_PKL); used only if its sha256 "
        "checks out",
        metavar="FILE",
    )
    progress: bool = cli.setting(True, "progress bar")

    def __post_init__(self) -> None:
        for name in ("batch_size", "limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise cli.UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def choose_loader(model_settings: ModelSettings, loader: str) -> str:
    """Sets ModelSettings.use_hf: --loader auto and hf load with transformers, only --loader unsloth with unsloth.
    Returns the line that says so."""
    if loader == "unsloth" and model_settings.use_hf:
        raise cli.UserError("--use-hf contradicts --loader unsloth")
    model_settings.use_hf = loader != "unsloth"
    if loader == "auto":
        return "loader: transformers (--loader auto; --loader unsloth to score with unsloth)"
    return f"loader: {loader} (as flagged)"


def output_name(model: str, adapter: str | None, precision: str, stamp: str) -> str:
    from sfteval.records import slug

    parts = [slug(model)] + ([slug(adapter)] if adapter else []) + [precision, "tinymmlu", stamp]
    return "_".join(parts) + ".json"


def main(argv: Sequence[str] | None = None) -> int:
    model_settings, args = cli.parse_settings([ModelSettings, MmluSettings], argv, __doc__)
    from sfteval import prompts, records
    from sfteval.mmlu import evaluate as mmlu
    from sfteval.model import loading

    loader_line = choose_loader(model_settings, args.loader)
    loading.check_machine(model_settings.precision, model_settings.use_hf)  # before the hub dataset is fetched
    items, data = mmlu.load_items(args.data)  # a bad file or output folder fails here, before any model loads
    records.check_writable_folder(args.output_dir, "--output-dir")
    # n_items: the questions scored; sha256 and is_tinymmlu_test describe the whole source
    data["n_items_in_source"] = len(items)
    if args.limit:
        items = items[: args.limit]
    data["n_items"] = len(items)
    # unsloth returns empty logits unless told otherwise; this scorer needs them
    os.environ.setdefault("UNSLOTH_RETURN_LOGITS", "1")
    loaded = loading.load_model(model_settings.spec())
    print(loader_line, file=sys.stderr)
    template = prompts.resolve_template(args.template, loaded.tokenizer)
    info = loaded.info
    adapter_template = (loaded.adapter_train_config or {}).get("template")
    print(
        f"[{info['model']} | adapter {info['adapter']} | {info['precision']} | {info['loader']} | template {template}]",
        file=sys.stderr,
    )
    if adapter_template and adapter_template != template:
        print(
            f"note: the adapter was trained on the {adapter_template} template; scoring with {template}",
            file=sys.stderr,
        )

    started = time.perf_counter()
    scores, scoring = mmlu.score_items(
        loaded.model, loaded.tokenizer, items, template, args.batch_size, progress=args.progress
    )
    wall = time.perf_counter() - started
    summary = mmlu.summarize(scores)
    summary["irt"], summary["irt_note"], irt_parameters = mmlu.irt_estimates(
        [s.correct for s in scores], data, args.irt_params
    )
    metadata = records.run_metadata(
        model=info["model"],
        adapter=model_settings.adapter,
        adapter_train_config=loaded.adapter_train_config,
        precision=info["precision"],
        weights_dtype=info["weights_dtype"],
        loader=info["loader"],
        template=template,
        data=data,
        limit=args.limit,
        prompt_format="mmlu_0shot",
        scoring=scoring,
        load=info,
        wall_seconds=round(wall, 3),
        items_per_second=round(len(scores) / wall, 3) if wall > 0 else None,
        peak_gpu_memory_gb=records.peak_gpu_memory_gb(),
        irt_parameters=irt_parameters,
    )
    result = records.envelope("tinymmlu_results", metadata, summary=summary, items=[s.to_dict() for s in scores])
    name = output_name(info["model"], model_settings.adapter, info["precision"], records.timestamp())
    path = records.write_json_atomic(records.unique_path(Path(args.output_dir) / name), result)
    print_summary(summary, metadata, path)
    return 0


def print_summary(summary: dict, metadata: dict, path: Path) -> None:
    from sfteval.mmlu.letters import letter_line

    low, high = summary["accuracy_ci"]
    peak = metadata["peak_gpu_memory_gb"]
    irt = summary["irt"]
    print(
        f"tinyMMLU accuracy {summary['accuracy']:.3f} ({summary['n_correct']}/{summary['n']}), "
        f"95% CI [{low:.3f}, {high:.3f}]"
    )
    print(f"  {summary['note']}")
    print(
        f"  {letter_line(summary)}; mean probability on the four letters {summary['letter_prob_mass_mean']:.2f}; "
        f"{len(summary['per_subject'])} subjects (per-subject accuracy in the file)"
    )
    if irt:
        print(f"  IRT {irt['irt']:.3f}, p-IRT {irt['pirt']:.3f}, gp-IRT {irt['gpirt']:.3f} ({summary['irt_note']})")
    else:
        print(f"  {summary['irt_note']}")
    print(
        f"  {metadata['wall_seconds']:.1f} s for {summary['n']} questions"
        + (f", peak GPU memory {peak:.1f} GB" if peak is not None else "")
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(cli.run(main))
