"""Per-step learning-rate schedules: linear warm-up, then cosine or multi-step decay."""

from __future__ import annotations

import math

import torch

from agr_suite.core.config import SchedulerConfig


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    settings: SchedulerConfig,
    steps_per_epoch: int,
    epochs: int,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per optimizer step. Epoch-valued settings (warmup_epochs,
    milestones) are converted to steps with ``steps_per_epoch``."""
    name = settings.name
    warmup = round(float(settings.warmup_epochs) * steps_per_epoch)
    if settings.warmup_steps is not None:
        warmup = int(settings.warmup_steps)
    total = max(1, epochs * steps_per_epoch)
    milestones = [int(m) * steps_per_epoch for m in settings.milestones]
    gamma, min_ratio = float(settings.gamma), float(settings.min_lr_ratio)

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
