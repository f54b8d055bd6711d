"""One file to fetch (its name, sources, size and checksum) and the check that a file on disk
is that file."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from agr_suite.core.errors import UserError

CHUNK = 1 << 20


class StagingError(UserError):
    """A data set that could not be staged; the message says why and what to do."""


@dataclass(frozen=True)
class RemoteFile:
    """A file as its publisher serves it: ``filename`` on every source (a mirror holds the
    same name), ``urls`` tried in order, its ``size`` in bytes and one checksum."""

    filename: str
    urls: tuple[str, ...]
    size: int
    md5: str | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        if (self.md5 is None) == (self.sha256 is None):
            raise ValueError(f"{self.filename}: give exactly one of md5 and sha256")

    @property
    def algorithm(self) -> str:
        return "md5" if self.md5 else "sha256"

    @property
    def digest(self) -> str:
        return self.md5 or self.sha256 or ""

    def hasher(self):
        return hashlib.new(self.algorithm)


def file_digest(path: Path, algorithm: str) -> str:
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def content_problem(size: int, digest: str, remote: RemoteFile) -> str | None:
    """What is wrong with content of ``size`` bytes and ``digest`` as ``remote``; None if
    it is that file."""
    if size != remote.size:
        return f"{size:,} bytes instead of {remote.size:,} (a partial download or another file)"
    if digest != remote.digest:
        return f"{remote.algorithm.upper()} {digest}, expected {remote.digest}"
    return None


def file_problem(path: Path, remote: RemoteFile) -> str | None:
    """None when ``path`` is ``remote`` (size, then checksum); else what is wrong."""
    if not path.is_file():
        return f"{path} is not there"
    size = path.stat().st_size
    if size != remote.size:  # no need to hash a file of the wrong size
        return f"{path}: {content_problem(size, '', remote)}"
    wrong = content_problem(size, file_digest(path, remote.algorithm), remote)
    return f"{path}: {wrong}" if wrong else None
