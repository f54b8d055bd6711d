"""Tasks: one module per family of experiments. ``build_task(cfg)`` -> TaskParts.

The model config names its task (``model.task``): the image classifiers ``classification``
(Table 2), the DDPM UNets ``diffusion`` (Table 1), ALBERT ``pretraining`` (Table 3).
"""

from __future__ import annotations

from importlib import import_module

from ..config import TASKS, RunConfig
from ..engine.task import TaskParts

__all__ = ["TASKS", "build_task"]


def build_task(cfg: RunConfig) -> TaskParts:
    """The parts of the run's task (``cfg.task``); the engine calls it once seeded."""
    if cfg.task not in TASKS:
        raise ValueError(f"task={cfg.task!r} is not valid; choose one of {', '.join(TASKS)}")
    return import_module(f"{__name__}.{cfg.task}").build(cfg)
