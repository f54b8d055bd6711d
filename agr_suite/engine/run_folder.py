"""The run folder: the contract between a run and the tables (see the README).

Besides what the tables read (config.yaml, results.json, history.jsonl, checkpoints/), a run
folder keeps its provenance, written by ``run.py`` once it is sure to train there (a skipped or
refused run touches nothing), by the main process only, and added to on every resume:

- ``invocations.yaml``: one entry per ``python run.py`` (or sweep job) that trained here, oldest
  first: when it started (UTC), the overrides it was given (Hydra's ``overrides.task``, the
  ``.hydra/overrides.yaml`` Hydra itself would write, which it would overwrite on a resume) and
  whether it resumed from ``checkpoints/last.pt``;
- ``run.log``: what those runs printed to stdout and stderr, each invocation after a ``---``
  line naming it, as plain lines: a progress bar's redraws (carriage returns, ANSI codes) are
  left out and its last state kept, and an exception that ended the run is written with its
  traceback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from agr_suite.core.atomic import write_text_atomic


def _jsonable(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null so every reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(_jsonable(data), indent=2, allow_nan=False) + "\n")


class RunFolder:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    config = property(lambda self: self.path / "config.yaml")
    history = property(lambda self: self.path / "history.jsonl")
    results = property(lambda self: self.path / "results.json")
    last_checkpoint = property(lambda self: self.path / "checkpoints" / "last.pt")
    best_checkpoint = property(lambda self: self.path / "checkpoints" / "best.pt")
    invocations = property(lambda self: self.path / "invocations.yaml")
    log = property(lambda self: self.path / "run.log")

    def record_invocation(self, overrides: list[str], started: float | None = None) -> None:
        """Add this invocation to ``invocations.yaml`` (a YAML list, each entry appended)."""
        import yaml

        entry = {
            "started": _utc(started),
            "overrides": list(overrides),
            "resumed": self.last_checkpoint.exists(),
        }
        self.path.mkdir(parents=True, exist_ok=True)
        with self.invocations.open("a") as handle:
            handle.write(yaml.safe_dump([entry], sort_keys=False, default_flow_style=None))

    @contextlib.contextmanager
    def output_logged(self, title: str, enabled: bool = True) -> Iterator[None]:
        """Inside, what this process prints to stdout and stderr (``print``, warnings, logging
        to either) goes where it went and to ``run.log`` as plain lines, after a line
        ``--- <UTC time> <title>``; an exception that ends it leaves its traceback there (a
        SystemExit its status). Nothing when not ``enabled`` (a DDP rank but the first)."""
        if not enabled:
            yield
            return
        self.path.mkdir(parents=True, exist_ok=True)
        with self.log.open("a", encoding="utf-8") as log:
            log.write(f"--- {_utc()} {title}\n")
            log.flush()
            lock = threading.Lock()
            out, err = sys.stdout, sys.stderr
            tees = _Tee(out, _PlainLines(log, lock)), _Tee(err, _PlainLines(log, lock))
            handlers = _stream_handlers({id(out): tees[0], id(err): tees[1]})
            sys.stdout, sys.stderr = tees
            try:
                yield
            except SystemExit as exit_:
                if exit_.code not in (0, None):
                    tees[1].lines.write(f"exit status {exit_.code}\n")
                raise
            except BaseException:
                tees[1].lines.write(traceback.format_exc())
                raise
            finally:
                for tee in tees:
                    tee.lines.close()
                if sys.stdout is tees[0]:
                    sys.stdout = out
                if sys.stderr is tees[1]:
                    sys.stderr = err
                for handler, stream in handlers:
                    handler.setStream(stream)

    def read_results(self) -> dict[str, Any] | None:
        if not self.results.exists():
            return None
        try:
            return json.loads(self.results.read_text())
        except json.JSONDecodeError:
            return None

    def status(self) -> str | None:
        results = self.read_results()
        return None if results is None else results.get("status")

    def write_results(self, results: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.results, results)

    def append_history(self, record: dict[str, Any]) -> None:
        with self.history.open("a") as handle:
            handle.write(json.dumps(_jsonable(record), allow_nan=False) + "\n")

    def write_history(self, records: list[dict[str, Any]]) -> None:
        """Replace history.jsonl (on resume, with the records the checkpoint carries: the
        file may be a line behind or ahead of a checkpoint if the job was killed between
        the two writes)."""
        lines = "".join(json.dumps(_jsonable(r), allow_nan=False) + "\n" for r in records)
        write_text_atomic(self.history, lines)

    def read_history(self) -> list[dict[str, Any]]:
        if not self.history.exists():
            return []
        return [json.loads(line) for line in self.history.read_text().splitlines() if line]


def _utc(seconds: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


# ANSI escape sequences: CSI (ESC [ ... final byte), OSC (ESC ] ... BEL or ESC \), and the
# two-byte ones; plus the characters that move the cursor on a line.
_CONTROL = re.compile(
    r"(\x1b\[[0-?]*[ -/]*[@-~]"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC
    r"|\x1b[@-Z\\-_]"  # two bytes
    r"|\r\n|[\r\n\b])"
)


class _PlainLines:
    """Text written to a terminal, as the plain lines it leaves on screen: each line is
    written to ``log`` when it ends, as a terminal shows it then (a carriage return or an
    erase-line code starts it over, as a progress bar's redraw does; other escape codes,
    colours and cursor moves, are dropped)."""

    def __init__(self, log: TextIO, lock: threading.Lock) -> None:
        self.log: TextIO | None = log
        self.lock = lock
        self.line: list[str] = []
        self.column = 0

    def write(self, text: str) -> None:
        with self.lock:
            if self.log is None:  # closed: a stream still wrapped goes to its terminal only
                return
            for piece in _CONTROL.split(text):
                if not piece:
                    continue
                if piece in ("\n", "\r\n"):
                    self._end_line()
                elif piece == "\r":
                    self.column = 0
                elif piece == "\b":
                    self.column = max(0, self.column - 1)
                elif piece.startswith("\x1b"):
                    if piece.startswith("\x1b[") and piece.endswith("K"):  # erase in line
                        mode = piece[2:-1] or "0"
                        if mode == "0":  # from the cursor on
                            del self.line[self.column :]
                        elif mode == "1":  # up to the cursor
                            self.line[: self.column] = " " * min(self.column, len(self.line))
                        else:  # all of it
                            self.line = []
                else:  # text, over what the line has from the cursor on
                    self.line += " " * (self.column - len(self.line))
                    self.line[self.column : self.column + len(piece)] = piece
                    self.column += len(piece)

    def _end_line(self) -> None:
        assert self.log is not None
        self.log.write("".join(self.line).rstrip() + "\n")
        self.log.flush()
        self.line, self.column = [], 0

    def close(self) -> None:
        """Write the unfinished line, if any (e.g. a progress bar that was not closed), and
        write nothing after."""
        with self.lock:
            if self.log is not None and "".join(self.line).strip():
                self._end_line()
            self.log, self.line, self.column = None, [], 0


class _Tee:
    """A text stream that writes to ``stream`` and to ``lines`` (a :class:`_PlainLines`), and
    is ``stream`` for everything else (isatty, fileno, encoding: a progress bar draws as on
    the terminal it is on)."""

    def __init__(self, stream: TextIO, lines: _PlainLines) -> None:
        self.stream, self.lines = stream, lines

    def write(self, text: str) -> int:
        written = self.stream.write(text)
        self.lines.write(text)
        return written

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _stream_handlers(tees: dict[int, _Tee]) -> list[tuple[logging.StreamHandler, Any]]:
    """Point every logging handler that writes to one of the streams being teed (Hydra's
    job logging writes to the stdout it found when it configured logging) to its tee; returns
    (handler, stream it had) to undo it."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    changed = []
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if type(handler) is logging.StreamHandler and id(handler.stream) in tees:
                changed.append((handler, handler.setStream(tees[id(handler.stream)])))
    return changed
