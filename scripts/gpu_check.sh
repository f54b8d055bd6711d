#!/usr/bin/env bash
# GPU checks (6.7 minutes on one H200): the operator and optimizer equivalence
# tests and the bitwise pair test (tests/engine/test_pairs.py: adamw vs adamw_agr with AGR a no-op) on
# CUDA (fp32 and bf16), then scripts/bench_gpu.py, which measures the suite on this GPU into
# results/bench/gpu.json: ResNet-18 CIFAR-100 epoch time with the torch DataLoader and the
# device loader (fp32, bf16, bf16 channels_last, bf16 channels_last compiled), one TinyImageNet
# epoch (device loader, bf16), K = 1, 2, 4 runs per GPU, DDPM training and DDIM sampling
# images/s in bf16, and the AGR optimizer-step overhead. All data are synthetic, written in the
# real on-disk formats (the GPU machine may have no network).
# Run from the repository root: `make gpu-check`.
#
# Time on one H200 (measured 2026-12-04, torch 2.11.0+cu130, driver 580.159.04, 16 CPU
# cores; gpu.json's "pieces" records each piece's seconds): 6.7 min in all.
#   equivalence tests     44 s   41 CUDA tests and short engine runs
#   cifar100_epoch       210 s   4 processes (one per variant); torch.compile's first epoch 26 s
#   tinyimagenet_epoch    32 s   7,936 JPEGs written and decoded, 4 x 60 steps at 64x64
#   runs_per_gpu          33 s   4 processes; 3 windows of 60 steps for each K = 1, 2, 4
#   ddpm                  32 s   25 steps at batch 128 of the 35.7M UNet, 3 x 500 images x 10 DDIM steps
#   optimizer_step        28 s   2 models x 7 step kinds x 60 interleaved steps
# The engine's images/s beside its bare step (one resident batch) is not part of it; by hand:
#   python scripts/bench_train.py --device cuda --models resnet18 --batch-size 128 \
#       --batches 40 --num-workers 8 --precision bf16 --train-images 8192
#
# Every step runs, whatever the ones before it did; a summary at the end lists each step with
# its exit code, and the script exits 1 when any step failed (2 when there is no CUDA device).
# bench_gpu.py likewise runs every piece and records a failed one's error in gpu.json.
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

step "equivalence tests" "$PY" -m pytest -q -p no:cacheprovider tests/library/test_cuda.py tests/engine/test_pairs.py
step "bench_gpu" "$PY" scripts/bench_gpu.py

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
