"""Top-1/top-5 accuracy (percent), mean loss, and the top-1 predictions' statistics
(``top1_examples``, ``top1_pred_classes``, ``top1_pred_entropy``, ``top1_majority``,
``top1_minority``, ``top1_label_entropy``: see :mod:`agr_suite.engine.predictions`), exact under DDP (torchmetrics
and the prediction counts sum over ranks; the engine shards the evaluation set without
padding)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from agr_suite.engine.predictions import PredictionCounts


class ClassificationEvaluator:
    def __init__(self, num_classes: int, device: torch.device) -> None:
        def accuracy(k: int) -> MulticlassAccuracy:
            return MulticlassAccuracy(num_classes=num_classes, top_k=k, average="micro")

        self.top1 = accuracy(1).to(device)
        self.top5 = accuracy(min(5, num_classes)).to(device)
        self.loss = MeanMetric().to(device)
        self.predictions = PredictionCounts(num_classes, device)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, batch) -> None:
        images, labels = batch
        logits = model(images).float()
        self.top1.update(logits, labels)
        self.top5.update(logits, labels)
        self.loss.update(F.cross_entropy(logits, labels, reduction="none"))
        self.predictions.update(logits.argmax(-1), labels)

    def compute(self) -> dict[str, float]:
        return {
            "top1": 100.0 * float(self.top1.compute()),
            **self.predictions.compute("top1"),
            "top5": 100.0 * float(self.top5.compute()),
            "loss": float(self.loss.compute()),
        }
