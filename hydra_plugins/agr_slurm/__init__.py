"""hydra-submitit-launcher's Slurm launcher, waiting with the suite's own progress
(``launcher=slurm`` selects it: configs/launcher/slurm.yaml).

It submits exactly as ``submitit_slurm`` does (same config keys, one array job, the same
requeue on preemption and time-out), then waits with ``launch.slurm.SweepWatcher``: squeue and
submitit's result files instead of sacct, so a cluster without accounting shows the sweep's
progress (runs submitted, pending, running, finished, failed, requeues) rather than
submitit's repeated "Bypassing sacct error" warnings, and a task that ends without a result
(cancelled, killed) fails that run instead of being waited for forever.

Every submitted task is recorded in ``submitted.jsonl`` beside submitit's job folders (the
folder of ``hydra.launcher.submitit_folder``). Launching the same sweep again while some of
its runs are still queued or running does not submit those runs a second time: the launcher
waits for their tasks and submits only the others. (Hydra loads this module when it scans
``hydra_plugins``; keep its imports light.)
"""

import logging
from collections.abc import Sequence
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

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import submitit

        from agr_suite.launch import slurm

        assert self.config is not None
        assert len(job_overrides) > 0
        folder = str(self.params["submitit_folder"])
        registry = slurm.registry_path(folder)
        ntasks = int(self.params.get("nodes", 1)) * max(1, int(self.params["tasks_per_node"]))
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)

        # Runs of this sweep whose task from an earlier launch is still queued or running.
        queued, states = slurm.alive(slurm.read_registries([registry]))
        earlier = {tuple(r["overrides"]): r for r in queued}
        jobs: list[Any] = [None] * len(job_overrides)
        for i, overrides in enumerate(job_overrides):
            record = earlier.get(tuple(overrides))
            if record is not None:
                jobs[i] = submitit.SlurmJob(
                    folder=record.get("folder", folder),
                    job_id=record["task"],
                    tasks=tuple(range(int(record.get("tasks", ntasks)))),
                )
        if states is None and registry.exists():
            log.warning(
                f"squeue does not answer: runs recorded in {registry} as submitted may be "
                "submitted a second time"
            )
        attached = [i for i, job in enumerate(jobs) if job is not None]
        if attached:
            ids = sorted({slurm.array_id(jobs[i].job_id) for i in attached})
            log.info(
                f"{len(attached)} of these runs are still queued or running in slurm job "
                f"{','.join(ids)}: waiting for them, not submitting them again"
            )

        todo = [i for i, job in enumerate(jobs) if job is None]
        if todo:
            executor = self._executor()
            log.info(f"Submitit 'slurm' sweep output dir : {self.config.hydra.sweep.dir}")
            params: list[tuple[list[str], str, int, str, dict[type, Singleton]]] = []
            for i in todo:
                idx = initial_job_idx + i
                log.info(f"\t#{idx} : {' '.join(filter_overrides(job_overrides[i]))}")
                params.append(
                    (
                        list(job_overrides[i]),
                        "hydra.sweep.dir",
                        idx,
                        f"job_id_for_{idx}",
                        Singleton.get_state(),
                    )
                )
            submitted = executor.map_array(self, *zip(*params))
            for i, job in zip(todo, submitted):
                jobs[i] = job
            slurm.record_submission(
                registry,
                [(jobs[i].job_id, list(job_overrides[i])) for i in todo],
                folder=folder,
                ntasks=ntasks,
            )
            first = slurm.array_id(submitted[0].job_id)
            log.info(
                f"submitted {len(todo)} runs as slurm job {first}; watch: squeue -j {first}; "
                f"cancel: scancel {first}; logs: {Path(folder).parent}"
            )

        outcomes: dict[str, Any] = {}

        def outcome(job: Any) -> Any:
            """True/False once every task of the job has written its result, else None."""
            tasks = [job.task(t) for t in range(job.num_tasks)]
            if not all(t.paths.result_pickle.exists() for t in tasks):
                return None
            if job.job_id not in outcomes:
                try:
                    outcomes[job.job_id] = job.results()[0]
                except Exception as error:  # the job's own exception (e.g. timed out too often)
                    outcomes[job.job_id] = error
            result = outcomes[job.job_id]
            return isinstance(result, JobReturn) and result.status == JobStatus.COMPLETED

        watcher = slurm.SweepWatcher(
            {
                job.job_id: (" ".join(filter_overrides(overrides)), lambda job=job: outcome(job))
                for job, overrides in zip(jobs, job_overrides)
            },
            say=log.info,
        )
        try:
            ended = watcher.run()
        except KeyboardInterrupt:
            ids = ",".join(sorted({slurm.array_id(job.job_id) for job in jobs}))
            log.warning(
                f"stopped waiting; the runs keep going in slurm job {ids} (squeue -j {ids}, "
                f"scancel {ids}). The same command again waits for them without resubmitting."
            )
            raise
        returns = []
        for job, overrides in zip(jobs, job_overrides):
            result = outcomes.get(job.job_id)
            if isinstance(result, JobReturn):
                returns.append(result)
                continue
            if result is None:  # ended without a result file
                log_file = job.task(0).paths.stderr
                result = RuntimeError(
                    f"slurm task {job.job_id} ended ({ended[job.job_id]}) without a result; "
                    f"the end of its log {log_file}:\n{_tail(log_file)}"
                )
            returns.append(
                JobReturn(overrides=list(overrides), status=JobStatus.FAILED, _return_value=result)
            )
        return returns


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
