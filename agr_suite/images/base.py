"""What every image data set reader shares: its description, and images held as tensors."""

from __future__ import annotations

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
