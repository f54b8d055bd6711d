"""Files written whole or not at all: the content goes to a temporary file in the same
folder, which is then renamed over the target, so a reader (or a job killed mid-write) sees
the old file or the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomic(
    path: str | os.PathLike, write: Callable[[str], None], suffix: str = ".tmp"
) -> None:
    """Call ``write(temporary_path)``, then rename the result to ``path`` (its folder created
    if needed). A failing ``write`` leaves ``path`` as it was and no temporary file behind.
    ``suffix`` is the temporary file's (``np.savez`` wants ``.npz``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(text))
