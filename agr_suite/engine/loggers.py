"""Where metrics go besides the run folder: W&B (rank 0) and the terminal."""

from __future__ import annotations

import os
import sys
from typing import Any

from agr_suite.core.config import RunConfig, as_dict
from agr_suite.engine import predictions


class NullLogger:
    run_id: str | None = None

    def log(self, metrics: dict[str, Any], step: int) -> None:
        pass

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
    (``logger.mode=offline``) overrides the environment."""

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
            config=as_dict(cfg),
            id=run_id,
            resume="allow" if run_id else None,
        )
        self.run_id = self.run.id if self.run is not None else None

    def log(self, metrics: dict[str, Any], step: int) -> None:
        self._wandb.log(metrics, step=step)

    def log_images(self, images: dict[str, Any], step: int) -> None:
        """Image files (e.g. sample grids) by name, as W&B images."""
        self._wandb.log(
            {name: self._wandb.Image(str(path)) for name, path in images.items()}, step=step
        )

    def finish(self, exit_code: int = 0) -> None:
        self._wandb.finish(exit_code=exit_code)


def make_logger(cfg: RunConfig, run_dir, is_main: bool, run_id: str | None = None):
    name = cfg.logger.name
    if not is_main or name == "none":
        return NullLogger()
    return WandbLogger(cfg, run_dir, run_id)  # the schema allows none and wandb only


def log_epoch(
    logger, progress: Progress, record: dict[str, Any], metrics: dict, step: int, epochs: int
) -> None:
    """An epoch's record to the logger and its line to the terminal. The accuracies'
    prediction statistics (agr_suite.engine.predictions) go to W&B in a section of their own
    and stay off the progress line."""
    statistics = {key for k in metrics for key in predictions.statistic_keys(k)}
    logger.log(
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
        f"epoch {record['epoch']}/{epochs} {shown} ({record['train_samples_per_s']:.0f} samples/s)"
    )


class Progress:
    """A rich progress bar on an interactive terminal (rank 0), plain lines otherwise."""

    def __init__(self, enabled: bool, total_epochs: int) -> None:
        self.enabled = enabled
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
            )
            self.bar.start()
        self.task = None

    def start_epoch(self, epoch: int, batches: int) -> None:
        if self.bar is not None:
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task("train", total=batches, epoch=epoch + 1, info="")

    def update(self, info: str) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, advance=1, info=info)

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
