"""Tasks: one module per family of experiments. ``build_task(name, cfg)`` -> TaskParts.

The model config names its task (``model.task``): the image classifiers ``classification``
(Table 2), the DDPM UNets ``diffusion`` (Table 1), ALBERT ``pretraining`` (Table 3).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .base import TaskParts

TASKS = ("classification", "diffusion", "pretraining")


def build_task(name: str, cfg: dict[str, Any]) -> TaskParts:
    if name not in TASKS:
        raise ValueError(f"task={name!r} is not valid; choose one of {', '.join(TASKS)}")
    return import_module(f"{__name__}.{name}").build(cfg)
