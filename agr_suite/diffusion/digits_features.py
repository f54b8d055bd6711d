"""The embedded run's feature extractor: a small CNN classifier for scikit-learn's digits.

The embedded DDPM generates 16x16 one-channel digits (float in [-1, 1]); Inception-v3 means
nothing on those (and its weights need a download), so the embedded run scores its samples with
this CNN instead. It is trained once, on CPU in a few seconds, on the digits training split (the
suite's fixed stratified 80/20 split, ``random_state=0``) with 8x8 images upsampled bilinearly to
16x16, and cached (``state_dict`` plus its test accuracy, loaded with ``weights_only=True``) in a
cache folder. :class:`DigitsFeatures` exposes the 64-d global-average-pooled features (the
penultimate layer, like Inception's pool3) for FID and the 10 logits for IS. Numbers computed
with it are labelled ``"FID (digits-CNN features)"``: they are comparable with each other, not
with Inception FIDs.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from agr_suite.core.atomic import write_atomic
from agr_suite.images.digits import SPLIT_SEED, TEST_FRACTION, load_split

__all__ = [
    "FEATURE_LABEL",
    "IMAGE_SIZE",
    "DigitsCNN",
    "DigitsFeatures",
    "digits_split",
    "train_digits_cnn",
]

IMAGE_SIZE = 16
FEATURE_DIM = 64
NUM_CLASSES = 10
VERSION = 1  # bump when the architecture, data or recipe changes: old cache files are ignored
FEATURE_LABEL = "FID (digits-CNN features)"
IS_LABEL = "IS (digits-CNN classifier)"

# Training recipe: about 3-5 s on one CPU thread (99.4% test accuracy with seed 0).
EPOCHS = 8
BATCH_SIZE = 64
LR = 3e-3
WEIGHT_DECAY = 1e-4

#: How many times this process trained the CNN (tests check that a cached file is reused).
TRAINING_RUNS = 0


@lru_cache(maxsize=4)
def digits_split(size: int = IMAGE_SIZE) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(train_x, train_y, test_x, test_y): images [N, 1, size, size] float32 in [-1, 1] (the
    8x8 digits scaled to [0, 1], upsampled bilinearly, mapped to [-1, 1]), int64 labels. The
    split is the suite's fixed stratified 80/20 split (1,437 / 360 images). Treat the returned
    tensors as read-only (they are cached)."""
    train_x, train_y, test_x, test_y = load_split(size)
    return train_x.mul(2.0).sub_(1.0), train_y, test_x.mul(2.0).sub_(1.0), test_y


class DigitsCNN(nn.Module):
    """1x16x16 -> conv16 -> pool (8x8) -> conv32 -> pool (4x4) -> conv64 -> global average pool
    (the 64-d features) -> linear (10 logits). Each conv is 3x3 + BatchNorm + ReLU."""

    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.body = nn.Sequential(
            *block(1, 16),
            nn.MaxPool2d(2),
            *block(16, 32),
            nn.MaxPool2d(2),
            *block(32, FEATURE_DIM),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        pooled = self.body(x)
        return pooled, self.fc(pooled)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)[1]


