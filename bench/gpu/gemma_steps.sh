# The steps of the Gemma 3 270M experiment on the lent H100 (issues #8, #6, #4, #9), run by
# bench/gpu/run_steps.sh: NAME:SECONDS is a step and the least time worth starting it with.
# Base model = the PyPI GGUF rebuilt from its pieces; finetuned = a LoRA trained with train.py's
# recipe (4-bit QLoRA, alpaca template) on the 5,000 shared alpaca records. All outputs go to
# /tmp/gx with fixed names, so a cut step resumes (--resume) in the next call.
X=/tmp/gx
A=$DATA/alpaca_cleaned/alpaca_data_cleaned_first5000.json
P=$DATA/ifeval/input_data.jsonl
Q=$DATA/tinymmlu/tinyMMLU_test.jsonl
GGUF=/tmp/gemma-3-270m-q4_k_m.gguf
M=$(cat $X/model_dir 2>/dev/null)
FT=$X/lora_model_4bit
# One batch of all 541 prompts: a 270M model's decode step costs about the same at 181 or 541 rows.
GEN_BATCH=${GEN_BATCH:---batch-size 541}
STEPS=(
  join:60 train:150
  gen_hf_bf16_base:90 mmlu_hf_bf16_base:40 mmlu_hf_4bit_base:40
  mmlu_hf_bf16_ft:40 mmlu_hf_4bit_ft:40 gen_hf_bf16_ft:90 gen_hf_4bit_ft:90 gen_hf_4bit_base:90
  parity_hf:120 parity_unsloth:200 parity_unsloth_8bit:200 parity_hf_8bit:90
  gen_unsloth_bf16_ft:100 gen_unsloth_4bit_ft:100 gen_unsloth_8bit_ft:100 gen_hf_8bit_ft:100 gen_hf_8bit_t0_ft:100
  gens_8bit_unsloth:150 gens_8bit_t6:150 bench_gen_compile:240 recipe_check:300
)

step_join() {
  mkdir -p /tmp/pieces && cp -r .gemma/p* /tmp/pieces/ 2>/dev/null
  # An adapter trained in an earlier session, carried as .gemma/ft.tgz (a folder named ft inside).
  if [ ! -d $FT ] && [ -f .gemma/ft.tgz ]; then mkdir -p $FT && tar xzf .gemma/ft.tgz -C $FT --strip-components=1; fi
  test -f $GGUF || python3 tools/carry_pieces.py join /tmp/pieces --out $GGUF || return 4
  sha256sum $GGUF
  python3 -c "from sfteval import modeling; print(modeling.materialize_gguf('$GGUF'))" | tail -1 > $X/model_dir
  test -f "$(cat $X/model_dir)/config.json"
}

# train.py's defaults (unsloth, 4-bit, 2 x 4) spent 232 s compiling before step 1 on the H100 and
# then ran ~1 s/step (log: train_unsloth.log), too slow for the device time. This step keeps the
# recipe (4-bit QLoRA, r 16, lr 2e-4, effective batch 8, one epoch) through transformers + peft +
# TRL, with the 8 examples in one micro-batch and no checkpointing (a 270M model has memory to spare).
step_train() {
  local resume=; [ -d $FT.partial ] && resume=--resume
  python3 train.py --model $M --use-hf --batch-size 8 --grad-accum 1 --no-gradient-checkpointing \
    --dataset $A --val-size 100 --report-to auto --save-steps 100 --output-dir $FT $resume
}

