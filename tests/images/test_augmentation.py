"""The ImageNet recipes' training augmentations (agr_suite.images.augmentation) against timm:
with the same seeds, a training image read through our data sets is the tensor timm's
``create_transform`` makes of the same image, draw for draw; and the device loader, which
cannot run them, is left out."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from fixtures import accept_fixture_checksums, write_cifar, write_tinyimagenet
from PIL import Image
from timm.data import auto_augment, create_transform, rand_augment_transform
from torchvision import transforms as T
from torchvision.datasets import CIFAR100

from agr_suite.core.config import ConfigError, compose
from agr_suite.images import Augmentation, build_datasets, dataset_info
from agr_suite.images.augmentation import posterize, rand_augment, rand_augment_hparams
from agr_suite.images.device_data import NotOnDevice, device_split

RAND_AUGMENT = "rand-m9-mstd0.5-inc1"  # the official ConvNeXt and TinyViT string


def recipe(crop: str = "random_resized", **changes) -> Augmentation:
    values = dict(
        crop=crop,
        interpolation="bicubic",
        rand_augment=RAND_AUGMENT,
        random_erasing=0.25,
        random_erasing_mode="pixel",
        random_erasing_count=1,
    )
    return Augmentation(**{**values, **changes})


def official(size: int, mean, std, **changes):
    """timm's training transform as ConvNeXt's datasets.py and TinyViT's data/build.py call
    it (color jitter 0.4, which RandAugment switches off)."""
    values = dict(
        color_jitter=0.4,
        auto_augment=RAND_AUGMENT,
        interpolation="bicubic",
        re_prob=0.25,
        re_mode="pixel",
        re_count=1,
        mean=mean,
        std=std,
    )
    return create_transform(size, is_training=True, **{**values, **changes})


def seeded(seed: int, function, *args):
    """``function(*args)`` with Python's, NumPy's and torch's global RNGs seeded alike (timm's
    RandAugment draws from the first two, its crop and erasing from Python's and torch's)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (the global RNG timm draws from)
    torch.manual_seed(seed)
    return function(*args)


def assert_same_draws(ours, theirs, image, seeds=range(12)) -> None:
    outputs = []
    for seed in seeds:
        got = seeded(seed, ours, image)
        want = seeded(seed, theirs, image)
        assert torch.equal(got, want), f"seed {seed}"
        outputs.append(got)
    # not vacuous: the draws differ from seed to seed
    assert len({o.numpy().tobytes() for o in outputs}) == len(outputs)


@pytest.fixture
def tiny(tmp_path):
    write_tinyimagenet(tmp_path)
    return tmp_path


@pytest.fixture
def cifar(tmp_path, monkeypatch):
    write_cifar(tmp_path / "cifar100", "cifar100")
    accept_fixture_checksums(monkeypatch, CIFAR100, tmp_path / "cifar100")
    return tmp_path


def test_the_random_resized_recipe_is_timms_create_transform_draw_for_draw(tiny):
    train, _, info = build_datasets("tinyimagenet", data_dir=tiny, augmentation=recipe())
    theirs = official(info.image_size, info.mean, info.std)
    names = {"MaybeToTensor": "ToTensor"}  # timm's ToTensor that passes tensors through
    assert [type(t).__name__ for t in train.transform.transforms] == [
        names.get(type(t).__name__, type(t).__name__) for t in theirs.transforms
    ]
    for index in (0, 3):  # the grayscale JPEG (read as RGB) and a colour one
        path, label = train.samples[index]
        image = train.loader(path)
        assert_same_draws(lambda img: train.transform(img), theirs, image)
        x, y = seeded(5, train.__getitem__, index)
        assert torch.equal(x, seeded(5, theirs, image)) and y == label
        assert x.shape == (3, 64, 64) and x.dtype == torch.float32


@pytest.mark.parametrize(
    "changes",
    [
        dict(rand_augment=None),
        dict(random_erasing=0.0),
        dict(random_erasing=1.0, random_erasing_mode="const", random_erasing_count=3),
        dict(interpolation="bilinear"),
    ],
    ids=["no-randaugment", "no-erasing", "erasing-const-3", "bilinear"],
)
def test_each_setting_reaches_timm(tiny, changes):
    augmentation = recipe(**changes)
    train, _, info = build_datasets("tinyimagenet", data_dir=tiny, augmentation=augmentation)
    theirs = official(
        info.image_size,
        info.mean,
        info.std,
        # without RandAugment timm would add its color jitter: the recipes never run that
        color_jitter=None,
        auto_augment=augmentation.rand_augment,
        interpolation=augmentation.interpolation,
        re_prob=augmentation.random_erasing,
        re_mode=augmentation.random_erasing_mode,
        re_count=augmentation.random_erasing_count,
    )
    image = train.loader(train.samples[1][0])
    assert_same_draws(lambda img: train.transform(img), theirs, image)


