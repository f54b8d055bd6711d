"""The suite's two Hydra sweepers, under which a failed run fails alone: every run of the
sweep runs whatever the others did, and the sweep ends with a summary of the failed runs and
exits 1 (2 when each of them failed on bad input). Hydra's own stops at the first failed
batch, and a run that calls ``sys.exit`` (run.py does, for a diverged run) ends the sweep.

- ``agr_basic`` (the default of ``python run.py -m``, configs/config.yaml): Hydra's basic
  sweeper (cartesian products of ``key=a,b``), finishing so.
- ``run_list`` (``hydra/sweeper=run_list hydra.sweeper.runs_file=FILE``): the explicit list
  of runs in FILE (``runs: [[override, ...], ...]``), each after the command line's
  overrides, all in one ``launch`` call (one Slurm array job with launcher=slurm). A paper
  table is a list of cells whose overrides differ in several keys at once, which cartesian
  products cannot express; scripts/reproduce.py writes its pending runs to such a file.

(Hydra loads plugins only from the ``hydra_plugins`` package, hence this location. It
executes plugin modules without registering them in sys.modules, so the dataclasses below
cannot use ``from __future__ import annotations``: their string annotations would not resolve.
It imports every plugin module whenever any Hydra app starts, the suite's or not: this one
imports Hydra, OmegaConf and PyYAML only, tests/plugins/test_plugin_isolation.py checks.)
"""

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import HydraException
from hydra.types import HydraContext, TaskFunction
from omegaconf import MISSING, DictConfig

log = logging.getLogger(__name__)


@dataclass
class RunListSweeperConf:
    _target_: str = "hydra_plugins.agr_run_list.RunListSweeper"
    runs_file: str = MISSING  # YAML with `runs: [[override, ...], ...]`


@dataclass
class FinishingSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.agr_run_list.FinishingSweeper"


ConfigStore.instance().store(
    group="hydra/sweeper", name="run_list", node=RunListSweeperConf, provider="agr-suite"
)
ConfigStore.instance().store(
    group="hydra/sweeper", name="agr_basic", node=FinishingSweeperConf, provider="agr-suite"
)


class RunExited(RuntimeError):
    """A run that ended with ``sys.exit(code)``, code != 0 (it printed why)."""

    def __init__(self, code: Any) -> None:
        super().__init__(f"the run exited with status {code}")
        self.code = code


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
            raise RunExited(exit_.code) from None


def read_runs_file(path: str | Path) -> list[list[str]]:
    data = yaml.safe_load(Path(path).read_text())
    runs = data.get("runs") if isinstance(data, dict) else None
    if not isinstance(runs, list) or not all(
        isinstance(run, list) and all(isinstance(o, str) for o in run) for run in runs
    ):
        raise HydraException(f"{path}: expected `runs:` with a list of override lists")
    return runs


class FinishingSweeper(BasicSweeper):
    """Hydra's basic sweeper, every run of it run: see the module's docstring."""

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        super().setup(
            hydra_context=hydra_context, task_function=ExitAsFailure(task_function), config=config
        )

    def sweep(self, arguments: list[str]) -> list[JobReturn]:
        """BasicSweeper.sweep (Hydra 1.3) without its check of each batch's results, which
        raises the first failed run's error and drops the later batches."""
        assert self.config is not None and self.launcher is not None
        assert self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides([*self._parse_config(), *arguments])
        self.overrides = self.split_arguments(overrides, self.max_batch_size)
        jobs: list[list[str]] = []
        returns: list[JobReturn] = []
        while not self.is_done():
            batch = self.get_job_batch()
            self.validate_batch_is_legal(batch)  # composes every run: a bad one stops here
            returns += self.launcher.launch(batch, initial_job_idx=len(jobs))
            jobs += [list(job) for job in batch]
        finish(jobs, returns)
        return returns


class RunListSweeper(FinishingSweeper):
    """The runs of a runs file, each after the command line's overrides, in one launch."""

    def __init__(self, runs_file: str) -> None:
        super().__init__(max_batch_size=None)
        self.runs_file = runs_file

    def sweep(self, arguments: list[str]) -> list[JobReturn]:
        assert self.launcher is not None
        jobs = [[*arguments, *run] for run in read_runs_file(self.runs_file)]
        if not jobs:
            log.info(f"{self.runs_file}: no runs to launch")
            return []
        returns = list(self.launcher.launch(jobs, initial_job_idx=0))
        finish(jobs, returns)
        return returns


def finish(jobs: list[list[str]], returns: list[JobReturn]) -> None:
    """Log one line per failed run (its overrides, why, its run folder) and end the sweep
    with exit status 1, or 2 when every failed run failed on bad input (run.py's exit 2)."""
    failed = [(j, r) for j, r in zip(jobs, returns) if r.status != JobStatus.COMPLETED]
    if not failed:
        return
    lines = [f"{len(failed)} of {len(jobs)} runs failed; the others ran:"]
    for job, result in failed:
        folder = _run_folder(result)
        where = f"\n      run folder: {folder} (results.json says why)" if folder else ""
        lines.append(f"  {' '.join(job)}\n      {_failure(result)}{where}")
    log.error("\n".join(lines))
    bad_input = all(getattr(_error(r), "code", None) == 2 for _, r in failed)
    raise SystemExit(2 if bad_input else 1)


def _run_folder(result: JobReturn) -> str | None:
    try:
        return str(result.hydra_cfg.hydra.runtime.output_dir)
    except AttributeError:  # a Slurm task that ended without a result has no config
        return None


def _error(result: JobReturn) -> BaseException | None:
    """The failed run's exception (JobReturn.return_value would raise it, printing a line)."""
    error = result._return_value if result.status == JobStatus.FAILED else None
    return error if isinstance(error, BaseException) else None


def _failure(result: JobReturn) -> str:
    error = _error(result)
    if error is None:
        return str(result.status)
    if isinstance(error, RunExited):
        return str(error)
    text = f"{type(error).__name__}: {error}".strip().splitlines()
    return "\n      ".join(text[:1] + (["..."] if len(text) > 4 else []) + text[1:][-3:])
