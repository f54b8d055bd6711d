"""agr_suite.engine.predictions: the argmax predictions' statistics against numpy/scipy, and
the counts of two ranks, each over its half of the data, added by ``all_reduce`` before the
statistics are taken (per-rank statistics would not combine)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
from reference import prediction_statistics_reference

from agr_suite.engine.predictions import PredictionCounts

CLASSES = 6


def _data(seed: int = 0):
    """Skewed labels of which class 5 never occurs, and predictions that favour class 0."""
    rng = np.random.default_rng(seed)
    true = rng.choice(CLASSES, size=200, p=[0.4, 0.3, 0.15, 0.1, 0.05, 0.0])
    predicted = np.where(rng.random(200) < 0.5, 0, rng.integers(0, CLASSES, 200))
    return predicted, true


def test_statistics_match_numpy_and_scipy():
    predicted, true = _data()
    counts = PredictionCounts(CLASSES, torch.device("cpu"))
    for part in (slice(0, 70), slice(70, None)):
        counts.update(torch.as_tensor(predicted[part]), torch.as_tensor(true[part]))
    got = counts.compute("acc")
    expected = prediction_statistics_reference("acc", predicted, true, CLASSES)
    assert list(got) == list(expected)  # the key names and their order
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key
    assert got["acc_minority"] == 0  # class 5 never occurs


def test_two_ranks_add_their_counts_before_the_statistics(monkeypatch):
    predicted, true = _data(1)
    ranks = [PredictionCounts(CLASSES, torch.device("cpu")) for _ in range(2)]
    # rank 0 sees mostly one label, rank 1 the rest: their own majorities differ from the whole's
    order = np.argsort(true, kind="stable")
    for counts, half in zip(ranks, np.array_split(order, 2)):
        counts.update(torch.as_tensor(predicted[half]), torch.as_tensor(true[half]))

    def all_reduce(tensor):  # gloo/NCCL's SUM, with the other rank's counts
        tensor += ranks[1].counts

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    got = ranks[0].compute("acc")
    for key, value in prediction_statistics_reference("acc", predicted, true, CLASSES).items():
        assert got[key] == pytest.approx(value, rel=1e-12), key


def test_nothing_counted_gives_zero_counts_and_nan_rates():
    got = PredictionCounts(CLASSES, torch.device("cpu")).compute("acc")
    assert got["acc_examples"] == got["acc_pred_classes"] == 0
    assert all(
        math.isnan(got[k])
        for k in ("acc_pred_entropy", "acc_majority", "acc_minority", "acc_label_entropy")
    )
