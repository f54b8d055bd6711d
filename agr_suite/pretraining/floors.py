"""Whether a pre-training run's MLM head learned anything beyond the input-free answer.

A masked-language model that ignores its input predicts the training set's most common token
(accuracy = that token's share of the test targets, ``mlm_acc_majority``) and scores a loss of
at least the unigram entropy of the test targets (``mlm_acc_label_entropy``, nats). A run
*learns* when it clears both by a margin fixed before the runs:

- ``mlm_acc >= ACC_TIMES_MAJORITY * mlm_acc_majority`` and
- ``mlm_loss <= mlm_acc_label_entropy - LOSS_BELOW_UNIGRAM``.

[choice] 1.5 times the majority share and 0.3 nats (about 26% lower perplexity than the
unigram model): clear of the evaluation noise of tens of thousands of predicted tokens, and
small enough for a model of a few minutes' CPU training to reach.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["ACC_TIMES_MAJORITY", "LOSS_BELOW_UNIGRAM", "Floors", "mlm_floors"]

ACC_TIMES_MAJORITY = 1.5
LOSS_BELOW_UNIGRAM = 0.3
_KEYS = ("mlm_acc", "mlm_acc_majority", "mlm_loss", "mlm_acc_label_entropy")


@dataclass(frozen=True)
class Floors:
    acc: float
    acc_floor: float
    loss: float
    loss_ceiling: float

    @property
    def learned(self) -> bool:
        return self.acc >= self.acc_floor and self.loss <= self.loss_ceiling

    def describe(self) -> str:
        mark = {True: "meets", False: "misses"}
        return (
            f"MLM accuracy {self.acc:.2f}% {mark[self.acc >= self.acc_floor]} its floor "
            f"{self.acc_floor:.2f}% ({ACC_TIMES_MAJORITY}x the majority token's share); MLM "
            f"loss {self.loss:.3f} {mark[self.loss <= self.loss_ceiling]} its ceiling "
            f"{self.loss_ceiling:.3f} (the test targets' unigram entropy - {LOSS_BELOW_UNIGRAM})"
        )


def mlm_floors(metrics: Mapping[str, float]) -> Floors:
    """The floors of one evaluation's metrics (a ``results.json``'s ``metrics``, or a
    ``history.jsonl`` line); a KeyError names what is missing."""
    missing = [k for k in _KEYS if k not in metrics]
    if missing:
        raise KeyError(f"no {', '.join(missing)} in these metrics (not an MLM evaluation?)")
    return Floors(
        acc=float(metrics["mlm_acc"]),
        acc_floor=ACC_TIMES_MAJORITY * float(metrics["mlm_acc_majority"]),
        loss=float(metrics["mlm_loss"]),
        loss_ceiling=float(metrics["mlm_acc_label_entropy"]) - LOSS_BELOW_UNIGRAM,
    )
