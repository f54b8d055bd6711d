"""Checkpoints: written atomically, read with ``weights_only=True``."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agr_suite.core.atomic import write_atomic
from agr_suite.core.errors import UserError


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be read; the file is left where it is."""


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """torch.save, whole or not at all (agr_suite.core.atomic)."""
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"cannot read the checkpoint {path} ({type(error).__name__}: {error}). The file is "
            "left in place. Move it away to start this run from scratch (or restore a good "
            "copy to resume), or pass overwrite=true to replace the whole run folder."
        ) from error


def rng_state() -> dict[str, Any]:
    """Every RNG the training loop draws from, in types ``weights_only`` loading accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (the global one)
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    numpy_state = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value
