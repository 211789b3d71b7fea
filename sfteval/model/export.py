"""Merge a LoRA adapter into its base model and save a standalone Hugging Face model folder.

The folder loads with plain transformers (`AutoModelForCausalLM.from_pretrained(folder)`), no
project code needed: safetensors weights, the adapter's tokenizer with the training template as
its `chat_template`, a generation config whose EOS is the one the adapter learned to stop on, a
model card (README.md) with the training configuration and any IFEval / tinyMMLU scores, the
adapter's train_config.json and `sfteval_export.json` (how the folder was made, and how far the
merged model's logits are from base + adapter). The folder is built under a temporary name and
renamed into place, so a crash never leaves half of one; nothing is overwritten.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sfteval import prompts, records
from sfteval.cli import UserError, setting
from sfteval.model import loading

EXPORT_KIND = "merged_model_export"
EXPORT_FILE = "sfteval_export.json"
EXPORT_PRECISIONS = ("bf16", "fp32")
QUANTIZED_TRAINING_NOTE = (
    "note: this adapter was trained on {precision} weights (QLoRA); it is merged onto the bf16 base, so the "
    "merged model computes with the unquantized weights the adapter never saw: its logits differ from "
    "{precision} base + adapter by the quantization error (usually a small drift, now and then a different "
    "greedy token). The logit check below compares with bf16 base + adapter."
)
# Instructions for the logit check: short, of different kinds, none from IFEval.
CHECK_INSTRUCTIONS = (
    "Give three tips for staying healthy.",
    "Translate 'good morning' into French.",
    "Write a haiku about a river.",
)


@dataclass
class ExportSettings:
    """export.py's options are generated from these fields (sfteval.cli.parse_settings)."""

    lora: str = setting(None, "adapter folder written by train.py", metavar="DIR")
    output_dir: str | None = setting(None, "merged model folder, must not exist (default: <lora>_merged)",
                                     metavar="DIR")  # fmt: skip
    model: str | None = setting(None, "base model (default: the adapter's recorded base model)")
    precision: Literal["bf16", "fp32"] = setting(
        "bf16", "weights of the merged model; a quantized base cannot take the merge"
    )
    ifeval_scores: str | None = setting(None, "eval_score.py's scores file, for the model card", metavar="FILE")
    tinymmlu: str | None = setting(None, "eval_mmlu.py's results file, for the model card", metavar="FILE")
    push_to_hub: str | None = setting(
        None, "upload the folder to this hub repo (user/name) with your hub login", metavar="REPO"
    )
    private: bool = setting(False, "with --push-to-hub: create the repo as private")

    def __post_init__(self) -> None:
        if not self.lora:
            raise UserError("--lora DIR is required: the adapter folder written by train.py")
        if self.private and not self.push_to_hub:
            raise UserError("--private needs --push-to-hub REPO")


@dataclass
class ExportResult:
    output: Path
    logit_check: dict[str, Any]
    hub_url: str | None = None


def default_output_dir(lora: str) -> Path:
    path = Path(lora).expanduser()
    return path.with_name(path.name.rstrip("/\\") + "_merged")


def read_scores(path: str | None, kind: str, flag: str) -> dict[str, Any] | None:
    """The `summary` of a scores file of `kind`, plus where it came from; None when not given."""
    if path is None:
        return None
    document = records.read_json(path, flag)
    if not isinstance(document, dict) or document.get("kind") != kind:
        raise UserError(f"{flag} {path} is not a {kind} file (its kind is {document.get('kind')!r})")
    return {"file": Path(path).name, "sha256": records.sha256_file(path), "summary": document["summary"]}


def check_hub_login() -> None:
    """Refuse --push-to-hub before any model loads when there is no hub login; the token itself
    stays inside huggingface_hub."""
    from huggingface_hub import get_token

    if not get_token():
        raise UserError("--push-to-hub needs a Hugging Face login: run `hf auth login` or set HF_TOKEN")


