"""User errors: input that cannot work, reported as a message and exit code 2, no traceback.

Every error a user can fix (a config value, a missing data set or weight file, an unreadable
checkpoint, a folder that cannot be written, a device or a W&B login that is not there)
subclasses :class:`UserError`; ``run.py`` and its Hydra callback turn them into
``error: <message>`` on stderr and exit code 2 in one place, :func:`exit_on_user_error`.
A new check is one ``raise ConfigError(...)``. Depends on nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

USER_ERROR_EXIT_CODE = 2


class UserError(Exception):
    """Bad input, found before (or instead of) doing the work; the message says what to do."""


class ConfigError(UserError, ValueError):
    """A config value, or the machine a config asks for, that cannot work; names the key."""


class DatasetMissingError(UserError, FileNotFoundError):
    """A data set's files are absent (or corrupted) and could not be downloaded; the message
    says which files, where they were looked for and how to get them."""


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Inside: a :class:`UserError` prints ``error: <message>`` to stderr and exits with
    code 2 (a SystemExit, so Hydra does not print a traceback)."""
    try:
        yield
    except UserError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(USER_ERROR_EXIT_CODE) from None
