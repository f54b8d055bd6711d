"""scikit-learn's 8x8 handwritten digits (1,797 real images, shipped with sklearn), at 32x32.

A fixed stratified 80/20 split (``random_state=0``, independent of the run's seed so every seed
is scored on the same 360 test images). The images live in memory as float tensors.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import transforms as T

from agr_suite.images.base import DatasetInfo, ImageDataset

__all__ = [
    "DATASETS",
    "INFO",
    "DigitsDataset",
    "build",
    "data_sha256",
    "load_split",
    "split_sha256",
]

SIZE = 32
SPLIT_SEED = 0
TEST_FRACTION = 0.2

# Mean/std of every pixel of the 1,437 training images after scaling to [0, 1] and bilinear
# upsampling to 32x32 (population std); tests/images/test_data.py recomputes them.
INFO = DatasetInfo(
    name="digits",
    num_classes=10,
    image_size=SIZE,
    channels=1,
    mean=(0.3054,),
    std=(0.3237,),
    train_size=1437,
    test_size=360,
)


def _load_digits():
    from sklearn.datasets import load_digits  # here, not at import: sklearn takes a second

    return load_digits()


def _split_indices(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices of the suite's one fixed stratified split."""
    from sklearn.model_selection import train_test_split

    return train_test_split(
        np.arange(len(labels)),
        test_size=TEST_FRACTION,
        random_state=SPLIT_SEED,
        stratify=labels,
    )


@lru_cache(maxsize=4)
def load_split(size: int = SIZE) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(train_x, train_y, test_x, test_y): images [N, 1, size, size] float32 in [0, 1] (the 8x8
    digits upsampled bilinearly), int64 labels; the suite's one fixed stratified split. The
    tensors are cached: treat them as read-only."""
    digits = _load_digits()
    images = torch.from_numpy(digits.images).float().div_(16.0).unsqueeze(1)
    if size != images.shape[-1]:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    labels = torch.from_numpy(digits.target).long()
    train_idx, test_idx = _split_indices(digits.target)
    train_idx, test_idx = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]


def split_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    """SHA-256 of raw digits, split as the suite splits them: the train images as uint8 (the
    8x8 values 0-16), the train labels as int64, then the same for the test split."""
    if images.min() < 0 or images.max() > 255 or not np.array_equal(images, np.round(images)):
        raise ValueError("digit images must hold integers 0-255 (sklearn's are 0-16)")
    hasher = hashlib.sha256()
    for index in _split_indices(labels):
        hasher.update(np.ascontiguousarray(images[index], dtype=np.uint8).tobytes())
        hasher.update(np.ascontiguousarray(labels[index], dtype=np.int64).tobytes())
    return hasher.hexdigest()


@lru_cache(maxsize=1)
def data_sha256() -> str:
    """:func:`split_sha256` of scikit-learn's digits: what a digits run's numbers depend on
    (the upsampling to 32x32 or 16x16 is code, not data)."""
    digits = _load_digits()
    return split_sha256(digits.images, digits.target)


def train_transform(info: DatasetInfo = INFO) -> T.Compose:
    """Small shifts and rotations on the [0, 1] tensor (zero fill is the background); no flips:
    digits are not mirror-symmetric."""
    return T.Compose(
        [
            T.RandomCrop(SIZE, padding=2),
            T.RandomRotation(10, interpolation=T.InterpolationMode.BILINEAR),
            T.Normalize(info.mean, info.std),
        ]
    )


def test_transform(info: DatasetInfo = INFO) -> T.Normalize:
    return T.Normalize(info.mean, info.std)


class DigitsDataset(Dataset):
    """In-memory images [N, 1, H, W] in [0, 1] and labels; ``transform`` acts on one image."""

    def __init__(self, images: Tensor, labels: Tensor, transform: T.Compose | T.Normalize) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.transform(self.images[index]), int(self.labels[index])


def build(data_dir=None, *, augment: bool, **_) -> tuple[Dataset, Dataset]:
    """(train, test): the fixed split of scikit-learn's digits (no files: ``data_dir`` and
    ``download`` mean nothing here)."""
    train_x, train_y, test_x, test_y = load_split()
    test_tf = test_transform()
    train = DigitsDataset(train_x, train_y, train_transform() if augment else test_tf)
    return train, DigitsDataset(test_x, test_y, test_tf)


DATASETS = {
    "digits": ImageDataset(
        INFO,
        build,
        lambda train, test: data_sha256(),
        DigitsDataset,
        lambda split: (split.images, split.labels),
        pil=False,
    )
}
