# GPU call after an interrupted stage2: evaluate base Gemma and its newest training checkpoint
# (alpaca template, as trained) on all 541 IFEval prompts and tinyMMLU at bf16.
source bench/gpu/env.sh
M=$(python3 -c "from sfteval import modeling; print(modeling.materialize_gguf('/tmp/gemma.gguf'))" 2>/dev/null | tail -1)
test -f "$M/config.json" || { echo COLD_MACHINE; exit 7; }
P=$DATA/ifeval/input_data.jsonl; Q=$DATA/tinymmlu/tinyMMLU_test.jsonl; X=/tmp/gx
C=$(ls -d $X/lora_model_4bit.partial/*/checkpoint-* $X/lora_model_4bit.partial/checkpoint-* 2>/dev/null | sort -V | tail -1)
echo "checkpoint: $C"; ls $C
( sleep 560; tar czf $OUT/gemma_eval_partial.tgz -C /tmp gx/eval_responses gx/eval_results ) &
for lora in "" "--lora $C --template alpaca"; do
  python3 eval_generate.py --model $M $lora --use-hf --precision bf16 --prompts $P --no-progress --output $X/eval_responses/ 2>&1 | grep -v -e "it/s" -e "Loading weights" | tail -3
  tar czf $OUT/gemma_eval.tgz -C /tmp gx/eval_responses gx/eval_results
done
for lora in "" "--lora $C --template alpaca"; do
  python3 eval_mmlu.py --model $M $lora --use-hf --precision bf16 --data $Q --no-progress --output-dir $X/eval_results 2>&1 | tail -2
done
cp $C/trainer_state.json $OUT/ 2>/dev/null
tar czf $OUT/gemma_eval.tgz -C /tmp gx/eval_responses gx/eval_results
