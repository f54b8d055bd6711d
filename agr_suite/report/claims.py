"""The README's summary of the mini tables, written from the committed CSVs, so that what the
README claims about the numbers is whatever the numbers say.

    from agr_suite.report.claims import summary, update_readme
    text = summary("results/mini")          # the markdown between the two markers
    update_readme("README.md", "results/mini")   # rewrites that section; True if it changed

The section sits between ``<!-- mini-results:begin -->`` and ``<!-- mini-results:end -->``
in README.md; ``scripts/readme_summary.py`` (run by ``make tables`` and ``make
reproduce-mini``) rewrites it and ``tests/tables/test_readme_claims.py`` fails when it is stale.

Per table (every ``*.csv`` written by :func:`agr_suite.report.tables.write_csv` in the folder, Tables
1-3 first): each paired cell's baseline and compared means ± std (n) and their paired
difference with its 95% t-interval, then generated sentences: which intervals exclude zero
(or that none does) and which side they favour, which differences are exactly 0 in every
seed, the lowest and highest cell mean per metric, and, for a metric with a chance level,
where the cells stand against chance. Numbers come from the CSV (full precision); the metric
labels, directions, decimals and chance levels from the table's spec
(``tables/<table>.yaml`` at the CSV's scale).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from agr_suite.report.spec import ROOT, Metric, load_spec, spec_path
from agr_suite.report.tables import (
    MINUS,
    Summary,
    chance_note,
    endpoint_lines,
    excludes,
    format_difference,
    format_interval,
    format_mean_std,
    format_number,
    identical,
    plan_lines,
    summarize,
)

BEGIN = "<!-- mini-results:begin -->"
END = "<!-- mini-results:end -->"


@dataclass
class CsvCell:
    """One line of a table CSV: a cell and, for a compared column, its paired difference."""

    metric: str
    row: str
    column: str
    cell: Summary
    values: list[float]
    diff_vs: str = ""
    diff: Summary = field(default_factory=lambda: Summary(0, math.nan, math.nan))
    differences: list[float] = field(default_factory=list)
    band: tuple[float, float] | None = None  # what a model ignoring its input scores
    verdict: str = ""  # agr_suite.report.verdicts' text, in CSVs written since verdicts exist


@dataclass
class CsvTable:
    name: str
    scale: str
    path: Path
    cells: list[CsvCell]


def _float(text: str | None) -> float:
    return float(text) if text else math.nan


def _seed_values(text: str | None) -> list[float]:
    """``"0:1.5 1:2.0"`` (seed:value pairs, as write_csv writes them) -> [1.5, 2.0]."""
    return [float(item.split(":", 1)[1]) for item in (text or "").split()]


def read_table_csv(path: str | Path) -> CsvTable:
    """A table CSV as written by agr_suite.report.tables.write_csv. Reads the columns every version
    wrote; columns added later (``ci_low``, ``ci_high``, ``chance``, ``chance_low``,
    ``chance_high``) are not needed."""
    path = Path(path)
    with path.open(newline="") as handle:
        lines = list(csv.DictReader(handle))
    if not lines:
        raise ValueError(f"{path}: no cells")
    cells = []
    for line in lines:
        values = _seed_values(line.get("values"))
        n = int(line["n"] or 0)
        cell = CsvCell(
            metric=line["metric"],
            row=line["row"],
            column=line["column"],
            cell=Summary(n, _float(line["mean"]), _float(line["std"])),
            values=values,
        )
        cell.verdict = line.get("verdict") or ""
        if line.get("chance_low") and line.get("chance_high"):
            cell.band = (float(line["chance_low"]), float(line["chance_high"]))
        if line.get("diff_vs"):
            cell.diff_vs = line["diff_vs"]
            cell.diff = Summary(
                int(line["diff_n"] or 0),
                _float(line["diff_mean"]),
                math.nan,
                _float(line["diff_ci_low"]),
                _float(line["diff_ci_high"]),
            )
            cell.differences = _seed_values(line.get("diff_values"))
        cells.append(cell)
    return CsvTable(lines[0]["table"], lines[0]["scale"], path, cells)


def _plan_sentences(table: CsvTable) -> list[str]:
    """The primary endpoint and the power plan, as the table's spec fixed them."""
    if not spec_path(table.name).exists():
        return []
    spec = load_spec(table.name, table.scale)
    return [endpoint_lines(spec)[0], *plan_lines(spec)]


def _spec_metrics(table: CsvTable) -> tuple[str, dict[str, Metric], dict[str, str]]:
    """(title, metric key -> Metric, metric key -> how it is read) from the table's spec;
    a CSV whose spec is gone gets its key as label and the default Metric."""
    if not spec_path(table.name).exists():
        return table.name, {}, {}
    spec = load_spec(table.name, table.scale)
    epochs = all(row.epoch is not None for row in spec.rows)
    read = {
        m.key: "from each run's evaluations"
        if m.time_to_target
        else "at each row's epoch"
        if epochs
        else {"final": "at the last epoch", "best": "at the best evaluation"}[m.select]
        for m in spec.metrics
    }
    return spec.title, {m.key: m for m in spec.metrics}, read


