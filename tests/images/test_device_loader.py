"""The device-resident loader against torchvision: the same pixels for the same crop offset,
flip and angle; the same distribution of those draws (scipy tests); every index once per
epoch, a new order per epoch, the same batches after a resume, disjoint DDP shards."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from scipy import stats
from torchvision import transforms as T

from agr_suite.images.device_loader import (
    Augment,
    AugmentDraw,
    DeviceLoader,
    apply_augment,
    draw_augment,
)

CIFAR = Augment(pad=4, hflip=True, degrees=15.0, interpolation="nearest")


def uint8_images(n=6, size=32, channels=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), generator=gen, dtype=torch.uint8)


def torchvision_one(image_u8, top, left, flip, angle, pad, interpolation):
    """torchvision's functional ops on one tensor image, in RandomCrop -> Flip -> Rotation
    order, then ToTensor's scaling."""
    size = image_u8.shape[-1]
    x = TF.pad(image_u8, [pad])
    x = TF.crop(x, top, left, size, size)
    if flip:
        x = TF.hflip(x)
    mode = {"nearest": T.InterpolationMode.NEAREST, "bilinear": T.InterpolationMode.BILINEAR}
    x = x.float().div(255.0)
    if angle != 0.0:
        x = TF.rotate(x, float(angle), interpolation=mode[interpolation])
    return x


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_same_pixels_as_torchvision_for_given_draws(interpolation):
    images = uint8_images()
    augment = Augment(pad=4, hflip=True, degrees=15.0, interpolation=interpolation)
    draw = AugmentDraw(
        offsets=torch.tensor([[0, 0], [8, 8], [3, 5], [4, 4], [1, 7], [6, 2]]),
        flips=torch.tensor([False, True, True, False, True, False]),
        angles=torch.tensor([0.0, 15.0, -15.0, 7.3, -0.4, 11.9], dtype=torch.float64),
    )
    got = apply_augment(images.float().div(255.0), draw, augment)
    for i in range(len(images)):
        (top, left), flip, angle = draw.offsets[i].tolist(), bool(draw.flips[i]), draw.angles[i]
        want = torchvision_one(images[i], top, left, flip, angle, 4, interpolation)
        torch.testing.assert_close(
            got[i], want, rtol=0, atol=1e-6 if interpolation != "nearest" else 0
        )


def test_rotation_agrees_with_the_pil_pipeline_on_almost_every_pixel():
    """The CIFAR runs rotate PIL images (PIL's own nearest sampling); the device rotation
    uses torchvision's tensor grid, so a few border pixels may round the other way."""
    images = uint8_images(n=8)
    angles = torch.linspace(-15, 15, 8, dtype=torch.float64)
    draw = AugmentDraw(
        torch.zeros(8, 2, dtype=torch.long), torch.zeros(8, dtype=torch.bool), angles
    )
    got = apply_augment(images.float().div(255.0), draw, Augment(degrees=15.0))
    same = 0
    for i in range(8):
        pil = Image.fromarray(images[i].permute(1, 2, 0).numpy())
        want = TF.to_tensor(
            TF.rotate(pil, float(angles[i]), interpolation=T.InterpolationMode.NEAREST)
        )
        same += (got[i] == want).all(0).float().mean().item()
    assert same / 8 > 0.97


def test_draws_have_torchvisions_distributions():
    n = 60_000
    draw = draw_augment(n, CIFAR, torch.Generator().manual_seed(1))
    # offsets uniform over 0..8 on each axis (RandomCrop(32, padding=4))
    for axis in range(2):
        counts = np.bincount(draw.offsets[:, axis].numpy(), minlength=9)
        assert len(counts) == 9 and stats.chisquare(counts).pvalue > 1e-3
    # flip with probability 1/2
    assert stats.binomtest(int(draw.flips.sum()), n, 0.5).pvalue > 1e-3
    # angles uniform on [-15, 15]
    assert stats.kstest(draw.angles.numpy(), stats.uniform(-15, 30).cdf).pvalue > 1e-3
    assert draw.angles.abs().max() <= 15.0


