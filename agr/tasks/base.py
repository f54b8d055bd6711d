"""What the engine needs from a task. A task knows its data, model, loss and evaluation;
it knows nothing of Hydra, W&B, devices or checkpoints."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch.utils.data import Dataset


class Evaluator(Protocol):
    def update(self, model: torch.nn.Module, batch: Any) -> None: ...

    def compute(self) -> dict[str, float]:
        """Metrics over everything seen, summed over all ranks."""
        ...


@dataclass
class TaskParts:
    model: torch.nn.Module
    train_set: Dataset
    eval_set: Dataset
    loss: Callable[[torch.nn.Module, Any], torch.Tensor]
    """Forward pass and mean loss of a batch already on the device."""
    make_evaluator: Callable[[torch.device], Evaluator]
    primary_metric: str
    """The metric that picks best.pt; higher is better unless ``minimize``."""
    minimize: bool = False
    batch_size: Callable[[Any], int] = lambda batch: len(batch[0])
    info: dict[str, Any] = field(default_factory=dict)
    """Logged once at start-up (parameter counts, data set sizes)."""
