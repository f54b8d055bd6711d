"""Bytes done / total and the rate while a file downloads: a rich bar on a terminal, a plain
line at every tenth of the file (and at least every 10 s) otherwise, for logs."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

LINE_EVERY_S = 10.0


def human_bytes(count: float) -> str:
    """Decimal units, as download sizes are usually quoted: 170.5 MB."""
    power = min(int(math.log10(max(count, 1)) // 3), 3)
    if power == 0:
        return f"{count:.0f} B"
    return f"{count / 1000**power:.1f} {('kB', 'MB', 'GB')[power - 1]}"


class _Lines:
    """The plain-text progress: ``name: 17.0 MB / 170.5 MB (10%), 12.3 MB/s``."""

    def __init__(self, label: str, total: int, stream: TextIO) -> None:
        self.label, self.total, self.stream = label, total, stream
        self.done, self.start = 0, time.monotonic()
        self.next_tenth, self.last_line = 1, self.start

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        tenth = self.done * 10 // max(self.total, 1)
        if (tenth >= self.next_tenth and self.done < self.total) or (
            now - self.last_line >= LINE_EVERY_S
        ):
            self.next_tenth = tenth + 1
            self.write(now)

    def write(self, now: float) -> None:
        rate = self.done / max(now - self.start, 1e-9)
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        print(
            f"  {self.label}: {human_bytes(self.done)} / {human_bytes(self.total)}{share}, "
            f"{human_bytes(rate)}/s",
            file=self.stream,
            flush=True,
        )
        self.last_line = now


@contextmanager
def download_progress(
    label: str, total: int, stream: TextIO | None = None
) -> Iterator[Callable[[int], None]]:
    """Inside: a function to call with each chunk's byte count."""
    stream = sys.stderr if stream is None else stream
    if stream.isatty():
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        columns = (
            TextColumn("  {task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=Console(file=stream)) as bar:
            task = bar.add_task(label, total=total)
            yield lambda count: bar.update(task, advance=count)
        return
    lines = _Lines(label, total, stream)
    yield lines.advance
    lines.write(time.monotonic())