def loader(images, labels, **kwargs):
    args = dict(batch_size=4, shuffle=True, augment=CIFAR, seed=3)
    return DeviceLoader(images, labels, **{**args, **kwargs})


def epoch_batches(dl, epoch):
    dl.set_epoch(epoch)
    return [(x.clone(), y.clone()) for x, y in dl]


def test_every_index_once_per_epoch_and_a_new_order_each_epoch():
    labels = torch.arange(10)
    dl = loader(uint8_images(n=10), labels)
    firsts = []
    for epoch in range(3):
        seen = torch.cat([y for _, y in epoch_batches(dl, epoch)])
        assert sorted(seen.tolist()) == list(range(10))
        firsts.append(seen.tolist())
    assert firsts[0] != firsts[1] != firsts[2]
    assert len(dl) == 3  # 10 images in batches of 4


def test_resume_at_an_epoch_gives_the_same_batches():
    images, labels = uint8_images(n=10), torch.arange(10)
    original = loader(images, labels)
    for epoch in range(2):
        epoch_batches(original, epoch)
    want = epoch_batches(original, 2)
    resumed = loader(images, labels)  # a new process
    got = epoch_batches(resumed, 2)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(want, got))


def test_ddp_shards_are_disjoint_and_cover_the_epoch_like_distributed_sampler():
    images, labels = uint8_images(n=11), torch.arange(11)
    shards = []
    for rank in range(3):
        dl = loader(images, labels, rank=rank, world_size=3)
        shards.append(torch.cat([y for _, y in epoch_batches(dl, 0)]).tolist())
    assert [len(s) for s in shards] == [4, 4, 4]  # ceil(11/3), padded with repeats
    flat = sorted(i for s in shards for i in s)
    assert set(flat) == set(range(11)) and len(flat) == 12


def test_normalisation_and_no_augmentation_reproduce_the_test_transform():
    images = uint8_images(n=5)
    mean, std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    dl = DeviceLoader(images, torch.arange(5), batch_size=5, shuffle=False, mean=mean, std=std)
    ((x, y),) = list(dl)
    tf = T.Compose([T.ToTensor(), T.Normalize(mean, std)])
    for i in range(5):
        want = tf(Image.fromarray(images[i].permute(1, 2, 0).numpy()))
        assert torch.equal(x[i], want)
    assert y.tolist() == list(range(5))


# ------------------------------------------------------------------ the suite's datasets


def unaugmented_batch(split):
    dl = DeviceLoader(
        split.images,
        split.labels,
        batch_size=len(split.labels),
        shuffle=False,
        mean=split.mean,
        std=split.std,
    )
    return next(iter(dl))


def assert_same_as_dataset(split, dataset):
    x, y = unaugmented_batch(split)
    for i in range(len(dataset)):
        image, label = dataset[i]
        assert torch.equal(x[i], image) and int(y[i]) == label


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_split_is_the_torchvision_dataset(tmp_path, monkeypatch, name):
    from fixtures import accept_fixture_checksums, write_cifar
    from torchvision.datasets import CIFAR10, CIFAR100

    from agr_suite.images import build_datasets
    from agr_suite.images.device_data import device_split

    write_cifar(tmp_path / name, name)
    accept_fixture_checksums(
        monkeypatch, {"cifar10": CIFAR10, "cifar100": CIFAR100}[name], tmp_path / name
    )
    plain_train, test, _ = build_datasets(name, data_dir=tmp_path, augment=False)
    assert_same_as_dataset(device_split(test), test)
    assert_same_as_dataset(device_split(plain_train), plain_train)
    train, _, _ = build_datasets(name, data_dir=tmp_path, augment=True)
    assert device_split(train).augment == CIFAR  # the paper's crop, flip and rotation