def test_the_pad_crop_keeps_the_data_sets_steps_as_the_official_code_at_32_pixels(cifar):
    """At 32 pixels ConvNeXt's datasets.py (and TinyViT's data/build.py) put a padded random
    crop in place of timm's first step; ours keeps CIFAR's own crop, flip and rotation, then
    timm's RandAugment, tensor, normalisation and erasing."""
    train, _, info = build_datasets(
        "cifar100", data_dir=cifar, augment=True, augmentation=recipe(crop="pad")
    )
    primary, secondary, final = official(info.image_size, info.mean, info.std, separate=True)
    own = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.RandomRotation(15)]
    theirs = T.Compose(own + list(secondary.transforms) + list(final.transforms))
    image = T.functional.to_pil_image(torch.from_numpy(train.data[2]).permute(2, 0, 1))
    assert_same_draws(lambda img: train.transform(img), theirs, image)


def test_no_recipe_and_no_augmentation(tiny):
    plain, _, _ = build_datasets("tinyimagenet", data_dir=tiny)
    off = Augmentation("pad", "bilinear", None, 0.0, "const", 1)  # the schema's defaults
    same, _, _ = build_datasets("tinyimagenet", data_dir=tiny, augmentation=off)
    assert [type(t) for t in same.transform.transforms] == [
        type(t) for t in plain.transform.transforms
    ]
    # augment=false: the test transform, whatever the recipe says
    bare, test, _ = build_datasets(
        "tinyimagenet", data_dir=tiny, augment=False, augmentation=recipe()
    )
    assert torch.equal(bare[0][0], test.transform(bare.loader(bare.samples[0][0])))
    with pytest.raises(ConfigError, match="digits's images are tensors"):
        build_datasets("digits", data_dir=tiny, augmentation=recipe())


def test_the_device_loader_leaves_the_pil_recipes_to_the_dataloader(tiny):
    train, _, _ = build_datasets("tinyimagenet", data_dir=tiny, augmentation=recipe())
    decoded = []
    train.loader, real = (lambda path: decoded.append(path) or real(path)), train.loader
    with pytest.raises(NotOnDevice, match="RandomResizedCropAndInterpolation"):
        device_split(train)
    assert decoded == []  # refused before decoding the split
    assert dataset_info("tinyimagenet").image_size == 64


def test_the_config_refuses_what_cannot_run():
    tiny = ["dataset=tinyimagenet", "model=convnext", "dataset.rand_augment=" + RAND_AUGMENT]
    compose(tiny)  # loader auto: the DataLoader
    with pytest.raises(ConfigError, match="dataset.loader=device: the device loader has no"):
        compose([*tiny, "dataset.loader=device"])
    with pytest.raises(ConfigError, match="dataset.rand_augment"):
        compose(["dataset=tinyimagenet", "dataset.rand_augment=rand-x9"])
    with pytest.raises(ConfigError, match="not of a diffusion run"):
        compose(["experiment=ddpm_digits", "dataset.random_erasing=0.25"])
    with pytest.raises(ConfigError, match="batch must be even"):
        compose(["dataset=digits", "dataset.cutmix_alpha=1.0", "trainer.batch_size=15"])


def test_posterize_to_zero_bits_is_the_black_image_pillow_13_refuses():
    """RandAugment's magnitude draws reach 0 kept bits in PosterizeIncreasing: a black image
    with the Pillow of the official runs, a ValueError with Pillow 13 (timm's posterize)."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="bits"):
        auto_augment.posterize(image, 0)
    black = posterize(image, 0)
    assert (black.mode, black.size) == (image.mode, image.size)
    assert not np.asarray(black).any()
    for bits in (1, 4, 7, 8):
        assert np.array_equal(
            np.asarray(posterize(image, bits)), auto_augment.posterize(image, bits)
        )
    # every operation at magnitude 10 (posterize keeps 0 bits), each with probability 1/2
    hparams = rand_augment_hparams(dataset_info("tinyimagenet"), "bicubic")
    ours = rand_augment("rand-m10-n15-inc1", hparams)
    theirs = rand_augment_transform("rand-m10-n15-inc1", hparams)
    failures = 0
    for seed in range(8):
        out = seeded(seed, ours, image)
        try:
            want = seeded(seed, theirs, image)
        except ValueError:
            failures += 1
            continue
        assert np.array_equal(np.asarray(out), np.asarray(want))
    assert 0 < failures < 8
