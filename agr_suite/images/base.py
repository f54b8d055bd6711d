"""What every image data set reader shares: its description, and images held as tensors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import Dataset


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset; ``train_size``/``test_size`` are the official split sizes."""

    name: str
    num_classes: int
    image_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_size: int
    test_size: int


@dataclass(frozen=True)
class ImageDataset:
    """An image data set the suite reads: what a reader module of this package declares in
    its ``DATASETS`` (agr_suite.images finds them), or what ``agr_suite.images.register`` is
    given. A new data set is such a module plus its ``configs/dataset/<name>.yaml``."""

    info: DatasetInfo
    build: Callable[..., tuple[Dataset, Dataset]]
    """``build(data_dir, *, download, augment, augmentation)`` -> (train, test); augmentation
    is None unless the pipeline is PIL (``pil``)."""
    data_sha256: Callable[[Dataset, Dataset], str]
    """Digest of what the run's numbers depend on (results.json), from the two splits."""
    split_type: type
    """The class of the splits ``build`` returns: how the device loader recognises them."""
    device_tensors: Callable[[Dataset], tuple[Tensor, Tensor]]
    """(images [N, C, H, W], int64 labels) of a split for the device loader: uint8 pixels for
    a PIL pipeline, else the tensors its transform acts on."""
    pil: bool = True
    """The training transform is a PIL pipeline, so it takes the ImageNet recipes' steps."""


class ImageTensors(Dataset):
    """In-memory images [N, C, H, W] in [-1, 1] with labels; optional random horizontal flip
    (drawn from torch's global RNG, which the engine seeds)."""

    def __init__(self, images: Tensor, labels: Tensor, hflip: bool = False) -> None:
        self.images, self.labels, self.hflip = images, labels, hflip

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image = self.images[index]
        if self.hflip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image, int(self.labels[index])
