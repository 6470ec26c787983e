#!/usr/bin/env bash
# The README's first command: install what is missing, train a tiny FIRE model on the
# embedded Shakespeare corpus at length 128, then evaluate it at 128 ... 2048 (1x to 16x its
# training length) and print the table.
#
#   bash scripts/quickstart.sh
#
# 3m34s on a 2-core AMD EPYC (Zen 4) once the requirements are installed (1000 steps of
# 16 x 128 tokens, ~2M tokens; the sweep scores 65,536 tokens per length). Re-running
# resumes an interrupted training, skips a finished one and reuses the rows already computed.
# Outputs: the run in runs/tiny_128/fire, the sweep in results/quickstart (results.md,
# results.csv, results.json, length_curve.png, position_curve.png, fire_bias.png).
# Overrides: PYTHON, STEPS, TRAIN_LEN, RUNS, OUT, LOG_EVERY (as in scripts/compare.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# The same job as scripts/compare.sh, for FIRE alone.
ENCODINGS=${ENCODINGS:-fire} OUT=${OUT:-results/quickstart} exec bash scripts/compare.sh
