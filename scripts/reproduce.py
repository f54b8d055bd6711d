"""Reproduce one table of the paper: spec -> runs -> table.

    scripts/reproduce.py TABLE [TABLE ...] [--seeds 0,1,2] [--scale paper|mini] [--dry-run]
                         [--launcher local|slurm|submitit_local] [-- override ...]

Expands tables/TABLE.yaml into runs, skips those whose results.json says completed,
launches the rest as one Hydra multirun of run.py (the run_list sweeper: every pending run
in one launch, so on Slurm one array job whose preempted tasks are requeued and resume
from their run folder), then writes results/[mini/]TABLE.{md,csv} and TABLE_curves.png.
`--dry-run` prints one line per run and the estimated cost, and starts nothing.
`--portable-cpu` caps the CPU kernels at AVX2 (agr_suite.engine.machine.PORTABLE_ENV), so
the runs repeat bit for bit on other x86-64 CPU models too (`make reproduce-mini` sets it).
Overrides after `--` go into every run (e.g. `-- trainer.devices=cuda trainer.precision=bf16`).

Locally (`--launcher local`, the default) every visible GPU is used: each run is its own
`run.py` process pinned to one GPU, `--runs-per-gpu K` packs K runs on each GPU, `--gpus N`
uses the first N, and `--jobs N` caps how many run at once (on a machine without GPUs,
`--jobs N` runs N at once on the CPU cores). Each run's output goes to `launch.log` in its
run folder; a run that fails fails alone; Ctrl-C stops every run it started (they resume
from their checkpoints when the same command runs again). Without GPUs and `--jobs`, all
pending runs go through one process, one after another (imports paid once), or with
`--shards N` through N such processes at once, each over a share of the runs and the cores
(a failed run fails alone in either).
The dry run of a table costed in GPU-hours prints its wall time on N GPUs x K runs per GPU
(agr_suite.launch.local_pool).

On Slurm (`--launcher slurm`) the command waits for the array job, printing its progress:
run it in tmux or screen. Stopping it leaves the jobs running; `make tables` aggregates
whatever has finished. The same command again, while that array is still queued or running,
does not submit its runs a second time: the Slurm launcher recorded their tasks
(`.submitit/submitted.jsonl`), shows them as "queued", waits for them, and submits only
runs that are neither finished nor queued.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "lib", ROOT):  # this checkout's library (agr) and suite (agr_suite)
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from agr_suite.launch import local_pool  # noqa: E402 - after the path setup above
from agr_suite.report.spec import (  # noqa: E402
    CONFIGS,
    SCALES,
    PlannedRun,
    SpecError,
    TableSpec,
    available_tables,
    load_spec,
    plan_runs,
    quote_value,
)


def parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SystemExit(f"error: --seeds {text!r}: give integers separated by commas") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise SystemExit(f"error: --seeds {text!r}: give distinct integers >= 0")
    return seeds


def launchers() -> list[str]:
    return sorted(p.stem for p in (CONFIGS / "launcher").glob("*.yaml"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Overrides after `--` go into every run: ... -- trainer.precision=bf16",
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument(
        "tables", nargs="+", help=f"specs in tables/ ({', '.join(available_tables())})"
    )
    parser.add_argument("--seeds", help="comma-separated seeds (default: the spec's)")
    parser.add_argument("--launcher", default="local", help=f"one of {', '.join(launchers())}")
    parser.add_argument("--scale", default="paper", choices=SCALES)
    parser.add_argument("--dry-run", action="store_true", help="list the runs, start nothing")
    parser.add_argument(
        "--skip-running",
        action="store_true",
        help="leave runs whose results.json says running alone (their job may still be alive)",
    )
    parser.add_argument(
        "--runs-dir",
        default=os.environ.get("AGR_RUNS_DIR", "runs"),
        help="paths.runs for every run (default: $AGR_RUNS_DIR or runs)",
    )
    parser.add_argument("--results-dir", default="results", help="where the tables go")
    parser.add_argument(
        "--portable-cpu",
        action="store_true",
        help="x86-64 CPUs: cap the CPU kernels of ATen, oneDNN, MKL and OpenBLAS at AVX2, so "
        "the runs repeat bit for bit on x86-64 CPUs of other models (README, "
        "Reproducibility; `make reproduce-mini` sets it)",
    )
    local = parser.add_argument_group("local launcher (--launcher local)")
    local.add_argument(
        "--gpus",
        type=positive_int,
        help="use the first N visible GPUs (default: all); in a dry run, the number of GPUs "
        "to estimate the wall time for (default: the visible ones, at least 1)",
    )
    local.add_argument(
        "--runs-per-gpu", type=positive_int, default=1, help="runs sharing each GPU (default 1)"
    )
    local.add_argument(
        "--jobs",
        type=positive_int,
        help="at most N runs at once, each its own process (default: one per GPU slot; 1 on "
        "a machine without GPUs)",
    )
    local.add_argument(
        "--shards",
        type=positive_int,
        help="without GPUs: N one-process sweeps at once, each over a share of the runs and "
        "of the cores (imports paid once per shard; a failed run fails alone)",
    )
    return parser


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give an integer >= 1")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Everything after `--` is an override for every run (split off before argparse, whose
    positional TABLE list would swallow it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args = build_parser().parse_args(argv[:cut])
    args.overrides = argv[cut + 1 :]
    return args


def run_status(run: PlannedRun) -> str:
    if run.folder is None:
        return "invalid"
    from agr_suite.report.tables import read_run

    return read_run(run).status


def common_overrides(planned: list[PlannedRun]) -> list[str]:
    """The overrides every run of a table shares (printed once in a dry run)."""
    shared = set(planned[0].overrides).intersection(*(run.overrides for run in planned[1:]))
    return [o for o in planned[0].overrides if o in shared and not o.startswith("seed=")]


def print_dry_run(spec: TableSpec, planned: list[PlannedRun], statuses: list[str]) -> None:
    """One line per run: status, seed, the overrides beyond the shared ones, run folder."""
    common = common_overrides(planned)
    print(f"# {spec.name}, scale {spec.scale}: every run is python run.py {' '.join(common)}")
    for run, status in zip(planned, statuses):
        where = str(run.folder) if run.folder else "(does not compose)"
        own = [o for o in run.overrides if o not in common and not o.startswith("seed=")]
        print(f"{status:9s} seed={run.seed} {' '.join(own)}  -> {where}")


def power_plan(spec: TableSpec) -> list[str]:
    """Per endpoint with an assumed paired sd: the seeds its margin needs at its family's
    Holm planning level; then the runs and cost of the primary endpoint's seeds beside those
    of the spec's seeds."""
    plans = spec.plans()
    head = f"# power plan for {spec.name}, scale {spec.scale}"
    if not plans:
        return [f"{head}: none (no metric states an assumed paired sd at this scale)"]
    lines = [f"{head} (80% power, each family planned at alpha/m, Holm's first step):"]
    for plan in plans:
        m = plan.metric
        lines.append(
            f"#   {plan.family} {m.key}: margin {m.margin:g} with an assumed paired sd of "
            f"{m.paired_sd:g} at alpha/{plan.family_size} = {plan.level:.2g} needs "
            f"{plan.seeds} seeds ({m.paired_sd_reason})"
        )
    planned = spec.planned_seeds
    counts = [(f"{len(spec.seeds)}-seed plan (this command)", len(spec.seeds))]
    if planned is not None:
        counts.insert(0, (f"{planned}-seed power plan", planned))
    for label, seeds in counts:
        runs, cost = spec.cost_of(seeds)
        lines.append(f"#   the {label}: {runs} runs, {cost:g} {spec.cost.unit}")
    return lines


