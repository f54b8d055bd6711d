"""The engine trains whatever task it is handed: a task of this test's own (least squares on
a fixed line), checked against the closed-form solution, with no task module involved."""

from __future__ import annotations

import json

import torch
from torch.utils.data import TensorDataset

from agr_suite.core.config import compose
from agr_suite.engine import train
from agr_suite.engine.task_parts import TaskParts


class MeanSquaredError:
    """The evaluator protocol: batches in, one metric out."""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def update(self, model, batch) -> None:
        x, y = batch
        self.total += float(((model(x) - y) ** 2).sum())
        self.count += len(y)

    def compute(self) -> dict[str, float]:
        return {"mse": self.total / self.count}


def line_task(cfg) -> TaskParts:
    """y = 3x - 1 + small noise; the model is one linear unit."""
    generator = torch.Generator().manual_seed(0)
    x = torch.linspace(-1, 1, 64).unsqueeze(1)
    y = 3 * x - 1 + 0.01 * torch.randn(x.shape, generator=generator)
    data = TensorDataset(x, y)
    model = torch.nn.Linear(1, 1)

    def loss(model, batch):
        inputs, targets = batch
        return torch.nn.functional.mse_loss(model(inputs), targets)

    return TaskParts(
        model=model,
        train_set=data,
        eval_set=data,
        loss=loss,
        make_evaluator=lambda device: MeanSquaredError(),
        primary_metric="mse",
        minimize=True,
        info={"params": 2},
    )


def test_the_engine_fits_a_task_it_is_handed(tmp_path):
    cfg = compose(
        [
            "dataset=digits",  # only names the run; the task brings its own data
            "optimizer=adamw",
            "optimizer.lr=0.05",
            "optimizer.weight_decay=0",
            "scheduler=constant",
            "trainer.devices=cpu",
            "trainer.num_workers=0",
            "trainer.batch_size=16",
            "trainer.epochs=40",
            "trainer.log_every=1",
        ]
    )
    results = train(cfg, tmp_path, line_task)
    assert results["status"] == "completed" and results["epochs_completed"] == 40

    # The independent reference: the least-squares line of the same data.
    parts = line_task(cfg)
    x, y = parts.train_set.tensors
    design = torch.cat([x, torch.ones_like(x)], dim=1)
    solution = torch.linalg.lstsq(design, y).solution.squeeze()
    weights = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["model"]
    fitted = torch.stack([weights["weight"].squeeze(), weights["bias"].squeeze()])
    torch.testing.assert_close(fitted, solution, atol=0.02, rtol=0)
    best = json.loads((tmp_path / "results.json").read_text())["best"]
    assert best["mse"] < 0.001  # the noise variance is 1e-4