@dataclass
class Plan:
    settings: ExportSettings
    base_model: str
    train_config: dict[str, Any] | None
    output: Path
    scores: dict[str, Any]


def plan(settings: ExportSettings) -> Plan:
    """Every check that needs no model."""
    if settings.precision not in EXPORT_PRECISIONS:
        raise UserError(
            f"export merges into {' or '.join(EXPORT_PRECISIONS)} weights, got --precision {settings.precision}; "
            "a quantized model cannot take the merge (load the merged folder in 4-bit or 8-bit instead)"
        )
    base_model, train_config = loading.resolve_base_model(settings.model, settings.lora)
    loading.check_model_source(base_model)
    output = Path(settings.output_dir).expanduser() if settings.output_dir else default_output_dir(settings.lora)
    if output.exists():
        raise UserError(f"{output} already exists; nothing is overwritten (choose another --output-dir)")
    scores = {
        "ifeval": read_scores(settings.ifeval_scores, "ifeval_scores", "--ifeval-scores"),
        "tinymmlu": read_scores(settings.tinymmlu, "tinymmlu_results", "--tinymmlu"),
    }
    if settings.push_to_hub:
        check_hub_login()
    return Plan(settings, base_model, train_config, output, scores)


# ---------------------------------------------------------------- the merge and its check


def trained_eos_id(tokenizer: Any, train_config: dict[str, Any] | None) -> int:
    """The EOS the adapter learned to end its answers with (train_config.json), else the tokenizer's."""
    recorded = ((train_config or {}).get("model") or {}).get("eos_token_id")
    return int(recorded) if isinstance(recorded, int) else int(tokenizer.eos_token_id)


def adapter_tokenizer(lora: str, base_source: str) -> Any:
    """The tokenizer saved with the adapter (the one it was trained with), else the base model's."""
    has_own = any((Path(lora) / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))
    return loading.load_tokenizer(lora if has_own else base_source)


def check_inputs(tokenizer: Any, template: str | None) -> list[list[int]]:
    if template == "alpaca":
        return [prompts.encode(tokenizer, prompts.alpaca_prompt(text)) for text in CHECK_INSTRUCTIONS]
    return [prompts.encode(tokenizer, text) for text in CHECK_INSTRUCTIONS]


def prompt_logits(model: Any, inputs: list[list[int]]) -> list[Any]:
    """Logits at every position of each prompt (one at a time: no padding in the comparison), fp32 on the CPU."""
    import torch

    device = next(model.parameters()).device
    with torch.inference_mode():
        return [model(input_ids=torch.tensor([ids], device=device)).logits[0].float().cpu() for ids in inputs]


def max_difference(first: list[Any], second: list[Any]) -> float:
    return max(float((a - b).abs().max()) for a, b in zip(first, second))


def merge_with_check(loaded: loading.LoadedModel, inputs: list[list[int]]) -> tuple[Any, dict[str, Any]]:
    """peft's `merge_and_unload`, and how far the merged model's logits are from base + adapter
    (and, for scale, how far the adapter moves them from the base)."""
    model = loaded.model
    with_adapter = prompt_logits(model, inputs)
    with model.disable_adapter():
        base_only = prompt_logits(model, inputs)
    merged = model.merge_and_unload()
    merged_logits = prompt_logits(merged, inputs)
    same_greedy = all(bool((a.argmax(-1) == b.argmax(-1)).all()) for a, b in zip(merged_logits, with_adapter))
    check = {
        "prompts": len(inputs),
        "positions": sum(len(ids) for ids in inputs),
        "max_abs_logit_difference_merged_vs_adapter": max_difference(merged_logits, with_adapter),
        "max_abs_logit_difference_adapter_vs_base": max_difference(with_adapter, base_only),
        "same_argmax_every_position": same_greedy,
    }
    return merged, check


# ---------------------------------------------------------------- what goes into the folder