def _unique(items) -> list:
    return list(dict.fromkeys(items))


def _compared(table: CsvTable, keys: list[str]) -> list[CsvCell]:
    """The cells with a paired difference, metric by metric, in the CSV's order within."""
    cells = [c for c in table.cells if c.diff_vs]
    return sorted(cells, key=lambda c: keys.index(c.metric))


def _shown(path: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)


def _side(metric: Metric, difference: float, column: str, baseline: str) -> str:
    better = (difference > 0) == metric.higher_is_better
    return f"favours {column if better else baseline}"


def table_summary(table: CsvTable) -> list[str]:
    """The markdown lines that summarize one table CSV."""
    title, specs, read = _spec_metrics(table)
    keys = _unique(c.metric for c in table.cells)
    metrics = {key: specs.get(key, Metric(key, key)) for key in keys}
    by_key = {(c.metric, c.row, c.column): c for c in table.cells}
    compared = _compared(table, keys)
    pairs = _unique((c.column, c.diff_vs) for c in compared)
    baselines = _unique(b for _, b in pairs)
    single = len(pairs) == 1

    lines = [f"**{title}** (`{_shown(table.path)}`)", ""]
    described = []
    for key, metric in metrics.items():
        text = f"`{key}`: {metric.label}"
        if key in read:
            text += f", read {read[key]}"
        text += f", {'higher' if metric.higher_is_better else 'lower'} is better"
        if metric.chance is not None:
            level = "%" if "%" in metric.label else ""
            basis = f" ({metric.chance_basis})" if metric.chance_basis else ""
            text += f", chance {metric.chance:g}{level}{basis}"
        described.append(text)
    lines += ["Metrics: " + "; ".join(described) + ".", ""]

    base_head = baselines[0] if len(baselines) == 1 else "baseline"
    comp_head = pairs[0][0] if single else "compared"
    header = ["metric"] if len(keys) > 1 else []
    header += ["setting", base_head, comp_head, f"{comp_head} − {base_head}, 95% CI (pairs)"]
    with_verdict = any(c.verdict for c in compared)
    if with_verdict:
        header.append("verdict (Holm)")
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in compared:
        metric = metrics[c.metric]
        base = by_key.get((c.metric, c.row, c.diff_vs))
        base_text = "—" if base is None else f"{format_mean_std(base.cell, metric.decimals)}"
        if base is not None:
            base_text += f" ({base.cell.n})"
        comp_text = f"{format_mean_std(c.cell, metric.decimals)} ({c.cell.n})"
        if len(baselines) > 1:
            base_text = f"{c.diff_vs}: {base_text}"
        if not single:
            comp_text = f"{c.column}: {comp_text}"
        diff_text = format_difference(c.diff, c.differences, metric.decimals)
        line = [f"`{c.metric}`"] if len(keys) > 1 else []
        line += [c.row, base_text, comp_text, diff_text]
        if with_verdict:
            line.append(c.verdict or "—")
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |")
    if not compared:
        lines.append("| " + " | ".join(["—"] * len(header)) + " |")
    sentences = [*table_sentences(table, metrics), *_plan_sentences(table)]
    lines += ["", *[f"- {s}" for s in sentences]]
    return lines


def verdict_tally(compared: list[CsvCell], where) -> str | None:
    """One sentence counting the verdicts by kind and naming every better/worse one."""
    if not any(c.verdict for c in compared):
        return None
    kinds: dict[str, int] = {}
    for c in compared:
        kind = c.verdict.split(" (")[0].split(",")[0] if c.verdict else "no verdict"
        kind = kind.removeprefix(f"{c.column} ")
        kinds[kind] = kinds.get(kind, 0) + 1
    counts = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
    decided = [c for c in compared if c.verdict.startswith(f"{c.column} ")]
    named = "; ".join(
        f"{where(c)}: {c.verdict.split(',')[0]} than {c.diff_vs}"
        + c.verdict[len(c.verdict.split(",")[0]) :]
        for c in decided
    )
    return f"Verdicts: {counts}" + (f" ({named})." if named else ".")


