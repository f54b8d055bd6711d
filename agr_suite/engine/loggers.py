"""Where metrics go besides the run folder: W&B (rank 0) and the terminal.

What a W&B run holds (:class:`WandbLogger`; nothing here changes the run's numbers or its
run folder, which it only reads):

- history, on the x-axis ``epoch`` (``define_metric("epoch")``, then each key with
  ``step_metric="epoch"`` as it first appears): every number of the epoch's record that
  :func:`log_epoch` logs, i.e. the line of history.jsonl (``epoch``, ``step``, ``train_loss``,
  ``lr``, ``train_samples_per_s``, ``epoch_time_s``, ``agr_removed_fraction``, and the
  evaluation's metrics: ``top1``/``top5``/``loss``, ``fid``/``is_mean``/``is_std``,
  ``sop_acc``/``mlm_acc``/``sop_loss``/``mlm_loss`` ...), the accuracies' prediction
  statistics as ``predictions/<key>``, and the evaluation's images (``log_images``). The
  per-step AGR diagnostics (``agr/...``, from agr_record) keep W&B's own step ``_step``: the
  optimizer step, history.jsonl's ``step``.
- summary: W&B's own last value of each key, and for each metric with a direction
  (:func:`direction`: max for accuracies and the Inception Score, min for losses and FID)
  ``final/<metric>`` (its value at the last epoch that has it, as results.json's
  ``metrics``) and ``best/<metric>`` (its largest or smallest finite value over the epochs;
  each metric's own best, where results.json's ``best`` is the record of the epoch best by
  the task's primary metric). A resumed run counts the epochs of its earlier sessions (read
  from history.jsonl, which the engine has rewritten from the checkpoint by then).
- config: the resolved run config, as the run folder's config.yaml holds it, plus
  ``run_folder`` (the run folder's absolute path) and ``run_hash``
  (:func:`agr_suite.core.run_identity.config_hash`, the hash a ``folder_hash`` run folder
  is named after).

The terminal (:class:`Progress`) shows each epoch's line, ending with the whole run's
estimated remaining time (``eta 3m12s``; ``eta ?`` before a batch has been timed), and on an
interactive terminal a progress bar with the same estimate (:class:`RunEta`).
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agr_suite.core.config import RunConfig, as_dict
from agr_suite.core.durations import format_duration
from agr_suite.core.run_identity import config_hash
from agr_suite.engine import predictions
from agr_suite.engine.run_folder import RunFolder

# The direction of each metric the tasks report (checked against tables/*.yaml's
# higher_is_better by tests/engine/test_wandb_keys.py); other names by their form below.
MAXIMIZE = frozenset({"top1", "top5", "is_mean", "sop_acc", "mlm_acc"})
MINIMIZE = frozenset({"train_loss", "loss", "fid", "sop_loss", "mlm_loss"})


def direction(key: str) -> str | None:
    """Which way a metric improves: ``max`` for an accuracy (``top<k>``, ``*_acc``) or the
    Inception Score, ``min`` for a loss (``loss``, ``*_loss``) or FID, None for anything else
    (the learning rate, throughput, prediction statistics, AGR diagnostics, the unigram
    reference loss)."""
    if key in MAXIMIZE or re.fullmatch(r"top\d+|\w+_acc", key):
        return "max"
    if key in MINIMIZE or re.fullmatch(r"\w+_loss", key):
        return "min"
    return None


class NullLogger:
    run_id: str | None = None

    def log(self, metrics: dict[str, Any], step: int) -> None:
        pass

    def log_epoch(self, metrics: dict[str, Any], step: int) -> None:
        """An epoch's record (``metrics`` has ``epoch``); a plain ``log`` unless the logger
        treats epochs apart."""
        self.log(metrics, step)

    def log_images(self, images: dict[str, Any], step: int) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


DEFAULT_PROJECT = "agr-suite"


class WandbLogger:
    """W&B run with the resolved config; resumes the same W&B run after a restart.

    W&B's own environment variables work as everywhere: a ``logger.*`` value left null is
    W&B's (``mode``: WANDB_MODE or `wandb offline`, else online; ``entity``: WANDB_ENTITY or
    the account's default; ``project``: WANDB_PROJECT, else agr-suite; ``dir``: WANDB_DIR,
    else the run folder; the key: WANDB_API_KEY or `wandb login`). A value set in the config
    (``logger.mode=offline``) overrides the environment. The keys: the module's docstring."""

    def __init__(self, cfg: RunConfig, run_dir, run_id=None):
        import wandb

        settings = cfg.logger
        self._wandb = wandb
        self.run = wandb.init(
            project=settings.project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
            entity=settings.entity,
            group=settings.group,
            name=settings.run_name,
            tags=list(settings.tags),
            mode=settings.mode,
            dir=str(settings.dir or os.environ.get("WANDB_DIR") or run_dir),
            config={
                **as_dict(cfg),
                "run_folder": str(Path(run_dir).resolve()),
                "run_hash": config_hash(cfg),
            },
            id=run_id,
            resume="allow" if run_id else None,
        )
        self.run_id = self.run.id
        self.run.define_metric("epoch")
        self._defined: set[str] = {"epoch"}
        self._final: dict[str, float] = {}
        self._best: dict[str, float] = {}
        for record in RunFolder(run_dir).read_history():  # the earlier sessions' epochs
            self._track(record)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        self.run.log(metrics, step=step)

    def log_epoch(self, metrics: dict[str, Any], step: int) -> None:
        self._define(metrics)
        self.run.log(metrics, step=step)
        self._track(metrics)
        summary = {f"final/{k}": v for k, v in self._final.items()}
        summary.update({f"best/{k}": v for k, v in self._best.items()})
        if summary:
            self.run.summary.update(summary)

    def log_images(self, images: dict[str, Any], step: int) -> None:
        """Image files (e.g. sample grids) by name, as W&B images."""
        self._define(images)
        self.run.log(
            {name: self._wandb.Image(str(path)) for name, path in images.items()}, step=step
        )

    def finish(self, exit_code: int = 0) -> None:
        self._wandb.finish(exit_code=exit_code)

    def _define(self, keys) -> None:
        for key in keys:
            if key not in self._defined:
                self.run.define_metric(key, step_metric="epoch")
                self._defined.add(key)

    def _track(self, record: dict[str, Any]) -> None:
        """The final and best values of the metrics with a direction in an epoch's record
        (a missing or non-finite value is never best; null is history.jsonl's NaN)."""
        for key, value in record.items():
            way = direction(key)
            if way is None or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            self._final[key] = value
            if not math.isfinite(value):
                continue
            best = self._best.get(key)
            if best is None or (value > best if way == "max" else value < best):
                self._best[key] = value


