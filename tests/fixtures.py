"""Fixture data sets written in the real on-disk formats, shared by the tests."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision.datasets import CIFAR10


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _pickle(path: Path, obj: dict) -> None:
    # The official files are Python 2 pickles whose keys load as str under torchvision's
    # encoding="latin1" (and as b"data", b"labels", ... under encoding="bytes"): str keys
    # written by Python 3 load identically under latin1.
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _images(rng: np.random.Generator, n: int) -> np.ndarray:
    """n images as CIFAR rows: uint8 [n, 3072], 1024 red then green then blue, row-major."""
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_cifar(root: Path, name: str) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Write a tiny CIFAR-10/100 in torchvision's layout under ``root``; returns split -> data."""
    rng = np.random.default_rng(0 if name == "cifar10" else 1)
    splits: dict[str, tuple[np.ndarray, list[int]]] = {}
    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        train_rows, train_labels = [], []
        for b in range(1, 6):
            rows, labels = _images(rng, 2), [int(v) for v in rng.integers(0, 10, 2)]
            _pickle(
                folder / f"data_batch_{b}",
                {
                    "batch_label": f"training batch {b} of 5",
                    "labels": labels,
                    "data": rows,
                    "filenames": [f"img{b}_{i}.png" for i in (0, 1)],
                },
            )
            train_rows.append(rows)
            train_labels += labels
        splits["train"] = (np.vstack(train_rows), train_labels)
        rows, labels = _images(rng, 3), [0, 9, 4]
        _pickle(
            folder / "test_batch",
            {
                "batch_label": "testing batch 1 of 1",
                "labels": labels,
                "data": rows,
                "filenames": ["t0.png", "t1.png", "t2.png"],
            },
        )
        splits["test"] = (rows, labels)
        names = [
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ]
        _pickle(
            folder / "batches.meta",
            {"label_names": names, "num_cases_per_batch": 10000, "num_vis": 3072},
        )
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        for split, n in (("train", 6), ("test", 4)):
            rows, fine = _images(rng, n), [int(v) for v in rng.integers(0, 100, n)]
            _pickle(
                folder / split,
                {
                    "filenames": [f"{split}{i}.png" for i in range(n)],
                    "batch_label": split,
                    "fine_labels": fine,
                    "coarse_labels": [f // 5 for f in fine],
                    "data": rows,
                },
            )
            splits[split] = (rows, fine)
        _pickle(
            folder / "meta",
            {
                "fine_label_names": [f"fine{i}" for i in range(100)],
                "coarse_label_names": [f"coarse{i}" for i in range(20)],
            },
        )
    return splits


def accept_fixture_checksums(monkeypatch, cls: type[CIFAR10], root: Path) -> None:
    """Swap torchvision's hard-coded MD5s for the fixture files' own.

    ``CIFAR10._check_integrity`` / ``_load_meta`` compare each file's MD5 with the constants in
    ``train_list``, ``test_list`` and ``meta``, which no fixture can match. Only those
    constants change here: torchvision's real check (``check_integrity`` -> ``calculate_md5``)
    still runs over the fixture files.
    """
    folder = root / cls.base_folder
    monkeypatch.setattr(cls, "train_list", [[n, _md5(folder / n)] for n, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[n, _md5(folder / n)] for n, _ in cls.test_list])
    meta = dict(cls.meta, md5=_md5(folder / cls.meta["filename"]))
    monkeypatch.setattr(cls, "meta", meta)


# ----------------------------------------------------------------------- TinyImageNet

WNIDS = ["n09193705", "n01443537", "n02085620"]  # wnids.txt order is not sorted, as upstream


def save_jpeg(path: Path, seed: int, mode: str = "RGB") -> None:
    rng = np.random.default_rng(seed)
    shape = (64, 64, 3) if mode == "RGB" else (64, 64)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path, format="JPEG")


def write_tinyimagenet(data_dir: Path) -> dict[str, str]:
    """The official zip's layout under ``data_dir/tiny-imagenet-200``; returns val file -> wnid."""
    root = data_dir / "tiny-imagenet-200"
    (root / "val" / "images").mkdir(parents=True)
    (root / "test" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    (root / "words.txt").write_text("".join(f"{w}\tthing {w}\n" for w in WNIDS))
    seed = 0
    for wnid in WNIDS:
        (root / "train" / wnid / "images").mkdir(parents=True)
        boxes = []
        for i in range(2):
            seed += 1
            # one grayscale JPEG, as the real train split has: the reader must give 3 channels
            save_jpeg(
                root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG",
                seed,
                "L" if seed == 1 else "RGB",
            )
            boxes.append(f"{wnid}_{i}.JPEG\t0\t0\t63\t63\n")
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(boxes))
    annotations, lines = {}, []
    for k in range(6):
        filename, wnid = f"val_{k}.JPEG", WNIDS[(k * 2) % 3]
        save_jpeg(root / "val" / "images" / filename, 100 + k)
        annotations[filename] = wnid
        lines.append(f"{filename}\t{wnid}\t{k}\t{k + 1}\t{k + 40}\t{k + 50}\n")
    (root / "val" / "val_annotations.txt").write_text("".join(lines))
    save_jpeg(root / "test" / "images" / "test_0.JPEG", 200)
    return annotations
