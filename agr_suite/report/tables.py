"""Run folders -> paper tables: mean +- std over seeds per cell, paired differences against
the baseline with a 95% t-interval, the paper's values beside ours, what is missing, the AGR
diagnostics, and learning curves.

Reads only the run folders (results.json, history.jsonl) that a table spec's runs map to
(agr_suite.report.spec.plan_runs), never W&B, so a partial sweep still gives a table that says
what it lacks. Only completed runs count; a metric that is NaN/inf (written as null in the
JSON files) is listed and left out of the mean, never averaged in.

    from agr_suite.report.spec import load_spec, plan_runs
    spec = load_spec("table2", scale="mini")
    table = aggregate(spec, plan_runs(spec, "runs"))
    write_outputs(table, "results/mini")   # table2.md, table2.csv, table2_curves.png
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agr_suite.report.spec import Cell, Metric, PlannedRun, Row, TableSpec
from agr_suite.report.verdicts import Comparison, Verdict, verdicts

COMPLETED, FAILED, RUNNING, MISSING, NOT_COMPOSED = (
    "completed",
    "failed",
    "running",
    "missing",
    "does not compose",
)


# --------------------------------------------------------------------------- reading runs


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


_ABSENT = object()


def _source(record: RunRecord, metric: Metric, epoch: int | None) -> dict[str, Any]:
    """The metrics a cell reads from a run: history.jsonl at the row's epoch, else
    results.json ``metrics`` (final) or ``best``."""
    if epoch is not None:
        return next((r for r in record.history if r.get("epoch") == epoch), {})
    return record.results.get("metrics" if metric.select == "final" else "best") or {}


def _finite(value: Any) -> float:
    """A JSON number as float (NaN for null, booleans and anything else)."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def metric_value(record: RunRecord, metric: Metric, epoch: int | None, row: Row | None = None):
    """The metric of a run for one cell: float (NaN when non-finite or null) or _ABSENT. A
    time-to-target metric is the first evaluated epoch at which its accuracy reaches the
    row's target (see :func:`epochs_to_target`)."""
    if metric.time_to_target:
        reached = epochs_to_target(record.history, metric.source, row.target(metric))
        return _ABSENT if reached is None else reached[0]
    source = _source(record, metric, epoch)
    return _finite(source[metric.key]) if metric.key in source else _ABSENT


