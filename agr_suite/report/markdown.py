"""A table as Markdown (results/[mini/]<table>.md): one section per metric with the cells, the
paper's values and the paired differences; then the verdicts, the endpoints and the power
plan, the runs not in the table, the machines, AGR's diagnostics and the notes."""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING

from agr_suite.report.numbers import (
    format_difference,
    format_interval,
    format_mean_std,
    format_number,
    percent_units,
)
from agr_suite.report.run_folders import COMPLETED, finite, run_machines
from agr_suite.report.spec import ROOT, Metric, TableSpec
from agr_suite.report.verdicts import Summary, summarize

if TYPE_CHECKING:
    from pathlib import Path

    from agr_suite.report.tables import CellResult, PairedResult, Table

ChanceCell = tuple[str, Summary, list[float], tuple[float, float] | None]


def render_markdown(table: Table) -> str:
    spec = table.spec
    lines = _head(table)
    for metric in spec.metrics:
        lines += ["", *_metric_section(table, metric)]
    lines += ["", *_verdict_section(table), "", *_runs_section(table)]
    lines += ["", *_machines_section(table), "", *_agr_section(table)]
    notes = [chance_note(metric, _chance_cells(table, metric)) for metric in spec.metrics]
    notes = [*filter(None, notes), *spec.notes]
    if notes:
        lines += ["", "## Notes", "", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"


def _table_lines(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return lines


def _shown_path(path: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)


def _head(table: Table) -> list[str]:
    spec = table.spec
    counts = Counter(record.status for record in table.records.values())
    status_text = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return [
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


# --------------------------------------------------------------------------- metric sections


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


def _metric_section(table: Table, metric: Metric) -> list[str]:
    """The metric's heading, how it is read, its table and where the paper values come from."""
    spec = table.spec
    with_paper = [
        c.name
        for c in spec.columns
        if any(r.paper_value(c.name, metric.key) is not None for r in spec.rows)
    ]
    if with_paper:
        source = f"Paper values: {spec.paper_source}. n/p: not published."
    elif spec.scale == "paper":
        source = f"Paper values: {spec.paper_source or 'none published for this table'}."
    else:
        source = "Paper values: not comparable at this scale (other data and models)."
    table_lines = _metric_table(table, metric, with_paper)
    return [f"## {metric.label}", "", _read_text(table, metric), "", *table_lines, "", source]


def _read_text(table: Table, metric: Metric) -> str:
    """Where a metric is read, which way is better, its chance level and its resolution."""
    if metric.time_to_target:
        where = "from each run's evaluations"
    elif all(r.epoch is not None for r in table.spec.rows):
        where = "at the epoch of each row"
    else:
        where = {"final": "at the last epoch", "best": "at the best evaluation"}[metric.select]
    text = f"Read {where}; {'higher' if metric.higher_is_better else 'lower'} is better."
    if metric.chance is not None:
        basis = f" ({metric.chance_basis})" if metric.chance_basis else ""
        text += f" Chance: {metric.chance:g}{percent_units(metric.label)[0]}{basis}."
    return text + _evaluated_text(table, metric)


def _evaluated_text(table: Table, metric: Metric) -> str:
    """How finely a metric is measured: the evaluated examples behind an accuracy, or the
    target and the censoring rule of a time to target."""
    results = table.cells_of(metric)
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


def _metric_table(table: Table, metric: Metric, with_paper: list[str]) -> list[str]:
    """Rows x columns (each beside its paper value where one is published), the chance level,
    then the paired differences."""
    spec, decimals = table.spec, metric.decimals
    header = ["setting"]
    for column in spec.columns:
        header.append(column.name)
        if column.name in with_paper:
            header.append(f"paper {column.name}")
    header += ["chance"] if metric.chance is not None else []
    header += [f"{column} − {baseline}" for column, baseline in spec.pairs]
    body = []
    for row in spec.rows:
        line = [row.name]
        for column in spec.columns:
            result = table.cells[(row.name, column.name, metric.key)]
            line.append(format_cell(result))
            if column.name in with_paper:
                paper = result.paper
                line.append("n/p" if paper is None else format_number(paper, decimals))
        if metric.chance is not None:
            line.append(format_number(metric.chance, decimals))
        line += [format_paired(table.paired[(row.name, c, b, metric.key)]) for c, b in spec.pairs]
        body.append(line)
    return _table_lines(header, body)


# --------------------------------------------------------------------------- chance


def _chance_cells(table: Table, metric: Metric) -> list[ChanceCell]:
    return [
        (r.label, r.summary, list(r.values.values()), r.chance_band) for r in table.cells_of(metric)
    ]


def chance_note(metric: Metric, cells: list[ChanceCell]) -> str | None:
    """A sentence, from the numbers, on where a metric with a chance level stands against it.

    ``cells``: (name, summary with its 95% t-interval, the per-seed values, the band a model
    ignoring its input scores or None) per cell. With a band (from the runs' prediction
    statistics, K_minority and K_majority), says whether every run lies inside it;
    otherwise whether every cell's interval contains the chance level, and how far the cell
    means and the single runs lie from it."""
    if metric.chance is None:
        return None
    basis = f" ({metric.chance_basis})" if metric.chance_basis else ""
    head = f"{metric.label}: chance is {metric.chance:g}{percent_units(metric.label)[0]}{basis}."
    counted = [cell for cell in cells if cell[1].n > 0]
    if not counted:
        return f"{head} No cell has a value yet."
    if any(band is not None for *_, band in counted):
        return f"{head} {_band_note(metric, counted)}"
    return f"{head} {_interval_note(metric, counted)}"


def _band_note(metric: Metric, counted: list[ChanceCell]) -> str:
    """Whether every run lies in the band of a model that ignores its input."""
    d, (level, _) = metric.decimals, percent_units(metric.label)
    bands = [band for *_, band in counted if band is not None]
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
            f"{band_text} Every run of every cell lies within that band: no cell "
            "shows that the model learned this task at this scale."
        )
    listed = "; ".join(f"{name}: {format_mean_std(s, d)}" for name, s in outside)
    return (
        f"{band_text} {len(outside)} of the {len(counted)} cells have runs "
        f"outside that band ({listed})."
    )


def _interval_note(metric: Metric, counted: list[ChanceCell]) -> str:
    """Whether the cells' 95% t-intervals contain chance, and how far means and runs lie."""
    chance, d, (_, distance) = metric.chance, metric.decimals, percent_units(metric.label)
    far_mean = max(abs(s.mean - chance) for _, s, _, _ in counted)
    far_run = max(abs(x - chance) for _, _, values, _ in counted for x in values)
    spread = (
        f"every cell mean is within ±{format_number(far_mean, d)}{distance} of it, every "
        f"run within ±{format_number(far_run, d)}{distance}"
    )
    no_interval = [name for name, s, _, _ in counted if not math.isfinite(s.low)]
    with_interval = len(counted) - len(no_interval)
    away = [(name, s) for name, s, _, _ in counted if s.low > chance or s.high < chance]
    if not away and not no_interval:
        return (
            f"Every cell's 95% t-interval over seeds contains chance; {spread}: "
            "no cell is distinguishable from chance at this scale."
        )
    parts = []
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


# --------------------------------------------------------------------------- verdicts

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
VERDICT_HEADER = [
    "metric", "setting", "comparison", "endpoint", "difference", "test", "MDE (80%)", "margin",
    "seeds for margin", "p difference", "p equivalence", "verdict",
]  # fmt: skip


def _p_text(p: float) -> str:
    if not math.isfinite(p):
        return "—"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}".rstrip("0").rstrip(".")


def _verdict_section(table: Table) -> list[str]:
    """Per paired comparison: the difference, the test, what the seeds could detect, the
    Holm-adjusted p-values and the verdict (agr_suite.report.verdicts); then the endpoints, the
    margins with their history, and the power plan."""
    body = [_verdict_row(row, key, result) for (row, _, _, key), result in table.paired.items()]
    lines = ["## Verdicts", "", VERDICT_METHOD, "", *_table_lines(VERDICT_HEADER, body)]
    return lines + ["", *_endpoint_lines(table.spec)]


def _verdict_row(row: str, key: str, result: PairedResult) -> list[str]:
    verdict, metric = result.verdict, result.metric
    margin = "—" if metric.margin is None else f"±{metric.margin:g}"
    comparison = [f"`{key}`", row, f"{result.cell.column.name} − {result.baseline}"]
    comparison += [result.family, format_paired(result)]
    if verdict is None:
        return [*comparison, "—", "—", margin, "—", "—", "—", "—"]
    seeds = "—" if verdict.seeds_for_margin is None else str(verdict.seeds_for_margin)
    return [
        *comparison,
        verdict.method,
        format_number(verdict.mde, metric.decimals),
        margin,
        seeds,
        _p_text(verdict.p_difference),
        _p_text(verdict.p_equivalence),
        verdict.text,
    ]


def _count(comparisons: int) -> str:
    return f"{comparisons} comparison{'' if comparisons == 1 else 's'}"


def _endpoint_lines(spec: TableSpec) -> list[str]:
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
    return [*lines, "", _plan_line(spec)]


def _plan_line(spec: TableSpec) -> str:
    """The power plan per metric with an assumed paired sd."""
    plans = spec.plans()
    if not plans:
        return (
            f"Power plan: none at this scale (no assumed paired sd); it ran {len(spec.seeds)} "
            "seeds."
        )
    text = [
        f"`{p.metric.key}` ({p.family}: {_count(p.family_size)}, planned at alpha/"
        f"{p.family_size} = {p.level:.2g}) needs {p.seeds} seeds for ±{p.metric.margin:g} at "
        f"an assumed paired sd of {p.metric.paired_sd:g} ({p.metric.paired_sd_reason})"
        for p in plans
    ]
    return (
        f"Power plan (80% power; this scale runs {len(spec.seeds)} seeds): " + "; ".join(text) + "."
    )


# --------------------------------------------------------------------------- runs and machines


def _group_label(spec: TableSpec, group: int) -> str:
    cell = next(c for c in spec.cells if c.group == group)
    if cell.row.overrides:
        return f"{cell.row.name} / {cell.column.name}"
    return cell.column.name


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _runs_section(table: Table) -> list[str]:
    lines = ["## Runs not in the table", ""]
    for (group, seed), record in sorted(table.records.items()):
        label = f"{_group_label(table.spec, group)}, seed {seed}"
        where = f"`{record.folder}`" if record.folder else ""
        if record.status != COMPLETED:
            reason = f": {_short(record.error)}" if record.error else ""
            lines.append(f"- {record.status}: {label} {where}{reason}")
    for result in table.cells.values():
        row, key = result.cell.row, result.metric.key
        at = f" at epoch {row.epoch}" if row.epoch is not None else ""
        lines += [f"- NaN {key}{at}: {result.label}, seed {seed}" for seed in result.nan]
        lines += [f"- no {key}{at} recorded: {result.label}, seed {seed}" for seed in result.absent]
    if len(lines) == 2:
        lines.append("None: every run completed with finite values.")
    return lines


def _machines_section(table: Table) -> list[str]:
    """The machine types and precisions behind the table's values, and the cells that mix
    them (their per-seed values were not computed alike)."""
    completed = [r for r in table.records.values() if r.status == COMPLETED]
    counts = Counter(key for r in completed for key in dict.fromkeys(run_machines(r)))
    lines = ["## Machines", ""]
    if not counts:
        return [*lines, "No completed runs."]
    lines += [
        f"- {machine}, {precision}: {n} run{'s' if n != 1 else ''}"
        for (machine, precision), n in sorted(counts.items())
    ]
    mixed = sorted({r.label for r in table.cells.values() if len(r.machines) > 1})
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


# --------------------------------------------------------------------------- AGR diagnostics

REMOVED_TEXT = (
    "Removed fraction: the share of the gradients' L1 mass that AGR (or the arm's variant "
    "of it) removed, on the steps of a run sampled while it was on (every "
    "`trainer.log_every` steps; results.json `agr.removed_fraction_mean`), then mean ± "
    "std over runs; per parameter kind, the kind's removed mass over its sum |g| "
    "(`agr.removed_fraction_by_kind`), mean over steps and runs. For a tensor AGR removes "
    "sum(g²) / (sum|g|)², about 1/size for a dense gradient, so large layers lose little "
    "and small ones (norms, biases) more; a dose that froze a kind would show 1 there."
)
UPDATE_CHANGE_TEXT = (
    "Update change by parameter kind: ||u_AGR − u|| / ||u||, the relative change AGR makes "
    "to the optimizer's update of a tensor, from a float64 twin of the optimizer step on "
    "the same logging steps, so that updates near the weights' float32 resolution are "
    "measured, not rounded (results.json `agr.update_change`); the median over a kind's "
    "tensors, averaged over steps and then over runs."
)
NEIGHBOURS_TEXT = (
    "The GC and AGC arms report the same two numbers for their own transform: the share of "
    "the gradients' L1 mass it changed, sum|g − T(g)| / sum|g| (for AGR, the mass it "
    "removed), and ||u_T − u|| / ||u||. GC changes a unit's gradient by its mean, so a layer "
    "fed by a LayerNorm (whose outputs have zero mean) changes by rounding only; AGC changes "
    "only the units it clips."
)


def _neighbour_arms(table: Table) -> bool:
    """Whether a column of the table runs a transform other than AGR (GC, AGC)."""
    from agr.optim import split_name

    names = [
        o.split("=", 1)[1]
        for c in table.spec.columns
        for o in c.overrides
        if o.startswith("optimizer=")
    ]
    return any(split_name(name)[1] not in (None, "agr") for name in names)


def _agr_section(table: Table) -> list[str]:
    """What AGR did in each config's runs: the share of gradient L1 mass it removed, in all
    and per parameter kind (results.json agr.removed_fraction_mean, removed_fraction_by_kind),
    and how much it changed the optimizer's update per kind (agr.update_change). Runs from
    before a measurement existed show — for it."""
    from agr.update_change import KINDS

    removed_body, change_body = [], []
    for group in range(len(table.spec.groups)):
        fractions, by_kind, changes = _agr_diagnostics(table, group, KINDS)
        if not fractions:
            continue
        s = summarize(fractions)
        spread = f" ± {s.std:.2g}" if s.n > 1 else ""
        label = _group_label(table.spec, group)
        removed_body.append([label, f"{s.mean:.3g}{spread} ({s.n})", *_kind_means(by_kind)])
        change_body.append([label, *_kind_means(changes)])
    neighbours = _neighbour_arms(table)
    title = "## Gradient-transform diagnostics" if neighbours else "## AGR diagnostics"
    if not removed_body:
        return [title, "", "No completed run with AGR diagnostics."]
    removed_header = ["runs", "removed fraction", *[f"removed: {k}" for k in KINDS]]
    change_header = ["runs", *[f"update change: {k}" for k in KINDS]]
    return [
        title, "", REMOVED_TEXT, *(["", NEIGHBOURS_TEXT] if neighbours else []), "",
        *_table_lines(removed_header, removed_body),
        "", UPDATE_CHANGE_TEXT, "", *_table_lines(change_header, change_body),
    ]  # fmt: skip


def _agr_diagnostics(
    table: Table, group: int, kinds: tuple[str, ...]
) -> tuple[list[float], dict[str, list[float]], dict[str, list[float]]]:
    """A run group's completed runs: their removed fractions, and per parameter kind the
    removed fractions' means and the update changes' medians."""
    fractions: list[float] = []
    by_kind: dict[str, list[float]] = {kind: [] for kind in kinds}
    changes: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _, record in table.completed(group):
        diagnostics = record.results.get("agr") or {}
        value = finite(diagnostics.get("removed_fraction_mean"))
        if math.isfinite(value):
            fractions.append(value)
        for source, into, field_name in (
            (diagnostics.get("removed_fraction_by_kind"), by_kind, "mean"),
            (diagnostics.get("update_change"), changes, "median"),
        ):
            for kind, summary in (source or {}).items():
                number = finite((summary or {}).get(field_name))
                if kind in into and math.isfinite(number):
                    into[kind].append(number)
    return fractions, by_kind, changes


def _kind_means(values: dict[str, list[float]]) -> list[str]:
    return [f"{summarize(v).mean:.2g}" if v else "—" for v in values.values()]
