"""The run config's ``optimizer`` section as an optimizer: one translation, used by the
engine and by the scripts that rebuild a run's optimizer."""

from __future__ import annotations

import torch

import agr
from agr_suite.core.config import OptimizerConfig


def scaled_lr(settings: OptimizerConfig, total_batch: int | None) -> float | None:
    """The optimizer's lr: ``settings.lr``, times ``total_batch / settings.lr_scale_batch``
    when that is set (TinyViT's linear scaling rule). ``total_batch`` is the nominal batch of
    one optimizer step over all processes: batch size x accumulation steps x world size."""
    if settings.lr_scale_batch is None:
        return settings.lr
    if total_batch is None:
        raise ValueError("optimizer.lr_scale_batch scales the lr by the total batch: give it")
    return settings.lr * total_batch / settings.lr_scale_batch


def build_from_config(
    settings: OptimizerConfig,
    model: torch.nn.Module | list[torch.nn.Parameter],
    *,
    steps_per_epoch: int,
    seed: int,
    name: str | None = None,
    total_batch: int | None = None,
) -> torch.optim.Optimizer:
    """``agr.build_optimizer`` with the config's settings. ``agr_until_epoch`` becomes
    optimizer steps (rounded); the null control's permutations are seeded by the run's seed;
    ``lr_scale_batch`` scales the lr by ``total_batch`` (:func:`scaled_lr`). ``name``
    replaces the config's optimizer name (e.g. to measure AGR on a baseline run)."""
    kwargs = settings.library_options()
    kwargs["lr"] = scaled_lr(settings, total_batch)
    if settings.agr_until_epoch is not None:
        kwargs["agr_until_step"] = int(round(float(settings.agr_until_epoch) * steps_per_epoch))
    if settings.agr_permuted:
        kwargs.update(agr_permuted=True, agr_seed=int(seed))
    return agr.build_optimizer(name or settings.name, model, **kwargs)