def _shift(x: Tensor, generator: torch.Generator, pad: int = 1) -> Tensor:
    """Random translation by up to ``pad`` pixels (background -1 fills the border)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), value=-1.0)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None].expand(n, 1, h, w + 2 * pad)
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :].expand(n, 1, h, w)
    return out.gather(3, cols)


@torch.no_grad()
def _accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    model.eval()
    return float((model(x).argmax(1) == y).float().mean())


def train_digits_cnn(seed: int = 0) -> tuple[DigitsCNN, float]:
    """Train the CNN on CPU from scratch; returns (model in eval mode, test accuracy in [0, 1]).
    Deterministic for a given seed; the global RNG state is left untouched.

    Trains on one intra-op thread (restored afterwards): for a network this small, several
    threads only add synchronisation, and on a busy machine oversubscribed threads made training
    an order of magnitude slower.
    """
    global TRAINING_RUNS
    TRAINING_RUNS += 1
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.enable_grad():  # callers may be inside an evaluation's no_grad
            return _train(seed)
    finally:
        torch.set_num_threads(threads)


def _train(seed: int) -> tuple[DigitsCNN, float]:
    train_x, train_y, test_x, test_y = digits_split(IMAGE_SIZE)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitsCNN()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = -(-len(train_y) // BATCH_SIZE)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=LR, total_steps=EPOCHS * steps_per_epoch
    )
    for _ in range(EPOCHS):
        model.train()
        order = torch.randperm(len(train_y), generator=generator)
        for start in range(0, len(order), BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            loss = F.cross_entropy(model(_shift(train_x[idx], generator)), train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    model.eval()
    return model, _accuracy(model, test_x, test_y)


def _cache_file(cache_dir: Path, seed: int) -> Path:
    return cache_dir / f"digits_cnn_v{VERSION}_seed{seed}.pt"


def _load_cached(path: Path, seed: int) -> tuple[DigitsCNN, float] | None:
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("version") != VERSION or payload.get("seed") != seed:
            return None
        model = DigitsCNN()
        model.load_state_dict(payload["state_dict"])
    except Exception:  # unreadable or foreign file: retrain and overwrite it
        return None
    model.eval()
    return model, float(payload["test_accuracy"])


class DigitsFeatures:
    """:class:`~agr_suite.diffusion.metrics.FeatureExtractor` over the digits CNN.

    ``features(images)`` takes [N, 1, H, W] (or [N, 3, H, W], averaged to gray) images, float in
    [-1, 1] or uint8 in 0..255, resizes them bilinearly to 16x16 when needed, and returns the
    64-d pooled features and the 10 logits, float32, on the extractor's device.

    The CNN is loaded from ``cache_dir/digits_cnn_v1_seed{seed}.pt`` when present, else trained
    (on CPU) and written there. ``trained`` says whether this construction trained it;
    ``test_accuracy`` is the accuracy on the 360 held-out digits (stored with the weights).
    """

    name_prefix = "digits-cnn"
    label = FEATURE_LABEL
    is_label = IS_LABEL

    def __init__(
        self,
        cache_dir: str | os.PathLike,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.seed = seed
        self.cache_path = _cache_file(self.cache_dir, seed)
        cached = _load_cached(self.cache_path, seed)
        self.trained = cached is None
        if cached is None:
            model, accuracy = train_digits_cnn(seed)
            payload = {
                "version": VERSION,
                "seed": seed,
                "test_accuracy": accuracy,
                "image_size": IMAGE_SIZE,
                "state_dict": model.state_dict(),
            }
            write_atomic(self.cache_path, lambda tmp: torch.save(payload, tmp))
        else:
            model, accuracy = cached
        self.test_accuracy = accuracy
        self.device = torch.device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.name = f"{self.name_prefix}-v{VERSION}-seed{seed}"
        self.feature_dim = FEATURE_DIM
        self.num_classes = NUM_CLASSES

    def _prepare(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected images [N, 1 or 3, H, W], got {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            x = images.to(self.device, torch.float32).div_(127.5).sub_(1.0)
        else:
            x = images.to(self.device, torch.float32)
        if x.shape[1] == 3:
            x = x.mean(dim=1, keepdim=True)
        if x.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
            x = F.interpolate(
                x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False
            )
        return x

    @torch.no_grad()
    def features(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.model.features(self._prepare(images))

    def describe(self) -> dict:
        return {
            "extractor": self.name,
            "feature_label": self.label,
            "is_label": self.is_label,
            "feature_dim": self.feature_dim,
            "num_classes": self.num_classes,
            "input": f"1x{IMAGE_SIZE}x{IMAGE_SIZE} float in [-1, 1] (uint8 accepted)",
            "classifier_test_accuracy": self.test_accuracy,
            "weights": str(self.cache_path),
            # Training is deterministic per machine, not bit-identical across CPU types: the
            # hash says which weights produced a number (compare digits FIDs only within one).
            "weights_sha256": hashlib.sha256(self.cache_path.read_bytes()).hexdigest()[:16],
            "training": (
                f"sklearn digits train split (test_size={TEST_FRACTION}, "
                f"random_state={SPLIT_SEED}, stratified), {EPOCHS} epochs, seed {self.seed}"
            ),
        }
