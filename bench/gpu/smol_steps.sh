# The loader/precision steps on SmolLM2-135M-Instruct (Llama architecture, the PyPI GGUF) on the
# lent H100 (issue #9), run by `STEPS_FILE=bench/gpu/smol_steps.sh bash bench/gpu/run_steps.sh`:
# greedy parity of all six loader/precision combinations against transformers bf16, and IFEval
# responses to all 541 prompts for each of them. Outputs go to /tmp/sx with fixed names, so a cut
# step resumes in the next call. The GGUF travels as .smol/pN pieces (tools/carry_pieces.py).
X=/tmp/sx
P=$DATA/ifeval/input_data.jsonl
GGUF=/tmp/smollm2-135m-instruct.gguf
M=$(cat $X/model_dir 2>/dev/null)
STEPS=(join:30 all:200)

step_join() {
  mkdir -p /tmp/smol_pieces && cp -r .smol/p* /tmp/smol_pieces/ 2>/dev/null
  test -f $GGUF || python3 tools/carry_pieces.py join /tmp/smol_pieces --out $GGUF || return 4
  sha256sum $GGUF
  python3 -c "from sfteval import modeling; print(modeling.materialize_gguf('$GGUF'))" | tail -1 > $X/model_dir
  test -f "$(cat $X/model_dir)/config.json"
}

# gen NAME FLAGS...: all 541 IFEval prompts in one batch, 1280 new tokens at most
gen() {
  local out=$X/eval_responses/$1.json; shift
  [ -f $out ] && return 0
  local resume=; [ -f $X/eval_responses/$(basename $out .json).partial.jsonl ] && resume="--resume auto"
  python3 eval_generate.py --model $M --prompts $P --no-progress --batch-size 541 --output $out $resume "$@"
}
parity() {  # parity OUTPUT_NAME FLAGS...
  local out=$X/eval_results/$1.json; shift
  [ -f $out ] || python3 bench/loader_parity.py --model $M --prompts $P --max-new-tokens 96 --output $out "$@"
}

# A 135M model leaves the H100 mostly idle, so every run goes at once, each in its own process
# (importing unsloth patches transformers process-wide) with its own time limit. Speed is not
# measured here (bench/generate_throughput.py does that on the 8B shape); fidelity is.
step_all() {
  local pids=() rc=0 name
  declare -A runs=(
    [gen_hf_bf16]="gen smollm2_hf_bf16 --use-hf --precision bf16"
    [gen_hf_4bit]="gen smollm2_hf_4bit --use-hf --precision 4bit"
    [gen_hf_8bit]="gen smollm2_hf_8bit --use-hf --precision 8bit"
    [gen_hf_8bit_t0]="gen smollm2_hf_8bit_t0 --use-hf --precision 8bit --llm-int8-threshold 0"
    [gen_unsloth_bf16]="gen smollm2_unsloth_bf16 --precision bf16"
    [gen_unsloth_4bit]="gen smollm2_unsloth_4bit --precision 4bit"
    [gen_unsloth_8bit]="gen smollm2_unsloth_8bit --precision 8bit"
    [parity_six]="parity parity_smollm2_six --limit 16 --batch-size 16 --runs hf:bf16 hf:4bit hf:8bit unsloth:bf16 unsloth:4bit"
    [parity_unsloth_8bit]="parity parity_smollm2_unsloth_8bit --limit 8 --max-new-tokens 48 --batch-size 8 --runs hf:bf16 unsloth:8bit"
  )
  for name in "${!runs[@]}"; do
    (
      UNSLOTH_COMPILE_LOCATION=/tmp/unsloth_cache_$name timeout ${STEP_LEFT:-500} bash -c \
        "source bench/gpu/smol_steps.sh; ${runs[$name]}" > $X/logs/$name.log 2>&1
      code=$?; echo "$name rc=$code after $SECONDS s" | tee -a $X/logs/all_rc.log; exit $code
    ) &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait $pid || rc=$?; done
  return $rc
}
