"""Images for the generation runs (Table 1): pixels scaled to [-1, 1], random horizontal flips
for training (the authors' CIFAR-10 pipeline), labels kept but unused.

    train, reference, info = build_generation_datasets("cifar10", data_dir="data", hflip=True)

``reference`` is the training split without augmentation: the real images whose feature
statistics FID compares against (CIFAR-10 *train* statistics, as the authors' evaluation).
Supported: ``cifar10`` (and ``cifar100``) at 32x32 and the embedded ``digits`` at 16x16 (the
input size of the digits-CNN feature extractor; digits are never flipped: they are not
mirror-symmetric, so ``hflip`` must be false for them).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset
from torchvision import transforms as T

from agr_suite.images import cifar, digits
from agr_suite.images.base import ImageTensors

__all__ = ["GENERATION_DATASETS", "GenerationDataInfo", "build_generation_datasets"]

# name -> native image size for generation
GENERATION_DATASETS: dict[str, int] = {"cifar10": 32, "cifar100": 32, "digits": 16}


@dataclass(frozen=True)
class GenerationDataInfo:
    name: str
    image_size: int
    channels: int
    train_size: int
    data_sha256: str = ""
    """The data the run depends on (``digits.data_sha256`` / ``cifar.data_sha256``)."""


def _to_minus_one_one() -> list:
    return [T.ToTensor(), T.Normalize((0.5,), (0.5,))]


def build_generation_datasets(
    name: str,
    *,
    data_dir: str | os.PathLike,
    download: bool = False,
    hflip: bool = True,
) -> tuple[Dataset, Dataset, GenerationDataInfo]:
    """(train set, reference set, info); both sets yield ``(image in [-1, 1], label)``."""
    if name not in GENERATION_DATASETS:
        raise ValueError(
            f"dataset={name} has no image-generation reader; choose one of "
            f"{', '.join(GENERATION_DATASETS)}"
        )
    size = GENERATION_DATASETS[name]
    if name == "digits":
        if hflip:
            raise ValueError(
                "dataset.hflip=true flips digits into mirror images that are not digits; "
                "set dataset.hflip=false"
            )
        train_x, train_y, _, _ = digits.load_split(size)
        images = train_x.mul(2.0).sub(1.0)
        train = ImageTensors(images, train_y)
        reference = ImageTensors(images, train_y)
        info = GenerationDataInfo(name, size, 1, len(train), digits.data_sha256())
        return train, reference, info
    root = Path(data_dir).expanduser().resolve()
    plain = T.Compose(_to_minus_one_one())
    train_tf = T.Compose([T.RandomHorizontalFlip(), *_to_minus_one_one()]) if hflip else plain
    train, test = cifar.load(name, root, download=download, train_tf=train_tf, test_tf=plain)
    reference = copy.copy(train)  # the same in-memory images, without the flips
    reference.transform = plain
    info = GenerationDataInfo(name, size, 3, len(train), cifar.data_sha256(train, test))
    return train, reference, info
