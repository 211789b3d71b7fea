# The controlled study of docs/RESULTS.md on a lent GPU, as steps of bench/gpu/run_steps.sh:
#   STEPS_FILE=bench/gpu/study_steps.sh bash bench/gpu/run_steps.sh SECONDS [STEP ...]
# NAME:SECONDS in STEPS is a step and the least time worth starting it with.
#
# Gemma 3 270M base (the PyPI GGUF, carried gzipped in pieces) with and without an alpaca LoRA,
# each with the raw instruction (template none) and the alpaca template, at bf16 and 4-bit; LoRAs
# from the seed recipe with two training seeds and from the fast recipe. Everything goes to $X
# in the layout bench/study_report.py reads; a cut step resumes in the next call.
#
# The bench8b_* steps, last, time the default eval_generate.py and train.py commands on a
# random-init Llama-3.1-8B shape (bench/cli_bench.py) with whatever time the study leaves.
#
# For a CPU rehearsal of the plumbing (tiny runs, no 4-bit):
#   DRY_RUN=1 GGUF_FILE=model.gguf X=/tmp/gx_dry STEPS_FILE=bench/gpu/study_steps.sh bash bench/gpu/run_steps.sh 900 join study
X=${X:-/tmp/gx}
A=$DATA/alpaca_cleaned/alpaca_data_cleaned_first5000.json
P=$DATA/ifeval/input_data.jsonl
Q=$DATA/tinymmlu/tinyMMLU_test.jsonl
GGUF_SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
GGUF=${GGUF_FILE:-/tmp/gemma-3-270m-q4_k_m.gguf}
M=$(cat $X/model_dir 2>/dev/null)
AD=$X/adapters
# Every process shares the GPU with the others running beside it.
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
if [ -n "$DRY_RUN" ]; then
  BF16=fp32; Q4=; TRAIN_EXTRA="--precision fp32 --max-steps 2 --limit 40 --val-size 4 --batch-size 2 --max-length 256"
  GEN_EXTRA="--limit 3 --max-new-tokens 8"; MMLU_EXTRA="--limit 3"
else
  BF16=bf16; Q4=4bit; TRAIN_EXTRA="--val-size 100"; GEN_EXTRA=; MMLU_EXTRA=
fi
STEPS=(join:150 study:420 bench8b_build:60 bench8b_bf16:280 bench8b_bf16_layers:280 bench8b_bf16_sdpa:280 bench8b_bf16_eager:300 bench8b_4bit:300 bench8b_4bit_packed:300 bench8b_train:300 bench8b_train_b64:300)

# One random-init Llama-3.1-8B shape with the real Llama 3 tokenizer for every bench8b step, so
# the prompts have the token lengths users' prompts have (the word-level tokenizer of
# generate_throughput.py --build, used before 913d854, gave shorter ones).
step_bench8b_build() { python3 bench/train_throughput.py --build-only --model-dir /tmp/l8b; }
bench8b() {
  python3 bench/cli_bench.py --out $X/bench/latest.json --timeout $((STEP_LEFT - 10)) \
    --run "eval_generate.py --model /tmp/l8b --precision $1 --prompts $P $2"
}
step_bench8b_bf16() { bench8b bf16; }
# The same with one decoder layer compiled and reused for all 32 (--compile-layers-once), with a
# compile cache of its own so that it compiles as cold as the first default run on a fresh machine.
step_bench8b_bf16_layers() { TORCHINDUCTOR_CACHE_DIR=/tmp/inductor_layers bench8b bf16 --compile-layers-once; }
# The same with SDPA over the whole static cache instead of flex attention over its filled blocks.
step_bench8b_bf16_sdpa() { bench8b bf16 --no-flex-decode; }
# The same through the eager loop (dynamic cache, no compile): what the compiled default must beat
# on a run this long, and the figure that sets COMPILE_MIN_DECODE_STEPS.
step_bench8b_bf16_eager() { bench8b bf16 "--speed eager"; }
step_bench8b_4bit() { bench8b 4bit; }
# The same keeping the packed NF4 weights (dequantized at every compiled step), the default before.
step_bench8b_4bit_packed() { bench8b 4bit "--dequantize-once false"; }
# train.py's default recipe on the 8B shape (alpaca's true token lengths), 30 optimizer steps:
# the recipe it picks, its tokens/s (overall and from step 5 on) and peak memory.
step_bench8b_train() {
  [ -f /tmp/l8b/config.json ] || step_bench8b_build || return 3
  python3 bench/cli_bench.py --out $X/bench/latest.json --timeout $((STEP_LEFT - 10)) \
    --run "train.py --model /tmp/l8b --dataset $A --max-steps 30 --report-to none"
}
# The same recipe with 64 examples packed a step: whether a card with more than 80 GB (H200) trains
# faster at a larger batch, the lever left before a recipe of its own.
step_bench8b_train_b64() {
  [ -f /tmp/l8b/config.json ] || step_bench8b_build || return 3
  python3 bench/cli_bench.py --out $X/bench/latest.json --timeout $((STEP_LEFT - 10)) \
    --run "train.py --model /tmp/l8b --dataset $A --max-steps 30 --report-to none --batch-size 64"
}

