"""Checks of the machine a run needs, before any work starts and before any file of an
existing run is touched: the run folder can be written, the device is there, W&B can log.
Each raises :class:`agr_suite.core.errors.ConfigError` (exit code 2 from ``run.py``).

:class:`RunFolderCheck` is a Hydra callback (``hydra.callbacks`` in configs/config.yaml): Hydra
creates the run folder before it calls ``run.py``'s main, so the folder check runs there.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from agr_suite.core.config import LoggerConfig, RunConfig
from agr_suite.core.errors import ConfigError, exit_on_user_error

WANDB_OFFLINE_MODES = ("offline", "dryrun", "disabled")


def check_writable(path: str | os.PathLike, setting: str = "paths.runs") -> None:
    """Create the folder ``path`` (and its parents) and a file in it; ConfigError naming the
    ``setting`` that chose it, the folder and why it cannot be written otherwise. Leaves no
    file behind."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        existing = next((p for p in [folder, *folder.parents] if p.exists()), None)
        if existing is not None and not existing.is_dir():
            where = f"{existing} is a file, not a folder"
        elif existing is not None and existing != folder:
            where = f"cannot create a folder in {existing}"
        else:
            where = f"cannot write in {folder}"
        reason = error.strerror or type(error).__name__
        raise ConfigError(
            f"{setting}: cannot write the run folder {folder}: {where} ({reason}). Choose a "
            "folder this user can write: paths.runs=... or the AGR_RUNS_DIR variable."
        ) from None


def check_device(devices: str) -> None:
    """ConfigError when ``trainer.devices`` asks for a GPU this machine does not have."""
    from agr_suite.engine.distributed import resolve_device

    resolve_device(devices)


def wandb_mode(settings: LoggerConfig) -> str:
    """The mode a W&B run of this logger config gets: ``logger.mode`` when set, else W&B's own
    choice (WANDB_MODE, a `wandb offline` settings file, else online)."""
    import wandb

    if settings.mode:
        return str(settings.mode)
    return str(wandb.setup().settings.mode)


def check_wandb(settings: LoggerConfig) -> None:
    """With ``logger=wandb`` in an online mode, W&B must find credentials (WANDB_API_KEY,
    ``wandb login``'s netrc entry, an identity token file); else a ConfigError saying the
    three ways on. Never prompts and never reaches the network."""
    if settings.name != "wandb":
        return
    mode = wandb_mode(settings)
    if mode in WANDB_OFFLINE_MODES:
        return
    import wandb

    if settings.mode:  # logger.mode=online overrides WANDB_MODE for this check too
        wandb.setup(settings=wandb.Settings(mode=settings.mode))
    if wandb.login(prompt=False, verify=False):
        return
    raise ConfigError(
        f"logger=wandb logs online (mode {mode!r}), but W&B has no API key on this machine "
        "(no WANDB_API_KEY, no `wandb login` entry in ~/.netrc). Log in once with `wandb "
        "login` (or set WANDB_API_KEY); or log offline with WANDB_MODE=offline (or "
        "logger.mode=offline) and upload later with `wandb sync`; or turn W&B off with "
        "logger=none."
    )


def preflight(cfg: RunConfig, is_main: bool = True) -> None:
    """Every machine check a run config needs, in the order a user would fix them."""
    check_device(cfg.trainer.devices)
    if is_main:  # only the main process logs to W&B
        check_wandb(cfg.logger)


try:
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover - Hydra is a dependency of the suite
    Callback = object


class RunFolderCheck(Callback):
    """Hydra callback: the run folder (``hydra.run.dir``) or the sweep folder
    (``hydra.sweep.dir``) must be writable before Hydra creates it; exit code 2 otherwise."""

    def on_run_start(self, config, **kwargs: Any) -> None:
        with exit_on_user_error():
            check_writable(config.hydra.run.dir, f"paths.runs={config.paths.runs}")

    def on_multirun_start(self, config, **kwargs: Any) -> None:
        with exit_on_user_error():
            check_writable(config.hydra.sweep.dir, f"paths.runs={config.paths.runs}")
