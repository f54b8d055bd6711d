"""Aggregate finished runs into tables, launching nothing.

    scripts/make_table.py [TABLE ...] [--scale paper|mini] [--seeds 0,1,2]

Writes results/[mini/]TABLE.md, .csv and TABLE_curves.png for each table (default: every
spec in tables/) from the run folders alone; missing, failed and NaN runs are listed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from agr_suite.report.outputs import write_outputs
from agr_suite.report.spec import (
    SCALES,
    SpecError,
    available_tables,
    load_spec,
    parse_seeds,
    plan_runs,
)
from agr_suite.report.tables import aggregate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", nargs="*", help=f"default: {' '.join(available_tables())}")
    parser.add_argument("--scale", default="paper", choices=SCALES)
    parser.add_argument("--seeds", help="comma-separated seeds (default: the spec's)")
    parser.add_argument("--runs-dir", default=os.environ.get("AGR_RUNS_DIR", "runs"))
    parser.add_argument("--results-dir", default="results")
    args = parser.parse_args(argv)
    code = 0
    for name in args.tables or available_tables():
        try:
            spec = load_spec(name, args.scale, parse_seeds(args.seeds))
            planned = plan_runs(spec, Path(args.runs_dir))
        except SpecError as error:
            print(f"error: {error}", file=sys.stderr)
            code = 2
            continue
        out = Path(args.results_dir) / spec.results_subdir
        table = aggregate(spec, planned)
        done = sum(r.status == "completed" for r in table.records.values())
        for path in write_outputs(table, out):
            print(f"wrote {path}")
        print(f"{spec.name} ({spec.scale}): {done} of {len(planned)} runs completed")
    return code


if __name__ == "__main__":
    sys.exit(main())
