"""A finished table in Weights & Biases: ``scripts/reproduce.py TABLE -- logger=wandb`` (the
runs' own logger setting) logs each table it writes as one W&B run of its own.

The table's W&B run:

- ``job_type`` "table", name ``<table>-<scale>`` (e.g. ``table2-mini``), group ``<table>``;
  project, entity, mode and tags are the runs' (their ``logger.*`` settings, else W&B's
  environment variables, as for a run: agr_suite.engine.loggers), and its files go to
  ``logger.dir``, else WANDB_DIR, else the folder of the table's multirun files
  (``<runs>/<runs_subdir>/<table>``), never into results/.
- config: ``table``, ``scale``, ``title``, ``spec`` (the spec file), ``seeds``, ``runs``
  (the run folders of the table) and ``files`` (the files written).
- ``table``: a ``wandb.Table`` with the rows and columns of the table's CSV
  (agr_suite.report.table_csv), read back from the file written; the columns in
  :data:`NUMERIC` hold numbers (an empty field is None), every other column its text.
- artifact ``<table>-<scale>`` of type "table": the Markdown, the CSV and the curves PNG
  (as outputs.write_outputs wrote them), with the table, scale and title as metadata.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agr_suite.core.config import LoggerConfig
    from agr_suite.report.spec import PlannedRun
    from agr_suite.report.tables import Table

# The CSV columns that hold one number (table_csv.CSV_FIELDS); the others hold text (names,
# seeds and "seed:value" lists, verdicts). A column added to the CSV later is text until
# listed here.
NUMERIC = frozenset(
    {
        "epoch", "n", "mean", "std", "paper", "diff_n", "diff_mean", "diff_ci_low",
        "diff_ci_high", "ci_low", "ci_high", "chance", "chance_low", "chance_high", "margin",
        "mde80", "seeds_for_margin", "p_difference_holm", "p_equivalence_holm", "resolution",
        "examples",
    }
)  # fmt: skip
JOB_TYPE = "table"
TABLE_KEY = "table"


def run_name(table: Table) -> str:
    return f"{table.spec.name}-{table.spec.scale}"


def _value(column: str, text: str) -> Any:
    if column not in NUMERIC:
        return text
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        return float(text)


def csv_rows(path: Path) -> tuple[list[str], list[list[Any]]]:
    """The columns and rows of a table's CSV, each field typed as :data:`NUMERIC` says."""
    with Path(path).open(newline="") as handle:
        reader = csv.reader(handle)
        columns = next(reader)
        rows = [[_value(c, text) for c, text in zip(columns, line)] for line in reader]
    return columns, rows


def log_table(
    table: Table,
    files: list[Path],
    settings: LoggerConfig,
    default_dir: Path,
    planned: list[PlannedRun] = (),
) -> str:
    """Log ``table`` (written as ``files`` by outputs.write_outputs, the CSV among them) as
    one W&B run; returns its id. ``settings``: the runs' logger config."""
    import wandb

    from agr_suite.engine.loggers import DEFAULT_PROJECT

    spec = table.spec
    files = [Path(p) for p in files]
    (table_csv,) = [p for p in files if p.suffix == ".csv"]
    columns, rows = csv_rows(table_csv)
    folder = Path(settings.dir or os.environ.get("WANDB_DIR") or default_dir)
    folder.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=settings.project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
        entity=settings.entity,
        group=spec.name,
        job_type=JOB_TYPE,
        name=run_name(table),
        tags=list(settings.tags),
        mode=settings.mode,
        dir=str(folder),
        config={
            "table": spec.name,
            "scale": spec.scale,
            "title": spec.title,
            "spec": str(spec.path),
            "seeds": list(spec.seeds),
            "runs": [str(p.folder) for p in planned if p.folder is not None],
            "files": [str(p) for p in files],
        },
    )
    exit_code = 1
    try:
        run.log({TABLE_KEY: wandb.Table(columns=columns, data=rows)})
        artifact = wandb.Artifact(
            run_name(table),
            type=JOB_TYPE,
            description=spec.title,
            metadata={"table": spec.name, "scale": spec.scale, "title": spec.title},
        )
        for path in files:
            artifact.add_file(str(path), name=path.name)
        run.log_artifact(artifact)
        exit_code = 0
    finally:
        run.finish(exit_code=exit_code)
    return run.id
