"""What ``scripts/reproduce.py`` does once its arguments are checked: plan each table's runs,
find each run's status (its results.json, or still queued in Slurm), print what this command
does with them, start the pending ones (agr_suite.launch.start_runs) and write the tables."""

from __future__ import annotations

import os
import sys
from argparse import Namespace
from pathlib import Path
from typing import TYPE_CHECKING

from agr_suite.core.errors import UserError
from agr_suite.launch import dry_run, local_pool, slurm, start_runs
from agr_suite.report.spec import PlannedRun, SpecError, TableSpec, load_spec, plan_runs

if TYPE_CHECKING:
    from agr_suite.core.config import LoggerConfig
    from agr_suite.report.tables import Table


def plan(args: Namespace) -> list[tuple[TableSpec, list[PlannedRun]]]:
    """Each table's spec at ``args.scale`` and its runs under ``args.runs_dir``."""
    from agr_suite.core.config import validate

    tables = []
    for name in args.tables:
        spec = load_spec(name, args.scale, args.seeds, args.overrides)
        tables.append((spec, plan_runs(spec, Path(args.runs_dir), check=validate)))
    return tables


def slots_for(args: Namespace) -> list[local_pool.Slot] | None:
    """The local pool's slots (or the shards' CPU slots), or None for the one-process sweep
    (no GPU, no --jobs, no --shards)."""
    gpus = local_pool.visible_gpus()
    if args.gpus is not None:
        if args.gpus > len(gpus):
            raise SpecError(
                f"--gpus {args.gpus}: only {len(gpus)} GPUs are visible "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
            )
        gpus = gpus[: args.gpus]
    if args.shards is not None:
        if gpus:
            raise SpecError(
                f"--shards is for machines without GPUs, and {len(gpus)} are visible: use "
                "--jobs/--runs-per-gpu, or CUDA_VISIBLE_DEVICES= to run on the CPU"
            )
        if args.jobs is not None:
            raise SpecError("--shards and --jobs: give one of them")
        return local_pool.make_slots([], jobs=args.shards)
    if not gpus and args.jobs is None:
        return None
    return local_pool.make_slots(gpus, runs_per_gpu=args.runs_per_gpu, jobs=args.jobs)


def statuses_of(planned: list[PlannedRun], registry: Path) -> tuple[list[str], dict[int, str]]:
    """Each run's status: its results.json's, "invalid" when its cell does not compose, or
    "queued" when it is not completed and an earlier launch's Slurm task for it (recorded in
    ``registry`` with the multirun's own overrides before the run's) is still queued or
    running; and those runs' tasks by index."""
    from agr_suite.report.tables import read_run

    statuses = [read_run(run).status if run.folder else "invalid" for run in planned]
    records, _ = slurm.alive(slurm.read_registry(registry))
    queued = {
        index: record["task"]
        for index, run in enumerate(planned)
        for record in records
        if record["overrides"][-len(run.overrides) :] == list(run.overrides)
        and statuses[index] != "completed"
    }
    for index in queued:
        statuses[index] = "queued"
    return statuses, queued


def skipped(args: Namespace) -> set[str]:
    """The statuses of runs this command does not start. Runs still queued in Slurm are never
    submitted again: the Slurm launcher gets them with the others and waits for them, other
    launchers leave them to Slurm."""
    skip = {"completed", "running"} if args.skip_running else {"completed"}
    return skip if args.launcher == "slurm" else skip | {"queued"}


def print_notes(table: str, statuses: list[str], queued: dict[int, str], skip: set[str]) -> None:
    """On stderr: the runs left to their Slurm tasks, and the runs that will resume."""
    if queued:
        print(
            f"note: {len(queued)} runs of {table} are still queued or running in Slurm "
            f"({', '.join(sorted(queued.values()))}): not submitted again"
            + ("" if "queued" in skip else "; waiting for them"),
            file=sys.stderr,
        )
    if "running" in statuses and "running" not in skip:
        print(
            f"note: {statuses.count('running')} runs of {table} say 'running' and will resume "
            "from their checkpoints; if their jobs are still alive, stop now (--skip-running)",
            file=sys.stderr,
        )


