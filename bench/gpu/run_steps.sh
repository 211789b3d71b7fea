# Run the steps of bench/gpu/study_steps.sh (or of STEPS_FILE, e.g. bench/gpu/smol_steps.sh) in
# order within one device call, skipping those done in an earlier call on the same warm machine,
# and stopping before a step that no longer fits:
#   bash bench/gpu/run_steps.sh [SECONDS] [STEP ...]      (default 550 s, every step)
# A step that failed in an earlier call is skipped, unless it is named on the command line.
# A step cut by the deadline is started again by the next call; the generation and training steps
# resume from their side files and checkpoints. After every step the steps file's folder $X
# (results, logs, adapter configs; no weights or checkpoints) is packed into $OUT/gx.tgz, so the newest
# call's archive holds everything.
source bench/gpu/env.sh
BUDGET=${1:-550}; shift 2>/dev/null
STEPS_FILE=${STEPS_FILE:-bench/gpu/study_steps.sh}
source $STEPS_FILE
NAMED=$#
[ $# -gt 0 ] && STEPS=("$@")
# What comes back must stay under the 16 MiB a file: no weights, checkpoints or tokenizer copies.
pack() {
  tar czf $OUT/$(basename $X).tgz --exclude='checkpoint-*' --exclude='*.safetensors' --exclude='tokenizer.json' \
    --exclude='tokenizer.model' --exclude='*.official.jsonl' -C $(dirname $X) $(basename $X)
}
mkdir -p $X/logs $X/eval_responses $X/eval_results; touch $X/done $X/failed
for entry in "${STEPS[@]}"; do
  name=${entry%%:*}; need=${entry#*:}; [ "$need" = "$entry" ] && need=30
  grep -qx "$name" $X/done && continue
  if grep -qx "$name" $X/failed; then
    [ $NAMED -gt 0 ] || continue
    sed -i "/^$name\$/d" $X/failed
  fi
  left=$((BUDGET - SECONDS))
  if [ $left -lt $need ]; then echo "== stop before $name: needs ~${need} s, ${left} s left"; break; fi
  echo "== $name (${left} s left)"; start=$SECONDS
  # STEP_LEFT: for a step that starts processes of its own, each with its own timeout
  STEP_LEFT=$((left - 20)) timeout --kill-after=15 $left bash -c "source $STEPS_FILE; step_$name" >> $X/logs/$name.log 2>&1
  rc=$?; echo "   rc=$rc after $((SECONDS - start)) s"
  grep -v -e "it/s]" -e "Loading weights" $X/logs/$name.log | tail -4 | cut -c1-300
  if [ $rc -eq 0 ]; then echo $name >> $X/done; echo "$name $((SECONDS - start))" >> $X/seconds
  elif [ $rc -ne 124 ] && [ $rc -ne 137 ]; then echo $name >> $X/failed; fi
  pack
done
echo "done: $(tr '\n' ' ' < $X/done)"; echo "failed: $(tr '\n' ' ' < $X/failed)"
pack
