"""Top-1/top-5 accuracy (percent), mean loss, and the top-1 predictions' statistics
(``top1_examples``, ``top1_pred_classes``, ``top1_pred_entropy``, ``top1_majority``,
``top1_minority``, ``top1_label_entropy``: see :mod:`agr_suite.engine.predictions`), exact
under DDP (torchmetrics and the prediction counts sum over ranks; the engine shards the
evaluation set without padding). Given the EMA of the weights as a model, the same batches
score it too: ``ema_top1``, ``ema_top5`` and ``ema_loss``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from agr_suite.engine.predictions import PredictionCounts


class _Scores:
    """Top-1, top-5 and mean cross-entropy over the batches seen."""

    def __init__(self, num_classes: int, device: torch.device) -> None:
        def accuracy(k: int) -> MulticlassAccuracy:
            return MulticlassAccuracy(num_classes=num_classes, top_k=k, average="micro")

        self.top1 = accuracy(1).to(device)
        self.top5 = accuracy(min(5, num_classes)).to(device)
        self.loss = MeanMetric().to(device)

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.top1.update(logits, labels)
        self.top5.update(logits, labels)
        self.loss.update(F.cross_entropy(logits, labels, reduction="none"))

    def compute(self, prefix: str = "") -> dict[str, float]:
        return {
            f"{prefix}top1": 100.0 * float(self.top1.compute()),
            f"{prefix}top5": 100.0 * float(self.top5.compute()),
            f"{prefix}loss": float(self.loss.compute()),
        }


class ClassificationEvaluator:
    def __init__(
        self,
        num_classes: int,
        device: torch.device,
        ema_model: torch.nn.Module | None = None,
    ) -> None:
        self.scores = _Scores(num_classes, device)
        self.predictions = PredictionCounts(num_classes, device)
        self.ema_model = ema_model
        self.ema_scores = _Scores(num_classes, device) if ema_model is not None else None

    @torch.no_grad()
    def update(self, model: torch.nn.Module, batch) -> None:
        images, labels = batch
        logits = model(images).float()
        self.scores.update(logits, labels)
        self.predictions.update(logits.argmax(-1), labels)
        if self.ema_model is not None:
            self.ema_scores.update(self.ema_model(images).float(), labels)

    def compute(self) -> dict[str, float]:
        scores = self.scores.compute()
        metrics = {
            "top1": scores["top1"],
            **self.predictions.compute("top1"),
            "top5": scores["top5"],
            "loss": scores["loss"],
        }
        if self.ema_scores is not None:
            metrics.update(self.ema_scores.compute("ema_"))
        return metrics
