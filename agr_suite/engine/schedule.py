"""Per-step learning-rate schedules: linear warm-up, then cosine or multi-step decay."""

from __future__ import annotations

import math
from typing import Any

import torch

SCHEDULES = ("cosine", "multistep", "constant")


def build_scheduler(
    optimizer: torch.optim.Optimizer, settings: dict[str, Any], steps_per_epoch: int, epochs: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per optimizer step. Epoch-valued settings (warmup_epochs,
    milestones) are converted to steps with ``steps_per_epoch``."""
    name = settings.get("name", "constant")
    if name not in SCHEDULES:
        raise ValueError(f"scheduler={name!r} is not valid; choose one of {', '.join(SCHEDULES)}")
    warmup = round(float(settings.get("warmup_epochs", 0) or 0) * steps_per_epoch)
    if settings.get("warmup_steps") is not None:
        warmup = int(settings["warmup_steps"])
    total = max(1, epochs * steps_per_epoch)
    milestones = [int(m) * steps_per_epoch for m in settings.get("milestones", []) or []]
    gamma = float(settings.get("gamma", 0.1))
    min_ratio = float(settings.get("min_lr_ratio", 0.0))

    def factor(step: int) -> float:
        # `step` counts completed optimizer steps; the LR for the next step is factor(step).
        if warmup and step < warmup:
            return (step + 1) / warmup
        if name == "cosine":
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        if name == "multistep":
            return gamma ** sum(step >= m for m in milestones)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
