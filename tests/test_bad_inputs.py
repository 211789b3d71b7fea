"""Every script against bad input, as a user meets it: each row runs the real script in a
subprocess on files made for it, and must end with a non-zero exit code and one line on
stderr saying what is wrong (argparse's usage text plus its one `error:` line also counts),
no traceback, and every file that was there before left as it was.

Most rows fail before any model loads; the few that need one use the tiny random Llama. The
rows run two at a time before their tests (the `finished` fixture).
A second table hides an optional dependency from the child process (as if it were not
installed) and expects the one line to name what to install.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, SHARED_DATA

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
# Root writes anywhere; without these two capabilities it meets file permissions like any user.
AS_PLAIN_USER = [
    "setpriv",
    "--bounding-set=-dac_override,-dac_read_search",
    "--inh-caps=-dac_override,-dac_read_search",
]
CAN_DENY_WRITES = not IS_ROOT or shutil.which("setpriv") is not None

# Runs a script as __main__ after hiding some modules (None in sys.modules makes `import` fail with
# ModuleNotFoundError, and importlib.util.find_spec report the module absent) and running a prelude.
RUNNER = (
    "import runpy, sys\n"
    "hidden, prelude, script = sys.argv[1], sys.argv[2], sys.argv[3]\n"
    "for name in filter(None, hidden.split(',')):\n    sys.modules[name] = None\n"
    "exec(prelude)\n"
    "sys.argv = sys.argv[3:]\n"
    "runpy.run_path(script, run_name='__main__')\n"
)

# What sfteval asks before it picks a loader, answered as on a GPU machine (nothing else is faked).
FAKE_CUDA = "import sfteval.model.loading as loading; loading.cuda_available = lambda: True"

DIR = object()  # a files-table value: make an empty folder
READ_ONLY_DIR = object()  # a files-table value: an empty folder nobody may write into


@dataclass(frozen=True)
class Case:
    id: str
    script: str
    argv: tuple[str, ...]  # {tmp}, {data}, {tiny} and {other_adapter} are filled in
    expect: str  # a fragment of the one stderr line
    files: dict[str, Any] = field(default_factory=dict)  # name under tmp -> content (see make_files)
    hide: tuple[str, ...] = ()  # modules the child must not find
    prelude: str = ""  # Python run in the child before the script
    read_only: bool = False  # writes into a READ_ONLY_DIR: run without root's right to write anywhere

    def param(self):
        marks = []
        if self.read_only:
            marks.append(pytest.mark.skipif(not CAN_DENY_WRITES, reason="root without setpriv writes anywhere"))
        return pytest.param(self, id=self.id, marks=marks)


class Samples:
    """Small valid files of each kind, built once from the real data; rows change copies of them."""

    def __init__(self):
        self.prompt_rows = read_rows(SHARED_DATA / "ifeval" / "input_data.jsonl")[:3]
        official = read_rows(SHARED_DATA / "ifeval" / "phi3_eval_results_strict.jsonl")[:3]
        self.responses = responses_document(self.prompt_rows, [row["response"] for row in official])
        self.scores: dict[str, Any] = {}  # scored by the fixture, which has the real scorer
        self.mmlu_rows = read_rows(SHARED_DATA / "tinymmlu" / "tinyMMLU_test.jsonl")[:5]
        self.mmlu = mmlu_document(self.mmlu_rows)
        alpaca = json.loads((SHARED_DATA / "alpaca_cleaned" / "alpaca_data_cleaned_first5000.json").read_text())
        self.alpaca = alpaca[:8]


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def responses_document(prompt_rows: list[dict], answers: list[str]) -> dict[str, Any]:
    rows = [{**row, "response": answer} for row, answer in zip(prompt_rows, answers)]
    metadata = {"model": "m", "adapter": None, "precision": "bf16", "n_prompts": len(rows), "limit": None}
    return {"schema_version": 1, "kind": "ifeval_responses", "metadata": metadata, "responses": rows}


def mmlu_document(rows: list[dict]) -> dict[str, Any]:
    items = [
        {"idx": r["idx"], "subject": r["subject"], "answer": r["answer"], "prediction": 0, "correct": r["answer"] == 0}
        for r in rows
    ]
    metadata = {"model": "m", "adapter": None, "precision": "bf16", "template": "none", "data": {"sha256": "d" * 64}}
    return {"schema_version": 1, "kind": "tinymmlu_results", "metadata": metadata, "items": items}


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def half(text: str) -> str:
    return text[: len(text) // 2]


def with_rows(document: dict, key: str, rows: list) -> dict:
    return {**document, key: rows}


def changed_first(rows: list[dict], **changes) -> list[dict]:
    return [{**rows[0], **changes}, *rows[1:]]


def dropped_from_first(rows: list[dict], name: str) -> list[dict]:
    return [{k: v for k, v in rows[0].items() if k != name}, *rows[1:]]


BINARY = bytes(range(256)) * 4
LATIN1 = "Caf\u00e9 cr\u00e8me".encode("latin-1")
ADAPTER_CONFIG_ONLY = {"adapter_config.json": "{"}

# Files most rows start from.
RESPONSES = {"r.json": lambda s: s.responses}
SCORES = {"a.scores.json": lambda s: s.scores}
TWO_SCORES = {"a.scores.json": lambda s: s.scores, "b.scores.json": lambda s: s.scores}
MMLU = {"m.json": lambda s: s.mmlu}
MMLU_DATA = {"q.jsonl": lambda s: jsonl(s.mmlu_rows)}
PROMPTS = {"p.jsonl": lambda s: jsonl(s.prompt_rows)}
ALPACA = {"d.json": lambda s: s.alpaca}

SCORE = ("eval_score.py",)
GENERATE_ARGS = ("--model", "{tiny}", "--use-hf", "--precision", "fp32", "--max-new-tokens", "4", "--no-progress")
GEN = ("eval_generate.py", *GENERATE_ARGS)
MMLU_ARGS = ("--model", "{tiny}", "--use-hf", "--precision", "fp32", "--no-progress")
TRAIN = ("train.py", "--model", "{tiny}", "--use-hf", "--precision", "fp32", "--report-to", "none")
INFER = ("inference.py", "--model", "{tiny}", "--use-hf", "--precision", "fp32", "--max-new-tokens", "2")


def case(id, argv, expect, files=None, **options) -> Case:
    script, *args = argv
    return Case(id, script, tuple(args), expect, dict(files or {}), **options)


CASES = [
    # ---------------------------------------------------------------- eval_score.py
    case("score-missing-input", (*SCORE, "--input", "{tmp}/none.json"), "does not exist"),
    case("score-empty-input", (*SCORE, "--input", "{tmp}/r.json"), "empty", {"r.json": ""}),
    case(
        "score-truncated-input",
        (*SCORE, "--input", "{tmp}/r.json"),
        "not JSON",
        {"r.json": lambda s: half(json.dumps(s.responses))},
    ),
    case("score-binary-input", (*SCORE, "--input", "{tmp}/r.json"), "UTF-8", {"r.json": BINARY}),
    case("score-latin1-input", (*SCORE, "--input", "{tmp}/r.json"), "UTF-8", {"r.json": LATIN1}),
    case("score-folder-input", (*SCORE, "--input", "{tmp}/r.json"), "folder", {"r.json": DIR}),
    case("score-scores-as-responses", (*SCORE, "--input", "{tmp}/a.scores.json"), "'ifeval_scores' file", SCORES),
    case("score-mmlu-as-responses", (*SCORE, "--input", "{tmp}/m.json"), "'tinymmlu_results' file", MMLU),
    case(
        "score-response-missing-key",
        (*SCORE, "--input", "{tmp}/r.json"),
        "responses.0.response: field required",
        {
            "r.json": lambda s: with_rows(
                s.responses, "responses", dropped_from_first(s.responses["responses"], "response")
            )
        },
    ),
    case(
        "score-duplicated-key",
        (*SCORE, "--input", "{tmp}/r.json"),
        "two responses",
        {
            "r.json": lambda s: with_rows(
                s.responses, "responses", [*s.responses["responses"], s.responses["responses"][0]]
            )
        },
    ),
    case(
        "score-other-prompt-set",
        (*SCORE, "--input", "{tmp}/r.json", "--prompts", "{data}/ifeval/input_data.jsonl"),
        "not in the prompt set",
        {"r.json": lambda s: with_rows(s.responses, "responses", changed_first(s.responses["responses"], key=999999))},
    ),
    case(
        "score-json-list",
        (*SCORE, "--input", "{tmp}/r.json"),
        "unknown format",
        {"r.json": [1, 2, 3]},
    ),
    case(
        "score-output-exists",
        (*SCORE, "--input", "{tmp}/r.json", "--output", "{tmp}/taken.json"),
        "already exists",
        {**RESPONSES, "taken.json": "keep me"},
    ),
    case(
        "score-official-out-is-file",
        (*SCORE, "--input", "{tmp}/r.json", "--official-out", "{tmp}/taken"),
        "not a folder",
        {**RESPONSES, "taken": "keep me"},
    ),
    case(
        "score-output-read-only",
        (*SCORE, "--input", "{tmp}/r.json", "--output", "{tmp}/locked/out.json"),
        "permission",
        {**RESPONSES, "locked": READ_ONLY_DIR},
        read_only=True,
    ),
    case(
        "score-prompts-latin1",
        (*SCORE, "--input", "{tmp}/r.json", "--prompts", "{tmp}/p.jsonl"),
        "UTF-8",
        {**RESPONSES, "p.jsonl": LATIN1},
    ),
    case("score-no-input", SCORE, "one of the arguments --input --self-check is required"),
    # ---------------------------------------------------------------- compare_ifeval.py
    case(
        "compare-missing",
        ("compare_ifeval.py", "--model1", "{tmp}/a.scores.json", "--model2", "{tmp}/none.json"),
        "does not exist",
        SCORES,
    ),
    case(
        "compare-mmlu-as-ifeval",
        ("compare_ifeval.py", "--model1", "{tmp}/a.scores.json", "--model2", "{tmp}/m.json"),
        "tinymmlu_results",
        {**SCORES, **MMLU},
    ),
    case(
        "compare-truncated",
        ("compare_ifeval.py", "--model1", "{tmp}/a.scores.json", "--model2", "{tmp}/b.scores.json"),
        "not valid JSON",
        {**SCORES, "b.scores.json": lambda s: half(json.dumps(s.scores))},
    ),
    case(
        "compare-folder",
        ("compare_ifeval.py", "--model1", "{tmp}/a.scores.json", "--model2", "{tmp}/b"),
        "folder",
        {**SCORES, "b": DIR},
    ),
    case(
        "compare-verdict-not-boolean",
        ("compare_ifeval.py", "--model1", "{tmp}/a.scores.json", "--model2", "{tmp}/b.scores.json"),
        "follow_all_strict",
        {
            **SCORES,
            "b.scores.json": lambda s: with_rows(
                s.scores, "per_prompt", changed_first(s.scores["per_prompt"], follow_all_strict="yes")
            ),
        },
    ),
    case(
        "compare-scores-wrong-shape",
        ("compare_ifeval.py", "--model1", "{tmp}/a.scores.json", "--model2", "{tmp}/b.scores.json"),
        "per_prompt",
        {**SCORES, "b.scores.json": lambda s: {**s.scores, "per_prompt": {"1000": True}}},
    ),
    case(
        "compare-markdown-exists",
        (
            "compare_ifeval.py",
            "--model1",
            "{tmp}/a.scores.json",
            "--model2",
            "{tmp}/b.scores.json",
            "--markdown",
            "{tmp}/c.md",
        ),
        "already exists",
        {**TWO_SCORES, "c.md": "keep me"},
    ),
    case(
        "compare-max-flips-zero",
        ("compare_ifeval.py", "--model1", "{tmp}/a.scores.json", "--model2", "{tmp}/b.scores.json", "--max-flips", "0"),
        "--max-flips",
        TWO_SCORES,
    ),
    case(
        "compare-plot-read-only",
        (
            "compare_ifeval.py",
            "--model1",
            "{tmp}/a.scores.json",
            "--model2",
            "{tmp}/b.scores.json",
            "--plot",
            "{tmp}/locked/c.png",
        ),
        "permission",
        {**TWO_SCORES, "locked": READ_ONLY_DIR},
        read_only=True,
    ),
    # ---------------------------------------------------------------- compare_mmlu.py
    case(
        "mmlu-compare-ifeval-as-mmlu",
        ("compare_mmlu.py", "--model1", "{tmp}/m.json", "--model2", "{tmp}/a.scores.json"),
        "kind 'ifeval_scores'",
        {**MMLU, **SCORES},
    ),
    case(
        "mmlu-compare-binary",
        ("compare_mmlu.py", "--model1", "{tmp}/m.json", "--model2", "{tmp}/b.json"),
        "UTF-8",
        {**MMLU, "b.json": BINARY},
    ),
    case(
        "mmlu-compare-string-boolean",
        ("compare_mmlu.py", "--model1", "{tmp}/m.json", "--model2", "{tmp}/b.json"),
        "correct",
        {**MMLU, "b.json": lambda s: with_rows(s.mmlu, "items", changed_first(s.mmlu["items"], correct="false"))},
    ),
    case(
        "mmlu-compare-no-items",
        ("compare_mmlu.py", "--model1", "{tmp}/m.json", "--model2", "{tmp}/b.json"),
        "no items",
        {**MMLU, "b.json": lambda s: with_rows(s.mmlu, "items", [])},
    ),
    case(
        "mmlu-compare-json-exists",
        ("compare_mmlu.py", "--model1", "{tmp}/m.json", "--model2", "{tmp}/m.json", "--json", "{tmp}/c.json"),
        "already exists",
        {**MMLU, "c.json": "keep me"},
    ),
    # ---------------------------------------------------------------- eval_mmlu.py
    case("mmlu-data-missing", ("eval_mmlu.py", "--data", "{tmp}/none.jsonl"), "does not exist"),
    case("mmlu-data-empty", ("eval_mmlu.py", "--data", "{tmp}/q.jsonl"), "empty", {"q.jsonl": ""}),
    case(
        "mmlu-data-wrong-fields",
        ("eval_mmlu.py", "--data", "{tmp}/q.jsonl"),
        "lacks",
        {"q.jsonl": lambda s: jsonl(s.prompt_rows)},
    ),
    case("mmlu-data-binary", ("eval_mmlu.py", "--data", "{tmp}/q.jsonl"), "UTF-8", {"q.jsonl": BINARY}),
    case("mmlu-data-folder", ("eval_mmlu.py", "--data", "{tmp}/q"), "folder", {"q": DIR}),
    case("mmlu-batch-size-zero", ("eval_mmlu.py", "--batch-size", "0"), "--batch-size"),
    case("mmlu-unknown-precision", ("eval_mmlu.py", "--precision", "3bit"), "--precision"),
    case("mmlu-unknown-template", ("eval_mmlu.py", "--template", "fancy"), "--template"),
    case(
        "mmlu-empty-adapter",
        ("eval_mmlu.py", "--data", "{tmp}/q.jsonl", "--lora", "{tmp}/lora", *MMLU_ARGS),
        "adapter_config.json",
        {**MMLU_DATA, "lora": DIR},
    ),
    case(
        "mmlu-adapter-other-base",
        ("eval_mmlu.py", "--data", "{tmp}/q.jsonl", "--lora", "{other_adapter}", *MMLU_ARGS),
        "another",
        MMLU_DATA,
    ),
    case(
        "mmlu-output-dir-is-file",
        ("eval_mmlu.py", "--data", "{tmp}/q.jsonl", "--output-dir", "{tmp}/taken", *MMLU_ARGS),
        "taken",
        {**MMLU_DATA, "taken": "keep me"},
    ),
    # ---------------------------------------------------------------- eval_generate.py
    case("generate-prompts-missing", (*GEN, "--prompts", "{tmp}/none.jsonl"), "does not exist"),
    case("generate-prompts-empty", (*GEN, "--prompts", "{tmp}/p.jsonl"), "empty", {"p.jsonl": ""}),
    case(
        "generate-prompts-truncated",
        (*GEN, "--prompts", "{tmp}/p.jsonl"),
        "not valid JSON",
        {"p.jsonl": lambda s: half(jsonl(s.prompt_rows))},
    ),
    case(
        "generate-prompts-latin1",
        (*GEN, "--prompts", "{tmp}/p.jsonl"),
        "UTF-8",
        {"p.jsonl": LATIN1},
    ),
    case("generate-prompts-folder", (*GEN, "--prompts", "{tmp}/p"), "folder", {"p": DIR}),
    case(
        "generate-prompts-wrong-fields",
        (*GEN, "--prompts", "{tmp}/p.jsonl"),
        "instruction_id_list",
        {"p.jsonl": lambda s: jsonl(s.mmlu_rows)},
    ),
    case("generate-limit-zero", (*GEN, "--limit", "0", "--prompts", "{tmp}/p.jsonl"), "--limit", PROMPTS),
    case("generate-max-new-tokens-negative", ("eval_generate.py", "--max-new-tokens", "-5"), "--max-new-tokens"),
    case("generate-batch-size-text", ("eval_generate.py", "--batch-size", "many"), "--batch-size"),
    case("generate-unknown-precision", ("eval_generate.py", "--precision", "3bit"), "--precision"),
    case("generate-unknown-template", ("eval_generate.py", "--template", "fancy"), "--template"),
    case(
        "generate-model-text-file",
        ("eval_generate.py", "--model", "{tmp}/m.txt", "--prompts", "{tmp}/p.jsonl"),
        ".gguf",
        {**PROMPTS, "m.txt": "hello"},
    ),
    case(
        "generate-model-empty-folder",
        ("eval_generate.py", "--model", "{tmp}/m", "--prompts", "{tmp}/p.jsonl"),
        "config.json",
        {**PROMPTS, "m": DIR},
    ),
    case(
        "generate-empty-adapter",
        (*GEN, "--prompts", "{tmp}/p.jsonl", "--lora", "{tmp}/lora"),
        "adapter_config.json",
        {**PROMPTS, "lora": DIR},
    ),
    case(
        "generate-broken-adapter-config",
        (*GEN, "--prompts", "{tmp}/p.jsonl", "--lora", "{tmp}/lora"),
        "broken JSON",
        {**PROMPTS, "lora/adapter_config.json": "{"},
    ),
    case(
        "generate-adapter-other-base",
        (*GEN, "--prompts", "{tmp}/p.jsonl", "--lora", "{other_adapter}"),
        "another",
        PROMPTS,
    ),
    case(
        "generate-output-exists",
        (*GEN, "--prompts", "{tmp}/p.jsonl", "--output", "{tmp}/taken.json"),
        "already exists",
        {**PROMPTS, "taken.json": "keep me"},
    ),
    case(
        "generate-resume-not-a-run",
        (*GEN, "--prompts", "{tmp}/p.jsonl", "--resume", "{tmp}/notes.txt"),
        "expected a responses .json",
        {**PROMPTS, "notes.txt": "hello"},
    ),
    case(
        "generate-resume-binary-side-file",
        (*GEN, "--prompts", "{tmp}/p.jsonl", "--resume", "{tmp}/run.partial.jsonl"),
        "damaged",
        {**PROMPTS, "run.partial.jsonl": BINARY},
    ),
    case(
        "generate-output-read-only",
        (*GEN, "--prompts", "{tmp}/p.jsonl", "--output", "{tmp}/locked/"),
        "permission",
        {**PROMPTS, "locked": READ_ONLY_DIR},
        read_only=True,
    ),
    # ---------------------------------------------------------------- train.py
    case("train-dataset-missing", (*TRAIN, "--dataset", "{tmp}/none.json"), "does not exist"),
    case("train-dataset-empty", (*TRAIN, "--dataset", "{tmp}/d.json"), "empty", {"d.json": ""}),
    case(
        "train-dataset-truncated",
        (*TRAIN, "--dataset", "{tmp}/d.json"),
        "not valid JSON",
        {"d.json": lambda s: half(json.dumps(s.alpaca))},
    ),
    case("train-dataset-binary", (*TRAIN, "--dataset", "{tmp}/d.json"), "UTF-8", {"d.json": BINARY}),
    case("train-dataset-no-rows", (*TRAIN, "--dataset", "{tmp}/d.json"), "empty", {"d.json": []}),
    case(
        "train-dataset-wrong-fields",
        (*TRAIN, "--dataset", "{tmp}/d.jsonl"),
        "instruction",
        {"d.jsonl": lambda s: jsonl(s.mmlu_rows)},
    ),
    case("train-dataset-folder", (*TRAIN, "--dataset", "{tmp}/d"), "folder", {"d": DIR}),
    case("train-lr-zero", ("train.py", "--lr", "0"), "--lr"),
    case("train-batch-size-zero", ("train.py", "--batch-size", "0"), "--batch-size"),
    case("train-epochs-negative", ("train.py", "--epochs", "-1"), "--epochs"),
    case("train-unknown-precision", ("train.py", "--precision", "3bit"), "--precision"),
    case(
        "train-output-dir-exists",
        (*TRAIN, "--dataset", "{tmp}/d.json", "--output-dir", "{tmp}/out"),
        "already exists",
        {**ALPACA, "out/keep.txt": "keep me"},
    ),
    case(
        "train-output-dir-is-file",
        (*TRAIN, "--dataset", "{tmp}/d.json", "--output-dir", "{tmp}/out"),
        "already exists",
        {**ALPACA, "out": "keep me"},
    ),
    case(
        "train-resume-nothing",
        (*TRAIN, "--dataset", "{tmp}/d.json", "--output-dir", "{tmp}/out", "--resume"),
        "no unfinished run",
        ALPACA,
    ),
    case(
        "train-output-read-only",
        (*TRAIN, "--dataset", "{tmp}/d.json", "--output-dir", "{tmp}/locked/out", "--max-steps", "1"),
        "permission",
        {**ALPACA, "locked": READ_ONLY_DIR},
        read_only=True,
    ),
    case(
        "train-model-empty-folder",
        ("train.py", "--model", "{tmp}/m", "--use-hf", "--precision", "fp32", "--dataset", "{tmp}/d.json"),
        "config.json",
        {**ALPACA, "m": DIR},
    ),
    # ---------------------------------------------------------------- inference.py
    # ---------------------------------------------------------------- export.py, merge_shards.py
    case("export-adapter-missing", ("export.py", "--lora", "{tmp}/none", "--output-dir", "{tmp}/x"), "does not exist"),
    case("merge-shard-missing", ("merge_shards.py", "{tmp}/r.shard0of2.json"), "does not exist"),
    case(
        "merge-not-responses",
        ("merge_shards.py", "{tmp}/r.shard0of2.json"),
        "is not an ifeval_responses file",
        {"r.shard0of2.json": "{}"},
    ),  # fmt: skip
    case("infer-adapter-missing", (*INFER, "--lora", "{tmp}/none", "--prompt", "hi"), "does not exist"),
    case(
        "infer-empty-adapter", (*INFER, "--lora", "{tmp}/lora", "--prompt", "hi"), "adapter_config.json", {"lora": DIR}
    ),
    case(
        "infer-adapter-other-base",
        (*INFER, "--lora", "{other_adapter}", "--prompt", "hi"),
        "another",
    ),
    case(
        "infer-negative-temperature",
        (*INFER, "--temperature", "-1", "--prompt", "hi"),
        "--temperature",
    ),
    case(
        "infer-top-p-above-one",
        (*INFER, "--temperature", "0.7", "--top-p", "2", "--prompt", "hi"),
        "--top-p",
    ),
    case("infer-max-new-tokens-zero", ("inference.py", "--max-new-tokens", "0"), "--max-new-tokens"),
    case("infer-unknown-precision", ("inference.py", "--precision", "2bit"), "--precision"),
    case(
        "infer-model-binary-file",
        ("inference.py", "--model", "{tmp}/m.bin", "--use-hf", "--precision", "fp32", "--prompt", "hi"),
        ".gguf",
        {"m.bin": BINARY},
    ),
    # ---------------------------------------------------------------- eval_wandb.py
    case("wandb-input-missing", ("eval_wandb.py", "--no-wandb", "--input", "{tmp}/none.json"), "does not exist"),
    case(
        "wandb-responses-as-scores",
        ("eval_wandb.py", "--no-wandb", "--input", "{tmp}/r.json"),
        "ifeval_responses",
        RESPONSES,
    ),
    case(
        "wandb-truncated-scores",
        ("eval_wandb.py", "--no-wandb", "--input", "{tmp}/a.scores.json"),
        "not valid JSON",
        {"a.scores.json": lambda s: half(json.dumps(s.scores))},
    ),
    case("wandb-input-folder", ("eval_wandb.py", "--no-wandb", "--input", "{tmp}/a"), "folder", {"a": DIR}),
    case(
        "wandb-nothing-to-log",
        ("eval_wandb.py", "--no-wandb", "--responses-dir", "{tmp}/empty", "--results-dir", "{tmp}/empty"),
        "nothing",
        {"empty": DIR},
    ),
    case(
        "wandb-markdown-read-only",
        ("eval_wandb.py", "--no-wandb", "--input", "{tmp}/a.scores.json", "--markdown", "{tmp}/locked/results.md"),
        "permission",
        {**SCORES, "locked": READ_ONLY_DIR},
        read_only=True,
    ),
    # ---------------------------------------------------------------- run_pipeline.py
    case("pipeline-records-zero", ("run_pipeline.py", "--smoke", "--records", "0"), "--records"),
    case("pipeline-steps-negative", ("run_pipeline.py", "--smoke", "--steps", "-1"), "--steps"),
    case(
        "pipeline-out-not-empty",
        ("run_pipeline.py", "--smoke", "--out", "{tmp}/run"),
        "not empty",
        {"run/keep.txt": "keep me"},
    ),
    case(
        "pipeline-out-is-file",
        ("run_pipeline.py", "--smoke", "--out", "{tmp}/run"),
        "run",
        {"run": "keep me"},
    ),
    case(
        "pipeline-dataset-missing",
        ("run_pipeline.py", "--smoke", "--dataset", "{tmp}/none.json", "--out", "{tmp}/run"),
        "does not exist",
    ),
    case(
        "pipeline-dataset-wrong-fields",
        ("run_pipeline.py", "--smoke", "--dataset", "{tmp}/d.jsonl", "--out", "{tmp}/run"),
        "instruction",
        {"d.jsonl": lambda s: jsonl(s.prompt_rows)},
    ),
    case(
        "pipeline-model-missing",
        ("run_pipeline.py", "--smoke", "--model", "{tmp}/none.gguf", "--out", "{tmp}/run"),
        "does not exist",
    ),
    case(
        "pipeline-prompts-missing",
        ("run_pipeline.py", "--smoke", "--prompts", "{tmp}/none.jsonl", "--out", "{tmp}/run"),
        "does not exist",
    ),
]

MISSING_DEPENDENCIES = [
    case(
        "score-without-lm-eval",
        (*SCORE, "--input", "{tmp}/r.json"),
        "requirements-score.txt",
        RESPONSES,
        hide=("lm_eval",),
    ),
    case(
        "score-self-check-without-langdetect",
        (*SCORE, "--self-check"),
        "requirements-score.txt",
        hide=("langdetect",),
    ),
    case(
        "compare-plot-without-matplotlib",
        (
            "compare_ifeval.py",
            "--model1",
            "{tmp}/a.scores.json",
            "--model2",
            "{tmp}/b.scores.json",
            "--plot",
            "{tmp}/c.png",
        ),
        "matplotlib",
        TWO_SCORES,
        hide=("matplotlib",),
    ),
    case(
        "train-report-to-wandb-without-wandb",
        (*TRAIN[:-2], "--report-to", "wandb", "--dataset", "{tmp}/d.json"),
        "pip install wandb",
        ALPACA,
        hide=("wandb",),
    ),
    case(
        "generate-on-gpu-without-unsloth",
        ("eval_generate.py", "--model", "{tiny}", "--loader", "unsloth", "--prompts", "{tmp}/p.jsonl"),
        "requirements.txt",
        PROMPTS,
        hide=("unsloth",),
        prelude=FAKE_CUDA,
    ),
    case(
        "generate-4bit-without-bitsandbytes",
        ("eval_generate.py", "--model", "{tiny}", "--use-hf", "--precision", "4bit", "--prompts", "{tmp}/p.jsonl"),
        "bitsandbytes",
        PROMPTS,
        hide=("bitsandbytes",),
        prelude=FAKE_CUDA,
    ),
    case(
        "train-4bit-without-bitsandbytes",
        (
            "train.py",
            "--model",
            "{tiny}",
            "--use-hf",
            "--precision",
            "4bit",
            "--dataset",
            "{tmp}/d.json",
            "--report-to",
            "none",
        ),
        "bitsandbytes",
        ALPACA,
        hide=("bitsandbytes",),
        prelude=FAKE_CUDA,
    ),
]


@pytest.fixture(scope="module")
def samples(shared_data, tmp_path_factory) -> Samples:
    from sfteval.ifeval import scoring

    folder = tmp_path_factory.mktemp("samples")
    sample = Samples()
    responses = folder / "r.json"
    responses.write_text(json.dumps(sample.responses), encoding="utf-8")
    sample.scores = scoring.score_file(responses)
    return sample


@pytest.fixture(scope="module")
def other_adapter(tmp_path_factory, llama3_tokenizer) -> Path:
    """A LoRA adapter trained on nothing, made for a random Llama of another width than tiny_llama_dir's."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from sfteval import testmodels

    folder = tmp_path_factory.mktemp("other_base")
    base_dir = testmodels.save_random_llama(
        folder / "base",
        llama3_tokenizer,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir), LoraConfig(r=2, target_modules=["q_proj"]))
    model.save_pretrained(folder / "adapter")
    return folder / "adapter"


