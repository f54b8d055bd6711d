"""What a classifier's argmax predictions look like over an evaluation set, exact under DDP.

A model that collapsed to one answer (always the same sentence order, always the most common
token) still scores an accuracy; these statistics say whether it did. For an accuracy metric
``K``, :meth:`PredictionCounts.compute` gives

- ``K_examples``: how many predictions were scored (examples, or predicted tokens);
- ``K_pred_classes``: how many distinct classes the argmax predictions take;
- ``K_pred_entropy``: the entropy, in bits, of the predicted classes' distribution (0 when one
  class is always predicted);
- ``K_majority``: the accuracy (%) of always predicting the set's most common true label;
- ``K_minority``: the accuracy (%) of always predicting its least common label among all the
  classes the model can output (0 when some class never occurs);
- ``K_label_entropy``: the entropy, in nats, of the set's true labels: the cross-entropy of
  the best prediction that ignores the input (the set's own label shares; for MLM the
  unigram entropy of the predicted tokens).

A model whose predictions ignore the input scores, in expectation, between ``K_minority`` and
``K_majority``, and its cross-entropy loss is at least ``K_label_entropy``. Each rank counts
the predicted and the true labels it saw; ``compute`` adds the counts over the ranks
(``all_reduce``, float64: exact for any realistic count) first.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

__all__ = ["STATISTICS", "PredictionCounts", "statistic_keys"]

STATISTICS = ("examples", "pred_classes", "pred_entropy", "majority", "minority", "label_entropy")


def statistic_keys(metric: str) -> tuple[str, ...]:
    """The keys :meth:`PredictionCounts.compute` adds for the accuracy ``metric``."""
    return tuple(f"{metric}_{name}" for name in STATISTICS)


class PredictionCounts:
    """Histograms of the predicted and of the true classes, kept on the device."""

    def __init__(self, num_classes: int, device: torch.device) -> None:
        self.num_classes = num_classes
        # row 0: how often each class was predicted; row 1: how often it was the true label
        self.counts = torch.zeros(2, num_classes, dtype=torch.float64, device=device)

    @torch.no_grad()
    def update(self, predicted: torch.Tensor, target: torch.Tensor) -> None:
        """``predicted``, ``target``: class indices of the same scored items (any shape)."""
        for row, labels in enumerate((predicted, target)):
            self.counts[row] += torch.bincount(labels.flatten(), minlength=self.num_classes)

    def compute(self, metric: str) -> dict[str, float]:
        """The six statistics, over all ranks, named after ``metric``; with nothing counted,
        zero counts and NaN for the rest (the engine treats NaN as a failed evaluation)."""
        counts = self.counts.clone()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts)
        predicted, true = counts.cpu()
        total = float(true.sum())
        values = [total, float((predicted > 0).sum())]
        if total:
            values += [
                _entropy(predicted, total) / math.log(2),
                100.0 * float(true.max()) / total,
                100.0 * float(true.min()) / total,
                _entropy(true, total),
            ]
        else:
            values += [math.nan] * 4
        return dict(zip(statistic_keys(metric), values))


def _entropy(counts: torch.Tensor, total: float) -> float:
    """The entropy, in nats, of the distribution ``counts / total``."""
    shares = counts[counts > 0] / total
    return float(-(shares * shares.log()).sum()) + 0.0  # + 0.0: no -0.0
