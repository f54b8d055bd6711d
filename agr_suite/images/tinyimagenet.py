"""TinyImageNet-200 (64x64, 200 classes) as two torchvision ImageFolders.

The official zip extracts to ``<data_dir>/tiny-imagenet-200``: ``wnids.txt``,
``train/<wnid>/images/*.JPEG`` and ``val/images/*.JPEG`` with labels in
``val/val_annotations.txt``. The val split is moved once into ``val/<wnid>/`` folders so that
ImageFolder reads both splits; it is the test set (the official test split has no labels).
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import transforms as T
from torchvision.datasets import ImageFolder
from torchvision.datasets.utils import (
    check_integrity,
    download_and_extract_archive,
    extract_archive,
)

from agr_suite.core.errors import DatasetMissingError
from agr_suite.images.augmentation import Augmentation
from agr_suite.images.augmentation import train_transform as augmented
from agr_suite.images.base import DatasetInfo, ImageDataset

__all__ = [
    "FOLDER",
    "INFO",
    "REQUIRED",
    "URL",
    "ZIP_BYTES",
    "ZIP_MD5",
    "ZIP_NAME",
    "build",
    "data_sha256",
    "reorganise_val",
    "train_transform",
    "test_transform",
]

URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
ZIP_NAME = "tiny-imagenet-200.zip"
ZIP_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
# cs231n publishes neither a size nor a checksum: the MD5 above is the one TinyImageNet readers
# across projects pin, the size the zip's Content-Length as download logs show it
# (248100043/248100043).
ZIP_BYTES = 248_100_043
FOLDER = "tiny-imagenet-200"
MARKER = ".agr_val_reorganised"
REQUIRED = ("wnids.txt", "train", "val/val_annotations.txt")

# ImageNet's mean/std: TinyImageNet is an ImageNet subset and this is the common choice (its
# own train statistics, about (0.480, 0.448, 0.398) / (0.277, 0.269, 0.282), differ by < 0.05).
INFO = DatasetInfo(
    name="tinyimagenet",
    num_classes=200,
    image_size=64,
    channels=3,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    train_size=100_000,
    test_size=10_000,
)


def train_transform(info: DatasetInfo = INFO) -> T.Compose:
    return T.Compose(
        [
            T.RandomCrop(64, padding=4),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(info.mean, info.std),
        ]
    )


def test_transform(info: DatasetInfo = INFO) -> T.Compose:
    return T.Compose([T.ToTensor(), T.Normalize(info.mean, info.std)])


class _WnidFolder(ImageFolder):
    """ImageFolder whose classes are the sorted ``wnids.txt``, so train and val indices agree
    and stray folders (such as a leftover ``val/images``) are never taken for classes."""

    def __init__(self, root: Path, wnids: list[str], transform: T.Compose) -> None:
        self._wnids = sorted(wnids)
        super().__init__(str(root), transform=transform)

    def find_classes(self, directory: str | os.PathLike) -> tuple[list[str], dict[str, int]]:
        return list(self._wnids), {wnid: i for i, wnid in enumerate(self._wnids)}


def _missing(root: Path) -> list[str]:
    return [f"{FOLDER}/{rel}" for rel in REQUIRED if not (root / rel).exists()]


def _message(data_dir: Path, what: str) -> str:
    return (
        f"TinyImageNet not found in {data_dir / FOLDER}: {what}. To get it, run with "
        f"`dataset.download=true` on a machine with network access (it fetches {URL}, about "
        f"{ZIP_BYTES // 10**6} MB, into {data_dir} and extracts it), or put {ZIP_NAME} (or "
        f"the {FOLDER}/ folder it extracts to) in {data_dir} yourself."
    )


def _ensure_present(data_dir: Path, download: bool) -> None:
    """Extract a placed zip, or download it, when the extracted folder is incomplete."""
    root = data_dir / FOLDER
    if not _missing(root):
        return
    archive = data_dir / ZIP_NAME
    placed = archive.is_file() and check_integrity(str(archive), ZIP_MD5)
    step = f"extracting {archive}" if placed else f"downloading {URL}"
    failure, error = "", None
    try:
        if placed:
            extract_archive(str(archive), str(data_dir))
        elif download:
            download_and_extract_archive(URL, str(data_dir), filename=ZIP_NAME, md5=ZIP_MD5)
    except (OSError, RuntimeError, zipfile.BadZipFile) as err:  # URLError is an OSError
        failure, error = f"; {step} failed ({type(err).__name__}: {err})", err
    missing = _missing(root)
    if missing or error is not None:
        what = f"missing {', '.join(missing)}" if missing else "the extracted folder is incomplete"
        if archive.is_file() and not check_integrity(str(archive), ZIP_MD5):
            what += f"; {ZIP_NAME} there fails its MD5 check (partial download?)"
        raise DatasetMissingError(_message(data_dir, what + failure)) from error


def reorganise_val(root: str | os.PathLike) -> None:
    """Move ``val/images/<file>`` to ``val/<wnid>/<file>`` per ``val_annotations.txt``.

    Idempotent and safe to interrupt or rerun (also by several processes at once): files
    already in place are skipped, nothing is deleted (``val/images`` is removed only when
    empty), and a marker file written at the end makes later calls no-ops.
    """
    val = Path(root) / "val"
    marker = val / MARKER
    if marker.is_file():
        return
    images = val / "images"
    absent = []
    for line in (val / "val_annotations.txt").read_text().splitlines():
        if not line.strip():
            continue
        filename, wnid = line.split("\t")[:2]
        dest = val / wnid / filename
        if dest.is_file():
            continue
        dest.parent.mkdir(exist_ok=True)
        try:
            os.replace(images / filename, dest)
        except FileNotFoundError:
            if not dest.is_file():  # not moved meanwhile by a concurrent process either
                absent.append(filename)
    if absent:
        raise DatasetMissingError(
            _message(
                Path(root).parent,
                f"{len(absent)} validation images listed in val/val_annotations.txt are in "
                f"neither val/images nor val/<wnid> (first: {absent[0]}); the extraction looks "
                "incomplete",
            )
        )
    try:
        images.rmdir()
    except OSError:  # absent, or holds files the annotations do not name: keep them
        pass
    marker.write_text(
        "val/images was moved into val/<wnid>/ folders by agr_suite.images.tinyimagenet\n"
    )


def build(
    data_dir: Path, *, download: bool, augment: bool, augmentation: Augmentation | None = None
) -> tuple[Dataset, Dataset]:
    """(train, val-as-test) ImageFolders under ``data_dir/tiny-imagenet-200``; the training
    transform with ``augmentation``'s steps when given (agr_suite.images.augmentation)."""
    _ensure_present(data_dir, download)
    root = data_dir / FOLDER
    reorganise_val(root)
    wnids = (root / "wnids.txt").read_text().split()
    test_tf = test_transform()
    train_tf = train_transform()
    if augmentation is not None:
        train_tf = augmented(train_tf, INFO, augmentation)
    try:
        train = _WnidFolder(root / "train", wnids, train_tf if augment else test_tf)
        test = _WnidFolder(root / "val", wnids, test_tf)
    except FileNotFoundError as err:  # a class folder without images: a partial extraction
        raise DatasetMissingError(_message(data_dir, str(err))) from err
    return train, test


