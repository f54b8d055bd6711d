"""A table's files: ``<table>.md``, ``<table>.csv`` and ``<table>_curves.png``."""

from __future__ import annotations

from pathlib import Path

from agr_suite.report.curves import plot_curves
from agr_suite.report.markdown import render_markdown
from agr_suite.report.table_csv import write_csv
from agr_suite.report.tables import Table


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
