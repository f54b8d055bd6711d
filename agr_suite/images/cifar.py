"""CIFAR-10 / CIFAR-100 through torchvision, with the paper's augmentation.

The files live in ``<data_dir>/cifar10`` or ``<data_dir>/cifar100``, in torchvision's layout
(``cifar-10-batches-py/`` or ``cifar-100-python/``, extracted from the official tarball).
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import transforms as T
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.datasets.utils import check_integrity, extract_archive

from agr_suite.core.errors import DatasetMissingError
from agr_suite.images.augmentation import Augmentation
from agr_suite.images.augmentation import train_transform as augmented
from agr_suite.images.base import DatasetInfo, ImageDataset

__all__ = [
    "ARCHIVE_BYTES",
    "CLASSES",
    "DATASETS",
    "INFOS",
    "LABELS",
    "build",
    "data_sha256",
    "load",
    "train_transform",
    "test_transform",
]

HOMEPAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"

INFOS = {
    "cifar10": DatasetInfo(
        name="cifar10",
        num_classes=10,
        image_size=32,
        channels=3,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        train_size=50_000,
        test_size=10_000,
    ),
    "cifar100": DatasetInfo(
        name="cifar100",
        num_classes=100,
        image_size=32,
        channels=3,
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
        train_size=50_000,
        test_size=10_000,
    ),
}
# torchvision's classes hold each set's tarball URL, file name and MD5s (agr_suite.data_staging
# reads them from here too).
CLASSES: dict[str, type[CIFAR10]] = {"cifar10": CIFAR10, "cifar100": CIFAR100}
LABELS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
# Bytes of the official tarballs: the Content-Length www.cs.toronto.edu serves, which
# torchvision's and Keras' download logs show (170498071/170498071, 169001437/169001437).
ARCHIVE_BYTES = {"cifar10": 170_498_071, "cifar100": 169_001_437}


def train_transform(info: DatasetInfo) -> T.Compose:
    """The authors' training pipeline: crop with 4-pixel padding, flip, rotate up to 15 degrees."""
    return T.Compose(
        [
            T.RandomCrop(32, padding=4),
            T.RandomHorizontalFlip(),
            T.RandomRotation(15),
            T.ToTensor(),
            T.Normalize(info.mean, info.std),
        ]
    )


def test_transform(info: DatasetInfo) -> T.Compose:
    return T.Compose([T.ToTensor(), T.Normalize(info.mean, info.std)])


def _expected_files(cls: type[CIFAR10]) -> list[str]:
    names = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    return [f"{cls.base_folder}/{name}" for name in names]


def _extract_placed_archive(cls: type[CIFAR10], root: Path) -> None:
    """Extract a tarball the user put in ``root`` (torchvision only extracts after a download)."""
    archive = root / cls.filename
    incomplete = any(not (root / f).is_file() for f in _expected_files(cls))
    if incomplete and archive.is_file() and check_integrity(str(archive), cls.tgz_md5):
        extract_archive(str(archive), str(root))


def _missing_message(name: str, root: Path, download: bool, error: BaseException) -> str:
    cls = CLASSES[name]
    missing = [f for f in _expected_files(cls) if not (root / f).is_file()]
    if missing:
        what = f"missing {', '.join(missing)}"
    else:
        what = (
            f"the files in {cls.base_folder}/ fail torchvision's MD5 check (corrupted or partial)"
        )
    archive = root / cls.filename
    if archive.is_file() and not check_integrity(str(archive), cls.tgz_md5):
        what += f"; {cls.filename} there fails its MD5 check (partial download?)"
    failed = f" The download attempt ended in {type(error).__name__}: {error}." if download else ""
    return (
        f"{LABELS[name]} not found in {root}: {what}.{failed} To get it, run with "
        f"`dataset.download=true` on a machine with network access (it fetches {cls.url}, "
        f"about {round(ARCHIVE_BYTES[name] / 2**20)} MB, into that folder), or put "
        f"{cls.filename} (or the "
        f"{cls.base_folder}/ folder it extracts to) in {root} yourself (see {HOMEPAGE})."
    )


def build(
    name: str,
    data_dir: Path,
    *,
    download: bool,
    augment: bool,
    augmentation: Augmentation | None = None,
) -> tuple[Dataset, Dataset]:
    """(train, test) for ``cifar10`` or ``cifar100`` under ``data_dir/<name>``; the training
    transform with ``augmentation``'s steps when given (agr_suite.images.augmentation)."""
    info = INFOS[name]
    test_tf = test_transform(info)
    train_tf = train_transform(info)
    if augmentation is not None:
        train_tf = augmented(train_tf, info, augmentation)
    return load(
        name,
        data_dir,
        download=download,
        train_tf=train_tf if augment else test_tf,
        test_tf=test_tf,
    )


def load(
    name: str, data_dir: Path, *, download: bool, train_tf: Callable, test_tf: Callable
) -> tuple[Dataset, Dataset]:
    """(train, test) with the given transforms (PIL image -> tensor), reading (or downloading)
    ``data_dir/<name>``; :class:`DatasetMissingError` when absent."""
    cls = CLASSES[name]
    root = data_dir / name
    try:
        if not download:
            _extract_placed_archive(cls, root)
        train = cls(root, train=True, transform=train_tf, download=download)
        test = cls(root, train=False, transform=test_tf)
    # RuntimeError: torchvision's "not found or corrupted"; OSError covers URLError (offline).
    except (RuntimeError, OSError, tarfile.TarError) as error:
        raise DatasetMissingError(_missing_message(name, root, download, error)) from error
    return train, test


def data_sha256(train: CIFAR10, test: CIFAR10) -> str:
    """SHA-256 of what :func:`load` read: each split's pixels (uint8 [N, 32, 32, 3], as
    torchvision holds them) then its labels (int64). Hashed in memory, not the files again:
    about 180 MB, a fraction of a second."""
    hasher = hashlib.sha256()
    for split in (train, test):
        hasher.update(np.ascontiguousarray(split.data, dtype=np.uint8).tobytes())
        hasher.update(np.asarray(split.targets, dtype=np.int64).tobytes())
    return hasher.hexdigest()


def _device_tensors(split: CIFAR10) -> tuple[Tensor, Tensor]:
    """torchvision's uint8 [N, H, W, C] as [N, C, H, W] (CIFAR-100 too)."""
    images = torch.from_numpy(np.ascontiguousarray(split.data)).permute(0, 3, 1, 2)
    return images.contiguous(), torch.as_tensor(split.targets, dtype=torch.int64)


DATASETS = {
    name: ImageDataset(info, partial(build, name), data_sha256, CIFAR10, _device_tensors)
    for name, info in INFOS.items()
}
