"""Stage artifacts: fetch what is not already there verified, unpack it with the reader's
own code, then check that the reader finds it."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from agr_suite.core.errors import UserError
from agr_suite.data_staging.artifacts import Artifact, artifact
from agr_suite.data_staging.fetch import check_mirror, fetch
from agr_suite.data_staging.files import StagingError, file_problem
from agr_suite.data_staging.progress import human_bytes


def check_writable(item: Artifact) -> None:
    try:
        item.folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=item.folder):
            pass
    except OSError as error:
        raise StagingError(
            f"cannot write to {item.folder} ({error.strerror or error}): choose a folder "
            f"you can write with {item.folder_choice}, or fix its permissions"
        ) from error


def stage_artifact(item: Artifact, mirror: str | None = None, out: TextIO | None = None) -> None:
    """``item`` in place and readable; :class:`UserError` saying why not."""
    out = sys.stdout if out is None else out
    if item.problem() is None:
        item.unpack()
        print(f"{item.name}: already staged ({item.reads})", file=out, flush=True)
        return
    check_writable(item)
    for remote in item.files:
        dest = item.folder / remote.filename
        if file_problem(dest, remote) is None:
            print(f"{item.name}: {dest} is already there, verified", file=out, flush=True)
            continue
        print(
            f"{item.name}: fetching {remote.filename} ({human_bytes(remote.size)})",
            file=out,
            flush=True,
        )
        source = fetch(remote, dest, mirror)
        print(
            f"{item.name}: {dest} from {source} ({remote.algorithm.upper()} verified)",
            file=out,
            flush=True,
        )
    item.unpack()
    problem = item.problem()
    if problem is not None:
        raise StagingError(f"its files are in place but the reader does not find it: {problem}")
    print(f"{item.name}: ready ({item.reads})", file=out, flush=True)


def stage(
    names: Iterable[str], data_dir: Path, mirror: str | None = None, out: TextIO | None = None
) -> dict[str, str]:
    """Stage each name (going on past a failure); returns name -> why it failed."""
    check_mirror(mirror)
    failures = {}
    for name in names:
        try:
            stage_artifact(artifact(name, data_dir), mirror, out)
        except UserError as error:
            failures[name] = str(error)
    return failures
