"""The classification evaluator's top-1 prediction statistics against numpy/scipy, on fixed
predictions: a constant predictor, a perfect one and a random one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from reference import prediction_statistics_reference

from agr_suite.classification.metrics import ClassificationEvaluator

CLASSES = 7


class FixedPredictions(torch.nn.Module):
    """Logits looked up by example id (the single input value): 3 for the prediction."""

    def __init__(self, predicted: np.ndarray) -> None:
        super().__init__()
        self.logits = 3.0 * F.one_hot(torch.as_tensor(predicted), CLASSES).float()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits[images[:, 0].long()]


def _labels(rng: np.random.Generator, every_class: bool) -> np.ndarray:
    """60 skewed labels; without ``every_class`` the last class never occurs."""
    weights = np.arange(CLASSES, 0, -1.0)
    if not every_class:
        weights[-1] = 0
    labels = rng.choice(CLASSES, size=60, p=weights / weights.sum())
    if every_class:
        labels[:CLASSES] = np.arange(CLASSES)
    return labels


def _evaluate(predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    model, evaluator = (
        FixedPredictions(predicted),
        ClassificationEvaluator(CLASSES, torch.device("cpu")),
    )
    ids = torch.arange(len(labels), dtype=torch.float32).unsqueeze(1)
    for part in (slice(0, 25), slice(25, None)):  # two batches: the counts carry over
        evaluator.update(model, (ids[part], torch.as_tensor(labels[part])))
    return evaluator.compute()


@pytest.mark.parametrize("every_class", [True, False])
@pytest.mark.parametrize("predictor", ["constant", "perfect", "random"])
def test_top1_prediction_statistics_match_numpy_and_scipy(predictor, every_class):
    rng = np.random.default_rng(0)
    labels = _labels(rng, every_class)
    predicted = {
        "constant": np.full_like(labels, 2),
        "perfect": labels,
        "random": rng.integers(0, CLASSES, labels.shape),
    }[predictor]
    got = _evaluate(predicted, labels)
    expected = prediction_statistics_reference("top1", predicted, labels, CLASSES)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert got["top1"] == pytest.approx(100 * np.mean(predicted == labels))
    assert (got["top1_minority"] > 0) == every_class  # 0 exactly when a class never occurs
    if predictor == "constant":  # one class, no entropy, right exactly where it is the label
        assert got["top1_pred_classes"] == 1 and got["top1_pred_entropy"] == 0
        assert got["top1"] == pytest.approx(100 * np.mean(labels == 2))
    if predictor == "perfect":
        assert got["top1"] == pytest.approx(100)
        assert got["top1_pred_classes"] == len(np.unique(labels))
