"""Read back what the real ``wandb`` package wrote for an offline run: the records of its
``run-<id>.wandb`` file (a LevelDB-style log of ``wandb_internal_pb2.Record`` messages after
a 7-byte ``:W&B`` header, in 32 KiB blocks), summarized as the run, its config, its history
rows, its summary, its metric definitions, its artifacts and its exit code."""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = 7  # b":W&B", magic 0xBEE1 (little endian), version byte
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path):
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, parts = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # the rest of a block too short for a record header is padding
            pos += left
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind in (FULL, FIRST):
            parts = chunk
        else:
            parts += chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            yield record


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


@dataclass
class OfflineRun:
    folder: Path
    run: Any = None
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    # the summary as its records left it: a key with a dict value (a W&B Table's reference)
    # is a nested dict
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)  # name -> its last MetricRecord
    artifacts: list[Any] = field(default_factory=list)  # ArtifactRecords, in logged order
    exit_code: int | None = None


def read_offline_run(folder: Path, timeout_s: float = 60.0) -> OfflineRun:
    """``folder`` is an ``offline-run-<time>-<id>`` folder. W&B's service process may still be
    writing the log when ``wandb.finish()`` returns: read until the exit record is there."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = _read(folder)
        if result.exit_code is not None or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def _read(folder: Path) -> OfflineRun:
    (log,) = folder.glob("run-*.wandb")
    result = OfflineRun(folder)
    for record in records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            result.run = record.run
            for item in record.run.config.update:
                result.config[_key(item)] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                result.config[_key(item)] = json.loads(item.value_json)
        elif kind == "history":
            result.history.append(
                {_key(item): json.loads(item.value_json) for item in record.history.item}
            )
        elif kind == "summary":
            for item in record.summary.update:
                path = [item.key] if item.key else list(item.nested_key)
                node = result.summary
                for part in path[:-1]:
                    node = node.setdefault(part, {})
                node[path[-1]] = json.loads(item.value_json)
        elif kind == "metric":
            result.metrics[record.metric.name or record.metric.glob_name] = record.metric
        elif kind == "artifact":
            result.artifacts.append(record.artifact)
        elif kind == "exit":
            result.exit_code = record.exit.exit_code
    return result


def offline_runs(wandb_dir: Path) -> list[OfflineRun]:
    """Every offline run under ``<wandb_dir>/wandb/``, oldest first."""
    return [read_offline_run(f) for f in sorted((wandb_dir / "wandb").glob("offline-run-*"))]
