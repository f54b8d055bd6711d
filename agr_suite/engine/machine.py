"""What computed a run's numbers: the machine, the kernels' instruction set, the libraries and
the numeric settings, recorded in results.json (``environment``) and listed by the tables.

The same command repeats bit for bit on the same machine type with the same versions; on
another CPU or GPU model the kernels differ (ATen and oneDNN choose code paths by the CPU's
instruction set, cuBLAS and cuDNN by the GPU), so the roundings differ and training amplifies
them. These fields are what tells two such runs apart.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["PORTABLE_ENV", "environment", "machine_label", "numerics", "precision_label"]

# Libraries whose kernels or defaults a run's numbers go through.
LIBRARIES = ("torch", "torchvision", "timm", "transformers", "diffusers", "numpy", "torch-agr")

# The environment of the portable CPU mode (README, "Reproducibility"): the CPU kernels of
# ATen, oneDNN, MKL and numpy's OpenBLAS capped at AVX2 (Haswell), an instruction set every
# x86-64 server CPU of the last decade has (`make reproduce-mini` sets these).
PORTABLE_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
}


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def onednn_isa() -> str | None:
    """The instruction set oneDNN dispatches its CPU kernels to, as its verbose mode states
    it once per process ("Intel AVX2", "Intel AVX-512 with ..."); None when torch has no
    oneDNN or the line cannot be read. (oneDNN writes to the process's stdout, which is
    redirected to a file for the one small convolution that makes it speak.)"""
    if not torch.backends.mkldnn.is_available():
        return None
    saved = os.dup(1)
    try:
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 1)
            try:
                with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                    torch.nn.functional.conv2d(torch.ones(2, 8, 16, 16), torch.ones(8, 8, 3, 3))
            finally:
                os.dup2(saved, 1)
            capture.seek(0)
            text = capture.read().decode(errors="replace")
    except (OSError, RuntimeError):
        return None
    finally:
        os.close(saved)
    for line in text.splitlines():
        if ",cpu,isa:" in line:
            return line.split(",cpu,isa:", 1)[1].strip()
    return None


def _output(command: list[str]) -> str | None:
    """A command's first line of output, or None when it cannot run or fails."""
    try:
        answer = subprocess.run(
            command, capture_output=True, text=True, timeout=10, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = answer.stdout.strip().splitlines()
    return lines[0].strip() if answer.returncode == 0 and lines else None


def _driver_version() -> str | None:
    """The NVIDIA driver's version: the first dotted number of /proc/driver/nvidia/version
    ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04 ..."), else
    nvidia-smi's."""
    try:
        found = re.search(
            r"\s(\d+\.\d+(?:\.\d+)?)\s", Path("/proc/driver/nvidia/version").read_text()
        )
        if found:
            return found.group(1)
    except OSError:
        pass
    return _output(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])


def _versions() -> dict[str, str | None]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    versions["torch"] = torch.__version__  # the build tag too (+cu130, +cpu)
    if versions["torch-agr"] is None:  # on sys.path without being installed
        import agr

        versions["torch-agr"] = agr.__version__
    return versions


def _git_commit() -> str | None:
    return _output(["git", "rev-parse", "HEAD"])


def numerics(device: torch.device, amp_dtype: torch.dtype | None) -> dict[str, Any]:
    """The numeric settings a run used: autocast precision, TF32, determinism."""
    cuda = device.type == "cuda"
    return {
        "precision": precision_label(device, amp_dtype),
        "autocast_dtype": str(amp_dtype).removeprefix("torch.") if amp_dtype else None,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32 if cuda else None,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32 if cuda else None,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic if cuda else None,
        "cudnn_benchmark": torch.backends.cudnn.benchmark if cuda else None,
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG") if cuda else None,
    }


def precision_label(device: torch.device, amp_dtype: torch.dtype | None) -> str:
    """bf16 / fp16 (autocast), fp32, or fp32+tf32 (a GPU's fp32 convolutions or matmuls in
    TF32, cuDNN's default for convolutions)."""
    if amp_dtype is not None:
        return (
            str(amp_dtype)
            .removeprefix("torch.")
            .replace("bfloat16", "bf16")
            .replace("float16", "fp16")
        )
    tf32 = device.type == "cuda" and (
        torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32
    )
    return "fp32+tf32" if tf32 else "fp32"


def environment(
    device: torch.device, world_size: int = 1, amp_dtype: torch.dtype | None = None
) -> dict[str, Any]:
    """What a number was computed with, stored next to it."""
    cuda = device.type == "cuda"
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    env = {
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "versions": _versions(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if cuda else platform.machine(),
        "world_size": world_size,
        "threads": torch.get_num_threads(),
        "host": platform.node(),
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_isa": onednn_isa(),
        "isa_caps": {k: os.environ[k] for k in PORTABLE_ENV if k in os.environ},
        "gpus": gpus,
        "gpu_driver": _driver_version() if cuda else None,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        **numerics(device, amp_dtype),
    }
    env["machine"] = machine_label(env)
    return env


def machine_label(env: dict[str, Any]) -> str:
    """One line naming the machine type behind a results.json ``environment`` (older ones,
    without the CPU and GPU fields, by what they recorded)."""
    gpus = env.get("gpus") or []
    if gpus:
        names = sorted(set(gpus))
        return " + ".join(f"{gpus.count(n)}x {n}" for n in names)
    if "cpu_model" not in env:
        return f"{env.get('device') or 'unknown'} (CPU model not recorded)"
    isa = f"ATen {env.get('cpu_capability')}, oneDNN {env.get('onednn_isa')}"
    return f"{env['cpu_model']} CPU ({isa})"