def data_sha256(train: ImageFolder, test: ImageFolder) -> str:
    """SHA-256 of both splits' file lists: every image's path relative to its split folder,
    its size in bytes and its label, sorted. Not the image bytes: hashing them would read the
    110,000 JPEGs a second time at every start. A file added, removed, moved to another class
    or changed in size changes the digest; an edit that keeps a file's size does not."""
    hasher = hashlib.sha256()
    for name, split in (("train", train), ("val", test)):
        root = Path(split.root)
        lines = sorted(
            f"{name}/{Path(path).relative_to(root).as_posix()}\t{os.path.getsize(path)}\t{label}\n"
            for path, label in split.samples
        )
        hasher.update("".join(lines).encode())
    return hasher.hexdigest()


def _device_tensors(split: ImageFolder) -> tuple[Tensor, Tensor]:
    """Every image of the split decoded once: uint8 [N, 3, 64, 64]."""
    pixels = [
        torch.from_numpy(np.asarray(split.loader(path), dtype=np.uint8).copy()).permute(2, 0, 1)
        for path, _ in split.samples
    ]
    return torch.stack(pixels), torch.as_tensor(split.targets, dtype=torch.int64)


DATASETS = {"tinyimagenet": ImageDataset(INFO, build, data_sha256, ImageFolder, _device_tensors)}