def test_digits_split_is_the_digits_dataset():
    from agr_suite.images import build_datasets
    from agr_suite.images.device_data import device_split

    train, test, _ = build_datasets("digits", data_dir=".", augment=True)
    assert_same_as_dataset(device_split(test), test)
    assert device_split(train).augment == Augment(pad=2, degrees=10.0, interpolation="bilinear")


def test_generation_split_keeps_the_images_in_minus_one_one():
    from agr_suite.diffusion.data import build_generation_datasets
    from agr_suite.images.device_data import device_split

    train, _, _ = build_generation_datasets("digits", data_dir=".", hflip=False)
    assert_same_as_dataset(device_split(train), train)


def test_a_transform_without_a_device_equivalent_is_refused():
    from agr_suite.images.device_data import NotOnDevice, augment_of

    with pytest.raises(NotOnDevice, match="ColorJitter"):
        augment_of(T.Compose([T.ColorJitter(0.1), T.ToTensor()]))
    with pytest.raises(NotOnDevice, match="order"):
        augment_of(T.Compose([T.RandomHorizontalFlip(), T.RandomCrop(32, padding=4)]))


def test_tinyimagenet_split_is_the_image_folder(tmp_path):
    """Decoded once to uint8 (a grayscale JPEG among them, as in the real train split)."""
    from fixtures import write_tinyimagenet

    from agr_suite.images import build_datasets
    from agr_suite.images.device_data import device_split

    write_tinyimagenet(tmp_path)
    train, test, _ = build_datasets("tinyimagenet", data_dir=tmp_path, augment=False)
    assert_same_as_dataset(device_split(train), train)
    assert_same_as_dataset(device_split(test), test)
    augmented, _, _ = build_datasets("tinyimagenet", data_dir=tmp_path, augment=True)
    assert device_split(augmented).augment == Augment(pad=4, hflip=True)


# ------------------------------------------------------------------ in the engine


def test_engine_with_the_device_loader_trains_and_resumes_exactly(tmp_path):
    """dataset.loader=device on the CPU, digits with their augmentation: a run stopped after
    epoch 1 and resumed ends on the weights and metrics of an uninterrupted run."""
    from helpers import tiny_run

    device = ["dataset.loader=device", "dataset.augment=true", "optimizer.lr=3e-3"]
    straight, weights = tiny_run(tmp_path / "straight", device)
    assert straight["status"] == "completed"
    tiny_run(tmp_path / "resumed", [*device, "trainer.epochs=1"])
    resumed, resumed_weights = tiny_run(tmp_path / "resumed", device)
    assert resumed["metrics"] == straight["metrics"]
    assert all(torch.equal(weights[k], resumed_weights[k]) for k in weights)


def test_auto_keeps_the_dataloader_on_cpu_and_device_is_refused_for_text(monkeypatch):
    from torch.utils.data import DataLoader

    from agr_suite.core.config import compose
    from agr_suite.core.errors import ConfigError
    from agr_suite.engine.loaders import build_train_loader
    from agr_suite.images import build_datasets

    train, _, _ = build_datasets("digits", data_dir=".", augment=True)
    cfg = compose(["dataset=digits", "trainer.batch_size=8", "trainer.num_workers=0"])
    args = dict(cfg=cfg, device=torch.device("cpu"), rank=0, world_size=1, collate=None)
    from agr_suite.engine import loaders

    read = loaders.device_split
    monkeypatch.setattr(loaders, "device_split", lambda _: pytest.fail("split read on CPU"))
    loader, _ = build_train_loader(train, **args)  # auto on CPU: the split is never read
    assert isinstance(loader, DataLoader)
    monkeypatch.setattr(loaders, "device_split", read)
    cfg.dataset.loader = "device"
    loader, sampler = build_train_loader(train, **args)
    assert isinstance(loader, DeviceLoader) and sampler is loader
    with pytest.raises(ConfigError, match="not images and labels"):
        build_train_loader(train, **{**args, "collate": lambda items: items})