def estimate(spec: TableSpec, planned: list[PlannedRun], pending: list[PlannedRun]) -> str:
    total = sum(spec.groups[run.group].cost for run in pending)
    if pending:
        total += spec.cost.per_launch
    every = sum(spec.groups[run.group].cost for run in planned) + spec.cost.per_launch
    return (
        f"{len(planned)} runs in {spec.where}, {len(pending)} to run; estimated cost "
        f"{total:g} {spec.cost.unit} (the whole table: {every:g})"
    )


GPU_BENCH = ROOT / "results" / "bench" / "gpu.json"


def packing_throughput(runs_per_gpu: int, bench: Path | None = None) -> tuple[float, str]:
    """Throughput of K runs sharing one GPU relative to one run alone, and where it comes
    from: scripts/gpu_check.sh measures it (results/bench/gpu.json); unmeasured, no gain is
    assumed, so each of the K runs takes K times as long."""
    if runs_per_gpu == 1:
        return 1.0, "one run per GPU"
    bench = GPU_BENCH if bench is None else bench
    try:
        bench_data = json.loads(bench.read_text())
        value = float(bench_data["runs_per_gpu"][str(runs_per_gpu)]["throughput_vs_1"])
    except (OSError, ValueError, KeyError, TypeError):
        return 1.0, (
            f"{runs_per_gpu} runs on a GPU assumed to give no more throughput than one "
            "(not measured: scripts/gpu_check.sh writes results/bench/gpu.json)"
        )
    where = f"{bench.name}, {bench_data.get('device', 'GPU')}, {bench_data.get('date', '')}"
    return value, (
        f"{runs_per_gpu} runs on a GPU give {value:.2f}x the throughput of one (measured: "
        f"{where.rstrip(', ')})"
    )


