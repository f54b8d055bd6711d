"""Tasks: one module per family of experiments. ``build_task(name, cfg)`` -> TaskParts."""

from __future__ import annotations

from typing import Any

from .base import TaskParts

TASKS = ("classification",)


def build_task(name: str, cfg: dict[str, Any]) -> TaskParts:
    if name == "classification":
        from .classification import build

        return build(cfg)
    raise ValueError(f"task={name!r} is not valid; choose one of {', '.join(TASKS)}")
