"""A table's learning curves (results/[mini/]<table>_curves.png): one panel per metric and
setting, each column's mean over seeds against epoch with a ±1 std band, and the paper's
values as crosses where published."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from agr_suite.report.spec import Metric, Row
from agr_suite.report.verdicts import Summary, summarize

if TYPE_CHECKING:
    from agr_suite.report.tables import Table


def curves(table: Table, group: int, metric: Metric) -> dict[int, Summary]:
    """Epoch -> mean and std over the completed runs of a group that recorded the metric."""
    by_epoch: dict[int, list[float]] = {}
    for _, record in table.completed(group):
        for entry in record.history:
            value = entry.get(metric.key)
            if isinstance(value, (int, float)) and math.isfinite(value) and "epoch" in entry:
                by_epoch.setdefault(int(entry["epoch"]), []).append(float(value))
    return {epoch: summarize(values) for epoch, values in sorted(by_epoch.items())}


def plot_curves(table: Table, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
        _draw_panel(ax, table, metric, rows, colors)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    figure.suptitle(f"{spec.title} (scale {spec.scale}; mean ± std over seeds)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _draw_panel(ax, table: Table, metric: Metric, rows: list[Row], colors: list[str]) -> None:
    """One metric in the rows of one setting (rows that differ only in their epoch)."""
    from matplotlib.ticker import MaxNLocator

    drawn = False
    for i, column in enumerate(table.spec.columns):
        color = colors[i % len(colors)]
        group = next(c.group for c in table.spec.cells if c.row is rows[0] and c.column is column)
        points = curves(table, group, metric)
        if points:
            epochs = list(points)
            mean = [points[e].mean for e in epochs]
            spread = [points[e].std if points[e].n > 1 else 0.0 for e in epochs]
            ax.plot(epochs, mean, marker=".", color=color, label=column.name)
            low, high = [m - s for m, s in zip(mean, spread)], [m + s for m, s in zip(mean, spread)]
            ax.fill_between(epochs, low, high, color=color, alpha=0.2)
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
