"""A data loader that keeps the whole image set on the device and augments whole batches there.

The torchvision pipelines of the suite (``agr_suite.images.cifar``, ``tinyimagenet``, ``digits``,
``generation``) run per image on CPU workers: random crop with zero padding, horizontal
flip, rotation with zero fill, then scaling and normalisation. :class:`DeviceLoader` does the
same on a batch at once, on the device that holds the images:

- crop offsets uniform over ``0..2*pad`` per axis (``T.RandomCrop(size, padding=pad)``), a
  flip with probability 1/2 (``T.RandomHorizontalFlip``), an angle uniform in
  ``[-degrees, degrees]`` (``T.RandomRotation(degrees)``), in that order, with the
  interpolation of the torchvision pipeline it replaces;
- for given offsets, flips and angles the pixels are those of torchvision's tensor functions
  (``tests/images/test_device_loader.py``);
- a fresh permutation each epoch from the run's seed and the epoch alone, so a run resumed at
  an epoch boundary sees exactly the batches of an uninterrupted one; under DDP each rank
  takes every world_size-th index of it, padded like ``DistributedSampler``.

The random draws happen on the CPU (a few numbers per image per epoch), so the same seed
gives the same batches on any device.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Augment", "AugmentDraw", "DeviceLoader", "apply_augment", "draw_augment"]

INTERPOLATIONS = ("nearest", "bilinear")


@dataclass(frozen=True)
class Augment:
    """The random augmentation of a training split (all off: no augmentation)."""

    pad: int = 0  # crop back to the image size after zero padding by this many pixels
    hflip: bool = False
    degrees: float = 0.0  # rotate by an angle uniform in [-degrees, degrees], zero fill
    interpolation: str = "nearest"  # of the rotation

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}")
        if self.pad < 0 or self.degrees < 0:
            raise ValueError("pad and degrees must be >= 0")

    @property
    def active(self) -> bool:
        return self.pad > 0 or self.hflip or self.degrees > 0


@dataclass(frozen=True)
class AugmentDraw:
    """One batch's random parameters: crop offsets [n, 2] (top, left), flips [n] (bool),
    angles [n] (degrees, counter-clockwise)."""

    offsets: Tensor
    flips: Tensor
    angles: Tensor


def draw_augment(n: int, augment: Augment, generator: torch.Generator) -> AugmentDraw:
    """The random parameters of ``n`` images, drawn on the CPU from ``generator``."""
    offsets = torch.randint(0, 2 * augment.pad + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    angles = (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * augment.degrees
    return AugmentDraw(offsets, flips, angles)


def apply_augment(images: Tensor, draw: AugmentDraw, augment: Augment) -> Tensor:
    """Crop, flip and rotate a float batch [n, C, H, W] with the given parameters."""
    n, _, height, width = images.shape
    device = images.device
    if augment.pad > 0:
        padded = F.pad(images, (augment.pad,) * 4)
        offsets = draw.offsets.to(device)
        rows = offsets[:, 0, None] + torch.arange(height, device=device)  # [n, H]
        cols = offsets[:, 1, None] + torch.arange(width, device=device)  # [n, W]
        batch = torch.arange(n, device=device)[:, None, None]
        # [n, H, W, C] -> [n, C, H, W]
        images = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
        images = images.permute(0, 3, 1, 2)
    if augment.hflip:
        flips = draw.flips.to(device)[:, None, None, None]
        images = torch.where(flips, images.flip(-1), images)
    if augment.degrees > 0:
        images = rotate(images, draw.angles, augment.interpolation)
    return images.contiguous()


def rotate(images: Tensor, angles: Tensor, interpolation: str) -> Tensor:
    """Rotate each image of [n, C, H, W] (float) by its angle in degrees, counter-clockwise,
    about the image centre, zero fill: ``torchvision.transforms.functional.rotate`` with
    ``expand=False`` and no fill, per image, computed as torchvision computes it."""
    n, _, height, width = images.shape
    radians = torch.deg2rad(angles.double())
    cos, sin = torch.cos(radians), torch.sin(radians)
    zero = torch.zeros_like(cos)
    # torchvision's inverse affine matrix for a rotation by `angle`, rounded to float32
    theta = torch.stack([cos, -sin, zero, sin, cos, zero], dim=1).view(n, 2, 3).float()
    base = torch.empty(1, height, width, 3)
    base[..., 0].copy_(torch.linspace(-width * 0.5 + 0.5, width * 0.5 - 0.5, steps=width))
    ys = torch.linspace(-height * 0.5 + 0.5, height * 0.5 - 0.5, steps=height)
    base[..., 1].copy_(ys.unsqueeze(-1))
    base[..., 2].fill_(1)
    scaled = theta.transpose(1, 2) / torch.tensor([0.5 * width, 0.5 * height])
    grid = base.view(1, height * width, 3).expand(n, -1, -1).bmm(scaled)
    grid = grid.view(n, height, width, 2).to(device=images.device, dtype=images.dtype)
    return F.grid_sample(
        images, grid, mode=interpolation, padding_mode="zeros", align_corners=False
    )


def _seeded(*parts: object) -> torch.Generator:
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


class DeviceLoader:
    """Batches of ``(images, labels)`` from tensors on one device.

    Args:
        images: [N, C, H, W], uint8 (scaled by 1/255) or float, already on the device.
        labels: [N] int64 on the device.
        batch_size, shuffle, drop_last: as DataLoader's.
        augment: the training augmentation (``Augment()``: none).
        mean, std: per-channel normalisation after scaling (``(x - mean) / std``).
        seed: the run's seed; the permutation and the augmentation of epoch e depend on
            (seed, e) and the rank alone.
        rank, world_size: DDP sharding (as ``DistributedSampler``, padded to equal shards).
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        batch_size: int,
        shuffle: bool,
        drop_last: bool = False,
        augment: Augment = Augment(),
        mean: tuple[float, ...] = (0.0,),
        std: tuple[float, ...] = (1.0,),
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.augment, self.seed = augment, seed
        self.rank, self.world_size = rank, world_size
        shape = (1, -1, 1, 1)
        device = images.device
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(shape)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(shape)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def num_samples(self) -> int:
        """Indices this rank sees per epoch."""
        return math.ceil(len(self.labels) / self.world_size)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def indices(self) -> Tensor:
        """This rank's indices for the current epoch, in order (on the CPU)."""
        total = len(self.labels)
        if self.shuffle:
            order = torch.randperm(total, generator=_seeded("order", self.seed, self.epoch))
        else:
            order = torch.arange(total)
        padded = self.num_samples * self.world_size
        if padded > total:
            order = torch.cat([order, order[: padded - total]])
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = self.indices()
        draw = None
        if self.augment.active:
            generator = _seeded("augment", self.seed, self.epoch, self.rank)
            draw = draw_augment(len(order), self.augment, generator)
        order = order.to(self.images.device)
        for batch in range(len(self)):
            start = batch * self.batch_size
            index = order[start : start + self.batch_size]
            images = self.images[index]
            images = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
            if draw is not None:
                part = slice(start, start + len(index))
                images = apply_augment(
                    images,
                    AugmentDraw(draw.offsets[part], draw.flips[part], draw.angles[part]),
                    self.augment,
                )
            yield (images - self.mean) / self.std, self.labels[index]
