"""Images per second of the training input pipelines, per CPU core, side by side in one process.

On CIFAR-shaped data (random uint8 images, 32x32x3; the real CIFAR needs no network here but
the pixels do not change the work): the torchvision pipeline the suite uses without a device
loader (PIL images, RandomCrop(32, padding=4) -> RandomHorizontalFlip -> RandomRotation(15)
-> ToTensor -> Normalize, one image at a time through a DataLoader in the main process) and
agr_suite.images.device_loader.DeviceLoader (the same augmentation batched on the tensors' device,
here the CPU), each with and without augmentation. One thread, no workers: images/s per
core. The pipelines take turns epoch by epoch, so both see the same machine load; medians
and the speed-up of the augmenting device loader over torchvision go to
results/bench/data_pipeline.json.

    python scripts/bench_data.py [--images 10000] [--rounds 5] [--smoke] [--out PATH]

``--smoke``: 256 images, one round, to a temporary folder (a check that the script still runs).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from agr_suite import bench
from agr_suite.images.device_loader import Augment, DeviceLoader

MEAN, STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)  # CIFAR-100's
BATCH = 128


class PilImages(Dataset):
    """uint8 HWC arrays as PIL images through a transform, as torchvision's CIFAR does."""

    def __init__(self, data: np.ndarray, labels: np.ndarray, transform) -> None:
        self.data, self.labels, self.transform = data, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.data[index])), int(self.labels[index])


def pipelines(data: np.ndarray, labels: np.ndarray) -> dict:
    augment = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.RandomRotation(15)]
    to_tensor = [T.ToTensor(), T.Normalize(MEAN, STD)]
    images = torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()
    targets = torch.from_numpy(labels)

    def torchvision_loader(transforms):
        dataset = PilImages(data, labels, T.Compose(transforms))
        return DataLoader(dataset, batch_size=BATCH, shuffle=True)

    def device_loader(augment):
        return DeviceLoader(
            images, targets, batch_size=BATCH, shuffle=True, augment=augment, mean=MEAN, std=STD
        )

    return {
        "torchvision_augmented": torchvision_loader(augment + to_tensor),
        "device_augmented": device_loader(Augment(pad=4, hflip=True, degrees=15.0)),
        "torchvision_plain": torchvision_loader(to_tensor),
        "device_plain": device_loader(Augment()),
    }


def epochs(loader):
    """A measure: each call reads one more epoch of ``loader``; its images/s."""
    epoch = 0

    def one_epoch() -> float:
        nonlocal epoch
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        epoch += 1
        start, seen = time.perf_counter(), 0
        for images, _ in loader:
            seen += images.shape[0]
        return seen / (time.perf_counter() - start)

    return one_epoch


def main() -> None:
    parser = bench.parser(__doc__, rounds=5, threads=1)
    parser.add_argument("--images", type=int, default=10_000)
    args = bench.parse(parser, smoke={"images": 256, "rounds": 1})
    environment = bench.machine("cpu")
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(args.images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 100, size=args.images).astype(np.int64)
    measures = {name: epochs(loader) for name, loader in pipelines(data, labels).items()}
    rates = bench.in_turns(measures, args.rounds, warmup=1)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    speedup = medians["device_augmented"] / medians["torchvision_augmented"]
    bench.write_report(
        bench.out_path(args, "data_pipeline.json"),
        {
            "what": "training input pipeline throughput on CIFAR-shaped uint8 data, one CPU "
            "thread, no DataLoader workers (images/s per core); median over rounds",
            "images": args.images,
            "batch_size": BATCH,
            "rounds": args.rounds,
            "results": {"images_per_s_per_core": medians},
            "speedup_vs_torchvision": speedup,
            "speedup_vs_torchvision_plain": medians["device_plain"] / medians["torchvision_plain"],
            "environment": environment,
        },
    )
    for name, value in medians.items():
        print(f"{name:24s} {value:10.0f} images/s per core")
    print(f"speed-up of the augmenting device loader: {speedup:.1f}x")


if __name__ == "__main__":
    main()