def makespan(durations: list[float], slots: int) -> float:
    """Wall time of ``durations`` run on ``slots`` slots, each run in the first free slot,
    longest first (within 4/3 of the best schedule; Graham 1969)."""
    loads = [0.0] * slots
    for duration in sorted(durations, reverse=True):
        loads[loads.index(min(loads))] += duration
    return max(loads)


def wall_time(spec: TableSpec, pending: list[PlannedRun], gpus: int, runs_per_gpu: int) -> str:
    """The dry run's estimate of the pending runs' wall time on ``gpus`` GPUs with
    ``runs_per_gpu`` runs per GPU, from the spec's per-run cost."""
    throughput, source = packing_throughput(runs_per_gpu)
    stretch = runs_per_gpu / throughput  # each of the K runs sharing a GPU is this much slower
    durations = [spec.groups[run.group].cost * stretch for run in pending]
    hours = makespan(durations, gpus * runs_per_gpu) + (spec.cost.per_launch if pending else 0)
    return (
        f"# wall time of the {len(pending)} pending runs on {gpus} GPU{'s' * (gpus > 1)} x "
        f"{runs_per_gpu} run{'s' * (runs_per_gpu > 1)} per GPU: about {hours:.3g} hours "
        f"(from the GPU-hours per run above; {source}; --gpus N --runs-per-gpu K for another "
        "layout)"
    )


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


def queued_in_slurm(planned: list[PlannedRun], registry: Path) -> dict[int, str]:
    """The runs (index -> Slurm task) that an earlier launch submitted to Slurm and squeue
    still lists as queued or running. The launcher recorded each task with its overrides:
    the multirun's own (launcher=...) followed by the run's."""
    from agr_suite.launch import slurm

    records, _ = slurm.alive(slurm.read_registries([registry]))
    queued = {}
    for index, run in enumerate(planned):
        own = list(run.overrides)
        for record in records:
            if record["overrides"][-len(own) :] == own:
                queued[index] = record["task"]
    return queued


def slots_for(args: argparse.Namespace) -> list[local_pool.Slot] | None:
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


def checkout_pythonpath(env: dict[str, str]) -> str:
    """PYTHONPATH for the runs: this checkout's library (lib/) and suite before the rest, so
    that every run (and submitit's job processes, which unpickle the sweep and need the
    repo's hydra_plugins) imports this checkout's code."""
    return os.pathsep.join(filter(None, [str(ROOT), str(ROOT / "lib"), env.get("PYTHONPATH")]))


def launch_pool(pending: list[PlannedRun], slots: list[local_pool.Slot], root: Path) -> int:
    """Each pending run as its own run.py process in the first free slot; its output in
    launch.log in its run folder."""
    jobs = [
        local_pool.PoolJob(
            name=str(run.folder.relative_to(root))
            if run.folder.is_relative_to(root)
            else str(run.folder),
            command=local_pool.python_command(ROOT / "run.py", run.overrides),
            log=run.folder / "launch.log",
        )
        for run in pending
    ]
    where = ", ".join(sorted({slot.describe() for slot in slots}))
    print(f"launching {len(jobs)} runs, {len(slots)} at a time ({where})", flush=True)
    env = {**os.environ}
    env["PYTHONPATH"] = checkout_pythonpath(env)
    result = local_pool.run_pool(jobs, slots, env=env)
    if result.failed:
        print(f"{len(result.failed)} runs failed (their launch.log says why):", file=sys.stderr)
        for job in jobs:
            if job.name in result.failed:
                print(f"  {job.log}", file=sys.stderr)
    return result.exit_code


