"""Slurm sweeps without accounting: what is still queued, and the sweep's own progress.

hydra-submitit-launcher waits through submitit, which asks ``sacct`` for every job's state.
On a cluster without accounting each poll prints "Bypassing sacct error" warnings, and a
task that ends without a result (cancelled, killed, out of memory) is waited for forever.
The suite's Slurm launcher (``hydra_plugins/agr_slurm``) waits with ``SweepWatcher``
instead: a task is done when submitit's result files exist, or when ``squeue`` has shown it
ended (or has forgotten it) for ``grace_s`` seconds without them (cancelled, for one:
``scancel``, then the same command again resumes the sweep). It prints one line each
time the counts change (submitted, pending, running, finished, failed) and one per requeue.

It also records what it submitted (``submitted.jsonl`` beside submitit's job folders), so
scripts/reproduce.py does not submit a run again while its task is still queued or running.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

# squeue states of a job that is not over yet (squeue(1), JOB STATE CODES)
ALIVE = frozenset(
    "PENDING CONFIGURING RUNNING COMPLETING SUSPENDED STOPPED SIGNALING STAGE_OUT RESIZING "
    "REQUEUED REQUEUE_FED REQUEUE_HOLD RESV_DEL_HOLD SPECIAL_EXIT".split()
)
RUNNING = frozenset({"RUNNING", "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT"})
REGISTRY = "submitted.jsonl"


def squeue(job_ids: Iterable[str]) -> dict[str, tuple[str, str]] | None:
    """``{task id: (state, start time)}`` of the given jobs (an array's id lists every task,
    as ``123_4``), ended ones too while Slurm remembers them (MinJobAge, 300 s by default);
    jobs it no longer knows are absent. None when squeue cannot answer (no Slurm here, the
    controller is down): the caller then knows nothing, not that they ended."""
    ids = sorted({str(job_id) for job_id in job_ids})
    if not ids:
        return {}
    try:
        result = subprocess.run(
            ["squeue", "--noheader", "--array", "--states=all", "--jobs", ",".join(ids)]
            + ["--format", "%i|%T|%S"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        # every id unknown: squeue answers "Invalid job id specified" and exits 1
        return {} if "invalid job id" in result.stderr.lower() else None
    states = {}
    for line in result.stdout.splitlines():
        task, state, start = (line.strip().split("|") + ["", ""])[:3]
        if task:
            states[task] = (state, start)
    return states


def array_id(task_id: str) -> str:
    return task_id.split("_")[0]


# ------------------------------------------------------------------ what was submitted


def registry_path(submitit_folder: str | Path) -> Path:
    """``.submitit/submitted.jsonl`` for submitit's ``.submitit/%j`` (the folder itself
    when it has no job-id pattern)."""
    folder = Path(str(submitit_folder))
    return folder.parent / REGISTRY if "%" in folder.name else folder / REGISTRY


def record_submission(
    registry: Path, tasks: list[tuple[str, list[str]]], folder: str, ntasks: int
) -> None:
    """Append one line per submitted array task: its Slurm id, the run's overrides, and
    what it takes to find its result files again (submitit's folder, tasks per job)."""
    registry.parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with registry.open("a") as handle:
        for task_id, overrides in tasks:
            record = {"task": task_id, "overrides": list(overrides), "folder": folder}
            handle.write(json.dumps({**record, "tasks": ntasks, "submitted": stamp}) + "\n")


def read_registry(path: Path) -> list[dict]:
    """The records of ``path`` (none when it does not exist)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a killed writer
            continue
        if isinstance(record, dict) and "task" in record and "overrides" in record:
            records.append(record)
    return records


def alive(records: list[dict]) -> tuple[list[dict], dict[str, tuple[str, str]] | None]:
    """The records whose task squeue still lists as queued or running, and what squeue
    said (None: it could not answer, so nothing is known to be alive)."""
    states = squeue({array_id(r["task"]) for r in records})
    if states is None:
        return [], None
    return [r for r in records if states.get(r["task"], ("",))[0] in ALIVE], states


# ------------------------------------------------------------------ waiting, with progress


@dataclass
class _Task:
    task_id: str
    label: str
    outcome: Callable[[], bool | None]  # True finished, False failed, None not yet
    state: str = "PENDING"
    started: str = ""  # when its current run started (squeue), to see requeues between polls
    result: bool | None = None
    ended: str | None = None  # why it counts as failed without a result
    gone_since: float | None = None
    requeues: int = 0


@dataclass
class SweepWatcher:
    """Waits for Slurm tasks, printing the sweep's progress through ``say``.

    ``tasks`` maps a task id (``123_4``) to (a label, a function that returns True once the
    task finished, False once it failed, None while there is no result yet)."""

    tasks: dict[str, tuple[str, Callable[[], bool | None]]]
    say: Callable[[str], None] = print
    poll_s: float = 2.0  # result files
    squeue_s: tuple[float, float] = (5.0, 60.0)  # squeue: first interval, the longest
    grace_s: float = 15.0  # ended or forgotten by squeue this long, without a result: failed
    heartbeat_s: float = 600.0
    _tasks: list[_Task] = field(init=False)

    def __post_init__(self) -> None:
        self._tasks = [_Task(t, label, fn) for t, (label, fn) in self.tasks.items()]

    def counts(self) -> dict[str, int]:
        counts = {"pending": 0, "running": 0, "finished": 0, "failed": 0}
        for task in self._tasks:
            if task.result is True:
                counts["finished"] += 1
            elif task.result is False or task.ended:
                counts["failed"] += 1
            elif task.state in RUNNING:
                counts["running"] += 1
            else:
                counts["pending"] += 1
        return counts

    def summary(self) -> str:
        jobs = sorted({array_id(t.task_id) for t in self._tasks}, key=lambda j: (len(j), j))
        counts = ", ".join(f"{n} {name}" for name, n in self.counts().items())
        requeues = sum(t.requeues for t in self._tasks)
        return f"slurm job {','.join(jobs)}: {len(self._tasks)} runs submitted, {counts}" + (
            f" ({requeues} requeued)" if requeues else ""
        )

    def _open(self) -> list[_Task]:
        return [t for t in self._tasks if t.result is None and t.ended is None]

    def _check_results(self) -> None:
        for task in self._open():
            result = task.outcome()
            if result is not None:
                task.result = result
                if result is False:
                    self.say(f"run failed: {task.label} (slurm task {task.task_id})")

    def _check_squeue(self) -> bool:
        open_ = self._open()
        states = squeue({array_id(t.task_id) for t in open_})
        if states is None:
            return False
        now = time.time()
        for task in open_:
            state, started = states.get(task.task_id, ("", ""))
            if state in ALIVE:
                back = state in ("PENDING", "REQUEUED", "REQUEUE_HOLD")
                restarted = state == task.state == "RUNNING" and started != task.started
                if task.state in RUNNING and (back or restarted):
                    task.requeues += 1
                    self.say(
                        f"requeued: {task.label} (slurm task {task.task_id}); it resumes from "
                        "its checkpoint when it starts again"
                    )
                task.state, task.started, task.gone_since = state, started, None
                continue
            task.gone_since = task.gone_since or now
            if now - task.gone_since >= self.grace_s:
                task.result = task.outcome()  # one last look: the result may just have landed
                if task.result is None:
                    task.ended = state or "no longer listed by squeue"
                    self.say(
                        f"run failed: {task.label} (slurm task {task.task_id}) ended "
                        f"({task.ended}) without a result"
                    )
        return True

    def run(self) -> dict[str, bool | str]:
        """Wait until every task finished or failed; returns task id -> True (finished),
        False (failed with a result) or the Slurm state it ended in without one."""
        first, longest = self.squeue_s
        interval, next_squeue = first, 0.0
        last_line, last_said, warned = "", 0.0, False
        while True:
            self._check_results()
            now = time.time()
            if self._open() and now >= next_squeue:
                if not self._check_squeue() and not warned:
                    self.say("squeue does not answer; waiting for the runs' result files")
                    warned = True
                interval = min(longest, interval * 2)
                next_squeue = now + interval
            line = self.summary()
            if line != last_line or now - last_said >= self.heartbeat_s:
                self.say(line)
                if line != last_line:
                    interval, next_squeue = first, min(next_squeue, now + first)
                last_line, last_said = line, now
            if not self._open():
                return {
                    t.task_id: (t.result if t.result is not None else t.ended) for t in self._tasks
                }
            time.sleep(self.poll_s)
