"""What identifies a run's result, and the folder name that carries it.

A run folder is ``<paths.runs>/<experiment_name>/<dataset>-<model>-<optimizer>-<hash>/seed<N>``
(configs/config.yaml): ``<hash>`` is :func:`config_hash`, the first 8 hex digits of a SHA-256
of every *result key* but the seed, so two configs that could give different numbers never
share a folder, and the seeds of one config sit side by side. A result key is any schema
field not declared ``result=False`` in agr_suite/core/config.py: those are the settings that
cannot change a number on a given machine (paths, the logger, whether to download, how
often to log diagnostics). Everything else counts, also what only changes roundings
(``trainer.eval_batch_size``, ``trainer.compile``), and ``trainer.num_workers``: the torch
loader's workers each draw the augmentations of the batches they load.

The paper-table presets set ``folder_hash: false`` and keep their readable folder names
(``table2/cifar100-resnet18-adamw_agr/seed0``): a table spec composes each of its runs and
checks that no two share a folder (agr_suite.report.spec). Either way ``run.py`` compares the
config a folder recorded with the one it was asked to run (:func:`differences`) before it
skips or resumes that folder, and stops with exit status 2 naming the keys that differ.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from agr_suite.core.config import RunConfig, _walk, read_run_config
from agr_suite.core.errors import ConfigError

__all__ = ["config_hash", "differences", "folder_suffix", "recorded_differences", "result_values"]

HASH_LENGTH = 8
NOT_HASHED = ("seed",)  # in the folder's own name: seed<N>


def result_values(cfg: RunConfig) -> dict[str, Any]:
    """Dotted key -> value of every result key of a typed config."""
    values = {}
    for key, value, f in _walk(cfg, ""):
        if f.metadata.get("result", True):
            values[key] = value
    return values


def config_hash(cfg: RunConfig) -> str:
    """8 hex digits of a SHA-256 of the result keys but the seed (sorted JSON)."""
    values = {k: v for k, v in result_values(cfg).items() if k not in NOT_HASHED}
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


def folder_suffix(*, _root_: DictConfig) -> str:
    """The ``${agr.folder_suffix:}`` resolver of configs/config.yaml: ``-<config_hash>``, or
    nothing under ``folder_hash: false`` or for a config that does not type (run.py then
    stops on it with exit 2 before it writes anything)."""
    from agr_suite.core.config import load

    try:
        if not _root_.folder_hash:
            return ""
        return f"-{config_hash(load(_root_))}"
    except Exception:  # noqa: BLE001 - an invalid config is reported by run.py, not here
        return ""


def differences(recorded: RunConfig, wanted: RunConfig) -> list[str]:
    """``key: recorded -> wanted`` for each result key whose value differs between a run
    folder's recorded config and the one asked for (a key added to the schema since the
    recording reads back as its default)."""
    old, new = result_values(recorded), result_values(wanted)
    return [
        f"{key}: {old[key]!r} -> {new[key]!r}" for key in new if key in old and old[key] != new[key]
    ]


def recorded_differences(recorded: Path, wanted: RunConfig) -> list[str]:
    """:func:`differences` between the config a run folder recorded (``config.yaml``) and
    ``wanted``; none when the folder has no config yet, and one line when it cannot be read."""
    if not recorded.exists():
        return []
    try:
        return differences(read_run_config(recorded), wanted)
    except (ConfigError, OSError, ValueError) as error:
        return [f"{recorded.name} cannot be read: {str(error).splitlines()[0]}"]


if not OmegaConf.has_resolver("agr.folder_suffix"):
    OmegaConf.register_new_resolver("agr.folder_suffix", folder_suffix)
