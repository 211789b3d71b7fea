# The loader/precision steps on SmolLM2-135M-Instruct (Llama architecture, the PyPI GGUF) on the
# lent H100 (issue #9), run by `STEPS_FILE=bench/gpu/smol_steps.sh bash bench/gpu/run_steps.sh`:
# greedy parity of all six loader/precision combinations against transformers bf16, and IFEval
# responses to all 541 prompts for each of them. Outputs go to /tmp/sx with fixed names, so a cut
# step resumes in the next call. The GGUF travels as .smol/pN pieces (tools/carry_pieces.py).
X=/tmp/sx
P=$DATA/ifeval/input_data.jsonl
A=$DATA/alpaca_cleaned/alpaca_data_cleaned_first5000.json
GGUF=/tmp/smollm2-135m-instruct.gguf
M=$(cat $X/model_dir 2>/dev/null)
STEPS=(join:30 first:200 second:200)

step_join() {
  mkdir -p /tmp/smol_pieces && cp -r .smol/p* /tmp/smol_pieces/ 2>/dev/null
  test -f $GGUF || python3 tools/carry_pieces.py join /tmp/smol_pieces --out $GGUF || return 4
  sha256sum $GGUF
  python3 -c "from sfteval.model import loading; print(loading.materialize_gguf('$GGUF'))" | tail -1 > $X/model_dir
  test -f "$(cat $X/model_dir)/config.json"
}

# gen NAME FLAGS...: all 541 IFEval prompts in 3 batches of 181, 1280 new tokens at most
gen() {
  local out=$X/eval_responses/$1.json; shift
  [ -f $out ] && return 0
  local resume=; [ -f $X/eval_responses/$(basename $out .json).partial.jsonl ] && resume="--resume auto"
  python3 eval_generate.py --model $M --prompts $P --no-progress --batch-size 181 --output $out $resume "$@"
}
parity() {  # parity OUTPUT_NAME FLAGS...
  local out=$X/eval_results/$1.json; shift
  [ -f $out ] || python3 bench/loader_parity.py --model $M --prompts $P --max-new-tokens 96 --output $out "$@"
}

FAST="--use-hf --packing --batch-size 32 --grad-accum 1 --no-gradient-checkpointing --attention varlen --lr 8e-4"
recipe() {  # held-out loss after one pass over 950 records: seed vs fast (eager, compiled, lr 4e-4)
  local out=$X/eval_results/recipe_check_smollm2.json
  [ -f $out ] || python3 bench/train_throughput.py --data $A --recipe-check --model $M --examples 1000 --val-size 50 \
    --seed-recipe=--use-hf --fast-recipe="$FAST" --fast-recipe="$FAST --compile" \
    --fast-recipe="${FAST/--lr 8e-4/--lr 4e-4}" --timeout 400 --out $out
}

# What each process of a step runs. HF runs decode with --gqa-decode (the same attention without
# copying the KV cache per query head: with SDPA's padding mask a batch of 541 SmolLM2 rows did
# not finish in 8 minutes on 2026-11-27); unsloth runs use unsloth's own inference path.
declare -A RUNS=(
  [gen_hf_bf16]="gen smollm2_hf_bf16 --use-hf --precision bf16 --gqa-decode"
  [gen_hf_4bit]="gen smollm2_hf_4bit --use-hf --precision 4bit --gqa-decode"
  [gen_hf_8bit]="gen smollm2_hf_8bit --use-hf --precision 8bit --gqa-decode"
  [gen_hf_8bit_t0]="gen smollm2_hf_8bit_t0 --use-hf --precision 8bit --llm-int8-threshold 0 --gqa-decode"
  [gen_unsloth_bf16]="gen smollm2_unsloth_bf16 --precision bf16"
  [gen_unsloth_4bit]="gen smollm2_unsloth_4bit --precision 4bit"
  [gen_unsloth_8bit]="gen smollm2_unsloth_8bit --precision 8bit"
  [gen_hf_4bit_compiled]="gen smollm2_hf_4bit_compiled --use-hf --precision 4bit --gqa-decode --static-cache --compile"
  [gen_hf_4bit_once]="gen smollm2_hf_4bit_once --use-hf --precision 4bit --gqa-decode --dequantize-once"
  [gen_unsloth_8bit_one_batch]="gen smollm2_unsloth_8bit --precision 8bit --batch-size 541"
  [parity_six]="parity parity_smollm2_six --limit 16 --batch-size 16 --runs hf:bf16 hf:4bit hf:8bit unsloth:bf16 unsloth:4bit"
  [parity_8bit]="parity parity_smollm2_8bit --limit 8 --max-new-tokens 48 --batch-size 8 --runs hf:bf16 hf:8bit unsloth:8bit"
  [recipe]="recipe"
)

