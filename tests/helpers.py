"""What several test modules share: the checkout's paths, the tiny run settings, composing a
config the way run.py does, running ``python run.py`` as a subprocess, a digest of a folder,
a tiny in-process engine run, and the sweep arguments of the Slurm tests (which the README
shows). Test modules import from here, never from one another (tests/test_test_modules.py checks).

Fixture writers in the real on-disk formats stay in their own modules (fixtures.py for the
image data sets, text_fixtures.py for WikiText), as do the independent references
(reference.py: AGR from its definition; wandb_records.py: W&B's offline log format)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from agr_suite.core.config import RunConfig
from agr_suite.core.config import compose as compose_run_config
from agr_suite.engine import train
from agr_suite.registry import build_task

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

# Small versions of each model family, so a CPU run takes seconds.
TINY_MODELS = {
    "resnet18": ["model.base_width=4"],
    "vgg11": ["model.base_width=4"],
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


def run_folder_of(overrides: list[str]) -> Path:
    """The run folder ``python run.py OVERRIDES`` writes (its config's ``hydra.run.dir``, with
    the config hash; give ``paths.runs`` as an absolute path)."""
    from omegaconf import OmegaConf

    cfg = compose_cfg(overrides, hydra_cfg=True)
    return Path(OmegaConf.to_container(cfg.hydra.run, resolve=True)["dir"])


def resolved(overrides: list[str]) -> RunConfig:
    """The typed, checked config ``python run.py OVERRIDES`` runs with."""
    return compose_run_config(overrides)


def run_torchrun(args: list[str], cwd: Path, processes: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node=PROCESSES run.py ARGS`` in ``cwd``: a DDP run on this
    machine's CPU, on a free local port, one thread per process."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={processes}",
            "--master_addr=127.0.0.1",
            f"--master_port={port}",
            str(ROOT / "run.py"),
            *args,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


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


def run_in_process(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """What ``python run.py ARGS`` in ``cwd`` (in the environment ``env``, else this one) does,
    in this process and without its start-up (about 3 s of imports): run.py's own
    ``check_composes`` and Hydra ``main``, with ``sys.argv`` set as the command line sets it.
    The exit code is SystemExit's (0 when main returns), stdout and stderr are what they
    printed, as run_cli reports them. W&B's per-process settings are dropped before and after,
    so that W&B reads the environment afresh, as in a new process."""
    run = _run_py()
    stdout, stderr = io.StringIO(), io.StringIO()
    argv, here, environ = sys.argv, os.getcwd(), dict(os.environ)
    returncode = 0
    try:
        sys.argv = [str(ROOT / "run.py"), *args]
        os.chdir(cwd)
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        _forget_wandb_settings()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            run.check_composes(args)
            run.main()
    except SystemExit as exit_:
        code = exit_.code
        returncode = code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        sys.argv = argv
        os.chdir(here)
        if env is not None:
            os.environ.clear()
            os.environ.update(environ)
        _forget_wandb_settings()
    return subprocess.CompletedProcess(
        [sys.executable, "run.py", *args], returncode, stdout.getvalue(), stderr.getvalue()
    )


def _forget_wandb_settings() -> None:
    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()


# For @pytest.mark.parametrize("run", RUN_PY_RUNNERS): run.py in this process in make test,
# and as a real `python run.py` subprocess too in make test-all (marker slow).
RUN_PY_RUNNERS = [
    pytest.param(run_in_process, id="in-process"),
    pytest.param(run_cli, id="cli", marks=pytest.mark.slow),
]


def _run_py():
    """run.py as a module (imported once; its ``__main__`` block does not run)."""
    if "agr_run_py" not in sys.modules:
        spec = importlib.util.spec_from_file_location("agr_run_py", ROOT / "run.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        # Hydra looks for configs/ beside the file of a task function defined in __main__, as
        # it is when run.py is the script (otherwise it would look in a package).
        module.main.__wrapped__.__module__ = "__main__"
        sys.modules["agr_run_py"] = module
    return sys.modules["agr_run_py"]


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
    "model.base_width=4",
    "trainer.devices=cpu",
    "trainer.num_workers=0",
    "trainer.epochs=2",
    "trainer.limit_batches=3",
    "trainer.batch_size=32",
]


def tiny_run(folder: Path, overrides: list[str]) -> tuple[dict, dict[str, torch.Tensor]]:
    """(results.json, the final weights) of a run of TINY_DIGITS + ``overrides`` in ``folder``."""
    results = train(resolved([*TINY_DIGITS, *overrides]), folder, build_task)
    last = torch.load(folder / "checkpoints" / "last.pt", weights_only=False)
    return results, last["model"]


# ------------------------------------------------------------------------- Slurm sweeps

# The Slurm tests' sweep (tests/launch/test_slurm.py; the README shows the same arguments): a tiny
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
