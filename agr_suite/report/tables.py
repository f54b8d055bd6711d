"""Run folders -> paper tables: mean +- std over seeds per cell, paired differences against
the baseline with a 95% t-interval and a verdict, the paper's values beside ours, what is
missing, the AGR diagnostics, and learning curves.

Reads only the run folders (agr_suite.report.run_folders) that a table spec's runs map to
(agr_suite.report.spec.plan_runs), so a partial sweep still gives a table that says what it
lacks. Only completed runs count; a metric that is NaN/inf is listed and left out of the
mean, never averaged in. outputs.py writes a table (markdown.py, table_csv.py, curves.py).

    from agr_suite.report import outputs
    from agr_suite.report.spec import load_spec, plan_runs
    spec = load_spec("table2", scale="mini")
    table = aggregate(spec, plan_runs(spec, "runs"))
    outputs.write_outputs(table, "results/mini")   # table2.md, .csv, _curves.png
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from agr_suite.report.numbers import format_number, percent_units
from agr_suite.report.run_folders import (
    ABSENT,
    COMPLETED,
    RunRecord,
    epochs_to_target,
    evaluation_interval,
    metric_value,
    predictions,
    read_run,
    run_machines,
)
from agr_suite.report.spec import Cell, Metric, PlannedRun, TableSpec
from agr_suite.report.verdicts import Comparison, Summary, Verdict, summarize, verdicts


@dataclass
class CellResult:
    cell: Cell
    metric: Metric
    values: dict[int, float] = field(default_factory=dict)  # seed -> finite value
    nan: list[int] = field(default_factory=list)  # completed runs whose value is NaN/inf/null
    absent: list[int] = field(default_factory=list)  # completed runs without this metric
    not_done: dict[str, list[int]] = field(default_factory=dict)  # status -> seeds
    summary: Summary = field(default_factory=lambda: Summary(0, math.nan, math.nan))
    paper: float | None = None
    chance_band: tuple[float, float] | None = None  # what a model ignoring its input scores
    collapsed: list[int] = field(default_factory=list)  # runs predicting one class only
    in_band: list[int] = field(default_factory=list)  # runs whose value lies in that band
    resolution: float = 0.0  # the value's smallest step (one example; one evaluation)
    examples: float | None = None  # evaluated examples behind an accuracy
    not_reached: list[int] = field(default_factory=list)  # time to target: never reached
    machines: set[tuple[str, str]] = field(default_factory=set)  # (machine, precision) of its runs

    @property
    def label(self) -> str:
        return f"{self.cell.row.name} / {self.cell.column.name}"


@dataclass
class PairedResult:
    cell: Cell
    metric: Metric
    baseline: str  # the column subtracted
    differences: dict[int, float]  # seed -> cell minus baseline, same seed
    summary: Summary
    verdict: Verdict | None = None  # set by aggregate, Holm-corrected within its family
    family: str = "primary"


@dataclass
class Table:
    spec: TableSpec
    records: dict[tuple[int, int], RunRecord]
    cells: dict[tuple[str, str, str], CellResult]  # (row, column, metric key)
    paired: dict[tuple[str, str, str, str], PairedResult]  # (row, column, baseline, metric)

    def completed(self, group: int) -> list[tuple[int, RunRecord]]:
        """(seed, record) of the completed runs of a run group, in the spec's seed order."""
        runs = [(seed, self.records[(group, seed)]) for seed in self.spec.seeds]
        return [(seed, record) for seed, record in runs if record.status == COMPLETED]

    def cells_of(self, metric: Metric) -> list[CellResult]:
        return [result for (_, _, key), result in self.cells.items() if key == metric.key]


def aggregate(spec: TableSpec, planned: list[PlannedRun]) -> Table:
    """Read every planned run; then each cell over its seeds, and each pair of cells'
    differences with a verdict, Holm-corrected within its family."""
    records = {(run.group, run.seed): read_run(run) for run in planned}
    cells = {
        (cell.row.name, cell.column.name, metric.key): _cell_result(records, spec, cell, metric)
        for cell in spec.cells
        for metric in spec.metrics
    }
    paired, comparisons = {}, []
    for row in spec.rows:
        for metric in spec.metrics:
            for column, baseline in spec.pairs:
                treated = cells[(row.name, column, metric.key)]
                base = cells[(row.name, baseline, metric.key)]
                result = _paired_result(treated, base, spec.family(row, metric))
                paired[(row.name, column, baseline, metric.key)] = result
                comparisons.append(_comparison(result, treated, base))
    for result, verdict in zip(paired.values(), verdicts(comparisons)):
        result.verdict = verdict
    return Table(spec, records, cells, paired)


