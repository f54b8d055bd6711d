"""The data a table's runs read that is not staged, found before they start: the dry run
lists it with the command that stages it, and a Slurm submission stops on it (an array task
would find it missing only after leaving the queue, on a node that may have no network)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from agr_suite.data_staging import DataNeeds, needs_of, problems, stage_command
from agr_suite.report.spec import CONFIGS, PlannedRun

SLURM_LAUNCHERS = ("slurm",)
# Override keys that cannot change what a run reads (its data set, model task, metrics or
# data folder): left out when composing, so the arms of a row compose once.
_NOT_DATA = (
    "optimizer",
    "scheduler",
    "trainer",
    "logger",
    "launcher",
    "hydra",
    "seed",
    "experiment_name",
    "folder_hash",
    "overwrite",
    "paths.runs",
)


def _reads_data(override: str) -> bool:
    key = override.split("=", 1)[0].lstrip("+~")
    return not any(key == k or key.startswith((f"{k}.", f"{k}/")) for k in _NOT_DATA)


def needs_of_runs(runs: Iterable[PlannedRun]) -> list[DataNeeds]:
    """The staging names the runs read, one entry per data folder (and Inception weights
    file). Runs whose config does not compose are left to the composition error."""
    from hydra import compose, initialize_config_dir

    distinct = {
        tuple(o for o in run.overrides if _reads_data(o)) for run in runs if run.folder is not None
    }
    merged: dict[tuple[Path, Path | None], list[str]] = {}
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        for overrides in sorted(distinct):
            need = needs_of(compose("config", overrides=list(overrides)))
            names = merged.setdefault((need.data_dir, need.inception_weights), [])
            names += [name for name in need.names if name not in names]
    return [DataNeeds(tuple(names), *where) for where, names in merged.items() if names]


def check_runs(runs: Iterable[PlannedRun]) -> list[tuple[DataNeeds, dict[str, str]]]:
    """Each entry of :func:`needs_of_runs` with what is missing there (name -> why; empty
    when everything is staged)."""
    return [
        (need, problems(need.names, need.data_dir, inception_weights=need.inception_weights))
        for need in needs_of_runs(runs)
    ]


def submission_error(runs: Iterable[PlannedRun]) -> str | None:
    """The error that stops a Slurm submission when the runs' data is not all staged."""
    found = [(need, absent) for need, absent in check_runs(runs) if absent]
    if not found:
        return None
    lines = ["the runs read data that is not staged (their Slurm tasks would fail on it):"]
    lines += [f"  {name}: {why}" for _, absent in found for name, why in absent.items()]
    lines.append(
        "Stage it first, on a machine with network access (or from a site mirror with "
        "--mirror URL_OR_FOLDER), then submit again:"
    )
    lines += [f"  {stage_command(absent, need.data_dir)}" for need, absent in found]
    return "\n".join(lines)
