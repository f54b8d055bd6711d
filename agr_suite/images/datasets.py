"""The image data sets' registry and builder, which ``agr_suite.images`` exports (importing
this module on first use of one of its names): see there."""

from __future__ import annotations

import os
import pkgutil
from importlib import import_module
from pathlib import Path

from torch.utils.data import Dataset

from agr_suite.core.errors import ConfigError, DatasetMissingError
from agr_suite.images.augmentation import Augmentation
from agr_suite.images.base import DatasetInfo, ImageDataset

__all__ = [
    "DATASETS",
    "Augmentation",
    "DatasetInfo",
    "DatasetMissingError",
    "ImageDataset",
    "build_datasets",
    "dataset_info",
    "register",
]

DATASETS: dict[str, ImageDataset] = {}
"""name -> data set: every ``DATASETS`` its reader modules declare, and those registered."""


def register(name: str, dataset: ImageDataset) -> None:
    """Make ``name`` a data set (e.g. one of your own, defined outside this package)."""
    DATASETS[name] = dataset


_PACKAGE = import_module("agr_suite.images")
for _module in pkgutil.iter_modules(_PACKAGE.__path__):
    if _module.name != "datasets":
        _reader = import_module(f"{_PACKAGE.__name__}.{_module.name}")
        DATASETS.update(getattr(_reader, "DATASETS", {}))


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; ValueError naming the valid choices otherwise."""
    return _dataset(name).info


def _dataset(name: str) -> ImageDataset:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return DATASETS[name]


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
    ImageNet recipes' steps to a PIL training pipeline (see :mod:`.augmentation`; the digits'
    images are tensors and take none). ``seed`` selects nothing here: every split is fixed (the
    digits split included, so all seeds share one test set) and the augmentations draw from
    the RNGs (torch's, Python's and NumPy's), which the caller (and DataLoader workers) seed.
    """
    dataset = _dataset(name)
    del seed
    if augmentation is not None and not augmentation.adds_anything:
        augmentation = None
    if augmentation is not None and not dataset.pil:
        pil = ", ".join(other for other, each in DATASETS.items() if each.pil)
        raise ConfigError(
            f"dataset.crop, rand_augment or random_erasing: PIL augmentations, for {pil}; "
            f"{name}'s images are tensors (leave them at their defaults)"
        )
    root = Path(data_dir).expanduser().resolve()
    train, test = dataset.build(root, download=download, augment=augment, augmentation=augmentation)
    return train, test, dataset.info
