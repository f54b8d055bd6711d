"""A Hydra sweeper that launches an explicit list of runs (``hydra/sweeper=run_list``).

Hydra's basic sweeper only launches cartesian products; a paper table is a list of cells
whose overrides differ in several keys at once (data set and model, weight decay and
experiment name). scripts/reproduce.py writes the pending runs of a table to a YAML file
(``runs: [[override, ...], ...]``) and starts

    python run.py -m hydra/sweeper=run_list hydra.sweeper.runs_file=FILE launcher=slurm

so every run goes to the configured launcher in one ``launch`` call: in this process one
after another with the basic launcher, or as one Slurm array job with
hydra-submitit-launcher. Overrides given on the command line go before each run's own.

A run that fails (including one that calls ``sys.exit``, as run.py does for a bad config or
a missing data set) is reported and the others still run; the sweep then fails, listing them.
(Hydra loads plugins only from the ``hydra_plugins`` package, hence this location. It
executes plugin modules without registering them in sys.modules, so the dataclass below
cannot use ``from __future__ import annotations``: its string annotations would not resolve.)
"""

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import HydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import MISSING, DictConfig

log = logging.getLogger(__name__)


@dataclass
class RunListSweeperConf:
    _target_: str = "hydra_plugins.agr_run_list.RunListSweeper"
    runs_file: str = MISSING  # YAML with `runs: [[override, ...], ...]`


ConfigStore.instance().store(
    group="hydra/sweeper", name="run_list", node=RunListSweeperConf, provider="agr-suite"
)


class ExitAsFailure:
    """Wraps the task function so that ``sys.exit(code != 0)`` fails that run only: Hydra's
    launchers catch exceptions per job, but a SystemExit would end the whole sweep.

    In a Slurm task (its own process) the exit goes through: submitit's handler for
    preemption and time-out requeues the job and then exits this way, and the requeued task
    must not leave behind a result that says the run failed."""

    def __init__(self, task_function: TaskFunction) -> None:
        self.task_function = task_function
        functools.update_wrapper(self, task_function)

    def __call__(self, cfg: DictConfig) -> Any:
        try:
            return self.task_function(cfg)
        except SystemExit as exit_:
            if exit_.code in (0, None):
                return None
            if os.environ.get("SUBMITIT_EXECUTOR") == "slurm":
                raise
            raise RuntimeError(f"the run exited with status {exit_.code}") from None


def read_runs_file(path: str | Path) -> list[list[str]]:
    data = yaml.safe_load(Path(path).read_text())
    runs = data.get("runs") if isinstance(data, dict) else None
    if not isinstance(runs, list) or not all(
        isinstance(run, list) and all(isinstance(o, str) for o in run) for run in runs
    ):
        raise HydraException(f"{path}: expected `runs:` with a list of override lists")
    return runs


class RunListSweeper(Sweeper):
    def __init__(self, runs_file: str) -> None:
        self.runs_file = runs_file
        self.launcher = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context,
            task_function=ExitAsFailure(task_function),
            config=config,
        )

    def sweep(self, arguments: list[str]) -> list[JobReturn]:
        assert self.launcher is not None
        jobs = [[*arguments, *run] for run in read_runs_file(self.runs_file)]
        if not jobs:
            log.info(f"{self.runs_file}: no runs to launch")
            return []
        returns = list(self.launcher.launch(jobs, initial_job_idx=0))
        failed = [
            (job, result)
            for job, result in zip(jobs, returns)
            if result.status != JobStatus.COMPLETED
        ]
        for job, result in failed:
            log.error(f"run failed: {' '.join(job)}: {_failure(result)}")
        if failed:
            raise HydraException(
                f"{len(failed)} of {len(jobs)} runs failed (see the errors above and each "
                "run folder's results.json)"
            )
        return returns


def _failure(result: JobReturn) -> str:
    try:
        result.return_value  # noqa: B018 - raises the job's exception when it failed
    except Exception as error:  # the job's own exception, whatever it is
        return f"{type(error).__name__}: {error}"
    return str(result.status)