# gen NAME FLAGS...: all 541 IFEval prompts, 1280 new tokens at most, into $X/eval_responses/NAME.json
gen() {
  local out=$X/eval_responses/$1.json; shift
  [ -f $out ] && return 0
  local resume=; [ -f $X/eval_responses/$(basename $out .json).partial.jsonl ] && resume="--resume auto"
  python3 eval_generate.py --model $M --prompts $P --no-progress --output $out $resume $GEN_BATCH "$@"
}
step_gen_hf_bf16_base() { gen gemma3-270m_base_hf_bf16 --use-hf --precision bf16; }
step_gen_hf_bf16_ft() { gen gemma3-270m_alpaca5k_hf_bf16 --use-hf --precision bf16 --lora $FT; }
step_gen_hf_4bit_base() { gen gemma3-270m_base_hf_4bit --use-hf --precision 4bit; }
step_gen_hf_4bit_ft() { gen gemma3-270m_alpaca5k_hf_4bit --use-hf --precision 4bit --lora $FT; }
step_gen_unsloth_bf16_ft() { gen gemma3-270m_alpaca5k_unsloth_bf16 --precision bf16 --lora $FT; }
step_gen_unsloth_4bit_ft() { gen gemma3-270m_alpaca5k_unsloth_4bit --precision 4bit --lora $FT; }
# 8-bit at the default threshold did not finish one batch of 541 prompts in 540 s: smaller batches
# save their responses as they finish, so a cut run resumes where it stopped.
step_gen_unsloth_8bit_ft() { gen gemma3-270m_alpaca5k_unsloth_8bit --precision 8bit --lora $FT --batch-size 96; }
step_gen_hf_8bit_ft() { gen gemma3-270m_alpaca5k_hf_8bit --use-hf --precision 8bit --lora $FT --batch-size 96; }
step_gen_hf_8bit_t0_ft() { gen gemma3-270m_alpaca5k_hf_8bit_t0 --use-hf --precision 8bit --llm-int8-threshold 0 --lora $FT; }
# The five generations above at once: a 270M model leaves the GPU mostly idle, so separate
# processes overlap well.
step_gens_8bit_unsloth() {
  local pids=() name rc=0
  for name in unsloth_bf16_ft unsloth_4bit_ft unsloth_8bit_ft hf_8bit_ft hf_8bit_t0_ft; do
    # A compile cache per process: unsloth writes its generated modules there while importing.
    UNSLOTH_COMPILE_LOCATION=/tmp/unsloth_cache_$name step_gen_$name >> $X/logs/gen_$name.log 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait $pid || rc=$?; done
  return $rc
}

# The two 8-bit runs at llm_int8_threshold 6.0 (the others of step_gens_8bit_unsloth finished on 2026-11-27).
step_gens_8bit_t6() {
  local pids=() name rc=0
  for name in unsloth_8bit_ft hf_8bit_ft; do
    UNSLOTH_COMPILE_LOCATION=/tmp/unsloth_cache_$name step_gen_$name >> $X/logs/gen_$name.log 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait $pid || rc=$?; done
  return $rc
}

mmlu() { python3 eval_mmlu.py --model $M --use-hf --data $Q --no-progress --output-dir $X/eval_results "$@"; }
step_mmlu_hf_bf16_base() { mmlu --precision bf16; }
step_mmlu_hf_bf16_ft() { mmlu --precision bf16 --lora $FT; }
step_mmlu_hf_4bit_base() { mmlu --precision 4bit; }
step_mmlu_hf_4bit_ft() { mmlu --precision 4bit --lora $FT; }

parity() { python3 bench/loader_parity.py --model $M --prompts $P --limit 16 --max-new-tokens 96 --batch-size 16 "$@"; }
step_parity_hf() { parity --runs hf:bf16 hf:8bit hf:4bit --output $X/eval_results/parity_gemma3-270m_hf.json; }
step_parity_unsloth() {
  parity --runs hf:bf16 unsloth:bf16 unsloth:4bit --output $X/eval_results/parity_gemma3-270m_unsloth.json
}
# unsloth 8-bit did not finish 16 prompts x 96 tokens (batched + one by one) in 5 minutes on 2026-11-27.
step_parity_unsloth_8bit() {
  parity --runs hf:bf16 unsloth:8bit --limit 4 --max-new-tokens 48 --batch-size 4 \
    --output $X/eval_results/parity_gemma3-270m_unsloth_8bit.json
}
step_parity_hf_8bit() { parity --runs hf:bf16 hf:8bit --output $X/eval_results/parity_gemma3-270m_hf_8bit.json; }

# Llama-3.1-8B shape, random init: does a static cache + compiled decode step reach the 2-minute target?
step_bench_gen_compile() {
  python3 bench/generate_throughput.py --runs hf-bf16-compile --batch-sizes 256 --worker-timeout 220 \
    --json $X/eval_results/bench_generate_compile.json
}
# Held-out loss per token seen: the seed recipe vs the fast one, 2,000 records of real data, both
# through transformers + peft + TRL (unsloth compiles Gemma3 for minutes; the losses are what count).
# The fast recipe is the fastest 8B configuration measured (bench/README.md), its lr 2e-4 x 32/8.
FAST_RECIPE=${FAST_RECIPE:---use-hf --packing --batch-size 32 --grad-accum 1 --no-gradient-checkpointing --attention varlen --lr 8e-4}
step_recipe_check() {
  python3 bench/train_throughput.py --data $A --recipe-check --model $M --examples 2000 --val-size 100 \
    --seed-recipe=--use-hf --fast-recipe="$FAST_RECIPE" --timeout 250 \
    --out $X/eval_results/recipe_check_gemma3-270m.json
}