def make_files(tmp: Path, files: dict[str, Any], sample: Samples) -> None:
    for name, content in files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        content = content(sample) if callable(content) else content
        if content is DIR or content is READ_ONLY_DIR:
            path.mkdir()
            if content is READ_ONLY_DIR:
                path.chmod(0o555)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_text(json.dumps(content), encoding="utf-8")


def file_hashes(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in folder.rglob("*")
        if path.is_file()
    }


def fill(text: str, places: dict[str, str]) -> str:
    for name, value in places.items():
        text = text.replace("{" + name + "}", value)
    return text


def run_case(row: Case, tmp_path: Path, sample: Samples, places: dict[str, str]) -> subprocess.CompletedProcess:
    make_files(tmp_path, row.files, sample)
    argv = [fill(arg, places) for arg in row.argv]
    before = file_hashes(tmp_path)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "WANDB_MODE": "disabled",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    command = [sys.executable, "-c", RUNNER, ",".join(row.hide), row.prelude, str(ROOT / row.script), *argv]
    if row.read_only and IS_ROOT:
        command = AS_PLAIN_USER + command
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    for path in tmp_path.rglob("*"):
        if path.is_dir():
            path.chmod(0o755)  # so that pytest can clean up the read-only folders
    assert file_hashes(tmp_path).items() >= before.items(), "a file that was there before changed or went away"
    assert not list(tmp_path.rglob("*.tmp")), "a temporary file was left behind"
    return done