def _paired_result(treated: CellResult, base: CellResult, family: str) -> PairedResult:
    differences = {s: v - base.values[s] for s, v in treated.values.items() if s in base.values}
    summary = summarize(differences.values(), interval=True)
    baseline = base.cell.column.name
    return PairedResult(treated.cell, treated.metric, baseline, differences, summary, family=family)


def _comparison(result: PairedResult, treated: CellResult, base: CellResult) -> Comparison:
    return Comparison(
        column=result.cell.column.name,
        differences=tuple(result.differences.values()),
        margin=result.metric.margin,
        higher_is_better=result.metric.higher_is_better,
        resolution=max(treated.resolution, base.resolution),
        not_informative=not_informative(treated, base),
        family=result.family,
    )


def _cell_result(records, spec: TableSpec, cell: Cell, metric: Metric) -> CellResult:
    """One cell over its seeds: the values, what kept runs out, and the data that say
    whether those values can carry a verdict."""
    result = CellResult(cell, metric)
    bands, resolutions, examples = [], [0.0], []
    for seed in spec.seeds:
        record = records[(cell.group, seed)]
        if record.status != COMPLETED:
            result.not_done.setdefault(record.status, []).append(seed)
            continue
        value = metric_value(record, metric, cell.row)
        if value is ABSENT:
            result.absent.append(seed)
            continue
        if not math.isfinite(value):
            result.nan.append(seed)
            continue
        result.values[seed] = value
        result.machines.update(run_machines(record))
        seen = predictions(record, metric, cell.row.epoch)
        if seen is not None:
            if seen.classes <= 1:
                result.collapsed.append(seed)
            if metric.key == metric.prediction_key:  # the accuracy itself: its band and step
                bands.append((seen.minority, seen.majority))
                if seen.minority <= value <= seen.majority:
                    result.in_band.append(seed)
                resolutions.append(100.0 / seen.examples if seen.examples > 0 else 0.0)
                examples.append(seen.examples)
        if metric.time_to_target:
            reached = epochs_to_target(record.history, metric.source, cell.row.target(metric))
            if reached is not None and not reached[1]:
                result.not_reached.append(seed)
            resolutions.append(evaluation_interval(record.history, metric.source))
    result.summary = summarize(result.values.values(), interval=True)
    result.paper = cell.row.paper_value(cell.column.name, metric.key)
    if bands:  # the evaluated set is fixed, so every run records the same band
        result.chance_band = (min(b[0] for b in bands), max(b[1] for b in bands))
    result.resolution = max(r for r in resolutions if math.isfinite(r))
    result.examples = max(examples) if examples else None
    return result


def not_informative(treated: CellResult, base: CellResult) -> str | None:
    """Why the paired comparison of two cells cannot carry a verdict, or None.

    Checked on the runs of both arms that have a value: predictions of a single class in
    every run (the model ignores its input); every run inside the band a model ignoring its
    input scores (between always predicting the least and the most common label); both arms
    constant across seeds (the seed changes nothing, so nothing measures the noise)."""
    arms = (treated, base)
    if not all(arm.values for arm in arms):
        return None
    if all(set(arm.values) <= set(arm.collapsed) for arm in arms):
        return "both arms predict a single class in every run"
    if all(arm.chance_band and set(arm.values) <= set(arm.in_band) for arm in arms):
        low = min(arm.chance_band[0] for arm in arms)
        high = max(arm.chance_band[1] for arm in arms)
        d, (level, _) = treated.metric.decimals, percent_units(treated.metric.label)
        return (
            f"every run of both arms within {format_number(low, d)}–{format_number(high, d)}"
            f"{level}, what a model ignoring its input scores"
        )
    if all(len(arm.values) >= 2 and len(set(arm.values.values())) == 1 for arm in arms):
        return "both arms constant across seeds"
    return None
