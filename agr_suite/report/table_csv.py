"""A table as CSV (results/[mini/]<table>.csv): one line per cell and comparison, every number
at full precision (repr), the seeds behind each value and what kept the others out."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agr_suite.report.run_folders import FAILED, MISSING, NOT_COMPOSED, RUNNING

if TYPE_CHECKING:
    from agr_suite.report.tables import CellResult, PairedResult, Table

CSV_FIELDS = [
    "table", "scale", "metric", "select", "row", "epoch", "column", "n", "mean", "std", "values",
    "nan_seeds", "not_evaluated_seeds", "missing_seeds", "failed_seeds", "running_seeds",
    "not_composed_seeds", "paper", "diff_vs", "diff_n", "diff_mean", "diff_ci_low",
    "diff_ci_high", "diff_values",
    # Added after the first committed tables (readers treat them as optional): the 95%
    # t-interval of the cell's mean over seeds; the metric's chance level when the spec
    # declares one, and what a model ignoring its input scores (the runs' K_minority and
    # K_majority); on compared cells, the paired comparison's verdict (report/verdicts.py).
    "ci_low", "ci_high", "chance", "chance_low", "chance_high", "margin", "mde80",
    "seeds_for_margin", "p_difference_holm", "p_equivalence_holm", "verdict",
    # Added with the degenerate-data checks and the endpoint families: the comparison's Holm
    # family (primary | secondary) and test (t | t (sd ≥ r) | sign-flip (2^n)); the cell's
    # smallest step (one example; one evaluation interval) and the evaluated examples behind
    # an accuracy; the runs predicting a single class and, for a time to target, those that
    # never reached it.
    "family", "test", "resolution", "examples", "one_class_seeds", "not_reached_seeds",
]  # fmt: skip


def write_csv(table: Table, path: Path) -> None:
    """One line per cell and comparison it is the compared arm of (one line when none)."""
    spec = table.spec
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)  # absent fields are written ""
        writer.writeheader()
        for (row, column, key), result in table.cells.items():
            comparisons = [
                table.paired[(row, column, baseline, key)]
                for treated, baseline in spec.pairs
                if treated == column
            ]
            for paired in comparisons or [None]:
                writer.writerow({**_cell_fields(table, result), **_paired_fields(paired)})


def _number(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else repr(float(value))


def _seeds(seeds: Iterable[int]) -> str:
    return " ".join(str(s) for s in seeds)


def _by_seed(values: dict[int, float]) -> str:
    return " ".join(f"{seed}:{value!r}" for seed, value in values.items())


def _cell_fields(table: Table, result: CellResult) -> dict[str, Any]:
    s, row, metric, band = result.summary, result.cell.row, result.metric, result.chance_band
    return {
        "table": table.spec.name,
        "scale": table.spec.scale,
        "metric": metric.key,
        "select": "epoch" if row.epoch is not None else metric.select,
        "row": row.name,
        "epoch": "" if row.epoch is None else row.epoch,
        "column": result.cell.column.name,
        "n": s.n,
        "mean": _number(s.mean),
        "std": _number(s.std),
        "values": _by_seed(result.values),
        "nan_seeds": _seeds(result.nan),
        "not_evaluated_seeds": _seeds(result.absent),
        "missing_seeds": _seeds(result.not_done.get(MISSING, [])),
        "failed_seeds": _seeds(result.not_done.get(FAILED, [])),
        "running_seeds": _seeds(result.not_done.get(RUNNING, [])),
        "not_composed_seeds": _seeds(result.not_done.get(NOT_COMPOSED, [])),
        "paper": _number(result.paper),
        "ci_low": _number(s.low),
        "ci_high": _number(s.high),
        "chance": _number(metric.chance),
        "chance_low": _number(band[0]) if band else "",
        "chance_high": _number(band[1]) if band else "",
        "resolution": _number(result.resolution),
        "examples": _number(result.examples),
        "one_class_seeds": _seeds(result.collapsed),
        "not_reached_seeds": _seeds(result.not_reached),
    }


def _paired_fields(paired: PairedResult | None) -> dict[str, Any]:
    if paired is None:
        return {}
    s, verdict = paired.summary, paired.verdict
    fields = {
        "diff_vs": paired.baseline,
        "diff_n": s.n,
        "diff_mean": _number(s.mean),
        "diff_ci_low": _number(s.low),
        "diff_ci_high": _number(s.high),
        "diff_values": _by_seed(paired.differences),
    }
    if verdict is None:
        return fields
    needed = verdict.seeds_for_margin
    return {
        **fields,
        "margin": _number(paired.metric.margin),
        "mde80": _number(verdict.mde),
        "seeds_for_margin": "" if needed is None else needed,
        "p_difference_holm": _number(verdict.p_difference),
        "p_equivalence_holm": _number(verdict.p_equivalence),
        "verdict": verdict.text,
        "family": paired.family,
        "test": verdict.method,
    }
