"""Slurm sweeps without accounting: what is still queued, and the sweep's own progress.

hydra-submitit-launcher waits through submitit, which asks ``sacct`` for every job's state.
On a cluster without accounting each poll prints "Bypassing sacct error" warnings, and a
task that ends without a result (cancelled, killed, out of memory) is waited for forever.
The suite's Slurm launcher (``hydra_plugins/agr_slurm``) waits with ``SweepWatcher``
instead: a task is done when submitit's result files exist, or when ``squeue`` has shown it
ended (or has forgotten it) for ``grace_s`` seconds without them (cancelled, for one:
``scancel``, then the same command again resumes the sweep). It prints one line each
time the counts change (submitted, pending, running, finished, failed), with the sweep's
remaining wall time while tasks remain (``eta 1h04m``, ``eta ?`` until a task has finished:
``SweepWatcher.eta``), and one line per requeue.

It also records what it submitted (``submitted.jsonl`` beside submitit's job folders), so
scripts/reproduce.py does not submit a run again while its task is still queued or running.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from agr_suite.core.durations import format_duration
from agr_suite.launch.eta import remaining_seconds

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


def start_time(start: str) -> float | None:
    """squeue's start time (``%S``, ``2026-01-01T10:00:00``, in this machine's local time:
    squeue prints it so) as seconds since the epoch; None for ``N/A``, ``Unknown`` and the like."""
    try:
        return datetime.fromisoformat(start).timestamp()
    except ValueError:
        return None


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
    running_since: float | None = None  # its current run's start (squeue's, else first seen)
    earlier_s: float = 0.0  # how long it ran before its requeues (as far as polls saw)
    duration: float | None = None  # its whole running time, once it finished


@dataclass
class SweepWatcher:
    """Waits for Slurm tasks, printing the sweep's progress through ``say``.

    ``tasks`` maps a task id (``123_4``) to (a label, a function that returns True once the
    task finished, False once it failed, None while there is no result yet).

    The summary's ETA (:meth:`eta`) is ``launch.eta``'s estimate over the tasks, counted
    alike (no per-task cost): each finished task timed by ``wall_time`` (the run's own
    ``wall_time_s`` from its results, when the caller passes it), else from its start
    (squeue's start time, else the first poll that saw it running) to the poll that saw its
    result, plus what it ran before a requeue; each running task by its time since that
    start (plus before a requeue); the pending tasks in task order, as many at once as the
    most tasks seen running together (at most ``concurrency``, the array's ``%N`` limit,
    when known; that limit alone while none has been seen running). It ignores queue wait:
    a pending task is taken to start as soon as a slot comes free, so a busy cluster, a
    requeue's wait or a partition that gives the sweep fewer slots later all make the
    sweep end later than it says. Failed tasks are not timed (nor waited for), and a
    requeued task that waits to start again is taken to need a whole run."""

    tasks: dict[str, tuple[str, Callable[[], bool | None]]]
    say: Callable[[str], None] = print
    poll_s: float = 2.0  # result files
    squeue_s: tuple[float, float] = (5.0, 60.0)  # squeue: first interval, the longest
    grace_s: float = 15.0  # ended or forgotten by squeue this long, without a result: failed
    heartbeat_s: float = 600.0
    concurrency: int | None = None  # the array's limit on tasks running at once, if known
    wall_time: Callable[[str], float | None] | None = None  # a finished task's seconds
    clock: Callable[[], float] = time.time
    _tasks: list[_Task] = field(init=False)
    _peak: int = field(init=False, default=0)  # the most tasks seen running at once

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

    def _counts_line(self) -> str:
        jobs = sorted({array_id(t.task_id) for t in self._tasks}, key=lambda j: (len(j), j))
        counts = ", ".join(f"{n} {name}" for name, n in self.counts().items())
        requeues = sum(t.requeues for t in self._tasks)
        return f"slurm job {','.join(jobs)}: {len(self._tasks)} runs submitted, {counts}" + (
            f" ({requeues} requeued)" if requeues else ""
        )

    def eta(self) -> float | None:
        """Seconds until the last open task ends, or None while it cannot be known (no task
        timed yet, or tasks pending and none seen running with no known limit): see the
        class docstring for what it counts and what it ignores."""
        now = self.clock()
        finished = [(t.duration, 1.0) for t in self._tasks if t.result and t.duration]
        running, waiting = [], []
        for task in self._open():
            if task.state in RUNNING and task.running_since is not None:
                running.append((now - task.running_since + task.earlier_s, 1.0))
            else:
                waiting.append(1.0)
        slots = min(self._peak, self.concurrency or self._peak) or self.concurrency or 0
        return remaining_seconds(finished, running, waiting, slots)

    def summary(self) -> str:
        """The counts, then the ETA while tasks remain (``eta ?`` until one can be made)."""
        line = self._counts_line()
        return f"{line}, eta {format_duration(self.eta())}" if self._open() else line

    def _open(self) -> list[_Task]:
        return [t for t in self._tasks if t.result is None and t.ended is None]

    def _finish(self, task: _Task, result: bool) -> None:
        """Record a task's result and, when it finished, how long it ran."""
        task.result = result
        if not result:
            return
        seconds = self.wall_time(task.task_id) if self.wall_time is not None else None
        if not isinstance(seconds, (int, float)) or seconds <= 0:
            since = task.running_since
            seconds = self.clock() - since if since is not None else None
        task.duration = None if seconds is None else seconds + task.earlier_s

    def _check_results(self) -> None:
        for task in self._open():
            result = task.outcome()
            if result is not None:
                self._finish(task, result)
                if result is False:
                    self.say(f"run failed: {task.label} (slurm task {task.task_id})")

    def _check_squeue(self) -> bool:
        open_ = self._open()
        states = squeue({array_id(t.task_id) for t in open_})
        if states is None:
            return False
        now = self.clock()
        for task in open_:
            state, started = states.get(task.task_id, ("", ""))
            if state in ALIVE:
                back = state in ("PENDING", "REQUEUED", "REQUEUE_HOLD")
                restarted = state == task.state == "RUNNING" and started != task.started
                since = start_time(started)
                since = since if since is not None and since <= now else None
                if task.state in RUNNING and (back or restarted):
                    task.requeues += 1
                    self.say(
                        f"requeued: {task.label} (slurm task {task.task_id}); it resumes from "
                        "its checkpoint when it starts again"
                    )
                    if task.running_since is not None:  # it ran until its restart, or now
                        end = since if restarted and since is not None else now
                        task.earlier_s += max(end - task.running_since, 0.0)
                    task.running_since = None
                if state in RUNNING and task.running_since is None:
                    task.running_since = since if since is not None else now
                task.state, task.started, task.gone_since = state, started, None
                continue
            task.gone_since = task.gone_since or now
            if now - task.gone_since >= self.grace_s:
                result = task.outcome()  # one last look: the result may just have landed
                if result is not None:
                    self._finish(task, result)
                else:
                    task.ended = state or "no longer listed by squeue"
                    self.say(
                        f"run failed: {task.label} (slurm task {task.task_id}) ended "
                        f"({task.ended}) without a result"
                    )
        self._peak = max(self._peak, sum(t.state in RUNNING for t in self._open()))
        return True

    def run(self) -> dict[str, bool | str]:
        """Wait until every task finished or failed; returns task id -> True (finished),
        False (failed with a result) or the Slurm state it ended in without one."""
        first, longest = self.squeue_s
        interval, next_squeue = first, 0.0
        last_line, last_said, warned = "", 0.0, False
        while True:
            self._check_results()
            now = self.clock()
            if self._open() and now >= next_squeue:
                if not self._check_squeue() and not warned:
                    self.say("squeue does not answer; waiting for the runs' result files")
                    warned = True
                interval = min(longest, interval * 2)
                next_squeue = now + interval
            line = self._counts_line()  # a new line when the counts change, not the ETA
            if line != last_line or now - last_said >= self.heartbeat_s:
                self.say(self.summary())
                if line != last_line:
                    interval, next_squeue = first, min(next_squeue, now + first)
                last_line, last_said = line, now
            if not self._open():
                return {
                    t.task_id: (t.result if t.result is not None else t.ended) for t in self._tasks
                }
            time.sleep(self.poll_s)