def multirun_command(runs: list[PlannedRun], launcher: str, listing: Path) -> list[str]:
    """`run.py -m` over ``runs``, whose overrides are written to ``listing`` (the run_list
    sweeper reads them). Every run's overrides set paths.runs and the seed; submitit's files
    go beside the listing's folder."""
    import yaml

    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text(yaml.safe_dump({"runs": [list(run.overrides) for run in runs]}))
    return [
        sys.executable,
        "-u",
        str(ROOT / "run.py"),
        "-m",
        f"launcher={launcher}",
        "hydra/sweeper=run_list",
        f"hydra.sweeper.runs_file={quote_value(str(listing))}",
        *submitit_folder(launcher, listing.parent.parent / ".submitit"),
    ]


def launch(pending: list[PlannedRun], launcher: str, root: Path, name: str) -> int:
    """One `run.py -m` process with every pending run (several tables at once, too); the
    multirun's own files (the run list, submitit's logs) go under <root>/<name>/."""
    listing = root / name / ".reproduce" / f"runs-{time.strftime('%Y%m%d-%H%M%S')}.yaml"
    command = multirun_command(pending, launcher, listing)
    print(f"launching {len(pending)} runs: {' '.join(command[2:])}", flush=True)
    env = {**os.environ}
    env["PYTHONPATH"] = checkout_pythonpath(env)
    return subprocess.run(command, env=env).returncode


def shards(costs: list[float], count: int) -> list[list[int]]:
    """Indices of ``costs`` in ``count`` groups of about equal total, longest first into the
    lightest group (Graham 1969; of equally light ones, the one with the fewest runs, so runs
    of unknown cost 0 are spread too); each group keeps the runs' order."""
    groups: list[list[int]] = [[] for _ in range(count)]
    loads = [0.0] * count
    for index in sorted(range(len(costs)), key=lambda i: -costs[i]):
        lightest = min(range(count), key=lambda k: (loads[k], len(groups[k])))
        groups[lightest].append(index)
        loads[lightest] += costs[index]
    return [sorted(group) for group in groups if group]


