"""A tiny in-process engine run on the digits, for tests that compare whole trajectories."""

from pathlib import Path

import torch

from agr_suite.config import compose
from agr_suite.engine import train
from agr_suite.tasks import build_task

TINY_DIGITS = [
    "dataset=digits",
    "dataset.augment=false",
    "model=resnet18",
    "model.base_width=4",
    "trainer.devices=cpu",
    "trainer.num_workers=0",
    "trainer.epochs=2",
    "trainer.limit_batches=3",
    "trainer.batch_size=32",
]


def tiny_run(folder: Path, overrides: list[str]) -> tuple[dict, dict[str, torch.Tensor]]:
    """(results.json, the final weights) of a run of TINY_DIGITS + ``overrides`` in ``folder``."""
    results = train(compose([*TINY_DIGITS, *overrides]), folder, build_task)
    last = torch.load(folder / "checkpoints" / "last.pt", weights_only=False)
    return results, last["model"]
