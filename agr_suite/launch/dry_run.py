"""What ``scripts/reproduce.py --dry-run`` prints about a table: one line per run, the data
the runs read that is not staged (with the command that stages it), the power plan, the
estimated cost and, for a table costed in GPU-hours, the wall time on N GPUs x K runs per
GPU."""

from __future__ import annotations

import json

from agr_suite.launch.start_runs import ROOT, longest_first
from agr_suite.report.spec import PlannedRun, TableSpec

GPU_BENCH = ROOT / "results" / "bench" / "gpu.json"


def print_runs(spec: TableSpec, planned: list[PlannedRun], statuses: list[str]) -> None:
    """A header with the overrides every run shares, then one line per run: status, seed,
    its own overrides, run folder; then the data lines (:func:`data_lines`)."""
    shared = set(planned[0].overrides).intersection(*(run.overrides for run in planned[1:]))
    common = [o for o in planned[0].overrides if o in shared and not o.startswith("seed=")]
    print(f"# {spec.name}, scale {spec.scale}: every run is python run.py {' '.join(common)}")
    for run, status in zip(planned, statuses):
        where = str(run.folder) if run.folder else "(does not compose)"
        own = [o for o in run.overrides if o not in common and not o.startswith("seed=")]
        print(f"{status:9s} seed={run.seed} {' '.join(own)}  -> {where}")
    for line in data_lines(planned):
        print(line)


def data_lines(planned: list[PlannedRun]) -> list[str]:
    """What the runs read from outside the installed packages: the staged items, and each
    missing one with the command that stages it (none for the embedded data sets)."""
    from agr_suite.data_staging import stage_command
    from agr_suite.launch.data_check import check_runs

    lines = []
    for need, absent in check_runs(planned):
        present = [name for name in need.names if name not in absent]
        if present:
            lines.append(f"# data staged and verified: {', '.join(present)}")
        for name, why in absent.items():
            lines.append(f"# data MISSING: {name}: {why}")
            lines.append(f"#   stage it: {stage_command([name], need.data_dir)}")
    return lines


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
    counts = [(f"{len(spec.seeds)}-seed plan (this command)", len(spec.seeds))]
    if spec.planned_seeds is not None:
        counts.insert(0, (f"{spec.planned_seeds}-seed power plan", spec.planned_seeds))
    for label, seeds in counts:
        runs, cost = spec.cost_of(seeds)
        lines.append(f"#   the {label}: {runs} runs, {cost:g} {spec.cost.unit}")
    return lines


def estimate(spec: TableSpec, planned: list[PlannedRun], to_run: list[PlannedRun]) -> str:
    """The cost of the runs this command starts, and of the whole table."""
    total = sum(spec.groups[run.group].cost for run in to_run)
    if to_run:
        total += spec.cost.per_launch
    every = sum(spec.groups[run.group].cost for run in planned) + spec.cost.per_launch
    return (
        f"{len(planned)} runs in {spec.where}, {len(to_run)} to run; estimated cost "
        f"{total:g} {spec.cost.unit} (the whole table: {every:g})"
    )


def packing_throughput(runs_per_gpu: int) -> tuple[float, str]:
    """Throughput of K runs sharing one GPU relative to one run alone, and where it comes
    from: scripts/gpu_check.sh measures it (results/bench/gpu.json); unmeasured, no gain is
    assumed, so each of the K runs takes K times as long."""
    if runs_per_gpu == 1:
        return 1.0, "one run per GPU"
    try:
        bench = json.loads(GPU_BENCH.read_text())
        value = float(bench["runs_per_gpu"][str(runs_per_gpu)]["throughput_vs_1"])
    except (OSError, ValueError, KeyError, TypeError):
        return 1.0, (
            f"{runs_per_gpu} runs on a GPU assumed to give no more throughput than one "
            "(not measured: scripts/gpu_check.sh writes results/bench/gpu.json)"
        )
    where = f"{GPU_BENCH.name}, {bench.get('device', 'GPU')}, {bench.get('date', '')}"
    return value, (
        f"{runs_per_gpu} runs on a GPU give {value:.2f}x the throughput of one (measured: "
        f"{where.rstrip(', ')})"
    )


def makespan(durations: list[float], slots: int) -> float:
    """Wall time of ``durations`` run on ``slots`` slots, each run in the first free slot,
    longest first (within 4/3 of the best schedule; Graham 1969)."""
    return max(longest_first(durations, slots)[1])


def wall_time(spec: TableSpec, to_run: list[PlannedRun], gpus: int, runs_per_gpu: int) -> str:
    """The wall time of ``to_run`` on ``gpus`` GPUs with ``runs_per_gpu`` runs per GPU, from
    the spec's per-run cost."""
    throughput, source = packing_throughput(runs_per_gpu)
    stretch = runs_per_gpu / throughput  # each of the K runs sharing a GPU is this much slower
    durations = [spec.groups[run.group].cost * stretch for run in to_run]
    hours = makespan(durations, gpus * runs_per_gpu) + (spec.cost.per_launch if to_run else 0)
    return (
        f"# wall time of the {len(to_run)} pending runs on {gpus} GPU{'s' * (gpus > 1)} x "
        f"{runs_per_gpu} run{'s' * (runs_per_gpu > 1)} per GPU: about {hours:.3g} hours "
        f"(from the GPU-hours per run above; {source}; --gpus N --runs-per-gpu K for another "
        "layout)"
    )
