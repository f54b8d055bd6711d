"""The suite's Slurm launcher (``launcher=slurm``: configs/launcher/slurm.yaml).

It submits exactly as hydra-submitit-launcher's ``submitit_slurm`` does (same config keys,
one array job, the same requeue on preemption and time-out), then waits with
``agr_suite.launch.slurm.SweepWatcher`` (squeue and result files, not sacct: see there why).
Each submitted task is recorded in ``submitted.jsonl`` beside submitit's job folders, so
launching the same sweep again while some of its runs are still queued or running waits for
their tasks and submits only the others. (Hydra imports this module whenever any Hydra app
starts, when it scans ``hydra_plugins``: submitit and the suite are imported by the methods
that use them, tests/plugins/test_plugin_isolation.py checks.)
"""

import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


class SubmititSlurmLauncher(SlurmLauncher):
    def _executor(self) -> Any:
        """The submitit executor, configured as hydra-submitit-launcher 1.2 configures it."""
        import submitit

        params = self.params
        init_keys = {"max_num_timeout"}
        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR,
            folder=params["submitit_folder"],
            **{f"{self._EXECUTOR}_{k}": v for k, v in params.items() if k in init_keys},
        )
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{
                (k if k in base else f"{self._EXECUTOR}_{k}"): v
                for k, v in params.items()
                if k not in init_keys | {"submitit_folder"}
            }
        )
        return executor

    @property
    def _folder(self) -> str:
        return str(self.params["submitit_folder"])

    @property
    def _ntasks(self) -> int:
        """Tasks per job, each of which writes its own result file."""
        return int(self.params.get("nodes", 1)) * max(1, int(self.params["tasks_per_node"]))

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        assert self.config is not None
        assert len(job_overrides) > 0
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        jobs = self._queued_jobs(job_overrides)
        todo = [i for i, job in enumerate(jobs) if job is None]
        if todo:
            runs = [job_overrides[i] for i in todo]
            for i, job in zip(todo, self._submit(runs, [initial_job_idx + i for i in todo])):
                jobs[i] = job
        results: dict[str, Any] = {}
        ended = _wait(jobs, job_overrides, results)
        return [
            _job_return(job, overrides, results.get(job.job_id), ended[job.job_id])
            for job, overrides in zip(jobs, job_overrides)
        ]

    def _queued_jobs(self, job_overrides: Sequence[Sequence[str]]) -> list[Any]:
        """Per run, the job of its task from an earlier launch that squeue still lists as
        queued or running, else None."""
        import submitit

        from agr_suite.launch import slurm

        registry = slurm.registry_path(self._folder)
        records, states = slurm.alive(slurm.read_registry(registry))
        earlier = {tuple(record["overrides"]): record for record in records}
        jobs: list[Any] = []
        for overrides in job_overrides:
            record = earlier.get(tuple(overrides))
            if record is None:
                jobs.append(None)
                continue
            tasks = tuple(range(int(record.get("tasks", self._ntasks))))
            folder = record.get("folder", self._folder)
            jobs.append(submitit.SlurmJob(folder=folder, job_id=record["task"], tasks=tasks))
        if states is None and registry.exists():
            log.warning(
                f"squeue does not answer: runs recorded in {registry} as submitted may be "
                "submitted a second time"
            )
        attached = [job for job in jobs if job is not None]
        if attached:
            ids = sorted({slurm.array_id(job.job_id) for job in attached})
            log.info(
                f"{len(attached)} of these runs are still queued or running in slurm job "
                f"{','.join(ids)}: waiting for them, not submitting them again"
            )
        return jobs

    def _submit(self, runs: list[Sequence[str]], indices: list[int]) -> list[Any]:
        """Submit ``runs`` (the sweep's jobs number ``indices``) as one array job, and record
        each task in the registry."""
        from agr_suite.launch import slurm

        executor = self._executor()
        log.info(f"Submitit 'slurm' sweep output dir : {self.config.hydra.sweep.dir}")
        params = []
        for overrides, idx in zip(runs, indices):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            state = Singleton.get_state()
            params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", state))
        submitted = executor.map_array(self, *zip(*params))
        slurm.record_submission(
            slurm.registry_path(self._folder),
            [(job.job_id, list(overrides)) for job, overrides in zip(submitted, runs)],
            folder=self._folder,
            ntasks=self._ntasks,
        )
        first = slurm.array_id(submitted[0].job_id)
        log.info(
            f"submitted {len(runs)} runs as slurm job {first}; watch: squeue -j {first}; "
            f"cancel: scancel {first}; logs: {Path(self._folder).parent}"
        )
        return submitted


def _outcome(job: Any, results: dict[str, Any]) -> Any:
    """True/False once every task of the job has written its result, else None; the result
    (the run's JobReturn, or the job's own exception) goes into ``results``."""
    if not all(job.task(t).paths.result_pickle.exists() for t in range(job.num_tasks)):
        return None
    if job.job_id not in results:
        try:
            results[job.job_id] = job.results()[0]
        except Exception as error:  # the job's own exception (e.g. timed out too often)
            results[job.job_id] = error
    result = results[job.job_id]
    return isinstance(result, JobReturn) and result.status == JobStatus.COMPLETED


def _wait(
    jobs: list[Any], job_overrides: Sequence[Sequence[str]], results: dict[str, Any]
) -> dict[str, Any]:
    """Wait for every job, printing the sweep's progress (launch.slurm.SweepWatcher); returns
    job id -> True, False or the Slurm state it ended in without a result."""
    from agr_suite.launch import slurm

    watcher = slurm.SweepWatcher(
        {
            job.job_id: (" ".join(filter_overrides(overrides)), partial(_outcome, job, results))
            for job, overrides in zip(jobs, job_overrides)
        },
        say=log.info,
    )
    try:
        return watcher.run()
    except KeyboardInterrupt:
        ids = ",".join(sorted({slurm.array_id(job.job_id) for job in jobs}))
        log.warning(
            f"stopped waiting; the runs keep going in slurm job {ids} (squeue -j {ids}, "
            f"scancel {ids}). The same command again waits for them without resubmitting."
        )
        raise


def _job_return(job: Any, overrides: Sequence[str], result: Any, ended: Any) -> JobReturn:
    """The run's JobReturn, or a failed one that says why: the job's own exception, or, for a
    task that ended without a result file, the end of its log."""
    if isinstance(result, JobReturn):
        return result
    if result is None:
        log_file = job.task(0).paths.stderr
        result = RuntimeError(
            f"slurm task {job.job_id} ended ({ended}) without a result; "
            f"the end of its log {log_file}:\n{_tail(log_file)}"
        )
    return JobReturn(overrides=list(overrides), status=JobStatus.FAILED, _return_value=result)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
