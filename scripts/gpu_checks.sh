#!/usr/bin/env bash
# Every check of the CUDA sampling path that needs a GPU, in one run of a few minutes:
#   OUT=/some/folder bash scripts/gpu_checks.sh
# 1. the fast path's tests on CUDA (tests/test_fast.py also runs on a CPU);
# 2. benchmarks/gpu.py on TorchCFM's released CIFAR-10 UNet (batch 256, Euler 20 steps):
#    images/s of ecnf.fast.FastSolver beside eager fp32, with its mean absolute difference
#    checked against ecnf.fast.FAST_TOLERANCE;
# 3. the same on ECNF's own CIFAR-sized UNet.
# Results go to $OUT (gpu_torchcfm.json/.md, gpu_results.json/.md); copy them to benchmarks/
# and run `python -m benchmarks.run_all --render-only` to add them to RESULTS.md.
set -u
OUT=${OUT:-gpu_checks}
PY=${PY:-python}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
"$PY" -m pytest -q -p no:cacheprovider tests/test_fast.py > "$OUT/tests.txt" 2>&1
"$PY" benchmarks/gpu.py --require-cuda --arch torchcfm --budget-s 150 \
    --out "$OUT/gpu_torchcfm.json" > "$OUT/gpu_torchcfm.log" 2>&1
"$PY" benchmarks/gpu.py --require-cuda --budget-s 120 \
    --out "$OUT/gpu_results.json" > "$OUT/gpu_results.log" 2>&1
tail -n 3 "$OUT"/*.log "$OUT/tests.txt"