@pytest.fixture(scope="module")
def finished(request, samples, tmp_path_factory) -> dict[str, subprocess.CompletedProcess | Exception]:
    """The selected rows of both tables, run before their tests, two child processes at a time
    (each spends most of its life importing on one core); a row's test then checks its outcome."""
    rows = [
        item.callspec.params["row"]
        for item in request.session.items
        if item.module is request.module and "row" in getattr(getattr(item, "callspec", None), "params", {})
    ]
    rows = [row for row in rows if CAN_DENY_WRITES or not row.read_only]
    assert len({row.id for row in rows}) == len(rows), "two rows share an id"
    # Fixtures are built here, in this thread, and only where a selected row names them.
    places = {"data": str(SHARED_DATA)}
    for name, fixture in (("tiny", "tiny_llama_dir"), ("other_adapter", "other_adapter")):
        if any("{" + name + "}" in arg for row in rows for arg in row.argv):
            places[name] = str(request.getfixturevalue(fixture))

    def outcome(row: Case) -> subprocess.CompletedProcess | Exception:
        tmp = tmp_path_factory.mktemp(row.id)
        try:
            return run_case(row, tmp, samples, {**places, "tmp": str(tmp)})
        except Exception as err:  # a failed check or a timeout belongs to its row's test alone
            return err

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip([row.id for row in rows], pool.map(outcome, rows)))


