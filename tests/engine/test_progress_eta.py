"""The run's remaining-time estimate (agr_suite/engine/loggers.py: RunEta, Progress): batches
left times the seconds per batch measured since the warm-up, on an injected clock, against
hand computations; on the epoch lines and in the rich bar."""

from __future__ import annotations

import io
import sys

import pytest

from agr_suite.engine.loggers import NullLogger, Progress, RunEta, log_epoch


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_estimate_by_hand_over_a_three_epoch_run():
    """3 epochs of 4 batches. Epoch 1: a 10 s first batch (warm-up, left out), then 2 s per
    batch, then a 4 s evaluation; epoch 2: its first batch ends at 24 s, then 1 s per batch."""
    clock = Clock()
    eta = RunEta(total_epochs=3, clock=clock)
    assert eta.text() == "?"  # nothing measured
    eta.start_epoch(0, 4)
    assert eta.seconds_left() is None
    clock.now = 10.0
    eta.batch_done()  # the warm-up batch: the measurements start at its end
    assert eta.text() == "?"
    clock.now = 12.0
    eta.batch_done()
    # (12 - 10) / 1 batch = 2 s per batch; left: 2 of this epoch + 2 x 4 = 10 batches
    assert eta.batches_left() == 10
    assert eta.seconds_left() == pytest.approx(20.0)
    clock.now = 14.0
    eta.batch_done()
    clock.now = 16.0
    eta.batch_done()
    assert eta.seconds_left() == pytest.approx(2.0 * 8)
    clock.now = 20.0  # after the evaluation: (20 - 10) s / 3 batches, 8 batches left
    assert eta.seconds_left() == pytest.approx(10 / 3 * 8)
    assert eta.text() == "27s"  # 26.7 s, to the nearest second
    clock.now = 21.0
    eta.start_epoch(1, 4)
    clock.now = 24.0
    eta.batch_done()
    # epoch 2's first batch is the new start, with no batch after it yet: still the first
    # measurement, (24 - 10) s / 4 batches, 3 + 4 batches left
    assert eta.seconds_left() == pytest.approx(14 / 4 * 7)
    clock.now = 25.0
    eta.batch_done()
    # from now on epoch 1 is out: (25 - 24) s / 1 batch, 2 + 4 batches left
    assert eta.seconds_left() == pytest.approx(1.0 * 6)
    for now in (26.0, 27.0):
        clock.now = now
        eta.batch_done()
    clock.now = 30.0  # an evaluation of 3 s: (30 - 24) / 3 batches, 4 left
    assert eta.seconds_left() == pytest.approx(6 / 3 * 4)
    eta.start_epoch(2, 4)
    for now in (31.0, 32.0, 33.0, 34.0):
        clock.now = now
        eta.batch_done()
    assert eta.batches_left() == 0 and eta.text() == "0s"


def test_a_resumed_session_counts_only_its_own_epochs_and_times():
    """Resumed after epoch 8 of 10 (5 batches each): its first batch is the warm-up again."""
    clock = Clock()
    eta = RunEta(total_epochs=10, clock=clock)
    eta.start_epoch(8, 5)
    clock.now = 100.0
    eta.batch_done()
    assert eta.text() == "?"
    clock.now = 103.0
    eta.batch_done()
    # 3 s per batch, 3 + 5 batches left
    assert eta.seconds_left() == pytest.approx(24.0)


def test_each_epoch_line_ends_with_the_estimate(capsys):
    clock = Clock()
    progress = Progress(True, total_epochs=2, clock=clock)  # capsys: no terminal, plain lines
    progress.start_epoch(0, 3)
    for now in (5.0, 6.0, 7.0):
        clock.now = now
        progress.update("loss 1")
    clock.now = 9.0  # 4 s for 2 batches since the first: 2 s per batch, 3 left
    record = {"epoch": 1, "step": 3, "train_loss": 0.5, "train_samples_per_s": 10.0, "top1": 5.0}
    log_epoch(NullLogger(), progress, record, {"top1": 5.0}, step=3, epochs=2)
    assert capsys.readouterr().out == "epoch 1/2 train_loss 0.5 top1 5 (10 samples/s) eta 6s\n"


def test_the_rich_bar_shows_the_estimate(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdout", Terminal())
    clock = Clock()
    progress = Progress(True, total_epochs=2, clock=clock)
    try:
        assert progress.bar is not None
        progress.start_epoch(0, 4)
        (task,) = progress.bar.tasks
        assert task.fields["eta"] == "?"
        for now in (3.0, 4.5):
            clock.now = now
            progress.update("loss 1")
        # 1.5 s per batch, 2 + 4 batches left
        assert task.fields["eta"] == "9s"
        assert "eta {task.fields[eta]}" in [
            getattr(c, "text_format", "") for c in progress.bar.columns
        ]
    finally:
        progress.close()