step_join() {
  if [ -z "$DRY_RUN" ] && [ ! -f $GGUF ]; then
    mkdir -p /tmp/pieces && cp -r .gemma/p* /tmp/pieces/
    python3 tools/carry_pieces.py join /tmp/pieces --out /tmp/gemma.gguf.gz || return 4
    gunzip -c /tmp/gemma.gguf.gz > $GGUF.tmp && mv $GGUF.tmp $GGUF
  fi
  [ -n "$DRY_RUN" ] || echo "$GGUF_SHA256  $GGUF" | sha256sum -c || return 5
  python3 -c "from sfteval.model import loading; print(loading.materialize_gguf('$GGUF'))" | tail -1 > $X/model_dir
  test -f "$(cat $X/model_dir)/config.json"
}

# Processes started with `bg` run side by side (a 270M model leaves the GPU mostly idle); each is
# stopped before the call's end so a cut run leaves its resumable files behind.
PIDS=()
bg() {
  local name=$1; shift
  timeout --kill-after=10 $((STEP_LEFT - 15 - SECONDS)) bash -c '"$@"' _ "$@" >> $X/logs/$name.log 2>&1 &
  PIDS+=($!)
}
wait_all() { local rc=0; for pid in "${PIDS[@]}"; do wait $pid || rc=$?; done; PIDS=(); return $rc; }

# train NAME FLAGS...: one epoch of the 5,000 shared alpaca records into $AD/NAME. The seed
# recipe runs through transformers + TRL with its 2 x 4 examples as one micro-batch of 8 (the same
# effective batch): unsloth 2026.10 compiled each Gemma3 layer for minutes before step 1.
train() {
  local name=$1; shift
  [ -f $AD/$name/train_config.json ] && return 0
  local resume=; [ -d $AD/$name.partial ] && resume=--resume
  python3 train.py --model $M --dataset $A --report-to none --save-steps 100 --output-dir $AD/$name \
    $resume "$@" $TRAIN_EXTRA
}
SEED_RECIPE="--recipe seed --use-hf --batch-size 8 --grad-accum 1 --no-gradient-checkpointing"
train_fast() {
  # The fast recipe compiles each decoder layer; if that fails on Gemma3, the same recipe uncompiled.
  train FAST --recipe fast-80gb $([ -n "$DRY_RUN" ] && echo "--compile false --attention sdpa") && return 0
  [ -f $AD/FAST/train_config.json ] && return 0
  echo "== fast recipe failed compiled; again with --compile false"; rm -rf $AD/FAST.partial
  train FAST --recipe fast-80gb --compile false
}

# gen WEIGHTS TEMPLATE PRECISION [FLAGS...]: all 541 IFEval prompts (greedy, up to 1,280 new tokens)
# into $X/eval_responses/gemma3-270m_WEIGHTS_TEMPLATE_PRECISION.json, in one batch with
# transformers' eager decode (the study's one decode path for every condition).
gen() {
  local weights=$1 template=$2 precision=$3; shift 3
  [ -n "$precision" ] || return 0
  local name=gemma3-270m_${weights}_${template}_${precision}
  local out=$X/eval_responses/$name.json lora=
  [ -f $out ] && return 0
  [ $weights = base ] || lora="--lora $AD/$weights"
  local resume=; [ -f $X/eval_responses/$name.partial.jsonl ] && resume="--resume auto"
  bg gen_$name python3 eval_generate.py --model $M $lora --precision $precision --template $template \
    --prompts $P --output $out --speed eager --batch-size 541 --no-progress $GEN_EXTRA $resume "$@"
}
mmlu() {
  local weights=$1 precision=$2 lora=
  [ -n "$precision" ] || return 0
  [ $weights = base ] || lora="--lora $AD/$weights"
  local done=$X/eval_results/.mmlu_${weights}_$precision.done
  [ -f $done ] && return 0
  bg mmlu_${weights}_$precision bash -c "python3 eval_mmlu.py --model $M $lora --precision $precision --data $Q \
    --no-progress --output-dir $X/eval_results $MMLU_EXTRA && touch $done"
}
# Every run of one set of weights: both templates at bf16, and for S1 (and the base) at 4-bit too.
runs_of() {
  local weights=$1 precision
  for precision in $BF16 $([ $weights = S1 ] || [ $weights = base ] && echo $Q4); do
    gen $weights alpaca $precision; gen $weights none $precision; mmlu $weights $precision
  done
}

# The three trainings and the base model's runs start at once; each adapter's runs start as soon
# as its training has written the adapter. A step cut by the call's end is run again by the next.
step_study() {
  mkdir -p $AD
  local trainers=() w training pending="S1 S2 FAST"
  bg train_S1 train S1 $SEED_RECIPE; trainers+=($!)
  bg train_S2 train S2 $SEED_RECIPE --seed 1234; trainers+=($!)
  bg train_FAST train_fast; trainers+=($!)
  runs_of base
  while [ -n "$pending" ]; do
    for w in $pending; do
      [ -f $AD/$w/train_config.json ] || continue
      runs_of $w; pending=$(echo ${pending/$w/})
    done
    training=; for pid in "${trainers[@]}"; do kill -0 $pid 2>/dev/null && training=1; done
    [ -n "$training" ] || break
    sleep 5
  done
  for w in $pending; do [ -f $AD/$w/train_config.json ] && runs_of $w; done
  wait_all
}
export -f train train_fast
export M A AD TRAIN_EXTRA DRY_RUN