def _evaluations(history: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    """(epoch, value) of every evaluation in history.jsonl that recorded ``key``, by epoch."""
    points = {}
    for entry in history:
        value = _finite(entry.get(key))
        if isinstance(entry.get("epoch"), (int, float)) and math.isfinite(value):
            points[float(entry["epoch"])] = value
    return sorted(points.items())


def evaluation_interval(history: list[dict[str, Any]], key: str) -> float:
    """Epochs between two evaluations of ``key`` (the smallest gap; the first epoch when
    there is one evaluation): the resolution of a time to target."""
    epochs = [epoch for epoch, _ in _evaluations(history, key)]
    gaps = [b - a for a, b in zip(epochs, epochs[1:])]
    return min(gaps) if gaps else (epochs[0] if epochs else math.nan)


def epochs_to_target(
    history: list[dict[str, Any]], key: str, target: float
) -> tuple[float, bool] | None:
    """(the first evaluated epoch with ``key`` >= ``target``, True), or, for a run that
    never reaches it, (its last evaluated epoch plus one evaluation interval, False): a
    lower bound, the earliest epoch it could have reached the target. None when the run
    evaluated ``key`` never."""
    points = _evaluations(history, key)
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
    run's last evaluation); None when the run did not record them."""
    if metric.time_to_target:
        source = record.results.get("metrics") or {}
    else:
        source = _source(record, metric, epoch)
    key = metric.prediction_key
    found = [_finite(source.get(f"{key}_{name}")) for name in PREDICTION_FIELDS]
    if not all(math.isfinite(v) for v in found):
        return None
    return Predictions(*found)


PREDICTION_FIELDS = ("pred_classes", "majority", "minority", "examples")


# --------------------------------------------------------------------------- statistics


@dataclass
class Summary:
    n: int
    mean: float
    std: float  # sample std (ddof 1); NaN when n < 2
    low: float = math.nan  # 95% t-interval of the mean (used for paired differences)
    high: float = math.nan


def summarize(values: Iterable[float], interval: bool = False) -> Summary:
    data = [float(v) for v in values]
    n = len(data)
    if n == 0:
        return Summary(0, math.nan, math.nan)
    mean = statistics.fmean(data)
    if n < 2:
        return Summary(n, mean, math.nan)
    std = statistics.stdev(data)  # exact arithmetic: equal values give exactly 0
    if not interval:
        return Summary(n, mean, std)
    from scipy.stats import t

    half = float(t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


@dataclass
class CellResult:
    cell: Cell
    metric: Metric
    values: dict[int, float]  # seed -> finite value
    nan: list[int]  # completed runs whose value is NaN/inf/null
    absent: list[int]  # completed runs without this metric (e.g. not evaluated at the epoch)
    not_done: dict[str, list[int]]  # status -> seeds (missing, failed, running, ...)
    summary: Summary  # with the 95% t-interval of the mean over seeds
    paper: float | None
    chance_band: tuple[float, float] | None = None  # what a model ignoring its input scores
    collapsed: list[int] = field(default_factory=list)  # runs predicting one class only
    in_band: list[int] = field(default_factory=list)  # runs whose value lies in that band
    resolution: float = 0.0  # the value's smallest step (one example; one evaluation)
    examples: float | None = None  # evaluated examples behind an accuracy
    not_reached: list[int] = field(default_factory=list)  # time to target: never reached
    machines: set[tuple[str, str]] = field(default_factory=set)  # (machine, precision) of its runs


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


def aggregate(spec: TableSpec, planned: list[PlannedRun]) -> Table:
    records = {(run.group, run.seed): read_run(run) for run in planned}
    cells = {
        (cell.row.name, cell.column.name, metric.key): _cell_result(records, spec, cell, metric)
        for cell in spec.cells
        for metric in spec.metrics
    }
    paired = {}
    for row in spec.rows:
        for metric in spec.metrics:
            for column, baseline in spec.pairs:
                treated = cells[(row.name, column, metric.key)]
                base = cells[(row.name, baseline, metric.key)].values
                differences = {s: v - base[s] for s, v in treated.values.items() if s in base}
                paired[(row.name, column, baseline, metric.key)] = PairedResult(
                    treated.cell,
                    metric,
                    baseline,
                    differences,
                    summarize(differences.values(), interval=True),
                    family=spec.family(row, metric),
                )
    comparisons = []
    for (row, column, baseline, key), result in paired.items():
        treated, base = cells[(row, column, key)], cells[(row, baseline, key)]
        comparisons.append(
            Comparison(
                column=column,
                differences=tuple(result.differences.values()),
                margin=result.metric.margin,
                higher_is_better=result.metric.higher_is_better,
                resolution=max(treated.resolution, base.resolution),
                not_informative=not_informative(treated, base),
                family=result.family,
            )
        )
    for result, verdict in zip(paired.values(), verdicts(comparisons)):
        result.verdict = verdict
    return Table(spec, records, cells, paired)


def _cell_result(records, spec: TableSpec, cell: Cell, metric: Metric) -> CellResult:
    """One cell over its seeds: the values, what kept runs out, and the data that say
    whether those values can carry a verdict."""
    result = CellResult(cell, metric, {}, [], [], {}, Summary(0, math.nan, math.nan), None)
    bands, resolutions, examples = [], [0.0], []
    for seed in spec.seeds:
        record = records[(cell.group, seed)]
        if record.status != COMPLETED:
            result.not_done.setdefault(record.status, []).append(seed)
            continue
        value = metric_value(record, metric, cell.row.epoch, cell.row)
        if value is _ABSENT:
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


# --------------------------------------------------------------------------- degenerate data


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
        d, (level, _) = treated.metric.decimals, _unit(treated.metric.label)
        return (
            f"every run of both arms within {format_number(low, d)}–{format_number(high, d)}"
            f"{level}, what a model ignoring its input scores"
        )
    if all(len(arm.values) >= 2 and len(set(arm.values.values())) == 1 for arm in arms):
        return "both arms constant across seeds"
    return None


# --------------------------------------------------------------------------- numbers

MINUS = "\u2212"  # typographic minus for the tables' leading signs


def _significant(value: float, sign: str) -> str:
    """Two significant digits: plain decimals down to 1e-4 (0.0024, 0.00012), scientific
    below (2.8e-06); values of 10 and more keep all their integer digits."""
    magnitude = abs(value)
    if magnitude < 1e-4:
        return f"{value:{sign}.1e}"
    places = max(0, 1 - math.floor(math.log10(magnitude)))
    text = f"{value:{sign}.{places}f}"
    if abs(float(text)) >= 10 ** (2 - places):  # 0.0996 -> 0.100: rounded up a decade
        text = f"{value:{sign}.{max(0, places - 1)}f}"
    return text


def _rounds_to_zero(value: float, decimals: int) -> bool:
    return value != 0 and float(f"{abs(value):.{decimals}f}") == 0


def format_number(
    value: float, decimals: int, sign: bool = False, significant: bool = False
) -> str:
    """A table number that never shows a nonzero value as zero.

    - exactly 0 prints as ``0`` (no sign, no decimals); NaN/inf as ``—``;
    - otherwise ``decimals`` places (the spec's), unless that would round to 0: then two
      significant digits (``0.0024``, ``2.8e-06``), or always so with ``significant``;
    - ``sign`` prints a leading + on positive values; a negative sign is ``−`` (U+2212).
    """
    if not math.isfinite(value):
        return "—"
    if value == 0:
        return "0"
    mark = "+" if sign else ""
    if significant or _rounds_to_zero(value, decimals):
        text = _significant(value, mark)
    else:
        text = f"{value:{mark}.{decimals}f}"
    return MINUS + text[1:] if text.startswith("-") else text


def format_interval(mean: float, low: float, high: float, decimals: int, sign: bool = True) -> str:
    """``mean [low, high]`` (signed, for a difference, unless ``sign`` is False). The three
    share one style: the spec's decimals, or, when any nonzero one of them would round to 0
    there, two significant digits each."""
    values = [v for v in (mean, low, high) if math.isfinite(v)]
    significant = any(_rounds_to_zero(v, decimals) for v in values)
    mean_text, low_text, high_text = (
        format_number(v, decimals, sign=sign, significant=significant) for v in (mean, low, high)
    )
    return f"{mean_text} [{low_text}, {high_text}]"


def format_mean_std(summary: Summary, decimals: int) -> str:
    """``mean ± std`` (``mean`` alone for one value, ``—`` for none), each by format_number."""
    if summary.n == 0:
        return "—"
    if summary.n == 1:
        return format_number(summary.mean, decimals)
    return f"{format_number(summary.mean, decimals)} ± {format_number(summary.std, decimals)}"


def identical(differences: Iterable[float]) -> bool:
    """Every paired difference is exactly 0 (and there is at least one)."""
    values = list(differences)
    return bool(values) and all(v == 0 for v in values)


def format_difference(summary: Summary, differences: Iterable[float], decimals: int) -> str:
    """A paired difference: ``mean [95% interval] (pairs)``; ``0 (identical in all n seeds)``
    when every pair is equal; ``mean (1)`` with a single pair; ``—`` with none."""
    if summary.n == 0:
        return "—"
    if identical(differences):
        return (
            "0 (identical in the 1 seed)"
            if summary.n == 1
            else (f"0 (identical in all {summary.n} seeds)")
        )
    if summary.n == 1:
        return f"{format_number(summary.mean, decimals, sign=True)} (1)"
    return f"{format_interval(summary.mean, summary.low, summary.high, decimals)} ({summary.n})"


def excludes(low: float, high: float, value: float = 0.0) -> bool:
    """The interval [low, high] lies strictly on one side of ``value`` (NaN ends: no)."""
    return (low > value) or (high < value)


def _unit(label: str) -> tuple[str, str]:
    """(suffix for a level, suffix for a distance): ('%', ' pp') for a percentage metric."""
    return ("%", " pp") if "%" in label else ("", "")


def chance_note(
    metric: Metric,
    cells: list[tuple[str, Summary, list[float], tuple[float, float] | None]],
) -> str | None:
    """A sentence, from the numbers, on where a metric with a chance level stands against it.

    ``cells``: (name, summary with its 95% t-interval, the per-seed values, the band a model
    ignoring its input scores or None) per cell. With a band (from the runs' prediction
    statistics, K_minority and K_majority), says whether every run lies inside it;
    otherwise whether every cell's interval contains the chance level, and how far the cell
    means and the single runs lie from it."""
    if metric.chance is None:
        return None
    chance, d = metric.chance, metric.decimals
    level, distance = _unit(metric.label)
    basis = f" ({metric.chance_basis})" if metric.chance_basis else ""
    head = f"{metric.label}: chance is {chance:g}{level}{basis}."
    counted = [(name, s, v, band) for name, s, v, band in cells if s.n > 0]
    if not counted:
        return f"{head} No cell has a value yet."
    bands = [band for *_, band in counted if band is not None]
    if bands:
        low, high = min(b[0] for b in bands), max(b[1] for b in bands)
        band_text = (
            f"On the evaluated set a model that ignores its input scores between "
            f"{format_number(low, d)}{level} and {format_number(high, d)}{level} (always the "
            "least or always the most common label)."
        )
        outside = [
            (name, s)
            for name, s, values, band in counted
            if band is None or any(not band[0] <= x <= band[1] for x in values)
        ]
        if not outside:
            return (
                f"{head} {band_text} Every run of every cell lies within that band: no cell "
                "shows that the model learned this task at this scale."
            )
        listed = "; ".join(f"{name}: {format_mean_std(s, d)}" for name, s in outside)
        return (
            f"{head} {band_text} {len(outside)} of the {len(counted)} cells have runs "
            f"outside that band ({listed})."
        )
    far_mean = max(abs(s.mean - chance) for _, s, _, _ in counted)
    far_run = max(abs(x - chance) for _, _, values, _ in counted for x in values)
    spread = (
        f"every cell mean is within ±{format_number(far_mean, d)}{distance} of it, every "
        f"run within ±{format_number(far_run, d)}{distance}"
    )
    no_interval = [name for name, s, _, _ in counted if not math.isfinite(s.low)]
    with_interval = len(counted) - len(no_interval)
    away = [(name, s) for name, s, _, _ in counted if excludes(s.low, s.high, chance)]
    if not away and not no_interval:
        return (
            f"{head} Every cell's 95% t-interval over seeds contains chance; {spread}: "
            "no cell is distinguishable from chance at this scale."
        )
    parts = [head]
    if away:
        listed = "; ".join(
            f"{name}: {format_interval(s.mean, s.low, s.high, d, sign=False)}" for name, s in away
        )
        parts.append(
            f"{len(away)} of the {with_interval} cells with a 95% t-interval over seeds "
            f"exclude chance ({listed})."
        )
    elif with_interval:
        parts.append(f"The 95% t-intervals of all {with_interval} cells that have one contain it.")
    if no_interval:
        parts.append(f"Fewer than 2 seeds, no interval: {', '.join(no_interval)}.")
    parts.append(spread[0].upper() + spread[1:] + ".")
    return " ".join(parts)


# --------------------------------------------------------------------------- markdown


def format_cell(result: CellResult) -> str:
    s, d = result.summary, result.metric.decimals
    issues = [f"{len(result.nan)} NaN"] if result.nan else []
    if result.absent:
        issues.append(f"{len(result.absent)} not evaluated")
    for status, seeds in result.not_done.items():
        issues.append(f"{len(seeds)} {status}")
    if result.not_reached:
        issues.append(f"{len(result.not_reached)} not reached")
    if result.collapsed:
        issues.append(f"{len(result.collapsed)} predict one class")
    if len(result.machines) > 1:
        issues.append(f"{len(result.machines)} machines or precisions mixed")
    count = f"{s.n}; {', '.join(issues)}" if issues else str(s.n)
    return f"{format_mean_std(s, d)} ({count})"


def format_paired(result: PairedResult) -> str:
    return format_difference(result.summary, result.differences.values(), result.metric.decimals)


def _evaluated_text(table: Table, metric: Metric) -> str:
    """How finely a metric is measured: the evaluated examples behind an accuracy, or the
    target and the censoring rule of a time to target."""
    results = [r for (_, _, key), r in table.cells.items() if key == metric.key]
    if metric.time_to_target:
        targets = {r.cell.row.target(metric) for r in results}
        shown = ", ".join(f"{t:g}" for t in sorted(targets))
        return (
            f" The first evaluated epoch at which `{metric.source}` reaches its target "
            f"({shown}; {metric.target_reason}); a run that never does counts as its last "
            "evaluated epoch plus one evaluation interval (a lower bound; `not reached`)."
        )
    counts = {r.examples for r in results if r.examples}
    if not counts:
        return ""
    shown = " or ".join(f"{c:,.0f}" for c in sorted(counts))
    step = format_number(100.0 / min(counts), metric.decimals, significant=True)
    return f" Evaluated on {shown} examples: one example is {step} pp."


def _select_text(metric: Metric, rows: tuple[Row, ...]) -> str:
    if metric.time_to_target:
        return "from each run's evaluations"
    if all(r.epoch is not None for r in rows):
        return "at the epoch of each row"
    return {"final": "at the last epoch", "best": "at the best evaluation"}[metric.select]


def _table_lines(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return lines


def _group_label(spec: TableSpec, group: int) -> str:
    cell = next(c for c in spec.cells if c.group == group)
    if cell.row.overrides:
        return f"{cell.row.name} / {cell.column.name}"
    return cell.column.name


def render_markdown(table: Table) -> str:
    spec = table.spec
    counts: dict[str, int] = {}
    for record in table.records.values():
        counts[record.status] = counts.get(record.status, 0) + 1
    status_text = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    lines = [
        f"# {spec.title}",
        "",
        f"Scale `{spec.scale}` of `{_shown_path(spec.path)}`: {len(spec.groups)} configs x "
        f"{len(spec.seeds)} seeds ({', '.join(map(str, spec.seeds))}) = {len(table.records)} "
        f"runs: {status_text}.",
        "",
        "Each cell: mean ± std over seeds (number of seeds; runs not counted and why). "
        "Differences (X − Y): per seed, X minus Y on the same seed; mean [95% t-interval] "
        "(pairs). Only completed runs count; NaN values are listed, never "
        "averaged. Numbers keep each metric's decimals; one that would round to 0 there "
        "shows 2 significant digits instead, and 0 is exactly 0.",
    ]
    generated_notes = []
    for metric in spec.metrics:
        lines += ["", f"## {metric.label}", ""]
        better = "higher" if metric.higher_is_better else "lower"
        read = f"Read {_select_text(metric, spec.rows)}; {better} is better."
        if metric.chance is not None:
            level, _ = _unit(metric.label)
            basis = f" ({metric.chance_basis})" if metric.chance_basis else ""
            read += f" Chance: {metric.chance:g}{level}{basis}."
        read += _evaluated_text(table, metric)
        lines += [read, ""]
        with_paper = [
            c.name
            for c in spec.columns
            if any(r.paper_value(c.name, metric.key) is not None for r in spec.rows)
        ]
        header = ["setting"]
        for column in spec.columns:
            header.append(column.name)
            if column.name in with_paper:
                header.append(f"paper {column.name}")
        if metric.chance is not None:
            header.append("chance")
        header += [f"{column} − {baseline}" for column, baseline in spec.pairs]
        body = []
        for row in spec.rows:
            line = [row.name]
            for column in spec.columns:
                result = table.cells[(row.name, column.name, metric.key)]
                line.append(format_cell(result))
                if column.name in with_paper:
                    paper = result.paper
                    line.append("n/p" if paper is None else format_number(paper, metric.decimals))
            if metric.chance is not None:
                line.append(format_number(metric.chance, metric.decimals))
            line += [
                format_paired(table.paired[(row.name, c, b, metric.key)]) for c, b in spec.pairs
            ]
            body.append(line)
        lines += _table_lines(header, body)
        if with_paper:
            lines += ["", f"Paper values: {spec.paper_source}. n/p: not published."]
        elif spec.scale == "paper":
            lines += ["", f"Paper values: {spec.paper_source or 'none published for this table'}."]
        else:
            lines += ["", "Paper values: not comparable at this scale (other data and models)."]
        note = chance_note(metric, _chance_cells(table, metric))
        if note:
            generated_notes.append(note)
    lines += ["", *_verdict_section(table), "", *_runs_section(table)]
    lines += ["", *_machines_section(table), "", *_agr_section(table)]
    notes = [*generated_notes, *spec.notes]
    if notes:
        lines += ["", "## Notes", "", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"


def _p_text(p: float) -> str:
    if not math.isfinite(p):
        return "—"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}".rstrip("0").rstrip(".")


VERDICT_METHOD = (
    "Per comparison: the paired difference with its 95% t-interval; the test of the "
    "difference and of equivalence within ±margin (two one-sided tests): `t` is the paired "
    "t-test, `t (sd ≥ r)` the same with the paired sd raised to the metric's resolution r "
    "(one evaluated example of an accuracy, one evaluation interval of a time to target) "
    "where it was smaller, so that differences in whole examples never become certainty; "
    "`sign-flip (2^n)` is the exact paired permutation test over all 2^n sign patterns, used "
    "with fewer than 3 pairs or a zero sd of unknown resolution (its p-value is never below "
    "2/2^n). MDE: the smallest difference that t-test finds with 80% power at that sd and "
    "number of pairs, at the family's planning level alpha/m; seeds for margin: the pairs "
    "80% power against the margin needs at that level. The p-values are Holm-corrected "
    "within each family at alpha 0.05: the primary endpoint's comparisons are one family, "
    "every other comparison (secondary) the other. A comparison whose data cannot carry a "
    "verdict (both arms predicting one class in every run, every run at the level a model "
    "ignoring its input scores, or both arms constant across seeds) is `not informative`: "
    "it is not tested and counts in its family's correction with p = 1. `better, within ±m`: "
    "a real difference whose whole interval lies inside the margin."
)


def _verdict_section(table: Table) -> list[str]:
    """Per paired comparison: the difference, the test, what the seeds could detect, the
    Holm-adjusted p-values and the verdict (agr_suite.report.verdicts); then the endpoints, the
    margins with their history, and the power plan."""
    spec = table.spec
    lines = ["## Verdicts", "", VERDICT_METHOD, ""]
    header = ["metric", "setting", "comparison", "endpoint", "difference", "test"]
    header += ["MDE (80%)", "margin", "seeds for margin", "p difference", "p equivalence"]
    header.append("verdict")
    body = []
    for (row, column, _, key), result in table.paired.items():
        verdict, m = result.verdict, result.metric
        body.append(
            [
                f"`{key}`",
                row,
                f"{column} − {result.baseline}",
                result.family,
                format_paired(result),
                verdict.method if verdict else "—",
                format_number(verdict.mde, m.decimals) if verdict else "—",
                "—" if m.margin is None else f"±{m.margin:g}",
                "—"
                if not verdict or verdict.seeds_for_margin is None
                else str(verdict.seeds_for_margin),
                _p_text(verdict.p_difference) if verdict else "—",
                _p_text(verdict.p_equivalence) if verdict else "—",
                verdict.text if verdict else "—",
            ]
        )
    lines += _table_lines(header, body)
    return lines + ["", *endpoint_lines(spec)]


def endpoint_lines(spec: TableSpec) -> list[str]:
    """The primary endpoint, the margins (with every earlier value) and the power plan, as
    the spec fixed them before the runs."""
    sizes = spec.family_sizes()
    rows = "every row" if len(spec.primary.rows) == len(spec.rows) else ", ".join(spec.primary.rows)
    lines = [
        f"Primary endpoint: `{spec.primary.metric}` on {rows} ({_count(sizes['primary'])}; "
        f"{spec.primary.reason}); the other {_count(sizes['secondary'])} "
        f"{'is' if sizes['secondary'] == 1 else 'are'} secondary."
    ]
    reasons = [f"`{m.key}` ±{m.margin:g}: {m.margin_reason}" for m in spec.metrics if m.margin]
    if reasons:
        lines += ["", "Margins, fixed in the spec before the runs: " + "; ".join(reasons) + "."]
    history = [
        f"`{m.key}` ±{c.margin:g} from {c.since} until {c.until} ({c.reason})"
        for m in spec.metrics
        for c in m.margin_history
    ]
    if history:
        lines += ["", "Earlier margins at this scale: " + "; ".join(history) + "."]
    lines += ["", *plan_lines(spec)]
    return lines


def _count(comparisons: int) -> str:
    return f"{comparisons} comparison{'' if comparisons == 1 else 's'}"


def plan_lines(spec: TableSpec) -> list[str]:
    """The power plan per metric with an assumed paired sd (the dry run prints it too)."""
    plans = spec.plans()
    if not plans:
        return [
            f"Power plan: none at this scale (no assumed paired sd); it ran {len(spec.seeds)} "
            "seeds."
        ]
    text = [
        f"`{p.metric.key}` ({p.family}: {_count(p.family_size)}, planned at alpha/"
        f"{p.family_size} = {p.level:.2g}) needs {p.seeds} seeds for ±{p.metric.margin:g} at "
        f"an assumed paired sd of {p.metric.paired_sd:g} ({p.metric.paired_sd_reason})"
        for p in plans
    ]
    return [
        f"Power plan (80% power; this scale runs {len(spec.seeds)} seeds): " + "; ".join(text) + "."
    ]


def _chance_cells(table: Table, metric: Metric) -> list:
    return [
        (
            f"{r.cell.row.name} / {r.cell.column.name}",
            r.summary,
            list(r.values.values()),
            r.chance_band,
        )
        for (_, _, key), r in table.cells.items()
        if key == metric.key
    ]


def _shown_path(path: Path) -> str:
    from agr_suite.report.spec import ROOT

    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)


def _runs_section(table: Table) -> list[str]:
    spec = table.spec
    lines = ["## Runs not in the table", ""]
    for (group, seed), record in sorted(table.records.items()):
        label = f"{_group_label(spec, group)}, seed {seed}"
        where = f"`{record.folder}`" if record.folder else ""
        if record.status != COMPLETED:
            reason = f": {_short(record.error)}" if record.error else ""
            lines.append(f"- {record.status}: {label} {where}{reason}")
    for result in table.cells.values():
        cell, key = result.cell, result.metric.key
        at = f" at epoch {cell.row.epoch}" if cell.row.epoch is not None else ""
        for seed in result.nan:
            lines.append(f"- NaN {key}{at}: {cell.row.name} / {cell.column.name}, seed {seed}")
        for seed in result.absent:
            lines.append(
                f"- no {key}{at} recorded: {cell.row.name} / {cell.column.name}, seed {seed}"
            )
    if len(lines) == 2:
        lines.append("None: every run completed with finite values.")
    return lines


def run_machines(record: RunRecord) -> list[tuple[str, str]]:
    """(machine type, precision) of each session of a run (agr_suite.engine.machine); a run
    written before these were recorded, by what its environment says."""
    sessions = record.results.get("machines")
    if sessions:
        return [(s.get("machine", "?"), s.get("precision", "not recorded")) for s in sessions]
    from agr_suite.engine.machine import machine_label  # the engine's torch, only here

    env = record.results.get("environment") or {}
    return [(machine_label(env), env.get("precision", "not recorded"))]


def _machines_section(table: Table) -> list[str]:
    """The machine types and precisions behind the table's values, and the cells that mix
    them (their per-seed values were not computed alike)."""
    counts: dict[tuple[str, str], int] = {}
    for record in table.records.values():
        if record.status == COMPLETED:
            for key in dict.fromkeys(run_machines(record)):
                counts[key] = counts.get(key, 0) + 1
    lines = ["## Machines", ""]
    if not counts:
        return [*lines, "No completed runs."]
    lines += [
        f"- {machine}, {precision}: {n} run{'s' if n != 1 else ''}"
        for (machine, precision), n in sorted(counts.items())
    ]
    mixed = sorted(
        {
            f"{r.cell.row.name} / {r.cell.column.name}"
            for r in table.cells.values()
            if len(r.machines) > 1
        }
    )
    lines.append("")
    if mixed:
        lines.append(
            "Cells whose runs mix machine types or precisions (their seeds were not computed "
            f"alike; compare verdicts, not values): {'; '.join(mixed)}."
        )
    else:
        lines.append("No cell mixes machine types or precisions.")
    lines.append(
        "A CPU machine type with the same versions repeats each run bit for bit (tested on the "
        "mini tables; on GPUs not tested); another CPU or GPU model, or another precision, "
        "rounds differently, and only the verdicts must agree (README, Reproducibility)."
    )
    return lines


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _agr_section(table: Table) -> list[str]:
    """What AGR did in each config's runs: the share of gradient L1 mass it removed, in all
    and per parameter kind (results.json agr.removed_fraction_mean, removed_fraction_by_kind),
    and how much it changed the optimizer's update per kind (agr.update_change). Runs from
    before a measurement existed show — for it."""
    from agr.update_change import KINDS

    spec = table.spec
    removed_body, change_body = [], []
    for group in range(len(spec.groups)):
        fractions: dict[int, float] = {}
        by_kind: dict[str, list[float]] = {kind: [] for kind in KINDS}
        changes: dict[str, list[float]] = {kind: [] for kind in KINDS}
        for seed in spec.seeds:
            record = table.records[(group, seed)]
            if record.status != COMPLETED:
                continue
            diagnostics = record.results.get("agr") or {}
            value = _finite(diagnostics.get("removed_fraction_mean"))
            if math.isfinite(value):
                fractions[seed] = value
            for source, into, field_name in (
                (diagnostics.get("removed_fraction_by_kind"), by_kind, "mean"),
                (diagnostics.get("update_change"), changes, "median"),
            ):
                for kind, summary in (source or {}).items():
                    number = _finite((summary or {}).get(field_name))
                    if kind in into and math.isfinite(number):
                        into[kind].append(number)
        if not fractions:
            continue
        s = summarize(fractions.values())
        spread = f" ± {s.std:.2g}" if s.n > 1 else ""
        label = _group_label(spec, group)
        removed_body.append([label, f"{s.mean:.3g}{spread} ({s.n})", *_kind_means(by_kind)])
        change_body.append([label, *_kind_means(changes)])
    lines = ["## AGR diagnostics", ""]
    if not removed_body:
        return [*lines, "No completed run with AGR diagnostics."]
    lines += [
        "Removed fraction: the share of the gradients' L1 mass that AGR (or the arm's variant "
        "of it) removed, on the steps of a run sampled while it was on (every "
        "`trainer.log_every` steps; results.json `agr.removed_fraction_mean`), then mean ± "
        "std over runs; per parameter kind, the kind's removed mass over its sum |g| "
        "(`agr.removed_fraction_by_kind`), mean over steps and runs. For a tensor AGR removes "
        "sum(g²) / (sum|g|)², about 1/size for a dense gradient, so large layers lose little "
        "and small ones (norms, biases) more; a dose that froze a kind would show 1 there.",
        "",
    ]
    header = ["runs", "removed fraction", *[f"removed: {k}" for k in KINDS]]
    lines += _table_lines(header, removed_body)
    lines += [
        "",
        "Update change by parameter kind: ||u_AGR − u|| / ||u||, the relative change AGR makes "
        "to the optimizer's update of a tensor, from a float64 twin of the optimizer step on "
        "the same logging steps, so that updates near the weights' float32 resolution are "
        "measured, not rounded (results.json `agr.update_change`); the median over a kind's "
        "tensors, averaged over steps and then over runs.",
        "",
    ]
    return lines + _table_lines(["runs", *[f"update change: {k}" for k in KINDS]], change_body)


def _kind_means(values: dict[str, list[float]]) -> list[str]:
    return [f"{summarize(v).mean:.2g}" if v else "—" for v in values.values()]


# --------------------------------------------------------------------------- csv and plots

CSV_FIELDS = [
    "table",
    "scale",
    "metric",
    "select",
    "row",
    "epoch",
    "column",
    "n",
    "mean",
    "std",
    "values",
    "nan_seeds",
    "not_evaluated_seeds",
    "missing_seeds",
    "failed_seeds",
    "running_seeds",
    "not_composed_seeds",
    "paper",
    "diff_vs",
    "diff_n",
    "diff_mean",
    "diff_ci_low",
    "diff_ci_high",
    "diff_values",
    # Added after the first committed tables (readers treat them as optional):
    "ci_low",  # 95% t-interval of the cell's mean over seeds
    "ci_high",
    "chance",  # the metric's chance level, when the spec declares one
    "chance_low",  # what a model ignoring its input scores (runs' K_minority, K_majority)
    "chance_high",
    "margin",  # the paired comparison's verdict (agr_suite.report.verdicts), on compared cells
    "mde80",
    "seeds_for_margin",
    "p_difference_holm",
    "p_equivalence_holm",
    "verdict",
    # Added with the degenerate-data checks and the endpoint families:
    "family",  # primary | secondary: the Holm family of the comparison
    "test",  # t | t (sd ≥ r) | sign-flip (2^n)
    "resolution",  # the cell's smallest step (one example; one evaluation interval)
    "examples",  # evaluated examples behind an accuracy
    "one_class_seeds",  # runs whose predictions take a single class
    "not_reached_seeds",  # time to target: runs that never reached it
]


def _csv_number(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else repr(float(value))


def _seed_list(seeds: Iterable[int]) -> str:
    return " ".join(str(s) for s in seeds)


def write_csv(table: Table, path: Path) -> None:
    spec = table.spec
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for (row, column, key), result in table.cells.items():
            # one line per comparison the cell is the compared arm of (one line when none)
            comparisons = [
                table.paired[(row, column, baseline, key)]
                for treated, baseline in spec.pairs
                if treated == column
            ]
            for paired in comparisons or [None]:
                _write_csv_line(writer, spec, row, column, key, result, paired)


def _write_csv_line(writer, spec, row, column, key, result, paired) -> None:
    s = result.summary
    writer.writerow(
        {
            "table": spec.name,
            "scale": spec.scale,
            "metric": key,
            "select": "epoch" if result.cell.row.epoch is not None else result.metric.select,
            "row": row,
            "epoch": "" if result.cell.row.epoch is None else result.cell.row.epoch,
            "column": column,
            "n": s.n,
            "mean": _csv_number(s.mean),
            "std": _csv_number(s.std),
            "values": " ".join(f"{k}:{v!r}" for k, v in result.values.items()),
            "nan_seeds": _seed_list(result.nan),
            "not_evaluated_seeds": _seed_list(result.absent),
            "missing_seeds": _seed_list(result.not_done.get(MISSING, [])),
            "failed_seeds": _seed_list(result.not_done.get(FAILED, [])),
            "running_seeds": _seed_list(result.not_done.get(RUNNING, [])),
            "not_composed_seeds": _seed_list(result.not_done.get(NOT_COMPOSED, [])),
            "paper": _csv_number(result.paper),
            "diff_vs": paired.baseline if paired else "",
            "diff_n": paired.summary.n if paired else "",
            "diff_mean": _csv_number(paired.summary.mean) if paired else "",
            "diff_ci_low": _csv_number(paired.summary.low) if paired else "",
            "diff_ci_high": _csv_number(paired.summary.high) if paired else "",
            "diff_values": " ".join(f"{k}:{v!r}" for k, v in paired.differences.items())
            if paired
            else "",
            "ci_low": _csv_number(s.low),
            "ci_high": _csv_number(s.high),
            "chance": _csv_number(result.metric.chance),
            "chance_low": _csv_number(band[0]) if (band := result.chance_band) else "",
            "chance_high": _csv_number(band[1]) if band else "",
            "resolution": _csv_number(result.resolution),
            "examples": _csv_number(result.examples),
            "one_class_seeds": _seed_list(result.collapsed),
            "not_reached_seeds": _seed_list(result.not_reached),
            **_verdict_fields(paired),
        }
    )


def _verdict_fields(paired: PairedResult | None) -> dict[str, Any]:
    verdict = paired.verdict if paired else None
    if verdict is None:
        return {}
    needed = verdict.seeds_for_margin
    return {
        "margin": _csv_number(paired.metric.margin),
        "mde80": _csv_number(verdict.mde),
        "seeds_for_margin": "" if needed is None else needed,
        "p_difference_holm": _csv_number(verdict.p_difference),
        "p_equivalence_holm": _csv_number(verdict.p_equivalence),
        "verdict": verdict.text,
        "family": paired.family,
        "test": verdict.method,
    }


def curves(table: Table, group: int, metric: Metric) -> dict[int, Summary]:
    """Epoch -> mean and std over the completed runs of a group that recorded the metric."""
    by_epoch: dict[int, list[float]] = {}
    for seed in table.spec.seeds:
        record = table.records[(group, seed)]
        if record.status != COMPLETED:
            continue
        for entry in record.history:
            value = entry.get(metric.key)
            if isinstance(value, (int, float)) and math.isfinite(value) and "epoch" in entry:
                by_epoch.setdefault(int(entry["epoch"]), []).append(float(value))
    return {epoch: summarize(values) for epoch, values in sorted(by_epoch.items())}


def plot_curves(table: Table, path: Path) -> None:
    """One panel per metric and setting: each column's metric against epoch, mean over seeds
    with a +-1 std band, and the paper's values as crosses where published."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    spec = table.spec
    settings: dict[tuple[str, ...], list[Row]] = {}
    for row in spec.rows:
        settings.setdefault(row.overrides, []).append(row)
    panels = [(metric, rows) for metric in spec.metrics for rows in settings.values()]
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    figure, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (metric, rows) in zip(axes.flat, panels):
        drawn = False
        for i, column in enumerate(spec.columns):
            color = colors[i % len(colors)]
            group = next(c.group for c in spec.cells if c.row is rows[0] and c.column is column)
            points = curves(table, group, metric)
            if points:
                epochs = list(points)
                mean = [points[e].mean for e in epochs]
                spread = [points[e].std if points[e].n > 1 else 0.0 for e in epochs]
                ax.plot(epochs, mean, marker=".", color=color, label=column.name)
                ax.fill_between(
                    epochs,
                    [m - s for m, s in zip(mean, spread)],
                    [m + s for m, s in zip(mean, spread)],
                    color=color,
                    alpha=0.2,
                )
                drawn = True
            published = [
                (r.epoch, r.paper_value(column.name, metric.key))
                for r in rows
                if r.epoch is not None and r.paper_value(column.name, metric.key) is not None
            ]
            if published:
                ax.plot(*zip(*published), "x", color=color, label=f"{column.name} (paper)")
                drawn = True
        setting = rows[0].name if rows[0].overrides else None  # rows that are epochs: no name
        ax.set_title(setting or metric.label, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric.label if setting else metric.key, fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if drawn:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no completed runs", ha="center", va="center", transform=ax.transAxes)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    figure.suptitle(f"{spec.title} (scale {spec.scale}; mean ± std over seeds)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_outputs(table: Table, out_dir: str | Path) -> list[Path]:
    """<out_dir>/<table>.md, .csv and _curves.png."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = table.spec.name
    markdown, table_csv, png = out / f"{name}.md", out / f"{name}.csv", out / f"{name}_curves.png"
    markdown.write_text(render_markdown(table))
    write_csv(table, table_csv)
    plot_curves(table, png)
    return [markdown, table_csv, png]
