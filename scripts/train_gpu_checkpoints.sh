#!/usr/bin/env bash
# Trains the Fashion-MNIST checkpoints that want a GPU, several runs side by side on one card:
#
#   teacher   the UNet for 10-20 step sampling (fmnist_unet_fm)
#   fewstep   few-step models: velocity consistency from scratch, or (stage "reflow") a
#             reflow student initialised from the teacher and trained on its pairs
#   ablations the seed paper's ablation configurations on equal budgets (15000 steps, batch 256)
#
# Usage: scripts/train_gpu_checkpoints.sh [first|reflow] [seconds]
# Each run is stopped with SIGINT after its time budget (it saves at a step boundary, and
# the same command resumes it: `--resume` is added when a checkpoint exists). Each
# checkpoint records its own command, wall time and hardware. Exported fp16 copies land in
# $RUNS/export/ and are copied by hand: fmnist_unet_{fm,reflow} to checkpoints/images/,
# ablation_NAME to checkpoints/ablations/NAME (the consistency run is measured, not shipped).
# The shipped ones ran on one H100: "first" with 430 s per run (the ablations finished their
# 15000 steps; the UNet stopped at its time budget), then "reflow" with 401 s.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
RUNS=${RUNS:-runs/gpu}
EXTRA=${EXTRA:-}  # appended to every training command (e.g. "--iterations 3 --device cpu" to try it)
STAGE=${1:-first}
SECONDS_BUDGET=${2:-450}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$RUNS/export" "$RUNS/logs"

train() {  # name, seconds, training arguments...
    local name=$1 seconds=$2; shift 2
    local out=$RUNS/$name resume=()
    [ -f "$out/checkpoint.safetensors" ] && resume=(--resume)
    # shellcheck disable=SC2086
    timeout -s INT -k 60 "$seconds" "$PY" -m ecnf train "$@" --out "$out" --quiet \
        --sample-every 0 "${resume[@]}" $EXTRA >"$RUNS/logs/$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc, $(tail -n 1 "$RUNS/logs/$name.log")"
    "$PY" -m ecnf export "$out/checkpoint.safetensors" "$RUNS/export/$name.safetensors" --half \
        >>"$RUNS/logs/$name.log" 2>&1 || echo "$name: export failed"
}

UNET=(--data fashion_mnist --model unet --channels 32 --channel-mult 1,2,2 --attention ""
      --batch-size 256 --lr 5e-4 --warmup 500 --ema-decay 0.9995 --checkpoint-every 2000
      --log-every 200)
# The seed paper's velocity MLP (linear time embedding, adaptive activations) on flattened
# 28x28 images, with its optimiser defaults: AdamW lr 2e-4, weight decay 1e-4, EMA 0.999.
MLP=(--data fashion_mnist --model mlp --width 512 --depth 3 --activation adaptive
     --time-embedding linear --loss fm --iterations 15000 --batch-size 256 --lr 2e-4
     --weight-decay 1e-4 --ema-decay 0.999 --checkpoint-every 5000 --log-every 100)

case $STAGE in
first)
    train fmnist_unet_fm "$SECONDS_BUDGET" "${UNET[@]}" --loss fm --iterations 200000 &
    train fmnist_unet_consistency "$SECONDS_BUDGET" "${UNET[@]}" --loss consistency \
        --coupling ot --fm-weight 1 --dt 0.01 --alpha 1 --iterations 200000 &
    # The ablations all at once, each with the same iteration budget. ecnf.ablations defines
    # them (the notebooks and the studio read it); tests/test_ablations.py checks that every
    # shipped checkpoint's stored configuration equals that definition.
    ab() { train "ablation_$1" "$SECONDS_BUDGET" "${MLP[@]}" "${@:2}"; }
    ab baseline &
    ab deeper --depth 6 &
    ab relu --activation relu &
    ab tanh --activation tanh &
    ab resnet --model resnet &
    ab config_a --weight-decay 0 --ema-decay 0 &
    ab config_c --lr 1e-3 &
    ab config_d --weight-decay 1e-2 --ema-decay 0.9999 &
    wait
    ;;
reflow)
    # 2-rectified flow: the student starts from the teacher and learns the straight pairs
    # (noise, teacher's sample by midpoint at 5 steps, its best 10-NFE solver).
    teacher=${TEACHER:-checkpoints/images/fmnist_unet_fm.safetensors}
    train fmnist_unet_reflow "$SECONDS_BUDGET" "${UNET[@]}" --loss reflow --teacher "$teacher" \
        --teacher-solver midpoint --teacher-steps 5 --init "$teacher" --lr 2e-4 --warmup 0 \
        --iterations 200000
    ;;
*)
    echo "unknown stage $STAGE (first or reflow)" >&2
    exit 2
    ;;
esac
ls -la "$RUNS/export"
