"""Fetch one file from its sources (the publisher's URLs, or a mirror: a base URL or a local
folder holding the same file names) into a temporary file beside its destination, check its
size and checksum, and only then rename it into place: a failed or wrong download leaves the
destination as it was."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from functools import partial
from pathlib import Path
from typing import BinaryIO, TextIO

from agr_suite.core.atomic import write_atomic
from agr_suite.data_staging.files import CHUNK, RemoteFile, StagingError, content_problem
from agr_suite.data_staging.progress import download_progress

TIMEOUT_S = 60.0  # each network wait: an unreachable host fails instead of hanging
# Some hosts refuse Python's default agent (wikitext.smerity.com has been reported to).
USER_AGENT = "Mozilla/5.0 (compatible; agr-suite data staging)"


class _Mismatch(Exception):
    """The bytes fetched are not the published file."""


def mirror_folder(mirror: str) -> Path | None:
    """The local folder of a ``--mirror`` given as a path or a file:// URL; None for a
    remote base URL."""
    parsed = urllib.parse.urlparse(mirror)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if "://" in mirror:
        return None
    return Path(mirror).expanduser()


def check_mirror(mirror: str | None) -> None:
    """A local mirror must be an existing folder (checked before anything is fetched)."""
    folder = mirror_folder(mirror) if mirror else None
    if folder is not None and not folder.is_dir():
        raise StagingError(
            f"--mirror {mirror}: {folder} is not a folder. Give the folder (or a file:// URL "
            "of it) that holds the published files under their own names, or the base URL "
            "(https://...) of a mirror that serves them"
        )


def sources(remote: RemoteFile, mirror: str | None) -> list[str]:
    """Where to fetch ``remote`` from: the mirror alone when given, else the publisher's URLs."""
    if mirror is None:
        return list(remote.urls)
    folder = mirror_folder(mirror)
    if folder is not None:
        return [str(folder / remote.filename)]
    return [f"{mirror.rstrip('/')}/{urllib.parse.quote(remote.filename)}"]


def _open(source: str) -> BinaryIO:
    if "://" not in source:
        return open(source, "rb")
    request = urllib.request.Request(source, headers={"User-Agent": USER_AGENT})
    return urllib.request.urlopen(request, timeout=TIMEOUT_S)


def _download(source: str, remote: RemoteFile, stream: TextIO | None, tmp: str) -> None:
    """Copy ``source`` to ``tmp`` with progress; _Mismatch unless it is ``remote``."""
    hasher, size = remote.hasher(), 0
    with (
        _open(source) as response,
        open(tmp, "wb") as out,
        download_progress(remote.filename, remote.size, stream) as advance,
    ):
        while chunk := response.read(CHUNK):
            out.write(chunk)
            hasher.update(chunk)
            size += len(chunk)
            advance(len(chunk))
            if size > remote.size:  # a wrong (maybe huge) file: stop now
                raise _Mismatch(f"more than the published {remote.size:,} bytes")
    wrong = content_problem(size, hasher.hexdigest(), remote)
    if wrong:
        raise _Mismatch(wrong)


def _why(error: BaseException) -> str:
    if isinstance(error, _Mismatch):
        return f"not the published file ({error})"
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return f"unreachable ({error.reason})"
    if isinstance(error, FileNotFoundError):
        return "no such file"
    return f"{type(error).__name__}: {error}"


def fetch(
    remote: RemoteFile, dest: Path, mirror: str | None = None, stream: TextIO | None = None
) -> str:
    """``remote`` at ``dest``, verified, from the first source that gives it; returns that
    source. :class:`StagingError` saying what each source gave when none does."""
    failures = []
    for source in sources(remote, mirror):
        try:
            write_atomic(dest, partial(_download, source, remote, stream), suffix=".part")
            return source
        except (OSError, _Mismatch) as error:  # URLError and HTTPError are OSErrors
            failures.append(f"{source}: {_why(error)}")
    kept = " (the file already there is left as it was)" if dest.exists() else ""
    where = (
        f"check that {mirror} holds {remote.filename} as published"
        if mirror
        else f"without network access, stage from a mirror that holds {remote.filename}: "
        "--mirror URL_OR_FOLDER"
    )
    raise StagingError(
        f"could not fetch {remote.filename}: {'; '.join(failures)}. Nothing was written to "
        f"{dest}{kept}. To fix it, {where} ({remote.size:,} bytes, {remote.algorithm.upper()} "
        f"{remote.digest})"
    )
