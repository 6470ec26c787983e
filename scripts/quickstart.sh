#!/usr/bin/env bash
# The README's first command: install what is missing, train a tiny FIRE model on the
# embedded Shakespeare corpus at length 128, then evaluate it at 128 ... 2048 (1x to 16x its
# training length) and print the table.
#
#   bash scripts/quickstart.sh
#
# About 6 minutes on 2 CPU cores once the requirements are installed (1000 steps of
# 16 x 128 tokens, ~2M tokens; the sweep scores 65,536 tokens per length). Re-running
# resumes an interrupted training, skips a finished one and reuses the rows already computed.
# Outputs: the run in runs/tiny_128/fire, the sweep in results/quickstart (results.md,
# results.csv, results.json, length_curve.png, position_curve.png, fire_bias.png).
# Overrides: PYTHON, STEPS, TRAIN_LEN, RUNS, OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

STEPS=${STEPS:-1000}
TRAIN_LEN=${TRAIN_LEN:-128}
RUNS=${RUNS:-runs/tiny_$TRAIN_LEN}
OUT=${OUT:-results/quickstart}

echo "== Training pe=fire, size=tiny, train_len=$TRAIN_LEN for $STEPS steps in $RUNS/fire"
"$PYTHON" train.py --config="configs/lm.py:pe=fire,size=tiny,train_len=$TRAIN_LEN" \
  --workdir="$RUNS/fire" --config.num_steps="$STEPS" --config.log_every=100

echo "== Length sweep into $OUT"
"$PYTHON" eval_length.py --workdir="$RUNS/fire" --output_dir="$OUT"

echo
cat "$OUT/results.md"
echo
echo "Done in $((SECONDS / 60))m$((SECONDS % 60))s. Figures in $OUT: length_curve.png, position_curve.png, fire_bias.png"
