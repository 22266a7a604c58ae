#!/usr/bin/env bash
# Trains and exports the shipped image checkpoints. Long on a CPU: run it in the background;
# started again, it resumes each unfinished run from its last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

train() {  # name, training arguments...
    local name=$1; shift
    local out=runs/$name dest=checkpoints/images/$name.safetensors
    [ -f "$dest" ] && return 0
    while pgrep -f -- "--out $out( |$)" >/dev/null; do sleep 30; done  # already running
    local resume=()
    [ -f "$out/checkpoint.safetensors" ] && resume=(--resume)
    "$PY" -m ecnf train "$@" --out "$out" --quiet "${resume[@]}"
    "$PY" -m ecnf export "$out/checkpoint.safetensors" "$dest" --half
}

# sklearn's 8x8 digits: a small UNet.
train digits_unet_fm --data digits --model unet --loss fm --iterations 4000 --batch-size 128 \
    --lr 1e-3 --warmup 200 --lr-schedule cosine --checkpoint-every 500 --log-every 50 \
    --sample-every 1000 --device cpu
# MeanFlow on the same UNet and budget (one-step sampling with the average velocity)
train digits_unet_meanflow --data digits --model unet --loss meanflow --iterations 4000 \
    --batch-size 128 --lr 1e-3 --warmup 200 --lr-schedule cosine --checkpoint-every 250 \
    --log-every 50 --sample-every 1000 --device cpu

# Fashion-MNIST: the shipped UNet, its reflow student and the seed-paper ablations come from
# scripts/train_gpu_checkpoints.sh (trained on a GPU; each card records the command and budget).
# On a CPU alone, this trains a smaller UNet in about two hours on one thread:
if [ "${FMNIST_ON_CPU:-0}" = 1 ]; then
    train fmnist_unet_fm_cpu --data fashion_mnist --model unet --channels 24 --attention "" \
        --loss fm --iterations 6000 --batch-size 64 --lr 5e-4 --warmup 200 --checkpoint-every 250 \
        --log-every 50 --sample-every 1000 --device cpu
fi