def outcome_of(row: Case, finished: dict) -> subprocess.CompletedProcess:
    result = finished[row.id]
    if isinstance(result, Exception):
        raise result
    return result


def check_one_line(done: subprocess.CompletedProcess, expect: str) -> str:
    assert done.returncode != 0, done.stdout[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    if lines and lines[0].startswith("usage:"):  # argparse: the usage text, then its one error line
        lines = [line for line in lines if not line.startswith((" ", "usage:"))]
    assert len(lines) == 1, done.stderr[-3000:]
    line = lines[0]
    assert line.startswith("error:") or ": error: " in line, line
    assert expect.lower() in line.lower(), line
    return line


@pytest.mark.parametrize("row", [c.param() for c in CASES])
def test_bad_input_is_one_line(row: Case, finished):
    check_one_line(outcome_of(row, finished), row.expect)


@pytest.mark.parametrize("row", [c.param() for c in MISSING_DEPENDENCIES])
def test_missing_dependency_names_what_to_install(row: Case, finished):
    line = check_one_line(outcome_of(row, finished), row.expect)
    assert "install" in line, line


def test_the_table_covers_every_script():
    scripts = {path.name for path in ROOT.glob("*.py")}
    covered = {row.script for row in CASES}
    assert scripts == covered, scripts ^ covered
    assert len(CASES) >= 40
