"""What several test modules share: the checkout's paths, the tiny run settings, composing a
config the way run.py does, running ``python run.py`` as a subprocess, a digest of a folder,
a tiny in-process engine run, and the sweep arguments of the Slurm tests (which the README
shows). Test modules import from here, never from one another (tests/test_test_modules.py checks).

Fixture writers in the real on-disk formats stay in their own modules (fixtures.py for the
image data sets, text_fixtures.py for WikiText), as do the independent references
(reference.py: AGR from its definition; wandb_records.py: W&B's offline log format)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from agr_suite.engine import train

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

# Small versions of each model family, so a CPU run takes seconds.
TINY_MODELS = {
    "resnet18": [],
    "vgg11": [],
    "vit": ["model.embed_dim=32", "model.depth=1", "model.num_heads=2"],
    "convnext": ["model.depths=[1,1,1,1]", "model.dims=[8,16,32,64]"],
}
# A fast classification run: the digits on the CPU, 2 batches of 16 per epoch, a constant lr.
FAST = [
    "dataset=digits",
    "trainer.devices=cpu",
    "trainer.num_workers=0",
    "trainer.batch_size=16",
    "trainer.limit_batches=2",
    "trainer.log_every=1",
    "scheduler=constant",
]


def compose_cfg(overrides: list[str], hydra_cfg: bool = False):
    """The config run.py would compose from ``overrides`` (with Hydra's part if asked)."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=hydra_cfg)


def resolved(overrides: list[str]) -> dict:
    """compose_cfg(overrides), interpolations resolved, as a plain dict."""
    return OmegaConf.to_container(compose_cfg(overrides), resolve=True)


def run_cli(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, **kwargs
) -> subprocess.CompletedProcess:
    """``python run.py ARGS`` in ``cwd``, in this process's environment (or ``env``)."""
    env = {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        **kwargs,
    )


def tree_digest(folder: Path) -> str:
    """SHA-256 over every file's relative path and bytes under ``folder``."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


# ------------------------------------------------------------------------- in-process runs

# A tiny ResNet on the digits, for tests that compare whole trajectories.
TINY_DIGITS = [
    "dataset=digits",
    "dataset.augment=false",
    "model=resnet18",
    "+model.base_width=4",
    "trainer.devices=cpu",
    "trainer.num_workers=0",
    "trainer.epochs=2",
    "trainer.limit_batches=3",
    "trainer.batch_size=32",
]


def tiny_run(folder: Path, overrides: list[str]) -> tuple[dict, dict[str, torch.Tensor]]:
    """(results.json, the final weights) of a run of TINY_DIGITS + ``overrides`` in ``folder``."""
    results = train(resolved([*TINY_DIGITS, *overrides]), folder)
    last = torch.load(folder / "checkpoints" / "last.pt", weights_only=False)
    return results, last["model"]


# ------------------------------------------------------------------------- Slurm sweeps

# The Slurm tests' sweep (tests/test_slurm.py; the README shows the same arguments): a tiny
# ViT on the digits, about half a second per epoch on one core.
SLURM_BASE = [
    "dataset=digits",
    "trainer.devices=cpu",
    "trainer.num_workers=0",
    "trainer.batch_size=32",
    "trainer.log_every=10",
    "scheduler=constant",
    "model=vit",
    "model.embed_dim=32",
    "model.depth=1",
    "model.num_heads=2",
]
SLURM_EPOCHS = 20  # the sweep and preemption runs: long enough to outlast Slurm's KillWait (5 s)