def report(
    spec: TableSpec, planned: list[PlannedRun], registry: Path, args: Namespace
) -> tuple[list[PlannedRun], bool]:
    """Print what this command does with one table's runs (a dry run lists them too); returns
    the runs to launch and whether a cell does not compose."""
    skip = skipped(args)
    statuses, queued = statuses_of(planned, registry)
    # the runs this command starts (those queued in Slurm run there, at no cost here)
    to_run = [run for run, status in zip(planned, statuses) if status not in skip | {"queued"}]
    if args.dry_run:
        dry_run.print_runs(spec, planned, statuses)
        print("\n".join(dry_run.power_plan(spec)))
        if spec.cost.in_gpu_hours:
            gpus = args.gpus or max(1, len(local_pool.visible_gpus()))
            print(dry_run.wall_time(spec, to_run, gpus, args.runs_per_gpu))
    errors = {run.group: run.error for run in planned if run.error}
    for group, error in errors.items():
        cells = ", ".join(spec.groups[group].cells)
        print(f"error: {spec.where}: cell {cells} does not compose: {error}", file=sys.stderr)
    print(dry_run.estimate(spec, planned, to_run))
    if not args.dry_run:
        print_notes(spec.name, statuses, queued, skip)
    return [run for run, status in zip(planned, statuses) if status not in skip], bool(errors)


def table_logger(planned: list[PlannedRun]) -> LoggerConfig | None:
    """The logger settings of a table's runs (its first run that composes: the logger is the
    same for all, e.g. ``-- logger=wandb``) when they log to W&B, else None."""
    from agr_suite.core.config import compose

    first = next((run for run in planned if run.folder is not None), None)
    if first is None:
        return None
    settings = compose(first.overrides).logger
    return settings if settings.name == "wandb" else None


def wandb_tables(tables: list[tuple[TableSpec, list[PlannedRun]]]) -> list[LoggerConfig | None]:
    """Each table's W&B settings (None: not logged), checked before any run starts: a W&B
    that cannot log (online without a key) is a ConfigError, as for a run."""
    from agr_suite.engine.preflight import check_wandb

    settings = [table_logger(planned) for _, planned in tables]
    for chosen in settings:
        if chosen is not None:
            check_wandb(chosen)
    return settings


def log_to_wandb(
    table: Table, paths: list[Path], settings: LoggerConfig, home: Path, planned: list[PlannedRun]
) -> int:
    """A written table into W&B (agr_suite.report.wandb_table); 1 when W&B fails (the table's
    files stay written), else 0."""
    from agr_suite.report.wandb_table import log_table

    try:
        run_id = log_table(table, paths, settings, home, planned)
    except Exception as error:  # noqa: BLE001 - the tables are written; say why W&B has none
        print(
            f"error: {table.spec.name} is written but not logged to W&B: "
            f"{type(error).__name__}: {error}",
            file=sys.stderr,
        )
        return 1
    print(f"logged {table.spec.name} to W&B (job_type table, run {run_id})")
    return 0


def reproduce(args: Namespace) -> int:
    """Plan, report, start and aggregate; returns the exit status (2: a table or a cell that
    cannot be used, or a W&B that cannot log). ``args``: scripts/reproduce.py's, with the
    seeds parsed. Runs that log to W&B (``-- logger=wandb``) get each written table logged
    too, as a W&B run of its own (agr_suite.report.wandb_table); a dry run logs nothing."""
    from agr_suite.report.outputs import write_outputs
    from agr_suite.report.tables import aggregate

    try:
        tables = plan(args)
        slots = slots_for(args) if args.launcher == "local" and not args.dry_run else None
    except SpecError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # The multirun's own files (the run list, submitit's logs and its record of submitted
    # Slurm tasks) go under <runs>/<runs_subdir>/<table, or "reproduce" for several>/.
    first = tables[0][0]
    home = Path(args.runs_dir) / first.runs_subdir
    home /= first.name if len(tables) == 1 else "reproduce"
    pending, costs, broken = [], [], False
    for spec, planned in tables:
        todo, cell_errors = report(spec, planned, home / ".submitit" / slurm.REGISTRY, args)
        pending += todo
        costs += [spec.groups[run.group].cost for run in todo]
        broken = broken or cell_errors
    if broken or args.dry_run:
        return 2 if broken else 0
    try:
        loggers = wandb_tables(tables)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not pending:
        print("every run already completed; aggregating")
        code = 0
    elif slots is None:
        code = start_runs.in_multirun(pending, args.launcher, home)
    elif args.shards is None:
        code = start_runs.in_pool(pending, slots, Path(args.runs_dir), costs)
    else:
        code = start_runs.in_shards(pending, costs, slots, home)
    for (spec, planned), settings in zip(tables, loggers):
        table = aggregate(spec, planned)
        paths = write_outputs(table, Path(args.results_dir) / spec.results_subdir)
        for path in paths:
            print(f"wrote {path}")
        if settings is not None:
            code = log_to_wandb(table, paths, settings, home, planned) or code
    return code
