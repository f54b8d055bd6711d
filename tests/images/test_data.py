"""Dataset readers (agr_suite.images) against small fixtures written in the real on-disk formats.

Nothing here reaches the network: every test runs with ``urllib.request.urlopen`` replaced by a
function that raises, and the download tests replace torchvision's ``download_url``.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.datasets.utils as tv_utils
from fixtures import WNIDS, accept_fixture_checksums, save_jpeg, write_cifar, write_tinyimagenet
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torchvision import transforms as T
from torchvision.datasets import CIFAR10, CIFAR100

from agr_suite.images import (
    DATASETS,
    DatasetInfo,
    DatasetMissingError,
    build_datasets,
    dataset_info,
)
from agr_suite.images import digits as digits_module
from agr_suite.images import tinyimagenet as tiny_module


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- CIFAR fixtures


CIFAR_CLASSES = {"cifar10": CIFAR10, "cifar100": CIFAR100}


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_reads_the_real_layout(tmp_path, monkeypatch, name):
    splits = write_cifar(tmp_path / name, name)
    accept_fixture_checksums(monkeypatch, CIFAR_CLASSES[name], tmp_path / name)
    info = dataset_info(name)

    train, test, got_info = build_datasets(name, data_dir=tmp_path, augment=False)
    assert got_info == info
    mean = torch.tensor(info.mean).view(3, 1, 1)
    std = torch.tensor(info.std).view(3, 1, 1)
    for dataset, split in ((train, "train"), (test, "test")):
        rows, labels = splits[split]
        assert len(dataset) == len(labels)
        for i, row in enumerate(rows):
            x, y = dataset[i]
            assert x.shape == (3, 32, 32) and x.dtype == torch.float32
            assert isinstance(y, int) and y == labels[i]
            # every pixel value v maps to (v / 255 - mean) / std, channel by channel
            expected = (torch.from_numpy(row).view(3, 32, 32).float() / 255 - mean) / std
            torch.testing.assert_close(x, expected)
    # augment=False: the train split uses the (deterministic) test transform
    torch.testing.assert_close(train[0][0], train[0][0])

    augmented, _, _ = build_datasets(name, data_dir=tmp_path, augment=True)
    steps = augmented.transform.transforms
    assert [type(t) for t in steps] == [
        T.RandomCrop,
        T.RandomHorizontalFlip,
        T.RandomRotation,
        T.ToTensor,
        T.Normalize,
    ]
    assert steps[0].size == (32, 32) and steps[0].padding == 4
    assert steps[2].degrees == [-15.0, 15.0]
    assert tuple(steps[4].mean) == info.mean and tuple(steps[4].std) == info.std
    x, _ = augmented[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32


def test_cifar_extracts_a_placed_tarball_without_downloading(tmp_path, monkeypatch):
    staging = tmp_path / "staging"
    splits = write_cifar(staging, "cifar10")
    accept_fixture_checksums(monkeypatch, CIFAR10, staging)
    root = tmp_path / "data" / "cifar10"
    root.mkdir(parents=True)
    with tarfile.open(root / CIFAR10.filename, "w:gz") as tar:
        tar.add(staging / CIFAR10.base_folder, arcname=CIFAR10.base_folder)
    monkeypatch.setattr(CIFAR10, "tgz_md5", _md5(root / CIFAR10.filename))

    train, test, _ = build_datasets("cifar10", data_dir=tmp_path / "data", download=False)
    assert (root / CIFAR10.base_folder / "test_batch").is_file()
    assert [y for _, y in test] == splits["test"][1]
    assert len(train) == len(splits["train"][1])


# ----------------------------------------------------------------------- TinyImageNet fixture


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _check_tiny(train, test, annotations: dict[str, str]) -> None:
    class_to_idx = {wnid: i for i, wnid in enumerate(sorted(WNIDS))}
    assert train.class_to_idx == test.class_to_idx == class_to_idx
    assert len(train) == 6 and len(test) == len(annotations)
    for path, label in test.samples:
        assert label == class_to_idx[annotations[Path(path).name]]
    for dataset in (train, test):
        for i in range(len(dataset)):
            x, y = dataset[i]
            assert x.shape == (3, 64, 64) and x.dtype == torch.float32 and isinstance(y, int)


def test_tinyimagenet_reorganises_val_once(tmp_path):
    annotations = write_tinyimagenet(tmp_path)
    root = tmp_path / "tiny-imagenet-200"

    train, test, info = build_datasets("tinyimagenet", data_dir=tmp_path, augment=False)
    assert info == dataset_info("tinyimagenet")
    _check_tiny(train, test, annotations)
    for filename, wnid in annotations.items():
        assert (root / "val" / wnid / filename).is_file()
    assert not (root / "val" / "images").exists()  # emptied, so removed
    marker = root / "val" / tiny_module.MARKER
    assert marker.is_file()
    torch.testing.assert_close(train[0][0], train[0][0])  # augment=False is deterministic

    before, stamp = _tree(root), marker.stat().st_mtime_ns
    train, test, _ = build_datasets("tinyimagenet", data_dir=tmp_path, augment=True)
    tiny_module.reorganise_val(root)
    assert _tree(root) == before and marker.stat().st_mtime_ns == stamp  # a no-op
    _check_tiny(train, test, annotations)
    assert [type(t) for t in train.transform.transforms] == [
        T.RandomCrop,
        T.RandomHorizontalFlip,
        T.ToTensor,
        T.Normalize,
    ]


def test_tinyimagenet_reorganise_resumes_and_keeps_unlisted_files(tmp_path):
    annotations = write_tinyimagenet(tmp_path)
    val = tmp_path / "tiny-imagenet-200" / "val"
    # an interrupted earlier run had moved one file; the user keeps a note among the images
    (val / "n09193705").mkdir()
    shutil.move(val / "images" / "val_0.JPEG", val / "n09193705" / "val_0.JPEG")
    (val / "images" / "notes.txt").write_text("mine")

    train, test, _ = build_datasets("tinyimagenet", data_dir=tmp_path, augment=False)
    _check_tiny(train, test, annotations)
    assert (val / "images" / "notes.txt").read_text() == "mine"
    assert "images" not in test.classes


@pytest.mark.parametrize("how", ["placed", "downloaded"])
def test_tinyimagenet_from_the_zip(tmp_path, monkeypatch, how):
    staging, data_dir = tmp_path / "staging", tmp_path / "data"
    annotations = write_tinyimagenet(staging)
    archive = tmp_path / "tiny-imagenet-200.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((staging / "tiny-imagenet-200").rglob("*")):
            zf.write(path, path.relative_to(staging))
    calls = []
    if how == "placed":
        data_dir.mkdir()
        shutil.copy(archive, data_dir / archive.name)
        monkeypatch.setattr(tiny_module, "ZIP_MD5", _md5(archive))
        download = False
    else:
        # torchvision's download_url, replaced by a copy of the fixture zip; its real
        # download_and_extract_archive then extracts it.
        def fake_download_url(url, root, filename=None, md5=None, max_redirect_hops=3):
            calls.append((url, Path(root), filename, md5))
            Path(root).mkdir(parents=True, exist_ok=True)
            shutil.copy(archive, Path(root) / filename)

        monkeypatch.setattr(tv_utils, "download_url", fake_download_url)
        download = True

    train, test, _ = build_datasets("tinyimagenet", data_dir=data_dir, download=download)
    _check_tiny(train, test, annotations)
    if how == "downloaded":
        assert calls == [
            (tiny_module.URL, data_dir.resolve(), tiny_module.ZIP_NAME, tiny_module.ZIP_MD5)
        ]


# ------------------------------------------------------------------------------ absent data

MISSING_FILE = {
    "cifar10": "cifar-10-batches-py/data_batch_1",
    "cifar100": "cifar-100-python/train",
    "tinyimagenet": "tiny-imagenet-200/wnids.txt",
}
ROOTS = {"cifar10": "cifar10", "cifar100": "cifar100", "tinyimagenet": "tiny-imagenet-200"}


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "tinyimagenet"])
def test_absent_data_offline_says_what_where_and_how(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)  # a relative data_dir: the message must give the absolute path
    with pytest.raises(DatasetMissingError) as excinfo:
        build_datasets(name, data_dir="data", download=False)
    message = str(excinfo.value)
    assert isinstance(excinfo.value, FileNotFoundError)
    assert str((tmp_path / "data" / ROOTS[name]).resolve()) in message
    assert "dataset.download=true" in message and MISSING_FILE[name] in message
    assert "\n" not in message
    assert not (tmp_path / "data").exists()  # looking leaves nothing behind


@pytest.mark.parametrize("name", ["cifar100", "tinyimagenet"])
def test_download_without_network_is_a_missing_dataset(tmp_path, monkeypatch, name):
    calls = []

    def offline_download_url(url, root, filename=None, md5=None, max_redirect_hops=3):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tv_utils, "download_url", offline_download_url)
    with pytest.raises(DatasetMissingError) as excinfo:
        build_datasets(name, data_dir=tmp_path, download=True)
    message = str(excinfo.value)
    assert len(calls) == 1 and calls[0] in message
    assert "URLError" in message and "name resolution" in message
    assert str(tmp_path.resolve() / ROOTS[name]) in message
    assert "dataset.download=true" in message
    assert isinstance(excinfo.value.__cause__, urllib.error.URLError)


# ----------------------------------------------------------------------------------- digits


def _reference_digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The documented split, computed here without agr: sklearn, [0, 1], bilinear to 32x32."""
    data = load_digits()
    train_idx, test_idx = train_test_split(
        np.arange(len(data.target)), test_size=0.2, random_state=0, stratify=data.target
    )

    def images(idx):
        x = torch.tensor(data.images[idx], dtype=torch.float32).unsqueeze(1) / 16
        return F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)

    labels = torch.as_tensor(data.target)
    return images(train_idx), labels[train_idx], images(test_idx), labels[test_idx]


