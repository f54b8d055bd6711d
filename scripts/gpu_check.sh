#!/usr/bin/env bash
# GPU checks for the AGR core (a few minutes on one GPU): the operator and optimizer
# equivalence tests on CUDA (fp32 and bf16), then the optimizer-step benchmark on the GPU
# (results/bench/optimizer_step_cuda.json). Run from the repository root: `make gpu-check`.
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
"$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py
"$PY" scripts/bench_optimizer.py --device cuda --steps 50 --warmup 10 "$@"
