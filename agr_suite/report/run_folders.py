"""A run folder as the tables read it: results.json (status, final and best metrics, AGR
diagnostics, machines) and history.jsonl (one line per evaluation), never W&B. A metric that
is NaN/inf (written as null in the JSON files) reads as NaN."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agr_suite.report.spec import Metric, PlannedRun, Row

COMPLETED, FAILED, RUNNING, MISSING, NOT_COMPOSED = (
    "completed",
    "failed",
    "running",
    "missing",
    "does not compose",
)
PREDICTION_FIELDS = ("pred_classes", "majority", "minority", "examples")
ABSENT = object()  # a run without the metric (e.g. not evaluated at the row's epoch)


@dataclass
class RunRecord:
    group: int
    seed: int
    folder: Path | None
    status: str  # completed | failed | running | missing | does not compose
    error: str | None = None
    results: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


def read_run(run: PlannedRun) -> RunRecord:
    if run.folder is None:
        return RunRecord(run.group, run.seed, None, NOT_COMPOSED, run.error)
    path = run.folder / "results.json"
    if not path.exists():
        return RunRecord(run.group, run.seed, run.folder, MISSING)
    try:
        results = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        return RunRecord(run.group, run.seed, run.folder, FAILED, f"unreadable {path}: {error}")
    status = results.get("status")
    if status not in (COMPLETED, FAILED, RUNNING):
        return RunRecord(run.group, run.seed, run.folder, FAILED, f"{path}: status {status!r}")
    history = []
    history_path = run.folder / "history.jsonl"
    if history_path.exists():
        for line in history_path.read_text().splitlines():
            try:
                history.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a killed job: the others still count
    return RunRecord(
        run.group, run.seed, run.folder, status, results.get("error"), results, history
    )


def finite(value: Any) -> float:
    """A JSON number as float (NaN for null, booleans and anything else)."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _source(record: RunRecord, metric: Metric, epoch: int | None) -> dict[str, Any]:
    """The metrics a cell reads from a run: history.jsonl at the row's epoch, else
    results.json ``metrics`` (final) or ``best``."""
    if epoch is not None:
        return next((r for r in record.history if r.get("epoch") == epoch), {})
    return record.results.get("metrics" if metric.select == "final" else "best") or {}


def metric_value(record: RunRecord, metric: Metric, row: Row) -> float | object:
    """The metric of a run for one cell: float (NaN when non-finite or null) or ABSENT. A
    time-to-target metric is the first evaluated epoch at which its accuracy reaches the
    row's target (see :func:`epochs_to_target`)."""
    if metric.time_to_target:
        reached = epochs_to_target(record.history, metric.source, row.target(metric))
        return ABSENT if reached is None else reached[0]
    source = _source(record, metric, row.epoch)
    return finite(source[metric.key]) if metric.key in source else ABSENT


def evaluations(history: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    """(epoch, value) of every evaluation in history.jsonl with a finite ``key``, by epoch."""
    points = {}
    for entry in history:
        value = finite(entry.get(key))
        if isinstance(entry.get("epoch"), (int, float)) and math.isfinite(value):
            points[float(entry["epoch"])] = value
    return sorted(points.items())


def evaluation_interval(history: list[dict[str, Any]], key: str) -> float:
    """Epochs between two evaluations of ``key`` (the smallest gap; the first epoch when
    there is one evaluation): the resolution of a time to target."""
    epochs = [epoch for epoch, _ in evaluations(history, key)]
    gaps = [b - a for a, b in zip(epochs, epochs[1:])]
    return min(gaps) if gaps else (epochs[0] if epochs else math.nan)


def epochs_to_target(
    history: list[dict[str, Any]], key: str, target: float
) -> tuple[float, bool] | None:
    """(the first evaluated epoch with ``key`` >= ``target``, True), or, for a run that
    never reaches it, (its last evaluated epoch plus one evaluation interval, False): a
    lower bound, the earliest epoch it could have reached the target. None when the run
    evaluated ``key`` never."""
    points = evaluations(history, key)
    if not points:
        return None
    for epoch, value in points:
        if value >= target:
            return epoch, True
    return points[-1][0] + evaluation_interval(history, key), False


@dataclass(frozen=True)
class Predictions:
    """What a run's evaluation says about its predictions (the task records them beside each
    accuracy K as K_pred_classes, K_majority, K_minority, K_examples)."""

    classes: float  # distinct predicted classes on the evaluated set
    majority: float  # accuracy (%) of always predicting its most common label
    minority: float  # ... of always predicting its least common label
    examples: float  # evaluated examples (predicted tokens for MLM)


def predictions(record: RunRecord, metric: Metric, epoch: int | None) -> Predictions | None:
    """The prediction statistics behind a cell's value (for a time to target, those of the
    run's last evaluation: its rows have no epoch and it reads `final`); None when the run did
    not record them."""
    source = _source(record, metric, epoch)
    found = [finite(source.get(f"{metric.prediction_key}_{name}")) for name in PREDICTION_FIELDS]
    if not all(math.isfinite(v) for v in found):
        return None
    return Predictions(*found)


def run_machines(record: RunRecord) -> list[tuple[str, str]]:
    """(machine type, precision) of each session of a run (agr_suite.engine.machine); a run
    written before these were recorded, by what its environment says."""
    sessions = record.results.get("machines")
    if sessions:
        return [(s.get("machine", "?"), s.get("precision", "not recorded")) for s in sessions]
    from agr_suite.engine.machine import machine_label  # the engine's torch, only here

    env = record.results.get("environment") or {}
    return [(machine_label(env), env.get("precision", "not recorded"))]
