"""``python -m agr_suite.data_staging {list,check,stage}``: exit 0 when done, 2 (a message,
no traceback) for anything the user can fix."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agr_suite.core.errors import USER_ERROR_EXIT_CODE, UserError
from agr_suite.data_staging.artifacts import NAMES, artifact, default_data_dir
from agr_suite.data_staging.files import StagingError
from agr_suite.data_staging.needs import problems, stage_command
from agr_suite.data_staging.progress import human_bytes
from agr_suite.data_staging.stage import stage

PROG = "python -m agr_suite.data_staging"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Stage the paper's data sets and weights before any run needs them, "
        "check that they are there, or list them.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    names_help = f"any of {', '.join(NAMES)}, or all (the default)"
    data_dir_help = (
        "where the data sets go (default: paths.data_dir's default, $AGR_DATA_DIR or data); "
        "the Inception weights go to torch.hub's cache ($TORCH_HOME)"
    )
    listing = commands.add_parser("list", help="each name, its size, where it lands, status")
    listing.add_argument("--data-dir", type=Path, help=data_dir_help)
    check = commands.add_parser("check", help="exit 0 if all are staged and verified, else 2")
    check.add_argument("names", nargs="*", metavar="NAME", help=names_help)
    check.add_argument("--data-dir", type=Path, help=data_dir_help)
    staging = commands.add_parser("stage", help="download, verify and unpack")
    staging.add_argument("names", nargs="*", metavar="NAME", help=names_help)
    staging.add_argument("--data-dir", type=Path, help=data_dir_help)
    staging.add_argument(
        "--mirror",
        metavar="URL_OR_FOLDER",
        help="fetch from here instead of the publishers: a base URL (https://...) or a local "
        "folder (a path or file://) holding the same file names",
    )
    return parser


def expand(names: list[str]) -> list[str]:
    """The names asked for, in the catalogue's order; none or ``all``: every one."""
    unknown = [name for name in names if name not in (*NAMES, "all")]
    if unknown:
        raise StagingError(
            f"unknown data set {', '.join(map(repr, unknown))}: choose from "
            f"{', '.join(NAMES)} or all"
        )
    if not names or "all" in names:
        return list(NAMES)
    return [name for name in NAMES if name in names]


def list_artifacts(data_dir: Path) -> None:
    found = problems(NAMES, data_dir)
    for name in NAMES:
        item = artifact(name, data_dir)
        status = "missing" if name in found else "present"
        landing = ", ".join(remote.filename for remote in item.files)
        print(f"{name:13s} {human_bytes(item.size):>9s}  {status:8s} {item.description}")
        print(f"{'':13s} lands in {item.folder}/ ({landing}), read as {item.reads}")


def check_artifacts(names: list[str], data_dir: Path) -> int:
    found = problems(names, data_dir)
    for name in names:
        print(f"{name}: missing: {found[name]}" if name in found else f"{name}: present")
    if not found:
        return 0
    print(
        f"error: not staged: {', '.join(found)}. Stage it on a machine with network access "
        f"(or from a mirror, --mirror URL_OR_FOLDER):\n  {stage_command(found, data_dir)}",
        file=sys.stderr,
    )
    return USER_ERROR_EXIT_CODE


def stage_artifacts(names: list[str], data_dir: Path, mirror: str | None) -> int:
    failures = stage(names, data_dir, mirror)
    if not failures:
        return 0
    for name, why in failures.items():
        print(f"error: {name}: {why}", file=sys.stderr)
    print(f"error: not staged: {', '.join(failures)}", file=sys.stderr)
    return USER_ERROR_EXIT_CODE


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    data_dir = (args.data_dir or default_data_dir()).expanduser().resolve()
    try:
        if args.command == "list":
            list_artifacts(data_dir)
            return 0
        names = expand(args.names)
        if args.command == "check":
            return check_artifacts(names, data_dir)
        return stage_artifacts(names, data_dir, args.mirror)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return USER_ERROR_EXIT_CODE
