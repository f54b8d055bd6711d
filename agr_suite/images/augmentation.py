"""The ImageNet recipes' training augmentations around a data set's own pipeline, built from
timm's pieces as ``timm.data.create_transform`` builds them (the official ConvNeXt and TinyViT
code call it for their training transform):

    crop, flip -> [RandAugment] -> ToTensor -> Normalize -> [RandomErasing]

``crop="pad"`` keeps the data set's own geometric steps (a random crop after zero padding and
a flip; CIFAR's rotation too); ``"random_resized"`` is timm's RandomResizedCropAndInterpolation
over its ImageNet range (scale 0.08-1, ratio 3/4-4/3) and a flip with probability 1/2: what
create_transform gives at every size above 32 pixels. RandAugment gets the hyperparameters
create_transform derives from the image size and mean: translations up to 45% of the side,
the mean colour as fill, the chosen interpolation. With the random_resized crop the result is
create_transform's pipeline step for step and draw for draw (tests/images/test_augmentation.py);
it has no color jitter, which create_transform drops whenever RandAugment is on.

One repair: RandAugment's magnitude draws (``mstd``) reach its maximum, where timm's
PosterizeIncreasing keeps 0 bits; the Pillow the official runs had made that a black image,
Pillow 13 raises instead, so :func:`posterize` gives the black image.

Every step runs on PIL images or CPU tensors, so the device loader refuses these pipelines
(``agr_suite.images.device_data.augment_of``) and a run reads them through the DataLoader.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image
from timm.data import auto_augment, rand_augment_transform
from timm.data.random_erasing import RandomErasing
from timm.data.transforms import RandomResizedCropAndInterpolation, str_to_pil_interp
from torchvision import transforms as T

from agr_suite.images.base import DatasetInfo

__all__ = ["Augmentation", "posterize", "rand_augment_hparams", "train_transform"]

# timm's ImageNet range of the random_resized crop (create_transform's defaults)
SCALE = (0.08, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)


@dataclass(frozen=True)
class Augmentation:
    """The training augmentation of an image classifier (``dataset.crop`` and the settings
    after it in the run config; agr_suite/core/config.py has their defaults)."""

    crop: str
    interpolation: str
    rand_augment: str | None
    random_erasing: float
    random_erasing_mode: str
    random_erasing_count: int

    @property
    def adds_anything(self) -> bool:
        return self.crop != "pad" or self.rand_augment is not None or self.random_erasing > 0


def rand_augment_hparams(info: DatasetInfo, interpolation: str) -> dict:
    """RandAugment's hyperparameters as ``create_transform`` sets them for this image size."""
    return {
        "translate_const": int(info.image_size * 0.45),
        "img_mean": tuple(min(255, round(255 * x)) for x in info.mean),
        "interpolation": str_to_pil_interp(interpolation),
    }


def posterize(img: Image.Image, bits_to_keep: int, **kwargs) -> Image.Image:
    """timm's posterize, with 0 bits kept giving the black image earlier Pillows gave (a lookup
    table of ``i & ~255``, all zeros) where Pillow 13 raises ValueError."""
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return auto_augment.posterize(img, bits_to_keep, **kwargs)


def rand_augment(config: str, hparams: dict):
    """timm's RandAugment for ``config`` with :func:`posterize` in its posterize operations."""
    transform = rand_augment_transform(config, hparams)
    for op in transform.ops:
        if op.aug_fn is auto_augment.posterize:
            op.aug_fn = posterize
    return transform


def train_transform(own: T.Compose, info: DatasetInfo, augmentation: Augmentation) -> T.Compose:
    """The data set's training pipeline ``own`` (geometric steps, ToTensor, Normalize) with
    ``augmentation``'s crop, RandAugment and random erasing."""
    steps = list(own.transforms)
    tensor_at = next(i for i, step in enumerate(steps) if isinstance(step, T.ToTensor))
    geometric, to_tensor = steps[:tensor_at], steps[tensor_at:]
    if augmentation.crop == "random_resized":
        crop = RandomResizedCropAndInterpolation(
            info.image_size, scale=SCALE, ratio=RATIO, interpolation=augmentation.interpolation
        )
        geometric = [crop, T.RandomHorizontalFlip(p=0.5)]
    elif augmentation.crop != "pad":
        raise ValueError(f"crop={augmentation.crop!r}: choose pad or random_resized")
    if augmentation.rand_augment is not None:
        hparams = rand_augment_hparams(info, augmentation.interpolation)
        geometric.append(rand_augment(augmentation.rand_augment, hparams))
    erasing = []
    if augmentation.random_erasing > 0:
        erasing.append(
            RandomErasing(
                augmentation.random_erasing,
                mode=augmentation.random_erasing_mode,
                max_count=augmentation.random_erasing_count,
                device="cpu",
            )
        )
    return T.Compose(geometric + to_tensor + erasing)
