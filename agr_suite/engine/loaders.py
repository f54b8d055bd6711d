"""The training loader of a run: torch's DataLoader over the task's dataset, or the
device-resident loader (agr_suite.images.device_loader) over the same images and transform.

``dataset.loader``: ``torch`` (DataLoader + DistributedSampler, CPU workers), ``device``
(the whole split on the run's device, augmented there batch by batch), or ``auto``: device on
CUDA for the image datasets that have it, torch otherwise (so CPU runs keep their numbers),
and torch for a transform the device loader cannot replicate (the PIL augmentations of
agr_suite.images.augmentation: RandAugment, timm's crop, random erasing).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler

from agr_suite.core.config import RunConfig
from agr_suite.core.errors import ConfigError
from agr_suite.images.config import LOADERS, ImageDatasetConfig
from agr_suite.images.device_data import NotOnDevice, device_split
from agr_suite.images.device_loader import DeviceLoader

__all__ = ["LOADERS", "build_train_loader"]


def build_train_loader(
    train_set,
    *,
    cfg: RunConfig,
    device: torch.device,
    rank: int,
    world_size: int,
    collate,
    drop_last: bool = False,
) -> tuple[Any, Any]:
    """(loader, sampler): iterate the loader; call ``sampler.set_epoch(e)`` each epoch.
    ``drop_last``: leave out each epoch's last partial batch (TaskParts.drop_last)."""
    seed, batch_size = cfg.seed, cfg.trainer.batch_size
    # text data sets have no device loader
    choice = cfg.dataset.loader if isinstance(cfg.dataset, ImageDatasetConfig) else "torch"
    if choice == "device" and collate is not None:
        raise ConfigError("dataset.loader=device: this task's batches are not images and labels")
    wanted = choice == "device" or (choice == "auto" and device.type == "cuda")
    if wanted and collate is None:
        # decided before reading the split: TinyImageNet's is decoded from 110k JPEGs
        try:
            split = device_split(train_set)
        except NotOnDevice as error:
            if choice == "device":
                raise ConfigError(
                    f"dataset.loader=device: {error}. Use dataset.loader=torch for this data."
                ) from None
            split = None
        if split is not None:
            loader = DeviceLoader(
                split.images.to(device),
                split.labels.to(device),
                batch_size=batch_size,
                shuffle=True,
                drop_last=drop_last,
                augment=split.augment,
                mean=split.mean,
                std=split.std,
                seed=seed,
                rank=rank,
                world_size=world_size,
            )
            return loader, loader
    sampler = DistributedSampler(
        train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=seed
    )
    loader = DataLoader(
        train_set,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=cfg.trainer.num_workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator(),
        drop_last=drop_last,
        collate_fn=collate,
    )
    return loader, sampler
