"""A dataset's images as tensors for :class:`agr_suite.images.device_loader.DeviceLoader`.

:func:`device_split` reads the images, labels and transform of a dataset the suite builds
(torchvision's CIFAR, the TinyImageNet ImageFolder, the digits, the generation images) and
turns the transform into the loader's :class:`Augment` and normalisation. The transform is
the one source of truth: the device path replicates exactly the torchvision pipeline the
CPU path runs, and refuses a transform it cannot replicate.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor
from torchvision import transforms as T

from agr_suite.images import DATASETS  # defined before this module loads
from agr_suite.images.base import ImageTensors
from agr_suite.images.device_loader import Augment

__all__ = ["DeviceSplit", "device_split", "augment_of"]


@dataclass(frozen=True)
class DeviceSplit:
    """Images [N, C, H, W] (uint8, scaled by 1/255 when loaded, or float), int64 labels, the
    training augmentation and the normalisation after scaling."""

    images: Tensor
    labels: Tensor
    augment: Augment
    mean: tuple[float, ...]
    std: tuple[float, ...]


class NotOnDevice(ValueError):
    """The dataset or its transform has no device-loader equivalent."""


def augment_of(transform) -> tuple[Augment, tuple[float, ...], tuple[float, ...], bool]:
    """(augment, mean, std, scales uint8) of a torchvision pipeline made of RandomCrop with
    zero padding, RandomHorizontalFlip(0.5), RandomRotation(d) without expansion or fill,
    ToTensor and Normalize, in that order; NotOnDevice for anything else."""
    steps = list(transform.transforms) if isinstance(transform, T.Compose) else [transform]
    pad, hflip, degrees, interpolation = 0, False, 0.0, "nearest"
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    scales = False
    order = []
    for step in steps:
        if isinstance(step, T.RandomCrop):
            padding = step.padding
            if not isinstance(padding, int) or step.fill != 0 or step.padding_mode != "constant":
                raise NotOnDevice(f"RandomCrop with padding {padding!r}, fill {step.fill!r}")
            pad = padding
        elif isinstance(step, T.RandomHorizontalFlip):
            if step.p != 0.5:
                raise NotOnDevice(f"RandomHorizontalFlip(p={step.p})")
            hflip = True
        elif isinstance(step, T.RandomRotation):
            low, high = step.degrees
            if low != -high or step.expand or step.center is not None or step.fill not in (0, None):
                raise NotOnDevice(f"RandomRotation({step.degrees}, ...) beyond a plain rotation")
            degrees, interpolation = float(high), step.interpolation.value
            if interpolation not in ("nearest", "bilinear"):
                raise NotOnDevice(f"RandomRotation with {interpolation} interpolation")
        elif isinstance(step, T.ToTensor):
            scales = True
        elif isinstance(step, T.Normalize):
            mean, std = tuple(map(float, step.mean)), tuple(map(float, step.std))
        else:
            raise NotOnDevice(f"{type(step).__name__} has no device equivalent")
        order.append(type(step).__name__)
    expected = [
        n
        for n in ("RandomCrop", "RandomHorizontalFlip", "RandomRotation", "ToTensor", "Normalize")
        if n in order
    ]
    if order != expected:
        raise NotOnDevice(f"transforms in the order {order}; the device loader applies {expected}")
    return Augment(pad, hflip, degrees, interpolation), mean, std, scales


def device_split(dataset) -> DeviceSplit:
    """The images of ``dataset`` as tensors with its transform as an :class:`Augment`."""
    if isinstance(dataset, ImageTensors):  # generation images, already in [-1, 1]
        augment = Augment(hflip=dataset.hflip)
        return DeviceSplit(dataset.images, dataset.labels, augment, (0.0,), (1.0,))
    kind = next((d for d in DATASETS.values() if isinstance(dataset, d.split_type)), None)
    if kind is None:
        raise NotOnDevice(f"{type(dataset).__name__} has no device-loader reader")
    augment, mean, std, scales = augment_of(dataset.transform)  # before decoding a split
    if kind.pil and not scales:
        raise NotOnDevice("a PIL pipeline without ToTensor")
    images, labels = kind.device_tensors(dataset)
    return DeviceSplit(images, labels, augment, mean, std)