def table_sentences(table: CsvTable, metrics: dict[str, Metric]) -> list[str]:
    """The generated claims about one table: intervals against zero, exact ties, levels,
    chance."""
    several = len(metrics) > 1
    compared = _compared(table, list(metrics))

    def where(c: CsvCell) -> str:
        return f"`{c.metric}` {c.row}" if several else c.row

    with_interval = [c for c in compared if math.isfinite(c.diff.low)]
    away = [c for c in with_interval if excludes(c.diff.low, c.diff.high)]
    if away:
        listed = "; ".join(
            f"{where(c)}, {c.column} {MINUS} {c.diff_vs}: "
            f"{format_interval(c.diff.mean, c.diff.low, c.diff.high, metrics[c.metric].decimals)}"
            f" ({_side(metrics[c.metric], c.diff.mean, c.column, c.diff_vs)})"
            for c in away
        )
        intervals = (
            f"{len(away)} of the {len(with_interval)} paired 95% intervals "
            f"{'excludes' if len(away) == 1 else 'exclude'} zero, each taken on its own "
            f"(the verdicts correct for the table's many comparisons): {listed}."
        )
    elif with_interval:
        intervals = f"None of the {len(with_interval)} paired 95% intervals excludes zero."
    else:
        intervals = "No paired difference has an interval (fewer than 2 pairs each)."
    short = [c for c in compared if not math.isfinite(c.diff.low)]
    if short and with_interval:
        intervals += f" Fewer than 2 pairs, no interval: {', '.join(where(c) for c in short)}."
    sentences = [s for s in (verdict_tally(compared, where), intervals) if s]

    for column, baseline in _unique((c.column, c.diff_vs) for c in compared):
        groups = []
        for key in metrics:
            rows = [
                c for c in compared if (c.column, c.diff_vs, c.metric) == (column, baseline, key)
            ]
            same = [c.row for c in rows if identical(c.differences)]
            if not same:
                continue
            where_rows = f"all {len(rows)} rows" if len(same) == len(rows) > 1 else ", ".join(same)
            groups.append(f"`{key}` ({where_rows})" if several else where_rows)
        if groups:
            sentences.append(
                f"{column} equals {baseline} exactly in every seed: {'; '.join(groups)}."
            )

    # a cell compared with two baselines has a CSV line for each comparison: count it once
    once = list({(c.metric, c.row, c.column): c for c in table.cells}.values())
    levels = []
    for key, metric in metrics.items():
        counted = [c for c in once if c.metric == key and c.cell.n > 0]
        if not counted:
            levels.append(f"`{key}` has no value yet")
            continue
        low = min(counted, key=lambda c: c.cell.mean)
        high = max(counted, key=lambda c: c.cell.mean)
        d = metric.decimals
        low_text, high_text = format_number(low.cell.mean, d), format_number(high.cell.mean, d)
        if low_text == high_text:
            exact = "" if low.cell.mean == high.cell.mean else " to the digits shown"
            levels.append(f"`{key}` {low_text} in every cell{exact}")
            continue
        levels.append(
            f"`{key}` from {low_text} ({low.row}, {low.column}) "
            f"to {high_text} ({high.row}, {high.column})"
        )
    sentences.append("Cell means: " + "; ".join(levels) + ".")

    for key, metric in metrics.items():
        cells = [
            (f"{c.row} / {c.column}", summarize(c.values, interval=True), c.values, c.band)
            for c in once
            if c.metric == key
        ]
        note = chance_note(metric, cells)
        if note:
            sentences.append(note)
    return sentences


def _order(path: Path) -> tuple[bool, str]:
    return (not path.stem.startswith("table"), path.stem)


def summary(results_dir: str | Path) -> str:
    """The README section's text (between the markers, markers excluded) for every table CSV
    in ``results_dir``."""
    folder = Path(results_dir)
    paths = sorted(folder.glob("*.csv"), key=_order)
    lines = [
        "<!-- Generated by scripts/readme_summary.py from "
        f"{_shown(folder)}/*.csv: `make tables SCALE=mini` rewrites it; edit agr_suite/report/claims.py, "
        "not this text. -->",
        "",
    ]
    if not paths:
        return "\n".join([*lines, f"No tables in `{_shown(folder)}` yet."]) + "\n"
    lines += [
        "Cells: mean ± std over seeds (n). Differences: per seed, the compared column minus the "
        "baseline on the same seed; mean [95% t-interval] (pairs). Numbers keep each metric's "
        "decimals; one that would round to 0 shows 2 significant digits, and 0 is exact.",
        "",
    ]
    for path in paths:
        lines += [*table_summary(read_table_csv(path)), ""]
    return "\n".join(lines[:-1]) + "\n"


def replace_section(text: str, body: str) -> str:
    """``text`` with everything between the markers replaced by ``body``."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < 0 or end < start or text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ValueError(f"the README needs exactly one {BEGIN} ... {END} section, in that order")
    return text[: start + len(BEGIN)] + "\n" + body + text[end:]


def section(text: str) -> str:
    """The current text between the markers (as replace_section writes it)."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"no {BEGIN} ... {END} section")
    return text[start + len(BEGIN) + 1 : end]


def update_readme(readme: str | Path, results_dir: str | Path) -> bool:
    """Rewrite the README's mini-results section from the CSVs; True when it changed."""
    path = Path(readme)
    text = path.read_text()
    new = replace_section(text, summary(results_dir))
    if new == text:
        return False
    path.write_text(new)
    return True
