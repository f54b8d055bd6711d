#!/usr/bin/env bash
# GPU checks (a few minutes on one GPU): the operator and optimizer equivalence tests and the
# bitwise pair test (tests/test_pairs.py: adamw vs adamw_agr with AGR a no-op) on
# CUDA (fp32 and bf16), the optimizer-step benchmark (results/bench/optimizer_step_cuda.json),
# and training images/s of the engine beside a bare loop for ResNet-18 at batch 128 in bf16,
# plain, channels_last, and compiled (results/bench/train_throughput_cuda_*.json).
# DDPM training images/s and DDIM sampling time in bf16 (results/bench/diffusion_cuda.json).
# Run from the repository root: `make gpu-check`.
#
# Every step runs, whatever the ones before it did; a summary at the end lists each step with
# its exit code, and the script exits 1 when any step failed (2 when there is no CUDA device).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[[ -x $PY ]] || PY=python3
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled
export PYTHONUNBUFFERED=1

if ! "$PY" - <<'PYEOF'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit("gpu_check.sh: no CUDA device is visible to torch; nothing to check on this machine")
print("device:", torch.cuda.get_device_name(), "| torch", torch.__version__)
PYEOF
then
    exit 2
fi

names=()
codes=()
step() {  # step NAME COMMAND...: run it, remember its exit code, carry on
    local name=$1
    shift
    echo
    echo "=== $name: $*"
    "$@"
    local code=$?
    names+=("$name")
    codes+=("$code")
    [[ $code -eq 0 ]] || echo "=== $name FAILED (exit code $code)"
}

step "equivalence tests" "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_pairs.py
step "optimizer step" "$PY" scripts/bench_optimizer.py --device cuda --steps 50 --warmup 10
TRAIN=(scripts/bench_train.py --device cuda --models resnet18 --batch-size 128 --batches 40
       --rounds 3 --num-workers 8 --precision bf16 --train-images 8192)
step "train (sync variant)" "$PY" "${TRAIN[@]}" --sync-variant
step "train channels_last" "$PY" "${TRAIN[@]}" --channels-last
step "train compiled" "$PY" "${TRAIN[@]}" --channels-last --compile
step "diffusion" "$PY" scripts/bench_diffusion.py --device cuda --precision bf16 --batch-small 128 \
    --batch-ddpm 128 --steps 20 --warmup 5 --sample-batch 500 --sample-steps 10 \
    --out results/bench/diffusion_cuda.json

echo
echo "=== summary"
failed=0
for i in "${!names[@]}"; do
    if [[ ${codes[$i]} -eq 0 ]]; then
        echo "  ok      ${names[$i]}"
    else
        echo "  FAILED  ${names[$i]} (exit code ${codes[$i]})"
        failed=$((failed + 1))
    fi
done
echo "${#names[@]} steps, $failed failed"
[[ $failed -eq 0 ]]
