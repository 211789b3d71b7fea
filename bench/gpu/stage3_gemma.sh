# GPU call after stage2 (no carry): 4-bit IFEval and tinyMMLU for base and finetuned Gemma, the
# unsloth generation paths, and loader/precision parity.
source bench/gpu/env.sh
M=$(python3 -c "from sfteval import modeling; print(modeling.materialize_gguf('/tmp/gemma.gguf'))" 2>/dev/null | tail -1)
test -f "$M/config.json" || { echo COLD_MACHINE; exit 7; }
P=$DATA/ifeval/input_data.jsonl; Q=$DATA/tinymmlu/tinyMMLU_test.jsonl; X=/tmp/gx; mkdir -p $X/stage3
echo "== IFEval generation 4bit (HF loader)"
for lora in "" "--lora $X/lora_model_4bit"; do
  python3 eval_generate.py --model $M $lora --use-hf --precision 4bit --prompts $P --no-progress --output $X/eval_responses/ 2>&1 | grep -v -e "it/s" -e "Loading weights" | tail -3
done
echo "== tinyMMLU 4bit"
for lora in "" "--lora $X/lora_model_4bit"; do
  python3 eval_mmlu.py --model $M $lora --use-hf --precision 4bit --data $Q --no-progress --output-dir $X/eval_results 2>&1 | tail -2
done
echo "== unsloth and 8-bit generation paths (48 prompts, 256 tokens)"
for run in "--precision 4bit" "--precision bf16" "--precision 4bit --lora $X/lora_model_4bit" "--use-hf --precision 8bit"; do
  echo "-- $run"; timeout 150 python3 eval_generate.py --model $M $run --prompts $P --limit 48 --max-new-tokens 256 --no-progress --output $X/stage3/ 2>&1 | grep -v -e "it/s" -e "Loading weights" | tail -2
done
tar czf $OUT/gemma_stage3.tgz -C /tmp gx/eval_responses gx/eval_results gx/stage3
echo "== parity"
timeout 200 python3 bench/loader_parity.py --model $M --prompts $P --limit 24 --max-new-tokens 128 --batch-size 8 \
  --runs hf:bf16 hf:8bit hf:4bit unsloth:bf16 unsloth:4bit --output $OUT/parity_gemma.json 2>&1 | grep -v -e "it/s" -e "Loading weights" | tail -9