def set_generation_config(model: Any, tokenizer: Any, eos_id: int) -> None:
    config = model.generation_config
    config.eos_token_id = eos_id
    config.pad_token_id = tokenizer.pad_token_id
    if tokenizer.bos_token_id is not None:
        config.bos_token_id = tokenizer.bos_token_id


def format_ci(ci: Any) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if isinstance(ci, (list, tuple)) and len(ci) == 2 else ""


def scores_section(scores: dict[str, Any]) -> str:
    lines = []
    if scores.get("ifeval"):
        summary = scores["ifeval"]["summary"]
        lines += [
            f"IFEval ({summary.get('n_prompts')} prompts, lm-eval's checkers; `{scores['ifeval']['file']}`):",
            "",
            "| metric | accuracy | 95% interval |",
            "|---|---|---|",
        ]
        for level in ("prompt", "inst"):
            for mode in ("strict", "loose"):
                key = f"{level}_level_{mode}_acc"
                if key in summary:
                    lines.append(f"| {key} | {summary[key]:.3f} | {format_ci(summary.get(key + '_ci'))} |")
        lines.append("")
    if scores.get("tinymmlu"):
        summary = scores["tinymmlu"]["summary"]
        lines += [
            f"tinyMMLU, 0-shot ({summary.get('n')} questions; `{scores['tinymmlu']['file']}`): accuracy "
            f"{summary['accuracy']:.3f} {format_ci(summary.get('accuracy_ci'))}",
            "",
        ]
    return "\n".join(lines) if lines else "Not evaluated at export time.\n"


def model_card(plan: Plan, check: dict[str, Any], dtype: str) -> str:
    train_config = plan.train_config or {}
    hyper = train_config.get("hyperparameters") or {}
    dataset = train_config.get("dataset") or {}
    front = {"base_model": plan.base_model, "library_name": "transformers", "tags": ["lora", "merged", "alpaca"]}
    if isinstance(dataset.get("name"), str) and "/" in dataset["name"] and not Path(dataset["name"]).exists():
        front["datasets"] = [dataset["name"]]
    front_matter = "\n".join(f"{key}: {json.dumps(value)}" for key, value in front.items())
    example = prompts.alpaca_prompt("Name three primary colors.")
    return f"""---
{front_matter}
---

# {plan.output.name}

`{plan.base_model}` with the LoRA adapter `{Path(plan.settings.lora).name}` merged into its weights
({dtype}), made by sfteval's `export.py`. It is a plain transformers model: no adapter or project code is needed.

## Prompt format

The adapter was trained on the alpaca template (`{train_config.get("template", "unknown")}`), which is this
tokenizer's `chat_template`: one user turn renders as below, and the answer ends with EOS
(`{(train_config.get("model") or {}).get("eos_token")}`, the generation config's `eos_token_id`).

```text
{example}```

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{plan.settings.push_to_hub or plan.output.name}")
model = AutoModelForCausalLM.from_pretrained("{plan.settings.push_to_hub or plan.output.name}")
inputs = tokenizer.apply_chat_template(
    [{{"role": "user", "content": "Name three primary colors."}}], add_generation_prompt=True, return_tensors="pt"
)
output = model.generate(**inputs, max_new_tokens=256, do_sample=False)
print(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```

## Training

Trained with precision `{train_config.get("precision")}` and loader `{train_config.get("loader")}`; dataset
`{dataset.get("name")}`. The merged model's logits are within
{check["max_abs_logit_difference_merged_vs_adapter"]:.3g} of base + adapter on {check["prompts"]} prompts
({check["positions"]} positions; the adapter itself moves them by up to
{check["max_abs_logit_difference_adapter_vs_base"]:.3g}).

```json
{json.dumps(hyper, indent=2)}
```

The whole training record is in `train_config.json`.

## Evaluation

{scores_section(plan.scores)}
"""


