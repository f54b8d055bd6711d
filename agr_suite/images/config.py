"""The image data sets' settings (``dataset=cifar10|cifar100|tinyimagenet|digits``), their
checks and sources: the schema ``agr_suite_schema/dataset/image``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agr_suite.core.config import (
    CIFAR100,
    DDPM,
    DatasetConfig,
    _check,
    at_least,
    fraction,
    one_of,
    register_schema,
    setting,
)

# torch: DataLoader with CPU workers; device: the whole split on the run's device
LOADERS = ("auto", "torch", "device")
# The training crop of an image classifier: the data set's own (pad: random crop after 4-pixel
# zero padding, flip; CIFAR adds its 15-degree rotation) or timm's ImageNet crop
# (random_resized: RandomResizedCropAndInterpolation, scale 0.08-1, ratio 3/4-4/3, flip).
CROPS = ("pad", "random_resized")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
RANDOM_ERASING_MODES = ("const", "rand", "pixel")  # timm.data.random_erasing.RandomErasing
MIXUP_MODES = ("batch", "pair", "elem")  # timm.data.Mixup


def _rand_augment_string(value: Any) -> bool:
    """None, or a string timm's ``rand_augment_transform`` parses."""
    if value is None:
        return True
    if not isinstance(value, str) or not value.startswith("rand"):
        return False
    from timm.data import rand_augment_transform

    try:
        rand_augment_transform(value, {})
    except (AssertionError, ValueError, KeyError, IndexError):
        return False
    return True


@dataclass
class ImageDatasetConfig(DatasetConfig):
    # false: the training split gets the test transform (no crop, flip, RandAugment or random
    # erasing; mixup and cutmix are set apart below)
    augment: bool = setting(
        True,
        source=f"[choice: pytorch-cifar100's training pipeline (crop 32 with padding 4, flip, "
        f"15-degree rotation), whose loader the authors' {CIFAR100} imports but does not ship; "
        "TinyImageNet's at 64x64 is ours (agr_suite/images)]",
    )
    hflip: bool = setting(
        True, source=f"[code: {DDPM}] RandomHorizontalFlip on CIFAR-10"
    )  # image generation only
    # torch: DataLoader with CPU workers; device: the whole split on the run's device,
    # augmented there batch by batch; auto: device on CUDA unless the augmentation needs PIL
    # (crop random_resized, rand_augment, random_erasing), torch otherwise
    loader: str = _check(one_of(LOADERS), "auto")
    # Image classification on CIFAR and TinyImageNet: the ImageNet recipes' augmentations, as
    # timm builds them (agr_suite.images.augmentation); the defaults add nothing.
    crop: str = _check(
        one_of(CROPS),
        "pad",
        "[choice: pytorch-cifar100's RandomCrop(32, padding=4), the loader the authors' "
        f"{CIFAR100} imports but does not ship]",
    )
    # the interpolation of the random_resized crop and of RandAugment's geometric operations
    interpolation: str = _check(one_of(INTERPOLATIONS), "bilinear", "[choice] timm's default")
    # a timm RandAugment config string, e.g. rand-m9-mstd0.5-inc1; null: none
    rand_augment: str | None = _check(
        (_rand_augment_string, "null or a timm RandAugment string such as rand-m9-mstd0.5-inc1"),
        None,
        f"[code: {CIFAR100}, {DDPM}] none; the TinyImageNet presets set the official recipes'",
    )
    # timm's RandomErasing after normalisation: its probability per image, fill mode, and the
    # most regions per image
    random_erasing: float = _check(
        fraction(), 0.0, f"[code: {CIFAR100}, {DDPM}] none; the TinyImageNet presets set it"
    )
    random_erasing_mode: str = _check(one_of(RANDOM_ERASING_MODES), "const", "[choice] timm's")
    random_erasing_count: int = _check(at_least(1), 1, "[choice] timm's")
    # timm's Mixup on each training batch (classification): mixup and cutmix Beta(alpha, alpha)
    # (0: off); with either on the loss takes the soft targets, label smoothing included, and
    # the training loader drops its last partial batch (the pairs need an even batch)
    mixup_alpha: float = _check(
        at_least(0, integer=False), 0.0, f"[code: {CIFAR100}] none; the TinyImageNet presets set it"
    )
    cutmix_alpha: float = _check(
        at_least(0, integer=False), 0.0, f"[code: {CIFAR100}] none; the TinyImageNet presets set it"
    )
    # the probability a batch is mixed at all, then of cutmix rather than mixup when both are on
    mixup_prob: float = _check(fraction(), 1.0, "[choice] timm's")
    mixup_switch_prob: float = _check(fraction(), 0.5, "[choice] timm's")
    mixup_mode: str = _check(one_of(MIXUP_MODES), "batch", "[choice] timm's")

    @property
    def mixes(self) -> bool:
        """Whether mixup or cutmix is on."""
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def problems(self, cfg: Any) -> list[str]:
        """The classification recipe's augmentations: where they can run."""
        problems: list[str] = []
        chosen = [
            f"dataset.{key}={getattr(self, key)}"
            for key, off in (("crop", "pad"), ("rand_augment", None), ("random_erasing", 0.0))
            if getattr(self, key) != off
        ]
        mixing = [
            f"dataset.{key}={getattr(self, key)}"
            for key in ("mixup_alpha", "cutmix_alpha")
            if getattr(self, key) > 0
        ]
        if (chosen or mixing) and cfg.model.task != "classification":
            problems.append(
                f"  {', '.join(chosen + mixing)}: augmentations of image classification, not of a "
                f"{cfg.model.task} run"
            )
            return problems
        if chosen and self.loader == "device":
            problems.append(
                f"  dataset.loader=device: the device loader has no {', '.join(chosen)} (PIL "
                "augmentations); use dataset.loader=auto or torch"
            )
        if mixing and cfg.trainer.batch_size % 2:
            problems.append(
                f"  trainer.batch_size={cfg.trainer.batch_size}: mixup and cutmix pair each image "
                "with another of its batch (timm's Mixup), so the batch must be even"
            )
        return problems


register_schema("dataset", "image", ImageDatasetConfig)
