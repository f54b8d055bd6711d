"""Training images/s of the engine beside its bare step, and the engine's epoch time.

The model, data and optimizer are a run's: a CIFAR ResNet-18 / VGG-11 (100 classes, 32x32x3)
built by agr_suite.classification, AdamW with AGR (``optimizer=adamw_agr``, the suite's
default) with the config's hyperparameters, and a synthetic CIFAR-100 written in the real
on-disk format (torchvision's pickles) into a temporary data_dir, read through the real reader
(agr_suite.images, with the config's augmentation). ``--dataset tinyimagenet`` writes a
synthetic TinyImageNet instead (64x64, 200 classes, the official folder layout of JPEGs).

- engine: ``agr_suite.engine.train(cfg, run_dir)`` with ``trainer.epochs=1``,
  ``trainer.limit_batches=K``, a fresh run_dir each round (so it never resumes); its speed is
  history.jsonl's ``train_samples_per_s``, which times only the training part of the epoch
  (the final evaluation and the checkpoints are outside it).
- step: the same task's model and loss and the same optimizer on one batch kept on the device:
  forward, backward, ``optimizer.step()``, ``zero_grad``, timed step by step (median of K); the
  speed no loop over this model can beat. ``ratio`` = engine / step: what the engine keeps of
  it after reading and augmenting the data, the LR schedule, its checks and its logging.

One warm-up round, then engine, step, engine, step, ... so both see the same machine load;
the medians and their ratio go to results/bench/train_throughput.json (with --device cuda and
other options, to a file named after them).

    python scripts/bench_train.py [--models resnet18,vgg11] [--batch-size 64] [--batches 10]
        [--rounds 3] [--num-workers 0] [--device cpu|cuda] [--precision fp32|bf16]
        [--channels-last] [--compile] [--loader auto|torch|device[,...]]
        [--dataset cifar100|tinyimagenet] [--epoch-time] [--smoke] [--out FILE]

``--smoke``: one round of one batch of 2 images per model (a check that the script still runs,
timing nothing), written to a temporary folder unless ``--out`` is given.

``--epoch-time``: the engine alone, one run per model and loader of ``1 + rounds`` epochs of
K batches: the first epoch warms up (compilation, first CUDA kernels), the others are timed
(history.jsonl's ``epoch_time_s``; median). The time to the first batch of a fresh iterator
of the same training loader is measured apart (median of 3): it is paid once per epoch (torch
DataLoader workers start, the device loader draws its permutation), so the full epoch of the
dataset's N training images (50,000 for CIFAR-100, 100,000 for TinyImageNet) is extrapolated
as ``start + (measured - start) * N / (K*B)`` with B the batch size; the plain
``measured * N / (K*B)`` is recorded beside it. Writes results/bench/epoch_time*.json.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import itertools
import json
import math
import pickle
import statistics
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import default_collate
from torchvision.datasets import CIFAR100

import agr
from agr_suite import bench
from agr_suite.core.config import RunConfig, as_dict, compose
from agr_suite.engine import RunFolder, train
from agr_suite.engine.loaders import LOADERS, build_train_loader
from agr_suite.engine.optimizer import build_from_config
from agr_suite.engine.task_parts import count_parameters
from agr_suite.engine.trainer import autocast_dtype
from agr_suite.images import build_datasets, dataset_info
from agr_suite.registry import build_task

MODELS = ("resnet18", "vgg11")
DATASETS = ("cifar100", "tinyimagenet")


# --------------------------------------------------------------------------- data


def _pickle(path: Path, obj: dict) -> None:
    # Python-2-compatible pickles with str keys, as tests/images/test_data.py writes them: they
    # load like the official files under torchvision's encoding="latin1".
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_cifar100(data_dir: Path, train_images: int, test_images: int, seed: int = 0) -> None:
    """Random CIFAR-100 in torchvision's layout: <data_dir>/cifar100/cifar-100-python/."""
    rng = np.random.default_rng(seed)
    folder = data_dir / "cifar100" / CIFAR100.base_folder
    folder.mkdir(parents=True)
    for split, n in (("train", train_images), ("test", test_images)):
        fine = [int(v) for v in rng.integers(0, 100, n)]
        _pickle(
            folder / split,
            {
                "filenames": [f"{split}{i}.png" for i in range(n)],
                "batch_label": split,
                "fine_labels": fine,
                "coarse_labels": [f // 5 for f in fine],
                # uint8 [n, 3072]: 1024 red, then green, then blue values, row-major
                "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            },
        )
    names = {"fine_label_names": [f"fine{i}" for i in range(100)]}
    _pickle(folder / "meta", {**names, "coarse_label_names": [f"coarse{i}" for i in range(20)]})
    # torchvision checks every file against the official MD5s, which no synthetic file can
    # match: swap those constants (in this process only) for the files' own, so its real
    # integrity check still runs over these files.
    CIFAR100.train_list = [[n, _md5(folder / n)] for n, _ in CIFAR100.train_list]
    CIFAR100.test_list = [[n, _md5(folder / n)] for n, _ in CIFAR100.test_list]
    CIFAR100.meta = dict(CIFAR100.meta, md5=_md5(folder / CIFAR100.meta["filename"]))


def write_tinyimagenet(data_dir: Path, train_images: int, test_images: int, seed: int = 0) -> None:
    """Random TinyImageNet in the official zip's layout under <data_dir>/tiny-imagenet-200:
    wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG with val/val_annotations.txt;
    the images spread over the 200 classes in turn, at least one per class in each split
    (ImageFolder refuses a class folder without images)."""
    rng = np.random.default_rng(seed)
    root = data_dir / "tiny-imagenet-200"
    wnids = [f"n{index:08d}" for index in range(200)]
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")

    def jpeg(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels, "RGB").save(path, format="JPEG")

    for i in range(max(train_images, 200)):
        wnid = wnids[i % 200]
        jpeg(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG")
    lines = []
    for i in range(max(test_images, 200)):
        jpeg(root / "val" / "images" / f"val_{i}.JPEG")
        lines.append(f"val_{i}.JPEG\t{wnids[i % 200]}\t0\t0\t63\t63\n")
    (root / "val" / "val_annotations.txt").write_text("".join(lines))


# --------------------------------------------------------------------------- what is timed


def run_config(model: str, data_dir: Path, args, loader: str = "auto", epochs: int = 1):
    """The run's config (as ``python run.py`` composes it) for ``args``'s settings."""
    return compose(
        [
            f"dataset={args.dataset}",
            "dataset.download=false",
            f"dataset.loader={loader}",
            f"paths.data_dir='{data_dir}'",
            f"model={model}",
            "optimizer=adamw_agr",
            "logger=none",
            f"trainer.devices={args.device}",
            f"trainer.batch_size={args.batch_size}",
            f"trainer.num_workers={args.num_workers}",
            f"trainer.limit_batches={args.batches}",
            f"trainer.epochs={epochs}",
            "trainer.eval_every=1000000",  # the engine still evaluates after its last epoch
            f"trainer.precision={args.precision}",
            f"trainer.channels_last={str(args.channels_last).lower()}",
            f"trainer.compile={str(args.compile).lower()}",
        ]
    )


def engine_history(cfg: RunConfig) -> list[dict[str, Any]]:
    """One engine run in a fresh run folder (so it never resumes); its history.jsonl."""
    with tempfile.TemporaryDirectory(prefix="bench_train_run_") as run_dir:
        # Its progress lines go to a buffer: stdout is then never a terminal, so the engine
        # prints plain lines (no rich bar) however this script is started.
        with contextlib.redirect_stdout(io.StringIO()):
            results = train(copy.deepcopy(cfg), run_dir, build_task)
        if results["status"] != "completed":
            raise RuntimeError(f"engine run ended {results['status']}: {results.get('error')}")
        return RunFolder(run_dir).read_history()


def bare_step(cfg: RunConfig, from_loader: bool = False) -> tuple[torch.nn.Module, Callable]:
    """The run's model, loss and optimizer, built as the engine builds them; (the model, one
    step: forward, backward, optimizer.step() and zero_grad). Its batch is one training batch
    kept on the device or, ``from_loader``, the next batch of the run's training loader (the
    device loader augments it on the device). A microbenchmark, not a training loop: no
    schedule, checks or logs."""
    trainer, device = cfg.trainer, torch.device(cfg.trainer.devices)
    torch.manual_seed(cfg.seed)
    parts = build_task(cfg)
    model = parts.model.to(device).train()
    if trainer.channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if trainer.compile else model
    optimizer = build_from_config(
        cfg.optimizer,
        model,
        steps_per_epoch=trainer.limit_batches,
        seed=cfg.seed,
        total_batch=trainer.batch_size,
    )
    if (handle := agr.handle_of(optimizer)) is not None:
        handle.track_stats = False  # as on the engine's steps that log no diagnostics
    memory = torch.channels_last if trainer.channels_last else torch.contiguous_format
    if from_loader:
        batches = endless(
            *build_train_loader(
                parts.train_set, cfg=cfg, device=device, rank=0, world_size=1, collate=None
            )
        )
    else:
        images, labels = default_collate([parts.train_set[i] for i in range(trainer.batch_size)])
        batches = itertools.repeat((images.to(device, memory_format=memory), labels.to(device)))
    amp_dtype = autocast_dtype(trainer.precision, device)

    def step() -> None:
        images, labels = next(batches)  # .to: a no-op for the batch kept on the device
        batch = (images.to(device, memory_format=memory), labels.to(device))
        with torch.autocast(device.type, amp_dtype, enabled=amp_dtype is not None):
            loss = parts.loss(forward, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return model, step


def endless(loader, sampler) -> Iterator:
    """A training loader's batches, epoch after epoch."""
    for epoch in itertools.count():
        sampler.set_epoch(epoch)
        yield from loader


def throughput(model: str, data_dir: Path, loader: str, args) -> tuple[dict, RunConfig]:
    """The engine's and the bare step's images/s, in turns after a warm-up round."""
    cfg = run_config(model, data_dir, args, loader)
    network, step = bare_step(cfg)
    measures = {
        "engine": lambda: float(engine_history(cfg)[-1]["train_samples_per_s"]),
        "step": lambda: (
            args.batch_size
            / statistics.median(bench.repeat(step, args.batches, device=args.device))
        ),
    }
    rates = bench.in_turns(measures, args.rounds, warmup=1)
    engine, bare = (statistics.median(rates[name]) for name in ("engine", "step"))
    row = {
        "model": model,
        "loader": loader,
        "params": count_parameters(network),
        "batch_size": args.batch_size,
        "batches": args.batches,
        "engine_images_per_s": round(engine, 2),
        "step_images_per_s": round(bare, 2),
        "ratio": round(engine / bare, 4),
        "engine_rounds": [round(v, 2) for v in rates["engine"]],
        "step_rounds": [round(v, 2) for v in rates["step"]],
    }
    return row, cfg


def loader_start_s(cfg: RunConfig, tries: int = 3) -> float:
    """Median seconds from a fresh iterator of the run's training loader to its first batch
    on the device (DataLoader workers started, or the device loader's permutation drawn)."""
    device = torch.device(cfg.trainer.devices)
    data = cfg.dataset
    train_set, _, _ = build_datasets(
        data.name, data_dir=cfg.paths.data_dir, download=False, augment=data.augment, seed=cfg.seed
    )
    loader, sampler = build_train_loader(
        train_set, cfg=cfg, device=device, rank=0, world_size=1, collate=None
    )
    epochs = iter(range(tries))

    def first_batch() -> None:
        sampler.set_epoch(next(epochs))
        batches = iter(loader)
        next(batches)[0].to(device, non_blocking=True)
        del batches  # stops a DataLoader's workers

    return statistics.median(bench.repeat(first_batch, tries, device=device))


def epoch_time(model: str, data_dir: Path, loader: str, args) -> tuple[dict, RunConfig]:
    """One engine run of 1 + rounds epochs of K batches; the full epoch extrapolated."""
    cfg = run_config(model, data_dir, args, loader, epochs=1 + args.rounds)
    start_s = loader_start_s(cfg)
    warm, *timed = engine_history(cfg)
    info = dataset_info(args.dataset)
    images = args.batches * args.batch_size  # every batch is full: checked in main
    measured = statistics.median(float(r["epoch_time_s"]) for r in timed)
    # the loader's start is paid once an epoch; the rest of the time scales with the images
    epoch_s = start_s + max(measured - start_s, 0.0) * info.train_size / images
    row = {
        "dataset": args.dataset,
        "model": model,
        "classes": info.num_classes,
        "image_size": info.image_size,
        "loader": loader,
        "num_workers": 0 if loader == "device" else args.num_workers,
        "precision": args.precision,
        "channels_last": args.channels_last,
        "compile": args.compile,
        "batch_size": args.batch_size,
        "measured_steps": args.batches,
        "measured_images": images,
        "rounds": args.rounds,
        "round_epoch_s": [round(float(r["epoch_time_s"]), 4) for r in timed],
        "round_images_per_s": [round(float(r["train_samples_per_s"]), 2) for r in timed],
        "measured_s": round(measured, 4),
        "images_per_s": round(images / measured, 2),
        "warmup_epoch_s": round(float(warm["epoch_time_s"]), 4),
        "loader_start_s": round(start_s, 4),
        "epoch_images": info.train_size,
        "epoch_steps": math.ceil(info.train_size / args.batch_size),
        "epoch_s": round(epoch_s, 3),
        "epoch_s_uncorrected": round(measured * info.train_size / images, 3),
    }
    return row, cfg


# --------------------------------------------------------------------------- the report


def parse_args():
    parser = bench.parser(__doc__, rounds=3)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--dataset", choices=DATASETS, default="cifar100")
    parser.add_argument("--loader", default="auto", help=f"comma-separated: {LOADERS}")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=10, help="training batches per epoch")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--epoch-time", action="store_true", help="the engine's full epoch")
    parser.add_argument("--train-images", type=int, default=2048)
    parser.add_argument("--test-images", type=int, default=256)
    smoke = dict(batch_size=2, batches=1, rounds=1, train_images=8, test_images=4)
    args = bench.parse(parser, smoke=smoke)
    args.loaders = args.loader.split(",")
    if unknown := [name for name in args.loaders if name not in LOADERS]:
        parser.error(f"--loader {','.join(unknown)}: choose from {', '.join(LOADERS)}")
    if args.train_images < args.batches * args.batch_size:
        parser.error("--train-images must be at least --batches x --batch-size")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA device is visible")
    return args


def report_name(args) -> str:
    """train_throughput.json or epoch_time.json, with the settings that differ from the
    defaults in the name (e.g. epoch_time_cuda_device_bf16.json)."""
    kind = "epoch_time" if args.epoch_time else "train_throughput"
    suffix = "" if args.dataset == "cifar100" else f"_{args.dataset}"
    suffix += "" if args.device == "cpu" else f"_{args.device}"
    suffix += "" if args.loaders == ["auto"] else "_" + "_".join(args.loaders)
    suffix += "" if args.precision == "fp32" else f"_{args.precision}"
    suffix += "_channels_last" if args.channels_last else ""
    suffix += "_compile" if args.compile else ""
    return f"{kind}{suffix}.json"


def settings(args, cfg: RunConfig | None) -> dict[str, Any]:
    """What the report's numbers were measured with (the optimizer's and schedule's settings
    from the last run's config)."""
    keys = ("device", "batch_size", "rounds", "loaders", "num_workers", "precision")
    keys += ("channels_last", "compile", "train_images", "test_images")
    return {
        **{key: vars(args)[key] for key in keys},
        "batches_per_epoch": args.batches,
        "warmup_rounds": 1,
        "dataset": f"synthetic {args.dataset} in its real on-disk format, read by agr_suite.images",
        "augment": cfg.dataset.augment if cfg else None,
        "optimizer": as_dict(cfg.optimizer) if cfg else None,
        "scheduler": as_dict(cfg.scheduler) if cfg else None,
    }


WHAT = {
    "epoch_time": "the engine's epoch time (agr_suite.engine.train, history.jsonl epoch_time_s): "
    "one run of a warm-up epoch and `rounds` timed epochs of `batches_per_epoch` batches; "
    "median; the full epoch extrapolated from it and the loader's start "
    "(see scripts/bench_train.py)",
    "train_throughput": "training images/s of agr_suite.engine.train (history.jsonl "
    "train_samples_per_s) vs the bare step (forward, backward, optimizer step on one batch "
    "kept on the device) of the same model, loss and optimizer; one warm-up round, then the "
    "two in turns; medians and ratio engine/step",
}


def main() -> None:
    args = parse_args()
    environment = bench.machine(args.device)  # loads AGR's CPU kernel before timing
    measure = epoch_time if args.epoch_time else throughput
    rows, cfg, failed = [], None, False
    with tempfile.TemporaryDirectory(prefix="bench_train_data_") as tmp:
        data_dir = Path(tmp) / "data"
        writer = write_cifar100 if args.dataset == "cifar100" else write_tinyimagenet
        writer(data_dir, args.train_images, args.test_images)
        for model in args.models.split(","):
            for loader in args.loaders:
                try:  # one run failing (a compiler error, say) leaves the others' numbers
                    row, cfg = measure(model, data_dir, loader, args)
                except Exception as error:
                    if not args.epoch_time:
                        raise
                    failed, row = True, {"model": model, "loader": loader}
                    row["error"] = f"{type(error).__name__}: {error}"
                if args.device == "cuda":
                    torch.cuda.empty_cache()  # the next run starts from the same free memory
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if not isinstance(v, list)}))
    report = {
        "what": WHAT["epoch_time" if args.epoch_time else "train_throughput"],
        "settings": settings(args, cfg),
        "environment": environment,
        "results": rows,
    }
    bench.write_report(bench.out_path(args, report_name(args)), report)
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
