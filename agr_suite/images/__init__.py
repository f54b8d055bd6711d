"""The image data sets both image families read: CIFAR-10/100, TinyImageNet-200, sklearn
digits (classification: :func:`build_datasets`; generation: agr_suite.diffusion.data), and
the device-resident training loader (:mod:`.device_loader`, :mod:`.device_data`).

    train, test, info = build_datasets("cifar100", data_dir="data", download=True)

Both splits are map-style datasets of ``(float32 tensor [C, H, W], normalised; int label)``.
Absent data that cannot be downloaded raises :class:`DatasetMissingError`, whose message says
which files are missing, where they were looked for and how to get them.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch.utils.data import Dataset

from agr_suite.core.errors import DatasetMissingError
from agr_suite.images import cifar, digits, tinyimagenet
from agr_suite.images.augmentation import Augmentation
from agr_suite.images.base import DatasetInfo

__all__ = [
    "DATASETS",
    "Augmentation",
    "DatasetInfo",
    "DatasetMissingError",
    "build_datasets",
    "dataset_info",
]

DATASETS = ("cifar10", "cifar100", "tinyimagenet", "digits")

_INFOS: dict[str, DatasetInfo] = {
    **cifar.INFOS,
    "tinyimagenet": tinyimagenet.INFO,
    "digits": digits.INFO,
}


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; ValueError naming the valid choices otherwise."""
    if name not in _INFOS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return _INFOS[name]


def build_datasets(
    name: str,
    *,
    data_dir: str | os.PathLike,
    download: bool = False,
    augment: bool = True,
    augmentation: Augmentation | None = None,
    seed: int = 0,
) -> tuple[Dataset, Dataset, DatasetInfo]:
    """(train, test, info) for ``name``, reading (or downloading) under ``data_dir``.

    ``augment=False`` gives the train split the test transform. ``augmentation`` adds the
    ImageNet recipes' steps to the training transform of CIFAR and TinyImageNet (see
    :mod:`.augmentation`; the digits' images are tensors and take none). ``seed`` selects
    nothing here: every split is fixed (the digits split included, so all seeds share one test
    set) and the augmentations draw from the RNGs (torch's, Python's and NumPy's), which the
    caller (and DataLoader workers) seed.
    """
    info = dataset_info(name)
    del seed
    root = Path(data_dir).expanduser().resolve()
    if augmentation is not None and not augmentation.adds_anything:
        augmentation = None
    if name in cifar.INFOS:
        train, test = cifar.build(
            name, root, download=download, augment=augment, augmentation=augmentation
        )
    elif name == "tinyimagenet":
        train, test = tinyimagenet.build(
            root, download=download, augment=augment, augmentation=augmentation
        )
    else:
        if augmentation is not None:
            raise ValueError(f"{name}: its images are tensors; the PIL augmentations need PIL")
        train, test = digits.build(augment=augment)
    return train, test, info
