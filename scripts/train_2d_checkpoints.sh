#!/usr/bin/env bash
# Trains and exports the shipped 2D checkpoints (gaussian -> each target, FM, OT-CFM and
# MeanFlow, plus the velocity consistency loss on moons). Each run records its exact command in its
# checkpoint; an interrupted run is resumed when the script is started again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
COMMON=(--source gaussian --iterations 3000 --batch-size 256 --lr 2e-3 --lr-schedule cosine
        --checkpoint-every 500 --device cpu --quiet)

train() {  # name, extra training arguments...
    local name=$1; shift
    local out=runs/2d/$name dest=checkpoints/2d/$name.safetensors
    [ -f "$dest" ] && return 0
    local resume=()
    [ -f "$out/checkpoint.safetensors" ] && resume=(--resume)
    "$PY" -m ecnf train "$@" "${COMMON[@]}" --out "$out" "${resume[@]}"
    "$PY" -m ecnf export "$out/checkpoint.safetensors" "$dest" --half
}

for target in moons 8gaussians checkerboard 2spirals swissroll; do
    for loss in fm otcfm; do
        train "${target}_${loss}" --data "$target" --loss "$loss"
    done
done
train moons_consistency --data moons --loss consistency --coupling ot --fm-weight 1 --dt 0.01 --alpha 1
# MeanFlow (average velocities, one-step sampling) at the same budget, for the few-step leaderboard
for target in moons 8gaussians checkerboard 2spirals swissroll; do
    train "${target}_meanflow" --data "$target" --loss meanflow
done
