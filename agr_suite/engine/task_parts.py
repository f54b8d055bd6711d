"""What the engine needs from a task, and how it gets one: the launcher hands
:func:`agr_suite.engine.train` a :data:`TaskBuilder`, which the engine calls once the run is
seeded (the model's initial weights depend on the seed). A task knows its data, model, loss
and evaluation; it knows nothing of Hydra, W&B, devices or checkpoints."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.utils.data import Dataset


class Evaluator(Protocol):
    def update(self, model: torch.nn.Module, batch: Any) -> None: ...

    def compute(self) -> dict[str, float]:
        """Metrics over everything seen, summed over all ranks."""
        ...


class TaskState(Protocol):
    """Training state a task keeps besides the model and optimizer (the diffusion task's EMA of
    the weights): the engine sets it up once the model is on its device, updates it after
    every optimizer step, and saves it in (and restores it from) every checkpoint."""

    def setup(self, model: torch.nn.Module, device: torch.device) -> None: ...

    def after_step(self, model: torch.nn.Module) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class EvalContext:
    """What a task's own ``evaluate`` gets from the engine (see :attr:`TaskParts.evaluate`)."""

    device: torch.device
    epoch: int
    """Epochs completed (1-based), as recorded in history.jsonl."""
    run_dir: Path
    """Where the main process writes artifacts such as sample grids."""
    seed: int
    rank: int
    world_size: int
    autocast: Callable[[], Any]
    """A fresh autocast context manager with the run's precision."""
    gather: Callable[[torch.Tensor], torch.Tensor | None]
    """Concatenate each rank's tensor (dim 0, rank order) on the main process; None elsewhere."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class EvalOutput:
    metrics: dict[str, Any]
    """Numbers (and the strings that qualify them, e.g. ``sample_from``) for history.jsonl and
    results.json; the same on every rank."""
    images: dict[str, Path] = field(default_factory=dict)
    """Files the main process wrote, by name, for the experiment logger (W&B)."""


@dataclass
class TaskParts:
    model: torch.nn.Module
    train_set: Dataset
    eval_set: Dataset | None
    loss: Callable[[torch.nn.Module, Any], torch.Tensor]
    """Forward pass and mean loss of a batch already on the device."""
    make_evaluator: Callable[[torch.device], Evaluator] | None
    """Metrics over ``eval_set`` batch by batch; unused when ``evaluate`` is given."""
    primary_metric: str
    """The metric that picks best.pt; higher is better unless ``minimize``."""
    minimize: bool = False
    batch_size: Callable[[Any], int] = lambda batch: len(batch[0])
    info: dict[str, Any] = field(default_factory=dict)
    """Logged once at start-up and kept in results.json (parameter counts, data set sizes,
    how the metrics are computed)."""
    evaluate: Callable[[torch.nn.Module, EvalContext], EvalOutput] | None = None
    """An evaluation that is not a pass over ``eval_set`` (sampling images and scoring them);
    called on every rank with the unwrapped model."""
    state: TaskState | None = None
    collate: Callable[[list[Any]], Any] | None = None
    """The DataLoaders' ``collate_fn`` (None: PyTorch's default)."""
    drop_last: bool = False
    """The training loader drops each epoch's last partial batch (mixup pairs the images of
    a batch, which must be even, as the official recipes' loaders do)."""
    estimate_eval_s: Callable[[torch.nn.Module, EvalContext], tuple[float, str]] | None = None
    """Seconds one ``evaluate`` will take on this device and how that was estimated (e.g. a
    few timed forward passes); called once when the run starts, on the main process, in eval
    mode without gradients. The engine warns when it is over an hour."""


TaskBuilder = Callable[[Any], TaskParts]
"""The run config (``agr_suite.core.config.RunConfig``) -> the task's parts, e.g.
``agr_suite.registry.build_task``; a test passes its own small task."""


def count_parameters(model: torch.nn.Module, trainable_only: bool = True) -> int:
    """Number of scalar parameters, each shared (tied) tensor counted once."""
    unique = {id(p): p for p in model.parameters()}  # parameters() already dedups; be explicit
    return sum(p.numel() for p in unique.values() if p.requires_grad or not trainable_only)