def export_record(plan: Plan, check: dict[str, Any], dtype: str, eos_id: int) -> dict[str, Any]:
    adapter = Path(plan.settings.lora)
    weights = adapter / "adapter_model.safetensors"
    metadata = records.run_metadata(
        base_model=plan.base_model,
        adapter=str(adapter.expanduser().resolve()),
        adapter_weights_sha256=records.sha256_file(weights) if weights.is_file() else None,
        adapter_train_config=plan.train_config,
        dtype=dtype,
    )
    return records.envelope(
        EXPORT_KIND, metadata, logit_check=check, eos_token_id=eos_id, scores=plan.scores, template="alpaca"
    )


def save_folder(plan: Plan, merged: Any, tokenizer: Any, check: dict[str, Any], eos_id: int) -> Path:
    """Everything into a hidden temporary folder next to the output, then one rename."""
    plan.output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=plan.output.parent, prefix=f".{plan.output.name}."))
    os.chmod(staging, 0o777 & ~records.current_umask())  # mkdtemp makes it 0700
    dtype = plan.settings.precision
    try:
        set_generation_config(merged, tokenizer, eos_id)
        merged.save_pretrained(str(staging))
        if (plan.train_config or {}).get("template") == "alpaca":
            tokenizer.chat_template = prompts.alpaca_chat_template(tokenizer)
        tokenizer.padding_side = "left"  # an inference model: batched prompts are left-padded
        tokenizer.save_pretrained(str(staging))
        if plan.train_config is not None:
            records.write_json_atomic(staging / loading.TRAIN_CONFIG, plan.train_config)
        records.write_json_atomic(staging / EXPORT_FILE, export_record(plan, check, dtype, eos_id))
        records.write_text_atomic(staging / "README.md", model_card(plan, check, dtype))
        if plan.output.exists():
            raise UserError(f"{plan.output} appeared while exporting; the merged model is left in {staging}")
        os.replace(staging, plan.output)
    except BaseException:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        raise
    return plan.output


def push_folder(folder: Path, repo: str, private: bool) -> str:
    """Upload with the user's hub login (huggingface_hub reads it; it never passes through here)."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(
            folder_path=str(folder), repo_id=repo, repo_type="model", commit_message=f"sfteval export {folder.name}"
        )
    except Exception as err:  # network, permissions, a bad repo id: one line, and the folder stays
        raise UserError(
            f"could not upload to {repo} ({loading.first_line(err)}); the folder is complete in {folder}, "
            f"upload it later with `hf upload {repo} {folder}`"
        ) from None
    return str(getattr(commit, "commit_url", None) or f"https://huggingface.co/{repo}")


def run(settings: ExportSettings, log: Callable[[str], None] | None = None) -> ExportResult:
    log = log or (lambda text: print(text, file=sys.stderr))
    job = plan(settings)
    trained_precision = (job.train_config or {}).get("precision")
    if trained_precision in loading.QUANTIZED:
        log(QUANTIZED_TRAINING_NOTE.format(precision=trained_precision))
    loaded = loading.load_model(
        loading.ModelSpec(model=job.base_model, precision=settings.precision, use_hf=True, lora=settings.lora)
    )
    tokenizer = adapter_tokenizer(settings.lora, loaded.info["model_source"])
    template = (job.train_config or {}).get("template")
    merged, check = merge_with_check(loaded, check_inputs(tokenizer, template))
    log(
        f"merged {settings.lora} into {job.base_model} ({settings.precision}): largest logit difference from "
        f"base + adapter {check['max_abs_logit_difference_merged_vs_adapter']:.3g} over {check['positions']} "
        f"positions of {check['prompts']} prompts (the adapter moves the base's logits by up to "
        f"{check['max_abs_logit_difference_adapter_vs_base']:.3g}); same greedy token everywhere: "
        f"{check['same_argmax_every_position']}"
    )
    output = save_folder(job, merged, tokenizer, check, trained_eos_id(tokenizer, job.train_config))
    hub_url = push_folder(output, settings.push_to_hub, settings.private) if settings.push_to_hub else None
    return ExportResult(output, check, hub_url)
