"""Rewrite the README's mini-results section from the table CSVs (agr_suite/report/claims.py).

    scripts/readme_summary.py [--results-dir results/mini] [--readme README.md] [--check]

Replaces the text between <!-- mini-results:begin --> and <!-- mini-results:end --> with
the summary generated from results-dir/*.csv. --check writes nothing and exits 1 when the
section is not what the CSVs give (a stale README).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "lib", ROOT):  # this checkout's library (agr) and suite (agr_suite)
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from agr_suite.report.claims import replace_section, summary, update_readme  # noqa: E402 - after the path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results-dir", default=str(ROOT / "results" / "mini"))
    parser.add_argument("--readme", default=str(ROOT / "README.md"))
    parser.add_argument("--check", action="store_true", help="exit 1 if the section is stale")
    args = parser.parse_args(argv)
    try:
        if args.check:
            text = Path(args.readme).read_text()
            if replace_section(text, summary(args.results_dir)) != text:
                print(f"{args.readme}: the mini-results section is stale; run {__file__}")
                return 1
            print(f"{args.readme}: the mini-results section matches {args.results_dir}")
            return 0
        changed = update_readme(args.readme, args.results_dir)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    state = "rewrote" if changed else "unchanged:"
    print(f"{state} the mini-results section of {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
