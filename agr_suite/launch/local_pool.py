"""Run many training runs on this machine at once, every GPU busy (``scripts/reproduce.py
--launcher local`` with GPUs or ``--jobs N``).

Each run is its own process, started in a free *slot*: one GPU (``CUDA_VISIBLE_DEVICES``),
one of K slots sharing a GPU, or on CPU a share of the cores (``OMP_NUM_THREADS``). Its
output goes to its log. A run that fails fails alone: the pool goes on and lists it at the
end. Ctrl-C (or SIGTERM) sends SIGINT to every run, which ends it as an interrupted,
resumable run, and kills whatever is still alive after ``grace_s`` (or at a second Ctrl-C).

Each run that ends prints a progress line with the pool's remaining wall time, estimated
from the runs of this pool that finished (``launch.eta``; weighted by ``PoolJob.cost`` when
every job has one, else by counts; ``eta ?`` until a run has finished)::

    finished  run3 after 21.0 min [3/12 ended, 0 failed, 2 running, eta 1h04m]

Why processes and not threads or one multirun: a CUDA context, a compiled graph and a
crash all belong to a process, so a process per run is what keeps runs independent.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agr_suite.core.durations import format_duration
from agr_suite.launch.eta import remaining_seconds

__all__ = ["PoolJob", "PoolResult", "Slot", "make_slots", "run_pool", "visible_gpus"]

INTERRUPTED = 130  # the shell's exit status after SIGINT


@dataclass(frozen=True)
class Slot:
    """Where one run at a time executes."""

    gpu: str | None
    """The ``CUDA_VISIBLE_DEVICES`` value of runs in this slot (None: CPU)."""
    threads: int | None = None
    """``OMP_NUM_THREADS`` of CPU runs (None: the process's default)."""

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu
        if self.threads is not None:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(self.threads)
        return env

    def describe(self) -> str:
        return f"GPU {self.gpu}" if self.gpu is not None else f"CPU ({self.threads} threads)"


@dataclass(frozen=True)
class PoolJob:
    name: str
    command: list[str]
    log: Path
    cost: float | None = None
    """The run's estimated cost in any unit (e.g. the table spec's GPU-hours per run), which
    weights the ETA; None: unknown (the ETA then counts runs, unless every job has a cost)."""


@dataclass
class PoolResult:
    codes: dict[str, int]
    """Each started job's exit status (negative: killed by that signal)."""
    interrupted: bool = False

    @property
    def failed(self) -> list[str]:
        return [name for name, code in self.codes.items() if code != 0]

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return INTERRUPTED
        return 1 if self.failed else 0


def visible_gpus(environ: dict[str, str] | None = None) -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries for its children:
    the entries of ``CUDA_VISIBLE_DEVICES`` when it is set (indices or UUIDs), else 0..n-1
    for the n devices torch sees."""
    environ = os.environ if environ is None else environ
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        entries = [entry.strip() for entry in listed.split(",") if entry.strip()]
        # CUDA stops at the first invalid entry ("-1" hides every device)
        return list(itertools.takewhile(lambda entry: not entry.startswith("-"), entries))
    import torch

    return [str(index) for index in range(torch.cuda.device_count())]


def make_slots(
    gpus: Sequence[str], *, runs_per_gpu: int = 1, jobs: int | None = None, cpus: int | None = None
) -> list[Slot]:
    """K slots per GPU (GPU-major, so a partial pool spreads over the GPUs first), at most
    ``jobs`` of them; without GPUs, ``jobs`` CPU slots (default 1) sharing the ``cpus`` cores."""
    if runs_per_gpu < 1:
        raise ValueError(f"runs per GPU must be >= 1, got {runs_per_gpu}")
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if gpus:
        slots = [Slot(gpu) for _ in range(runs_per_gpu) for gpu in gpus]
        return slots[:jobs] if jobs is not None else slots
    jobs = jobs or 1
    cpus = cpus or os.cpu_count() or 1
    return [Slot(None, threads=max(1, cpus // jobs)) for _ in range(jobs)]


def _start(job: PoolJob, slot: Slot, base_env: dict[str, str]) -> subprocess.Popen:
    job.log.parent.mkdir(parents=True, exist_ok=True)
    with job.log.open("a") as log:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        log.write(f"==> {stamp} on {slot.describe()}: {' '.join(job.command)}\n")
        log.flush()
        # Its own session: the terminal's Ctrl-C reaches the pool only, which then stops
        # every run in order (and a run started later cannot miss the signal).
        return subprocess.Popen(
            job.command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**base_env, **slot.env()},
            start_new_session=True,
        )


def _signal_all(running: dict[int, tuple[PoolJob, subprocess.Popen]], sig: int) -> None:
    for _, process in running.values():
        if process.poll() is None:
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                pass


def _stop(
    running: dict[int, tuple[PoolJob, subprocess.Popen]],
    codes: dict[str, int],
    grace_s: float,
    say: Callable[[str], None],
) -> None:
    """SIGINT to every run, SIGKILL to those still alive after ``grace_s`` or at a second
    Ctrl-C; every process is reaped before this returns."""
    alive = [job.name for job, process in running.values() if process.poll() is None]
    if alive:
        say(
            f"stopping {len(alive)} runs (interrupted runs keep their last checkpoint; the same "
            f"command resumes them); a second Ctrl-C kills them at once"
        )
    _signal_all(running, signal.SIGINT)
    deadline = time.monotonic() + grace_s
    try:
        while any(p.poll() is None for _, p in running.values()):
            if time.monotonic() > deadline:
                say(f"still running after {grace_s:g} s: killing them")
                break
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    _signal_all(running, signal.SIGKILL)
    for job, process in running.values():
        codes[job.name] = process.wait()


def _eta(
    jobs: Sequence[PoolJob],
    durations: dict[str, float],
    running: Sequence[tuple[PoolJob, float]],
    queue: Sequence[PoolJob],
    slots: int,
) -> str:
    """``eta 1h04m`` for the runs still running (each with the seconds it has run) and those
    in ``queue``, from the ``durations`` of the runs that finished (launch.eta), weighted by
    the jobs' costs when every job has one above 0, else by counts; ``eta ?`` before any run
    has finished."""
    costed = all(job.cost is not None and job.cost > 0 for job in jobs)
    weight = {job.name: job.cost if costed and job.cost else 1.0 for job in jobs}
    seconds = remaining_seconds(
        [(duration, weight[name]) for name, duration in durations.items()],
        [(elapsed, weight[job.name]) for job, elapsed in running],
        [weight[job.name] for job in queue],
        slots,
    )
    return f"eta {format_duration(seconds)}"


def run_pool(
    jobs: Sequence[PoolJob],
    slots: Sequence[Slot],
    *,
    env: dict[str, str] | None = None,
    grace_s: float = 60.0,
    poll_s: float = 0.2,
    say: Callable[[str], None] = lambda line: print(line, flush=True),
) -> PoolResult:
    """Run ``jobs`` in order, one per free slot, until all have ended (or Ctrl-C); a line
    through ``say`` as each starts and as each ends (with the ETA while runs remain)."""
    if not slots:
        raise ValueError("no slots to run in")
    base_env = dict(os.environ if env is None else env)
    queue = list(jobs)
    free = list(range(len(slots)))
    running: dict[int, tuple[PoolJob, subprocess.Popen]] = {}
    codes: dict[str, int] = {}
    started: dict[str, float] = {}
    durations: dict[str, float] = {}  # of the runs that finished (exit 0), for the ETA
    total = len(queue)
    # SIGTERM (e.g. a closed tmux pane, `kill`) stops the pool as Ctrl-C does.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while queue or running:
            while queue and free:
                slot_index = free.pop(0)
                job = queue.pop(0)
                running[slot_index] = (job, _start(job, slots[slot_index], base_env))
                started[job.name] = time.monotonic()
                say(f"started   {job.name} on {slots[slot_index].describe()} (log: {job.log})")
            for slot_index, (job, process) in list(running.items()):
                code = process.poll()
                if code is None:
                    continue
                del running[slot_index]
                free.append(slot_index)
                codes[job.name] = code
                now = time.monotonic()
                seconds = now - started[job.name]
                if code == 0:
                    durations[job.name] = seconds
                failed = sum(c != 0 for c in codes.values())
                state = "finished" if code == 0 else f"FAILED (exit {code}; see {job.log})"
                progress = f"{len(codes)}/{total} ended, {failed} failed, {len(running)} running"
                if queue or running:
                    in_progress = [(j, now - started[j.name]) for j, _ in running.values()]
                    progress += ", " + _eta(jobs, durations, in_progress, queue, len(slots))
                say(f"{state:9s} {job.name} after {seconds / 60:.1f} min [{progress}]")
            time.sleep(poll_s)
    except KeyboardInterrupt:
        _stop(running, codes, grace_s, say)
        return PoolResult(codes, interrupted=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return PoolResult(codes)