def _stack(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(xs), torch.tensor(ys)


def test_digits_split_sizes_labels_and_normalisation(tmp_path):
    train, test, info = build_datasets("digits", data_dir=tmp_path, augment=False)
    assert (len(train), len(test)) == (info.train_size, info.test_size) == (1437, 360)
    assert not any(tmp_path.iterdir())  # ships with scikit-learn: nothing is written
    ref_train_x, ref_train_y, ref_test_x, ref_test_y = _reference_digits()
    mean, std = info.mean[0], info.std[0]
    for dataset, ref_x, ref_y in (
        (train, ref_train_x, ref_train_y),
        (test, ref_test_x, ref_test_y),
    ):
        x, y = _stack(dataset)
        assert x.shape[1:] == (1, 32, 32) and x.dtype == torch.float32
        assert isinstance(dataset[0][1], int)
        assert set(y.tolist()) == set(range(10))  # every class in both splits
        torch.testing.assert_close(y, ref_y)
        torch.testing.assert_close(x, (ref_x - mean) / std)
    x, _ = _stack(train)
    assert abs(x.mean().item()) < 1e-3 and abs(x.std().item() - 1) < 1e-3


def test_digits_constants_match_a_recomputation():
    ref_train_x = _reference_digits()[0]
    info = dataset_info("digits")
    assert info.channels == 1 and info.image_size == 32 and info.num_classes == 10
    assert info.mean[0] == pytest.approx(ref_train_x.mean().item(), abs=5e-5)
    assert info.std[0] == pytest.approx(ref_train_x.std(correction=0).item(), abs=5e-5)


def test_digits_split_does_not_depend_on_the_seed(tmp_path):
    stacks = []
    for seed in (0, 1, 123):
        digits_module.load_split.cache_clear()  # build each split afresh
        with torch.random.fork_rng():  # the global RNG state must not matter either
            torch.manual_seed(seed)
            train, test, _ = build_datasets("digits", data_dir=tmp_path, augment=False, seed=seed)
        stacks.append((train.images, train.labels, test.images, test.labels))
    for other in stacks[1:]:
        for a, b in zip(stacks[0], other):
            torch.testing.assert_close(a, b)


def test_digits_augmentation_shifts_and_rotates_without_flips(tmp_path):
    train, _, info = build_datasets("digits", data_dir=tmp_path, augment=True)
    steps = train.transform.transforms
    assert [type(t) for t in steps] == [T.RandomCrop, T.RandomRotation, T.Normalize]
    assert steps[0].padding == 2 and steps[1].degrees == [-10.0, 10.0]
    draws = torch.stack([train[0][0] for _ in range(8)])
    assert draws.shape == (8, 1, 32, 32) and draws.dtype == torch.float32
    assert any(not torch.equal(draws[0], d) for d in draws[1:])  # random draws


# ------------------------------------------------------------------------------- registry


def test_registry_and_infos():
    assert set(DATASETS) == {"cifar10", "cifar100", "tinyimagenet", "digits"}
    expected = {
        "cifar10": (10, 32, 3, 50000, 10000),
        "cifar100": (100, 32, 3, 50000, 10000),
        "tinyimagenet": (200, 64, 3, 100000, 10000),
        "digits": (10, 32, 1, 1437, 360),
    }
    for name in DATASETS:
        info = dataset_info(name)
        assert isinstance(info, DatasetInfo) and info.name == name
        got = (info.num_classes, info.image_size, info.channels, info.train_size, info.test_size)
        assert got == expected[name]
        assert len(info.mean) == len(info.std) == info.channels
    assert dataset_info("cifar100").mean == (0.5071, 0.4865, 0.4409)
    assert dataset_info("cifar100").std == (0.2673, 0.2564, 0.2762)
    with pytest.raises(AttributeError):
        dataset_info("digits").num_classes = 3  # frozen


@pytest.mark.parametrize("call", [dataset_info, lambda n: build_datasets(n, data_dir=".")])
def test_unknown_name_lists_the_choices(call):
    with pytest.raises(ValueError) as excinfo:
        call("imagenet")
    assert "imagenet" in str(excinfo.value)
    assert all(name in str(excinfo.value) for name in DATASETS)


# ----------------------------------------------------------------------- data digests


def _sha256(*parts: np.ndarray) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(np.ascontiguousarray(part).tobytes())
    return hasher.hexdigest()


def test_digits_digest_is_the_raw_split_and_follows_the_data():
    data = load_digits()
    train_idx, test_idx = train_test_split(
        np.arange(len(data.target)), test_size=0.2, random_state=0, stratify=data.target
    )
    pixels, labels = data.images.astype(np.uint8), data.target.astype(np.int64)
    expected = _sha256(pixels[train_idx], labels[train_idx], pixels[test_idx], labels[test_idx])
    assert digits_module.data_sha256() == expected
    assert digits_module.split_sha256(data.images, data.target) == expected
    one_pixel = data.images.copy()
    one_pixel[test_idx[-1], 7, 7] += 1
    assert digits_module.split_sha256(one_pixel, data.target) != expected
    relabelled = data.target.copy()
    relabelled[[train_idx[0], train_idx[1]]] = relabelled[[train_idx[1], train_idx[0]]]
    if relabelled[train_idx[0]] == relabelled[train_idx[1]]:  # a swap of equal labels: force
        relabelled[train_idx[0]] = (relabelled[train_idx[0]] + 1) % 10
    assert digits_module.split_sha256(data.images, relabelled) != expected


def test_classification_and_generation_runs_record_the_digits_digest(tmp_path):
    from agr_suite.classification.build import build
    from agr_suite.core.config import compose
    from agr_suite.diffusion.data import build_generation_datasets

    cfg = compose(["dataset=digits", "dataset.augment=false", f"paths.data_dir='{tmp_path}'"])
    assert build(cfg).info["data_sha256"] == digits_module.data_sha256()
    _, _, info = build_generation_datasets("digits", data_dir=tmp_path, hflip=False)
    assert info.data_sha256 == digits_module.data_sha256()


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_digest_is_the_loaded_pixels_and_labels(tmp_path, monkeypatch, name):
    from agr_suite.diffusion.data import build_generation_datasets
    from agr_suite.images import cifar as cifar_module

    splits = write_cifar(tmp_path / name, name)
    accept_fixture_checksums(monkeypatch, CIFAR_CLASSES[name], tmp_path / name)
    parts = []
    for split in ("train", "test"):
        rows, labels = splits[split]
        # CIFAR rows are CHW; torchvision holds HWC
        parts += [rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), np.array(labels, np.int64)]
    expected = _sha256(*parts)
    train, test, _ = build_datasets(name, data_dir=tmp_path, augment=False)
    assert cifar_module.data_sha256(train, test) == expected
    _, _, info = build_generation_datasets(name, data_dir=tmp_path, hflip=True)
    assert info.data_sha256 == expected
    train.data[0, 0, 0, 0] ^= 1  # one bit of one pixel
    assert cifar_module.data_sha256(train, test) != expected


def test_tinyimagenet_digest_is_the_file_list_with_sizes(tmp_path):
    write_tinyimagenet(tmp_path)
    train, test, _ = build_datasets("tinyimagenet", data_dir=tmp_path, augment=False)
    first = tiny_module.data_sha256(train, test)
    assert len(first) == 64
    train, test, _ = build_datasets("tinyimagenet", data_dir=tmp_path, augment=False)
    assert tiny_module.data_sha256(train, test) == first  # reorganised val: same list
    image = Path(train.samples[0][0])
    image.write_bytes(image.read_bytes() + b"\0")  # one byte longer
    train, test, _ = build_datasets("tinyimagenet", data_dir=tmp_path, augment=False)
    second = tiny_module.data_sha256(train, test)
    assert second != first
    wnid = WNIDS[0]
    save_jpeg(tmp_path / "tiny-imagenet-200" / "train" / wnid / "images" / "extra.JPEG", 7)
    train, test, _ = build_datasets("tinyimagenet", data_dir=tmp_path, augment=False)
    assert tiny_module.data_sha256(train, test) not in (first, second)
