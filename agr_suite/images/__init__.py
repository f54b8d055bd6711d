"""The image data sets both image families read: CIFAR-10/100, TinyImageNet-200, sklearn
digits (classification: :func:`build_datasets`; generation: agr_suite.diffusion.data), and
the device-resident training loader (:mod:`.device_loader`, :mod:`.device_data`).

    train, test, info = build_datasets("cifar100", data_dir="data", download=True)

Both splits are map-style datasets of ``(float32 tensor [C, H, W], normalised; int label)``.
Absent data that cannot be downloaded raises :class:`DatasetMissingError`, whose message says
which files are missing, where they were looked for and how to get them.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

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


def __getattr__(name: str) -> Any:
    """The names above, from :mod:`.datasets` on first use: it imports torch, timm and every
    reader, which ``agr_suite.images.config`` (the image schema, imported by every composition
    of configs/ and so by ``python run.py --help``) must not."""
    if name in __all__:
        return getattr(import_module(f"{__name__}.datasets"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
