#!/usr/bin/env bash
# GPU checks (a few minutes on one GPU): the operator and optimizer equivalence tests and the
# bitwise pair test (tests/test_pairs.py: adamw vs adamw_agr with AGR a no-op) on
# CUDA (fp32 and bf16), the optimizer-step benchmark (results/bench/optimizer_step_cuda.json),
# and training images/s of the engine beside a bare loop for ResNet-18 at batch 128 in bf16,
# plain, channels_last, and compiled (results/bench/train_throughput_cuda_*.json).
# DDPM training images/s and DDIM sampling time in bf16 (results/bench/diffusion_cuda.json).
# Run from the repository root: `make gpu-check`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[[ -x $PY ]] || PY=python3
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled
export PYTHONUNBUFFERED=1
"$PY" - <<'PYEOF'
import torch
assert torch.cuda.is_available(), "gpu_check.sh needs a CUDA device"
print("device:", torch.cuda.get_device_name(), "| torch", torch.__version__)
PYEOF
"$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_pairs.py
"$PY" scripts/bench_optimizer.py --device cuda --steps 50 --warmup 10
TRAIN=(scripts/bench_train.py --device cuda --models resnet18 --batch-size 128 --batches 40
       --rounds 3 --num-workers 8 --precision bf16 --train-images 8192)
"$PY" "${TRAIN[@]}" --sync-variant
"$PY" "${TRAIN[@]}" --channels-last
"$PY" "${TRAIN[@]}" --channels-last --compile
"$PY" scripts/bench_diffusion.py --device cuda --precision bf16 --batch-small 128 --batch-ddpm 128 \
    --steps 20 --warmup 5 --sample-batch 500 --sample-steps 10 --out results/bench/diffusion_cuda.json
