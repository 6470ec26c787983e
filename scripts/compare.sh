#!/usr/bin/env bash
# The comparison the paper is about, at laptop scale: the same tiny model trained with six
# position encodings at length 128 on the embedded Shakespeare corpus, then evaluated at
# 128 ... 2048 (1x to 16x the training length) into one table and one figure.
#
#   bash scripts/compare.sh
#
# About 25 minutes on 2 CPU cores: six runs of 1000 steps (16 x 128 tokens each, ~2M
# tokens; 3-5 minutes a run) and a sweep of 65,536 tokens per length. The runs share
# runs/tiny_128 with scripts/quickstart.sh, whose FIRE run is reused as is. Re-running
# resumes or skips the training and reuses the rows already computed.
# Outputs: results/compare (results.md, results.csv, results.json, length_curve.png,
# position_curve.png, fire_bias.png).
# Overrides: PYTHON, STEPS, TRAIN_LEN, RUNS, OUT, ENCODINGS (space-separated), LENGTHS
# (comma-separated; default 1x ... 16x the training length), LOG_EVERY (default STEPS / 40:
# 40 progress lines and TensorBoard points per run).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

STEPS=${STEPS:-1000}
TRAIN_LEN=${TRAIN_LEN:-128}
RUNS=${RUNS:-runs/tiny_$TRAIN_LEN}
OUT=${OUT:-results/compare}
ENCODINGS=${ENCODINGS:-nope rope alibi kerple_log t5 fire}
LENGTHS=${LENGTHS:-}
LOG_EVERY=${LOG_EVERY:-$((STEPS >= 40 ? STEPS / 40 : 1))}

workdirs=()
for pe in $ENCODINGS; do
  echo "== [$((SECONDS / 60))m$((SECONDS % 60))s] Training pe=$pe (tiny, train_len $TRAIN_LEN, $STEPS steps) in $RUNS/$pe"
  "$PYTHON" train.py --config="configs/lm.py:pe=$pe,size=tiny,train_len=$TRAIN_LEN" \
    --workdir="$RUNS/$pe" --config.num_steps="$STEPS" --config.log_every="$LOG_EVERY"
  workdirs+=("--workdir=$RUNS/$pe")
done

echo "== [$((SECONDS / 60))m$((SECONDS % 60))s] Length sweep into $OUT"
"$PYTHON" eval_length.py "${workdirs[@]}" ${LENGTHS:+--lengths="$LENGTHS"} --output_dir="$OUT"

echo
cat "$OUT/results.md"
echo
echo "Done in $((SECONDS / 60))m$((SECONDS % 60))s. Figures in $OUT: length_curve.png, position_curve.png, fire_bias.png"
