"""Cut the small Gemma-3-270M fixtures in tests/fixtures/ from the real run files in history (docs/runs/ at commit fac9ff7).

    python tools/cut_test_fixtures.py            # writes tests/fixtures/gemma_2026-11-27/...

IFEval files keep the first FIRST_PROMPTS prompts of the prompt set plus every prompt the LoRA run
echoes (the only LoRA echoes are further down), in prompt-set order, so the tests meet EOS stops,
loops, echoes and clean answers in both runs. The figures that describe the rows (n_prompts,
stop_reasons, a scores file's summary) are recomputed for the kept rows; the run's other figures
(wall time, tokens generated) stay those of the full run, which `metadata.fixture` says. The
adapter's training-loss log (200 KB) is dropped. tinyMMLU files keep all 100 items, with only
idx, answer, prediction and correct, gzipped. Existing fixture files are never overwritten: delete them first.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sfteval import cli  # noqa: E402
from sfteval.ifeval import answers, scoring  # noqa: E402

RUN = "gemma_2026-11-27"
SOURCE = "fac9ff7:docs/runs"  # the run files, in history since they left main's tree
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / RUN
FIRST_PROMPTS = 36
BASE, ADAPTER = "gemma3-270m_base_hf_bf16", "gemma3-270m_alpaca5k_hf_bf16"
MMLU_ITEM_FIELDS = ("idx", "answer", "prediction", "correct")


def from_branch(path: str) -> Any:
    data = subprocess.run(["git", "-C", str(ROOT), "show", f"{SOURCE}/{RUN}/{path}"], capture_output=True, check=True)
    return json.loads(gzip.decompress(data.stdout) if path.endswith(".gz") else data.stdout)


def write_new(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8")
    with path.open("xb") as handle:  # "x": an existing fixture is never overwritten
        handle.write(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


def without_loss_log(metadata: dict[str, Any]) -> dict[str, Any]:
    train_config = metadata.get("adapter_train_config")
    if isinstance(train_config, dict) and "log_history" in train_config:
        metadata["adapter_train_config"] = {k: v for k, v in train_config.items() if k != "log_history"}
    return metadata


def kept_positions(adapter_rows: list[dict[str, Any]]) -> list[int]:
    echoes = [i for i, row in enumerate(adapter_rows) if answers.is_echo(row["prompt"], row["response"])]
    return sorted(set(range(FIRST_PROMPTS)) | set(echoes))


def fixture_note(path: str, positions: list[int]) -> dict[str, Any]:
    return {
        "cut_from": f"git {SOURCE}/{RUN}/{path}",
        "rows": f"prompt-set positions {positions} (the first {FIRST_PROMPTS} and the LoRA run's echoes)",
        "recomputed": "n_prompts, n_prompts_scored, stop_reasons and summaries are of these rows; "
        "wall_seconds, tokens_generated and the like are of the full run",
    }


def cut_responses(name: str, positions: list[int]) -> None:
    path = f"eval_responses/{name}.json.gz"
    doc = from_branch(path)
    rows = [doc["responses"][i] for i in positions]
    metadata = without_loss_log(doc["metadata"])
    metadata.update(
        n_prompts=len(rows),
        stop_reasons=dict(Counter(row["stop_reason"] for row in rows)),
        fixture=fixture_note(path, positions),
    )
    write_new(OUT / path, json.dumps({**doc, "metadata": metadata, "responses": rows}, ensure_ascii=False))


def cut_old_scores(name: str, positions: list[int]) -> None:
    path = f"eval_responses/{name}.scores.json.gz"
    doc = from_branch(path)
    per_prompt = [doc["per_prompt"][i] for i in positions]
    metadata = without_loss_log(doc["metadata"])
    metadata.update(n_prompts=len(per_prompt), n_prompts_scored=len(per_prompt), fixture=fixture_note(path, positions))
    body = {
        "summary": scoring.summarize(per_prompt),
        "per_instruction": scoring.accuracy_by(per_prompt, lambda instruction_id: instruction_id),
        "per_category": scoring.accuracy_by(per_prompt, scoring.category),
        "per_prompt": per_prompt,
    }
    write_new(OUT / path, json.dumps({**doc, "metadata": metadata, **body}, ensure_ascii=False))


def cut_tinymmlu(path: str) -> None:
    doc = from_branch(path)
    doc["metadata"] = without_loss_log(doc["metadata"])
    doc["metadata"]["fixture"] = {"cut_from": f"git {SOURCE}/{RUN}/{path}", "items": "all, 4 fields each"}
    doc["items"] = [{k: item[k] for k in MMLU_ITEM_FIELDS} for item in doc["items"]]
    write_new(OUT / f"{path}.gz", json.dumps(doc, ensure_ascii=False))


def tinymmlu_paths() -> list[str]:
    listing = subprocess.run(
        ["git", "-C", str(ROOT), "ls-tree", "--name-only", f"{SOURCE}/{RUN}/eval_results"],
        capture_output=True,
        text=True,
        check=True,
    )
    return [f"eval_results/{name}" for name in listing.stdout.split() if "_tinymmlu_" in name]


def main(argv: list[str]) -> int:
    if argv:
        raise cli.UserError("tools/cut_test_fixtures.py takes no arguments")
    positions = kept_positions(from_branch(f"eval_responses/{ADAPTER}.json.gz")["responses"])
    for name in (BASE, ADAPTER):
        cut_responses(name, positions)
    cut_old_scores(BASE, positions)
    for path in tinymmlu_paths():
        cut_tinymmlu(path)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, sys.argv[1:]))
