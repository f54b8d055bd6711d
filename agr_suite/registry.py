"""The launcher's task registry: ``build_task(cfg)`` -> the TaskParts the engine trains.

The model config names its task (``model.task``): the image classifiers ``classification``
(Table 2, :mod:`agr_suite.classification`), the DDPM UNets ``diffusion`` (Table 1,
:mod:`agr_suite.diffusion`), ALBERT ``pretraining`` (Table 3, :mod:`agr_suite.pretraining`).
Each family's ``task.build`` is imported only when its task runs.
"""

from __future__ import annotations

from importlib import import_module

from agr_suite.core.config import TASKS, RunConfig
from agr_suite.engine.task_parts import TaskParts

__all__ = ["TASKS", "build_task"]

# task -> the module whose build(cfg) makes its parts
MODULES = {
    "classification": "agr_suite.classification.build",
    "diffusion": "agr_suite.diffusion.build",
    "pretraining": "agr_suite.pretraining.build",
}


def build_task(cfg: RunConfig) -> TaskParts:
    """The parts of the run's task (``cfg.task``); the engine calls it once seeded."""
    return import_module(MODULES[cfg.task]).build(cfg)
