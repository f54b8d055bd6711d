"""Which staging names a run config reads, which of them are not there, and the command that
stages them."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agr_suite.data_staging.artifacts import DATASET_NAMES, artifact


@dataclass(frozen=True)
class DataNeeds:
    """What runs read that must be staged: ``names`` under ``data_dir``; the Inception
    weights at ``inception_weights`` when the config names a file, else in torch.hub's cache."""

    names: tuple[str, ...]
    data_dir: Path
    inception_weights: Path | None = None


def needs_of(cfg: Mapping[str, Any]) -> DataNeeds:
    """The needs of a composed run config: its data set when it is downloaded (the embedded
    ones, digits, pydoc and docstrings, ship with installed packages), and the Inception
    weights when a diffusion run scores with Inception features (the digits use a CNN of
    their own, agr_suite.diffusion.digits_features)."""
    from agr_suite.diffusion.build import feature_kind

    dataset = cfg["dataset"]["name"]
    names = [dataset] if dataset in DATASET_NAMES else []
    metrics = cfg.get("metrics")
    weights = None
    if cfg["model"]["task"] == "diffusion" and metrics is not None:
        if feature_kind(metrics["features"], dataset) == "inception":
            names.append("inception")
            weights = metrics.get("inception_weights")
    return DataNeeds(
        tuple(names),
        Path(cfg["paths"]["data_dir"]).expanduser().resolve(),
        Path(weights).expanduser() if weights else None,
    )


def problems(
    names: Iterable[str], data_dir: Path, *, inception_weights: Path | None = None
) -> dict[str, str]:
    """name -> what is missing, for each of ``names`` the reader would not find offline."""
    found = {}
    for name in names:
        problem = artifact(name, data_dir, inception_weights=inception_weights).problem()
        if problem is not None:
            found[name] = problem
    return found


def missing_data(
    names: Iterable[str], data_dir: Path, *, inception_weights: Path | None = None
) -> list[str]:
    """The names among ``names`` that are not staged (present and verified) in ``data_dir``."""
    return list(problems(names, data_dir, inception_weights=inception_weights))


def stage_command(names: Iterable[str], data_dir: Path | None = None) -> str:
    """``python -m agr_suite.data_staging stage NAMES [--data-dir DIR]`` (the folder only
    when a name lands in it: the Inception weights go to torch.hub's cache)."""
    names = list(names)
    words = ["python", "-m", "agr_suite.data_staging", "stage", *names]
    if data_dir is not None and any(name in DATASET_NAMES for name in names):
        words += ["--data-dir", str(data_dir)]
    return shlex.join(words)
