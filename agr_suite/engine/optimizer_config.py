"""The run config's ``optimizer`` section as an optimizer: one translation, used by the
engine and by the scripts that rebuild a run's optimizer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

import agr

_ENGINE_KEYS = ("name", "agr_until_epoch", "agr_permuted")


def build_from_config(
    optimizer_cfg: Mapping[str, Any],
    model: torch.nn.Module | list[torch.nn.Parameter],
    *,
    steps_per_epoch: int,
    seed: int,
    name: str | None = None,
) -> torch.optim.Optimizer:
    """``agr.build_optimizer`` with the config's settings. ``agr_until_epoch`` becomes
    optimizer steps (rounded); the null control's permutations are seeded by the run's seed.
    ``name`` replaces the config's optimizer name (e.g. to measure AGR on a baseline run)."""
    kwargs = {k: v for k, v in optimizer_cfg.items() if k not in _ENGINE_KEYS}
    if kwargs.get("betas") is not None:
        kwargs["betas"] = tuple(kwargs["betas"])
    until_epoch = optimizer_cfg.get("agr_until_epoch")
    if until_epoch is not None:
        kwargs["agr_until_step"] = int(round(float(until_epoch) * steps_per_epoch))
    if optimizer_cfg.get("agr_permuted"):
        kwargs.update(agr_permuted=True, agr_seed=int(seed))
    return agr.build_optimizer(name or optimizer_cfg["name"], model, **kwargs)
