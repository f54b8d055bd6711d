"""The run folder: the contract between a run and the tables (see the README)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

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
