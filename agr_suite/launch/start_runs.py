"""Start the pending runs of ``scripts/reproduce.py``: each run its own ``run.py`` process in
the local pool (GPUs, ``--jobs``), all of them in one Hydra multirun on the chosen launcher,
or, without GPUs, ``--shards`` multiruns at once. Every run imports this checkout's code.
Before a Slurm submission the runs' data must be staged (agr_suite.launch.data_check)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from agr_suite.core.errors import USER_ERROR_EXIT_CODE
from agr_suite.launch import local_pool
from agr_suite.report.spec import CONFIGS, PlannedRun, quote_value

ROOT = Path(__file__).resolve().parents[2]


def run_py(*arguments: str) -> list[str]:
    """``python run.py ARGS`` with this interpreter, unbuffered so logs show progress live."""
    return [sys.executable, "-u", str(ROOT / "run.py"), *arguments]


def checkout_env() -> dict[str, str]:
    """This process's environment with this checkout's suite and library (lib/) first on
    PYTHONPATH, so that every run (and submitit's job processes, which unpickle the sweep and
    need the repo's hydra_plugins) imports this checkout's code."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), str(ROOT / "lib"), env.get("PYTHONPATH")])
    )
    return env


def describe(slots: list[local_pool.Slot]) -> str:
    return ", ".join(sorted({slot.describe() for slot in slots}))


def in_pool(
    pending: list[PlannedRun],
    slots: list[local_pool.Slot],
    runs_dir: Path,
    costs: list[float] | None = None,
) -> int:
    """Each pending run as its own run.py process in the first free slot; its output in
    launch.log in its run folder. ``costs`` (the spec's estimate per run) weight the pool's
    remaining-time estimate."""
    jobs = [
        local_pool.PoolJob(
            name=str(run.folder.relative_to(runs_dir))
            if run.folder.is_relative_to(runs_dir)
            else str(run.folder),
            command=run_py(*run.overrides),
            log=run.folder / "launch.log",
            cost=costs[index] if costs else None,
        )
        for index, run in enumerate(pending)
    ]
    print(f"launching {len(jobs)} runs, {len(slots)} at a time ({describe(slots)})", flush=True)
    result = local_pool.run_pool(jobs, slots, env=checkout_env())
    if result.failed:
        print(f"{len(result.failed)} runs failed (their launch.log says why):", file=sys.stderr)
        for job in jobs:
            if job.name in result.failed:
                print(f"  {job.log}", file=sys.stderr)
    return result.exit_code


def submitit_folder(launcher: str, folder: Path) -> list[str]:
    """Where submitit keeps its pickles and logs, for launchers that use it. (Not through
    experiment_name on the command line: that would override the presets' own names and
    move the runs away from the folders the table reads.)"""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("config", overrides=[f"launcher={launcher}"], return_hydra_config=True)
    if "submitit_folder" not in cfg.hydra.launcher:
        return []
    return [f"hydra.launcher.submitit_folder={quote_value(f'{folder}/%j')}"]


def multirun_command(runs: list[PlannedRun], launcher: str, listing: Path) -> list[str]:
    """`run.py -m` over ``runs``, whose overrides are written to ``listing`` (the run_list
    sweeper reads them). Every run's overrides set paths.runs and the seed; submitit's files
    go beside the listing's folder."""
    import yaml

    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text(yaml.safe_dump({"runs": [list(run.overrides) for run in runs]}))
    return run_py(
        "-m",
        f"launcher={launcher}",
        "hydra/sweeper=run_list",
        f"hydra.sweeper.runs_file={quote_value(str(listing))}",
        *submitit_folder(launcher, listing.parent.parent / ".submitit"),
    )


def listing_stem(home: Path) -> Path:
    """<home>/.reproduce/runs-<time>: the multirun's own files (its run list, a shard's log)."""
    return home / ".reproduce" / f"runs-{time.strftime('%Y%m%d-%H%M%S')}"


def in_multirun(pending: list[PlannedRun], launcher: str, home: Path) -> int:
    """One `run.py -m` process with every pending run (several tables at once, too); the
    multirun's own files (the run list, submitit's logs) go under ``home``. On Slurm, data
    the runs read that is not staged is an error (exit 2) before anything is submitted."""
    from agr_suite.launch import data_check

    if launcher in data_check.SLURM_LAUNCHERS:
        error = data_check.submission_error(pending)
        if error is not None:
            print(f"error: {error}", file=sys.stderr, flush=True)
            return USER_ERROR_EXIT_CODE
    command = multirun_command(pending, launcher, listing_stem(home).with_suffix(".yaml"))
    print(f"launching {len(pending)} runs: {' '.join(command[2:])}", flush=True)
    return subprocess.run(command, env=checkout_env()).returncode


def longest_first(costs: list[float], count: int) -> tuple[list[list[int]], list[float]]:
    """Indices of ``costs`` in ``count`` groups and each group's total: longest first into
    the lightest group (Graham 1969: the heaviest total is within 4/3 of the best; of equally
    light groups, the one with the fewest runs, so runs of unknown cost 0 are spread too)."""
    groups: list[list[int]] = [[] for _ in range(count)]
    loads = [0.0] * count
    for index in sorted(range(len(costs)), key=lambda i: -costs[i]):
        lightest = min(range(count), key=lambda k: (loads[k], len(groups[k])))
        groups[lightest].append(index)
        loads[lightest] += costs[index]
    return groups, loads


def shards(costs: list[float], count: int) -> list[list[int]]:
    """Indices of ``costs`` in at most ``count`` non-empty groups of about equal total
    (:func:`longest_first`), each in the runs' order."""
    return [sorted(group) for group in longest_first(costs, count)[0] if group]


def in_shards(
    pending: list[PlannedRun], costs: list[float], slots: list[local_pool.Slot], home: Path
) -> int:
    """Without GPUs, ``--shards N``: the pending runs in N shards of about equal estimated cost,
    each one `run.py -m` process over its run list in its own CPU slot, so N runs go at once
    and each shard pays the imports (about 7 s on a 2-core CPU) once, not once per run. A
    failed run fails alone, as in the one-process sweep: its shard runs the rest and exits
    non-zero, and the shard's log (under ``home``/.reproduce/) lists the failed runs."""
    stem = listing_stem(home)
    jobs = []
    for number, group in enumerate(shards(costs, len(slots)), start=1):
        listing = stem.with_name(f"{stem.name}-shard{number}.yaml")
        command = multirun_command([pending[i] for i in group], "local", listing)
        name = f"shard {number} ({len(group)} runs)"
        cost = sum(costs[index] for index in group)
        jobs.append(local_pool.PoolJob(name, command, log=listing.with_suffix(".log"), cost=cost))
    where = describe(slots)
    print(f"launching {len(pending)} runs in {len(jobs)} shards, one process each ({where})")
    for job in jobs:
        print(f"  {job.name}: log {job.log}", flush=True)
    result = local_pool.run_pool(jobs, slots[: len(jobs)], env=checkout_env())
    for job in jobs:
        if job.name in result.failed:
            print(f"{job.name} failed: {job.log} says which run and why", file=sys.stderr)
    return result.exit_code
