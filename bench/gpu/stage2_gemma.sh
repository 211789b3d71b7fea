# GPU call (carry the last .gemma/pN): rebuild the Gemma 3 270M base GGUF from its pieces, dequantize it,
# train a LoRA with the project defaults on the 5,000 shared alpaca records, then IFEval generation
# (all 541 prompts, 1280 new tokens max) and tinyMMLU for base and finetuned at bf16.
source bench/gpu/env.sh
mkdir -p /tmp/pieces && cp -r .gemma/p* /tmp/pieces/ 2>/dev/null
test -f /tmp/gemma.gguf || python3 tools/carry_pieces.py join /tmp/pieces --out /tmp/gemma.gguf || exit 4
M=$(python3 -c "from sfteval import modeling; print(modeling.materialize_gguf('/tmp/gemma.gguf'))" 2>$OUT/logs/materialize.log | tail -1)
echo "model folder: $M"; test -f "$M/config.json" || { tail -5 $OUT/logs/materialize.log; exit 5; }
A=$DATA/alpaca_cleaned/alpaca_data_cleaned_first5000.json; P=$DATA/ifeval/input_data.jsonl; Q=$DATA/tinymmlu/tinyMMLU_test.jsonl
X=/tmp/gx; mkdir -p $X/eval_responses $X/eval_results
# A call is cut at 600 s: keep whatever is finished by then.
( sleep 575; tar czf $OUT/gemma_stage2_partial.tgz --exclude='checkpoint-*' -C /tmp gx ) &
echo "== train (project defaults, unsloth)"
python3 train.py --model $M --dataset $A --val-size 100 --report-to none --output-dir $X/lora_model_4bit > $OUT/logs/train_gemma.log 2>&1
rc=$?; echo "rc=$rc"
if [ $rc -ne 0 ]; then
  tail -5 $OUT/logs/train_gemma.log; echo "== unsloth failed: train with --use-hf"
  python3 train.py --model $M --use-hf --dataset $A --val-size 100 --report-to none --output-dir $X/lora_model_4bit > $OUT/logs/train_gemma_hf.log 2>&1; echo "rc=$?"
fi
grep -E "loss|tokens/s|peak|over" $OUT/logs/train_gemma*.log | tail -8
echo "== IFEval generation bf16 (HF loader)"
for lora in "" "--lora $X/lora_model_4bit"; do
  python3 eval_generate.py --model $M $lora --use-hf --precision bf16 --prompts $P --no-progress --output $X/eval_responses/ 2>&1 | grep -v -e "it/s" -e "Loading weights" | tail -3
done
echo "== tinyMMLU bf16"
for lora in "" "--lora $X/lora_model_4bit"; do
  python3 eval_mmlu.py --model $M $lora --use-hf --precision bf16 --data $Q --no-progress --output-dir $X/eval_results 2>&1 | tail -2
done
tar czf $OUT/gemma_stage2.tgz --exclude='checkpoint-*' -C /tmp gx