def launch_shards(
    pending: list[PlannedRun],
    costs: list[float],
    slots: list[local_pool.Slot],
    root: Path,
    name: str,
) -> int:
    """Without GPUs, ``--shards N``: the pending runs in N shards of about equal estimated cost,
    each one `run.py -m` process over its run list in its own CPU slot, so N runs go at once
    and each shard pays the imports (about 7 s on a 2-core CPU) once, not once per run. A
    failed run fails alone, as in the one-process sweep: its shard runs the rest and exits
    non-zero, and the shard's log (under <root>/<name>/.reproduce/) lists the failed runs."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = root / name / ".reproduce"
    jobs = []
    for number, group in enumerate(shards(costs, len(slots)), start=1):
        runs = [pending[i] for i in group]
        listing = folder / f"runs-{stamp}-shard{number}.yaml"
        jobs.append(
            local_pool.PoolJob(
                name=f"shard {number} ({len(runs)} runs)",
                command=multirun_command(runs, "local", listing),
                log=listing.with_suffix(".log"),
            )
        )
    where = ", ".join(sorted({slot.describe() for slot in slots}))
    print(f"launching {len(pending)} runs in {len(jobs)} shards, one process each ({where})")
    for job in jobs:
        print(f"  {job.name}: log {job.log}", flush=True)
    env = {**os.environ}
    env["PYTHONPATH"] = checkout_pythonpath(env)
    result = local_pool.run_pool(jobs, slots[: len(jobs)], env=env)
    for job in jobs:
        if job.name in result.failed:
            print(f"{job.name} failed: {job.log} says which run and why", file=sys.stderr)
    return result.exit_code


def make_table(spec: TableSpec, planned: list[PlannedRun], results_dir: Path) -> list[Path]:
    from agr_suite.report.tables import aggregate, write_outputs

    return write_outputs(aggregate(spec, planned), results_dir / spec.results_subdir)


def plan(args: argparse.Namespace) -> list[tuple[TableSpec, list[PlannedRun]]]:
    from agr_suite.core.config import validate

    seeds = parse_seeds(args.seeds)
    tables = []
    for name in args.tables:
        spec = load_spec(name, args.scale, seeds, args.overrides)
        tables.append((spec, plan_runs(spec, Path(args.runs_dir), check=validate)))
    return tables


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.launcher not in launchers():
        print(f"error: --launcher {args.launcher!r}: choose one of {launchers()}", file=sys.stderr)
        return 2
    if args.portable_cpu:
        if platform.machine().lower() not in ("x86_64", "amd64"):
            print(
                f"error: --portable-cpu caps x86-64 kernels; this is {platform.machine()}: "
                "leave it out (the runs then repeat on this CPU model only)",
                file=sys.stderr,
            )
            return 2
        from agr_suite.engine.machine import PORTABLE_ENV

        os.environ.update(PORTABLE_ENV)  # every run is a child process: they inherit it
    try:
        tables = plan(args)
        slots = slots_for(args) if args.launcher == "local" and not args.dry_run else None
    except SpecError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    skip = {"completed", "running"} if args.skip_running else {"completed"}
    # Runs still queued in Slurm are never submitted again; the Slurm launcher waits for
    # them (they go to it with the others), other launchers leave them to Slurm.
    wait_for_queued = args.launcher == "slurm"
    if not wait_for_queued:
        skip.add("queued")
    # The multirun's own files (the run list, submitit's logs and its record of submitted
    # Slurm tasks) go under <root>/<name>/.
    root = Path(args.runs_dir) / tables[0][0].runs_subdir
    name = tables[0][0].name if len(tables) == 1 else "reproduce"
    registry = root / name / ".submitit" / "submitted.jsonl"
    pending: list[PlannedRun] = []
    broken = False
    for spec, planned in tables:
        statuses = [run_status(run) for run in planned]
        queued = queued_in_slurm(planned, registry) if registry.exists() else {}
        for index in queued:
            if statuses[index] != "completed":
                statuses[index] = "queued"
        # the runs this command starts (those queued in Slurm run there, at no cost here)
        to_run = [r for r, s in zip(planned, statuses) if s not in skip and s != "queued"]
        if args.dry_run:
            print_dry_run(spec, planned, statuses)
            print("\n".join(power_plan(spec)))
            if spec.cost.in_gpu_hours:
                gpus = args.gpus or max(1, len(local_pool.visible_gpus()))
                print(wall_time(spec, to_run, gpus, args.runs_per_gpu))
        errors = {run.group: run.error for run in planned if run.error}
        for group, error in errors.items():
            cells = ", ".join(spec.groups[group].cells)
            print(f"error: {spec.where}: cell {cells} does not compose: {error}", file=sys.stderr)
        broken = broken or bool(errors)
        todo = [run for run, status in zip(planned, statuses) if status not in skip]
        print(estimate(spec, planned, to_run))
        waiting = sorted(queued[i] for i, status in enumerate(statuses) if status == "queued")
        if waiting and not args.dry_run:
            print(
                f"note: {len(waiting)} runs of {spec.name} are still queued or running in Slurm "
                f"({', '.join(waiting)}): not submitted again"
                + ("; waiting for them" if wait_for_queued else ""),
                file=sys.stderr,
            )
        running = [r for r, s in zip(planned, statuses) if s == "running" and r in todo]
        if running and not args.dry_run:
            print(
                f"note: {len(running)} runs of {spec.name} say 'running' and will resume from "
                "their checkpoints; if their jobs are still alive, stop now (--skip-running)",
                file=sys.stderr,
            )
        pending += todo
    if broken:
        return 2
    if args.dry_run:
        return 0
    code = 0
    if pending and slots is not None and args.shards is not None:
        cost = {id(run): spec.groups[run.group].cost for spec, planned in tables for run in planned}
        code = launch_shards(pending, [cost[id(run)] for run in pending], slots, root, name)
    elif pending and slots is not None:
        code = launch_pool(pending, slots, Path(args.runs_dir))
    elif pending:
        code = launch(pending, args.launcher, root, name)
    else:
        print("every run already completed; aggregating")
    for spec, planned in tables:
        for path in make_table(spec, planned, Path(args.results_dir)):
            print(f"wrote {path}")
    return code


if __name__ == "__main__":
    sys.exit(main())