def make_logger(cfg: RunConfig, run_dir, is_main: bool, run_id: str | None = None):
    name = cfg.logger.name
    if not is_main or name == "none":
        return NullLogger()
    return WandbLogger(cfg, run_dir, run_id)  # the schema allows none and wandb only


def log_epoch(
    logger, progress: Progress, record: dict[str, Any], metrics: dict, step: int, epochs: int
) -> None:
    """An epoch's record to the logger and its line to the terminal, with the run's estimated
    remaining time. The accuracies' prediction statistics (agr_suite.engine.predictions) go
    to W&B in a section of their own and stay off the progress line."""
    statistics = {key for k in metrics for key in predictions.statistic_keys(k)}
    logger.log_epoch(
        {
            (f"predictions/{k}" if k in statistics else k): v
            for k, v in record.items()
            if isinstance(v, (int, float))
        },
        step=step,
    )
    numbers = [k for k, v in metrics.items() if isinstance(v, (int, float)) and k not in statistics]
    shown = " ".join(f"{k} {record[k]:.4g}" for k in ["train_loss", *numbers])
    progress.line(
        f"epoch {record['epoch']}/{epochs} {shown} ({record['train_samples_per_s']:.0f} "
        f"samples/s) eta {progress.eta.text()}"
    )


class RunEta:
    """The whole run's remaining time: its batches left (the rest of this epoch, then every
    later epoch) times the seconds per batch measured in this session.

    A batch's time is measured as wall time over batches done since an anchor, so it also
    carries the evaluations, checkpoints and logging between epochs, spread over the
    batches. The anchor leaves out the warm-up: it is the end of the session's first batch
    (compilation, autotuning, the loader's start), and from the end of the first batch of the
    session's second epoch on, that point instead (the whole first epoch and its first
    evaluation out). No batch timed yet: no estimate (None, ``?``). ``clock``: seconds, e.g.
    ``time.monotonic`` (a test injects its own)."""

    def __init__(self, total_epochs: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.total_epochs = total_epochs
        self.clock = clock
        self.epoch = 0  # the current epoch, 0-based
        self.batches = 0  # per epoch
        self.done_in_epoch = 0
        self.done = 0  # batches done in this session
        self.epochs_started = 0  # in this session
        self.anchors: list[tuple[float, int]] = []  # (time, batches done then)

    def start_epoch(self, epoch: int, batches: int) -> None:
        self.epoch, self.batches, self.done_in_epoch = epoch, batches, 0
        self.epochs_started += 1

    def batch_done(self, count: int = 1) -> None:
        self.done += count
        self.done_in_epoch += count
        first_of_epoch = self.done_in_epoch == count
        if not self.anchors or (first_of_epoch and self.epochs_started == 2):
            self.anchors.append((self.clock(), self.done))

    def seconds_per_batch(self) -> float | None:
        now = self.clock()
        for at, done in reversed(self.anchors):  # the latest anchor with a batch since
            if self.done > done:
                return (now - at) / (self.done - done)
        return None

    def batches_left(self) -> int:
        later = max(0, self.total_epochs - self.epoch - 1)
        return max(0, self.batches - self.done_in_epoch) + later * self.batches

    def seconds_left(self) -> float | None:
        left = self.batches_left()
        if left == 0 and self.epochs_started:
            return 0.0
        rate = self.seconds_per_batch()
        return None if rate is None else rate * left

    def text(self) -> str:
        seconds = self.seconds_left()
        return format_duration(seconds)


class Progress:
    """A rich progress bar on an interactive terminal (rank 0), plain lines otherwise; both
    with the run's estimated remaining time (:class:`RunEta`)."""

    def __init__(
        self, enabled: bool, total_epochs: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.enabled = enabled
        self.eta = RunEta(total_epochs, clock)
        self.bar = None
        if enabled and sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(
                TextColumn("epoch {task.fields[epoch]}/" + str(total_epochs)),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TextColumn("eta {task.fields[eta]}"),
            )
            self.bar.start()
        self.task = None

    def start_epoch(self, epoch: int, batches: int) -> None:
        self.eta.start_epoch(epoch, batches)
        if self.bar is not None:
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task(
                "train", total=batches, epoch=epoch + 1, info="", eta=self.eta.text()
            )

    def update(self, info: str) -> None:
        self.eta.batch_done()
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, advance=1, info=info, eta=self.eta.text())

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.console.print(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
