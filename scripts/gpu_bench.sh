#!/usr/bin/env bash
# GPU benchmarks in one run: the training step of `base` at 2048 tokens in bfloat16
# (tokens/s, MFU against the GPU's bf16 dense peak) and the blockwise forward of `small` at
# 65,536 and 131,072 tokens for nope, alibi and fire (x nope, round-robin).
#
#   bash scripts/gpu_bench.sh wheels   # on a networked machine: the pinned packages a CUDA
#                                      # image with JAX, flax, optax and orbax usually lacks,
#                                      # as Python 3.12 x86-64 wheels in .whl/
#   bash scripts/gpu_bench.sh          # on the GPU machine (installs .whl/ if present);
#                                      # PEAK_TFLOPS (default 989, H100/H200 SXM bf16 dense)
#                                      # and OUT (default gpu_bench_out/) can be set
# About 8 minutes on one H200 when compiled for the first time.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ "${1:-}" = wheels ]; then
  mkdir -p .whl
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    array-record==0.8.6 dm-tree==0.1.10 docstring-parser==0.18.0 googleapis-common-protos==1.76.0 \
    grain==0.2.18 immutabledict==4.3.1 importlib-resources==7.1.0 ml-collections==1.1.0 portpicker==1.6.0 \
    simple-parsing==0.1.9 tensorboardx==2.6.5 tensorflow-datasets==4.9.10 tensorflow-metadata==1.21.0 \
    termcolor==3.3.0 toml==0.10.2 || exit 1
  "$PYTHON" -m pip wheel -q --no-deps -w .whl promise==2.3 || exit 1  # an sdist only: pure Python
  du -sh .whl
  exit 0
fi

if ls .whl/*.whl >/dev/null 2>&1; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
OUT=${OUT:-gpu_bench_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
"$PYTHON" -c "import jax; print('jax', jax.__version__, jax.devices())" 2>&1 | tee -a "$OUT/gpu.txt"

# Training step: base, 2048 tokens, bfloat16; MFU against the bf16 dense peak.
timeout 300 "$PYTHON" -m benchmarks.train --sizes=base --train_len=2048 --batch=8 --dtype=bfloat16 \
  --encodings=nope,alibi,rope,fire,fire_s --repeats=5 --peak_gflops="${PEAK_TFLOPS:-989}000" --skip_pipeline \
  2>&1 | tee "$OUT/train_base_2048_bf16.md"
# Long inputs: small, blockwise, float32.
for T in 65536 131072; do
  timeout 240 "$PYTHON" -m benchmarks.long --size=small --length="$T" --encodings=nope,alibi,fire \
    --rounds=2 2>&1 | tee "$OUT/long_small_$T.md"
done
