# GPU call 1 (carry .whl and .device): every GPU code path once on a random-init tiny Llama with the
# real Llama 3 tokenizer -- inference (unsloth 4bit/bf16, HF bf16/8bit/4bit), training (unsloth
# 4bit/bf16, HF bf16/4bit), eval_generate (six combinations + adapter) -- then the generation
# benchmark on the Llama-3.1-8B shape. Logs and files go to $OUT.
source bench/gpu/env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
T=/tmp/tiny_llama; A=$DATA/alpaca_cleaned/alpaca_data_cleaned_first5000.json; P=$DATA/ifeval/input_data.jsonl
python3 bench/gpu/make_tiny_llama.py --tokenizer "$LLAMA3_TOKENIZER" --out $T 2>&1 | tail -1
echo "== inference"
for run in "--precision 4bit" "--precision bf16" "--use-hf --precision bf16" "--use-hf --precision 8bit" "--use-hf --precision 4bit"; do
  echo "-- inference.py $run"
  timeout 150 python3 inference.py --model $T $run --template alpaca --max-new-tokens 12 --prompt "Name three primary colors." 2>&1 | grep -v -e "it/s" -e Warning | tail -4
  echo "rc=${PIPESTATUS[0]}"
done
echo "== train"
for run in "--precision 4bit" "--precision bf16" "--use-hf --precision bf16" "--use-hf --precision 4bit"; do
  name=$(echo "$run" | tr -d ' -'); echo "-- train.py $run"
  timeout 200 python3 train.py --model $T $run --dataset $A --limit 96 --max-steps 6 --report-to none \
    --output-dir /tmp/tr/$name > $OUT/logs/train_$name.log 2>&1; echo "rc=$?"; grep -iE "loss|tokens/s|peak|trainer|error" $OUT/logs/train_$name.log | tail -6
done
echo "== eval_generate"
G="python3 eval_generate.py --model $T --prompts $P --limit 24 --max-new-tokens 64 --template alpaca --no-progress --output /tmp/eg/"
for run in "--precision 4bit" "--precision bf16" "--use-hf --precision bf16" "--use-hf --precision 8bit" "--use-hf --precision 4bit" "--use-hf --precision bf16 --lora /tmp/tr/usehfprecisionbf16"; do
  echo "-- eval_generate.py $run"; timeout 150 $G $run > $OUT/logs/gen_$(echo "$run" | tr -d ' -/').log 2>&1; echo "rc=$?"
done
python3 - <<'PY'
import glob, json
for f in sorted(glob.glob("/tmp/eg/*[0-9].json")):
    m = json.load(open(f))["metadata"]
    print(f.split("/")[-1], m["loader"], m["precision"], m["template"], m.get("stop_reasons"), m["tokens_per_second"], "tok/s", m["peak_gpu_memory_gb"], "GB")
PY
tar czf $OUT/stage1_files.tgz --exclude='checkpoint-*' -C /tmp eg tr 2>/dev/null
echo "== generate benchmark (Llama-3.1-8B shape, worst case 1280 tokens)"
timeout 330 python3 bench/generate_throughput.py --runs hf-bf16 hf-4bit hf-8bit-t6 hf-8bit-t0 --batch-sizes 256 \
  --worker-timeout 110 --json $OUT/bench_generate.json 2>&1 | grep -v -e "Loading weights" -e "it/s" | tail -20