# together NAME...: the RUNS named, at once, each in its own process (importing unsloth patches
# transformers process-wide) with its own time limit. A 135M model leaves the H100 mostly idle;
# speed is not measured here (bench/generate_throughput.py does that on the 8B shape), fidelity is.
# Nine at once on 2026-11-27 ran out of GPU memory, hence a few per step.
together() {
  local pids=() rc=0 name
  for name in "$@"; do
    (
      UNSLOTH_COMPILE_LOCATION=/tmp/unsloth_cache_$name timeout ${STEP_LEFT:-500} bash -c \
        "source bench/gpu/smol_steps.sh; ${RUNS[$name]}" >> $X/logs/$name.log 2>&1
      code=$?; echo "$name rc=$code after $SECONDS s" | tee -a $X/logs/rc.log; exit $code
    ) &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait $pid || rc=$?; done
  return $rc
}
step_first() { together parity_8bit recipe gen_hf_bf16 gen_unsloth_bf16; }
step_second() { together gen_hf_4bit gen_unsloth_4bit gen_hf_8bit gen_unsloth_8bit gen_hf_8bit_t0; }
step_parity_six() { together parity_six; }
# 8-bit decoding ran 10x slower than bf16 in parity_8bit (4.9 vs 48.9 tokens/s), too slow for 541 prompts here.
step_third() { together gen_hf_4bit gen_unsloth_4bit recipe; }
# The 8-bit runs the earlier steps had no time for, and 4-bit through the compiled path whose NF4
# dequantization is torch code (sfteval.model.nf4): the same weights as gen_hf_4bit, so near-equal answers.
step_fourth() { together gen_hf_8bit gen_unsloth_8bit gen_hf_4bit_compiled; }
# The unsloth runs again, after eval_generate.py stopped importing transformers before unsloth
# (earlier ones predate the fix), and 4-bit with the weights dequantized once (gen_hf_4bit's weights;
# 286 of 541 answers came out equal, bitsandbytes' fused kernel rounding SmolLM2's small layers otherwise). An 8-bit pass took ~420 s at 181 and at 360 rows alike (launch-bound), so
# 8-bit goes in one batch of 541. Seventh session: with the three others on the GPU it did not
# finish in 493 s (nor, resumed at 271 rows, in 520 s); give it a call of its own.
step_fifth() { together gen_unsloth_bf16 gen_unsloth_4bit gen_unsloth_8bit_one_batch gen_hf_4bit_once; }

# The decode paths on a real instruct model whose answers stop at many lengths (about half of
# SmolLM2's 541 answers end before 1,280 tokens), each alone on the GPU with at most PATH_SECONDS:
# eager in one batch of 541 (the controlled study's decode path, so this file is also its
# reference row), eval_generate.py's default, the default with one decoder layer compiled for all
# (--compile-layers-once), and transformers' continuous batching with its own request cap and with
# 64 requests a step. compare_ifeval.py then pairs each with eager's answers.
# GEN_EXTRA (e.g. "--limit 3 --max-new-tokens 8") shrinks the runs for a CPU rehearsal.
# A path needs minutes: eager at batch 181 took 271 s on an H100 (2026-11-27), and with 105 s each
# none of the four finished (2026-12-07). A path cut by the call's end starts over in the next call.
declare -A PATH_FLAGS=([eager]="--speed eager --batch-size 541" [auto]="" [layers-once]="--compile-layers-once"
  [continuous]="--speed continuous" [continuous-b64]="--speed continuous --batch-size 64")
step_decode_paths() {
  mkdir -p $X/decode_paths
  local path out
  for path in eager auto layers-once continuous continuous-b64; do
    out=$X/decode_paths/smollm2-135m-instruct_bf16_$path.json
    [ -f $out ] && continue
    rm -f ${out%.json}.partial.jsonl
    timeout ${PATH_SECONDS:-330} python3 eval_generate.py --model $M --precision bf16 --prompts $P --output $out \
      --no-progress ${PATH_FLAGS[$path]} $GEN_EXTRA >> $X/logs/decode_paths_$path.log 2>&1
    echo "$path rc=$? $(tail -2 $X/logs/decode_paths_$path.log | head -1)"
  done
}


# SmolLM2's compiled default path did not finish 181 prompts in 150 s where eager took 117 s for
# the process (H100, 2026-12-07). The eager half is explained (cuDNN's SDPA kernel planning anew at
# every step, now off on the eager path); at 64 x 256 the compiled step traced one graph, one CUDA
# graph and no recompile. This step times the compiled step (flex, then SDPA) on the first 181
# prompts in one batch with dynamo's recompile and CUDA graph logs, then profiles 32 steps of the
# flex one (bench/profile_generate.py; a profiled eager decode runs several times slower).
step_compile_diag() {
  mkdir -p $X/compile_diag
  local name flags out
  for name in flex sdpa; do
    out=$X/compile_diag/smollm2_$name.json
    [ -f $out ] && continue
    flags="--speed eager --static-cache --compile --gqa-decode"; [ $name = sdpa ] && flags="$flags --no-flex-decode"
    rm -f ${out%.json}.partial.jsonl; SECONDS=0
    TORCH_LOGS="recompiles,cudagraphs,perf_hints" timeout ${PATH_SECONDS:-150} python3 eval_generate.py --model $M \
      --precision bf16 --prompts $P --limit 181 --batch-size 181 --output $out --no-progress $flags \
      >> $X/logs/compile_diag_$name.log 2>&1
    echo "$name rc=$? ${SECONDS}s: $(grep -E 'responses \(' $X/logs/compile_diag_$name.log)"
  done
  out=$X/compile_diag/smollm2_flex_32steps.profile.json
  [ -f $out ] || timeout ${PATH_SECONDS:-150} python3 bench/profile_generate.py --out $out -- --model $M --precision bf16 \
    --prompts $P --limit 181 --batch-size 181 --max-new-tokens 32 --no-progress --speed eager --static-cache --compile \
    --gqa-decode --output $X/compile_diag/smollm2_flex_32steps.json >> $X/logs/compile_diag_profile.log 2>&1
}
