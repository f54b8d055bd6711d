"""Process-group setup: single process, torchrun, or a Slurm task started by submitit."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from agr_suite.core.errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(devices: str, local_rank: int = 0) -> torch.device:
    """The device of this process for ``trainer.devices`` (auto: a GPU when there is one);
    ConfigError when the config asks for a GPU this machine does not have."""
    if devices not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"trainer.devices={devices!r} is not valid; choose auto, cpu or cuda")
    if devices == "cuda" and not torch.cuda.is_available():
        why = (
            "this torch build has no CUDA support"
            if torch.version.cuda is None
            else f"torch (built for CUDA {torch.version.cuda}) sees no CUDA device"
            + (
                f" (CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r})"
                if "CUDA_VISIBLE_DEVICES" in os.environ
                else ""
            )
        )
        raise ConfigError(
            f"trainer.devices=cuda, but this machine has no GPU: {why}. Use trainer.devices=cpu "
            "(or auto, which takes a GPU when there is one), or run on a machine with a GPU."
        )
    if devices != "cpu" and torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def setup(devices: str = "auto") -> DistContext:
    """Join the process group the launcher describes (torchrun's RANK/WORLD_SIZE, or a
    submitit Slurm task); a plain ``python run.py`` is a single process."""
    if "WORLD_SIZE" not in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        if "SUBMITIT_EXECUTOR" in os.environ or "SUBMITIT_FOLDER" in os.environ:
            from submitit.helpers import TorchDistributedEnvironment

            TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(devices, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    elif device.type == "cuda":
        torch.cuda.set_device(device)
    return DistContext(rank=rank, local_rank=local_rank, world_size=world_size, device=device)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def gather_to_main(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor | None:
    """Every rank's ``tensor`` (sizes may differ along dim 0) concatenated in rank order on
    the main process, on the CPU; None on the other ranks. A single process gets its own."""
    if not ctx.distributed:
        return tensor.cpu()
    parts: list[torch.Tensor | None] = [None] * ctx.world_size
    dist.all_gather_object(parts, tensor.cpu())
    return torch.cat(parts) if ctx.is_main else None
