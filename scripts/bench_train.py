"""Images/s of the engine's training loop beside a bare hand-written PyTorch loop, and the
engine's epoch time.

Same model, data, batch and optimizer in both: a CIFAR ResNet-18 / VGG-11 (100 classes,
32x32x3) built by agr_suite.classification.models, AdamW with AGR (``optimizer=adamw_agr``,
the suite's default) with the config's hyperparameters, and a synthetic CIFAR-100 written in
the real on-disk format (torchvision's pickles) into a temporary data_dir, so both read it
through the real reader (agr_suite.images.build_datasets, with the config's augmentation).
``--dataset tinyimagenet`` writes a synthetic TinyImageNet instead (64x64, 200 classes, the
official folder layout of JPEGs).

- engine: ``agr_suite.engine.train(cfg, run_dir)`` with ``trainer.epochs=1``,
  ``trainer.limit_batches=K``, a fresh run_dir each round (so it never resumes); its speed is
  history.jsonl's ``train_samples_per_s``, which times only the training part of the epoch
  (the final evaluation and the checkpoints are outside it).
- bare: a fresh model and optimizer, the engine's training loader
  (agr_suite.engine.loaders.build_train_loader: torch's DataLoader or the device loader, as
  ``--loader`` says), then for K batches: model.train(), forward, F.cross_entropy, backward,
  optimizer.step(), zero_grad(set_to_none=True), scheduler.step() (the same per-step LambdaLR),
  nothing else. AGR's diagnostics are off, as on the engine's steps that do not log them.

One warm-up epoch of each, then engine, bare, engine, bare, ... so both see the same machine
load; the medians and their ratio (engine / bare) go to results/bench/train_throughput.json
(with --device cuda and other options, to a file named after them).

    python scripts/bench_train.py [--models resnet18,vgg11] [--batch-size 64] [--batches 10]
        [--rounds 3] [--num-workers 0] [--device cpu|cuda] [--precision fp32|bf16]
        [--channels-last] [--compile] [--sync-variant] [--loader auto|torch|device[,...]]
        [--dataset cifar100|tinyimagenet] [--epoch-time] [--smoke] [--out FILE]

``--smoke``: one round of one batch of 2 images per loop and model (a check that the script
still runs, timing nothing), written to a temporary folder unless ``--out`` is given.

``--sync-variant`` adds a third loop: the bare loop plus the engine's per-step host syncs
(the ``torch.isfinite(loss)`` check and ``loss.item()``), to price them on a GPU.
With ``--compile`` both loops compile a fresh model each round, inside the timed epoch.

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

import os

# Before any import that might reach the network.
os.environ.update(
    HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="disabled"
)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import copy  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import pickle  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision.datasets import CIFAR100  # noqa: E402

import agr  # noqa: E402
from agr import regularizer  # noqa: E402
from agr_suite.classification.models import build_model  # noqa: E402
from agr_suite.core.config import RunConfig, as_dict, load  # noqa: E402
from agr_suite.engine import RunFolder, train  # noqa: E402
from agr_suite.engine.loaders import LOADERS, build_train_loader  # noqa: E402
from agr_suite.engine.machine import environment  # noqa: E402
from agr_suite.engine.optimizer import build_from_config  # noqa: E402
from agr_suite.engine.schedule import build_scheduler  # noqa: E402
from agr_suite.engine.task_parts import count_parameters  # noqa: E402
from agr_suite.images import build_datasets, dataset_info  # noqa: E402
from agr_suite.registry import build_task  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("resnet18", "vgg11")
DATASETS = ("cifar100", "tinyimagenet")


# --------------------------------------------------------------------------- data


def _pickle(path: Path, obj: dict) -> None:
    # Python-2-compatible pickles with str keys, as tests/images/test_data.py writes them: they load
    # like the official files under torchvision's encoding="latin1".
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
    _pickle(
        folder / "meta",
        {
            "fine_label_names": [f"fine{i}" for i in range(100)],
            "coarse_label_names": [f"coarse{i}" for i in range(20)],
        },
    )
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
    train_images, test_images = max(train_images, 200), max(test_images, 200)
    root = data_dir / "tiny-imagenet-200"
    wnids = [f"n{index:08d}" for index in range(200)]
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for wnid in wnids:
        (root / "train" / wnid / "images").mkdir(parents=True)

    def jpeg(path: Path) -> None:
        pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels, "RGB").save(path, format="JPEG")

    for i in range(train_images):
        wnid = wnids[i % 200]
        jpeg(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG")
    lines = []
    for i in range(test_images):
        jpeg(root / "val" / "images" / f"val_{i}.JPEG")
        lines.append(f"val_{i}.JPEG\t{wnids[i % 200]}\t0\t0\t63\t63\n")
    (root / "val" / "val_annotations.txt").write_text("".join(lines))


def write_dataset(name: str, data_dir: Path, train_images: int, test_images: int) -> None:
    writer = {"cifar100": write_cifar100, "tinyimagenet": write_tinyimagenet}[name]
    writer(data_dir, train_images, test_images)


# --------------------------------------------------------------------------- config


def resolved_config(
    model: str, data_dir: Path, args: argparse.Namespace, loader: str = "auto", epochs: int = 1
) -> RunConfig:
    overrides = [
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
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return load(compose("config", overrides=overrides))


# --------------------------------------------------------------------------- the two loops


def engine_epoch(cfg: RunConfig) -> float:
    """One engine run of one epoch in a fresh run folder; its training images/s."""
    with tempfile.TemporaryDirectory(prefix="bench_train_run_") as run_dir:
        # Its progress lines go to a buffer: stdout is then never a terminal, so the engine
        # prints plain lines (no rich bar) however this script is started.
        with contextlib.redirect_stdout(io.StringIO()):
            results = train(copy.deepcopy(cfg), run_dir, build_task)
        if results["status"] != "completed":
            raise RuntimeError(f"engine run ended {results['status']}: {results.get('error')}")
        history = RunFolder(run_dir).read_history()
    return float(history[-1]["train_samples_per_s"])


class BareLoop:
    """The hand-written loop, reading the same files through agr_suite.images.build_datasets."""

    def __init__(self, cfg: RunConfig, args: argparse.Namespace) -> None:
        self.cfg, self.args = cfg, args
        self.device = torch.device(args.device)
        self.train_set, _, self.info = build_datasets(
            cfg.dataset.name,
            data_dir=cfg.paths.data_dir,
            download=False,
            augment=cfg.dataset.augment,
            seed=cfg.seed,
        )
        if len(self.train_set) < args.batches * args.batch_size:
            raise ValueError(
                f"{len(self.train_set)} training images are fewer than --batches x --batch-size"
            )
        self.amp_dtype = torch.bfloat16 if args.precision == "bf16" else None
        self.label_smoothing = cfg.trainer.label_smoothing

    def build_model(self) -> torch.nn.Module:
        # as agr_suite.classification.build builds it
        return build_model(
            self.cfg.model.name,
            num_classes=self.info.num_classes,
            image_size=self.info.image_size,
            in_chans=self.info.channels,
            **self.cfg.model.options(),
        )

    def prepare(self, steps: int | None = None) -> dict[str, Any]:
        """A fresh model, optimizer, scheduler (over ``steps``, default K) and training loader
        (the engine's, as ``dataset.loader`` says), as each engine round has them."""
        args, device = self.args, self.device
        steps = steps or args.batches
        torch.manual_seed(self.cfg.seed)
        model = self.build_model().to(device)
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        trainer = self.cfg.trainer
        optimizer = build_from_config(
            self.cfg.optimizer,
            model,
            steps_per_epoch=steps,
            seed=self.cfg.seed,
            total_batch=trainer.batch_size * trainer.accumulate,  # one process
        )
        handle = agr.handle_of(optimizer)
        if handle is not None:
            handle.track_stats = False
        loader, sampler = build_train_loader(
            self.train_set, cfg=self.cfg, device=device, rank=0, world_size=1, collate=None
        )
        sampler.set_epoch(0)
        return {
            "model": model,
            "train_model": torch.compile(model) if args.compile else model,
            "optimizer": optimizer,
            "scheduler": build_scheduler(optimizer, self.cfg.scheduler, steps, 1),
            "loader": loader,
        }

    def run(self, parts: dict[str, Any], batches: int, host_syncs: bool = False) -> int:
        """``batches`` training steps from a fresh iterator of the loader; images seen."""
        args, device = self.args, self.device
        model, train_model = parts["model"], parts["train_model"]
        optimizer, scheduler = parts["optimizer"], parts["scheduler"]
        seen = 0
        model.train()
        batches_iter = iter(parts["loader"])
        for _ in range(batches):
            images, labels = next(batches_iter)
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            if args.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, self.amp_dtype, enabled=self.amp_dtype is not None):
                loss = F.cross_entropy(
                    train_model(images), labels, label_smoothing=self.label_smoothing
                )
            loss.backward()
            if host_syncs and not torch.isfinite(loss.detach()):
                raise FloatingPointError("non-finite loss")
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            if host_syncs:
                loss.item()
            seen += images.shape[0]
        return seen

    def epoch(self, host_syncs: bool = False) -> float:
        """Training images/s over K batches with a fresh model and optimizer (as each engine
        round has). ``host_syncs`` adds the engine's per-step isfinite check and loss.item()."""
        parts = self.prepare()
        synchronize(self.device)
        started = time.perf_counter()
        seen = self.run(parts, self.args.batches, host_syncs)
        synchronize(self.device)
        return seen / (time.perf_counter() - started)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- measurement


def bench_model(
    model: str, data_dir: Path, loader: str, args: argparse.Namespace
) -> tuple[dict[str, Any], dict[str, Any]]:
    cfg = resolved_config(model, data_dir, args, loader)
    bare = BareLoop(cfg, args)
    loops = {"engine": lambda: engine_epoch(cfg), "bare": bare.epoch}
    if args.sync_variant:
        loops["bare_synced"] = lambda: bare.epoch(host_syncs=True)
    speeds: dict[str, list[float]] = {name: [] for name in loops}
    warmup: dict[str, float] = {}
    for round_index in range(1 + args.rounds):  # round 0 is the warm-up
        for name, loop in loops.items():
            value = loop()
            if round_index == 0:
                warmup[name] = value
            else:
                speeds[name].append(value)
            label = "warm-up" if round_index == 0 else f"round {round_index}/{args.rounds}"
            print(f"  {model} {loader} {label} {name}: {value:.1f} img/s", flush=True)
    medians = {name: statistics.median(values) for name, values in speeds.items()}
    row = {
        "model": model,
        "loader": loader,
        "params": count_parameters(bare.build_model()),
        "batch_size": args.batch_size,
        "batches": args.batches,
        "engine_images_per_s": round(medians["engine"], 2),
        "bare_images_per_s": round(medians["bare"], 2),
        "ratio": round(medians["engine"] / medians["bare"], 4),
        "engine_rounds": [round(v, 2) for v in speeds["engine"]],
        "bare_rounds": [round(v, 2) for v in speeds["bare"]],
        "round_ratios": [round(e / b, 4) for e, b in zip(speeds["engine"], speeds["bare"])],
        "warmup_images_per_s": {k: round(v, 2) for k, v in warmup.items()},
    }
    if args.sync_variant:
        row["bare_synced_images_per_s"] = round(medians["bare_synced"], 2)
        row["bare_synced_ratio"] = round(medians["bare_synced"] / medians["bare"], 4)
        row["bare_synced_rounds"] = [round(v, 2) for v in speeds["bare_synced"]]
    return row, cfg


def loader_start_s(cfg: RunConfig, args: argparse.Namespace, tries: int = 3) -> float:
    """Median seconds from a fresh iterator of the run's training loader to its first batch
    on the device (DataLoader workers started, or the device loader's permutation drawn)."""
    device = torch.device(args.device)
    train_set, _, _ = build_datasets(
        cfg.dataset.name,
        data_dir=cfg.paths.data_dir,
        download=False,
        augment=cfg.dataset.augment,
        seed=cfg.seed,
    )
    loader, sampler = build_train_loader(
        train_set, cfg=cfg, device=device, rank=0, world_size=1, collate=None
    )
    times = []
    for epoch in range(tries):
        sampler.set_epoch(epoch)
        synchronize(device)
        started = time.perf_counter()
        batches = iter(loader)
        images, _ = next(batches)
        images.to(device, non_blocking=True)
        synchronize(device)
        times.append(time.perf_counter() - started)
        del batches  # stops a DataLoader's workers
    return statistics.median(times)


def epoch_time(
    model: str, data_dir: Path, loader: str, args: argparse.Namespace
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One engine run of 1 + rounds epochs of K batches; the full epoch extrapolated."""
    cfg = resolved_config(model, data_dir, args, loader, epochs=1 + args.rounds)
    start_s = loader_start_s(cfg, args)
    with tempfile.TemporaryDirectory(prefix="bench_train_run_") as run_dir:
        with contextlib.redirect_stdout(io.StringIO()):
            results = train(copy.deepcopy(cfg), run_dir, build_task)
        if results["status"] != "completed":
            raise RuntimeError(f"engine run ended {results['status']}: {results.get('error')}")
        history = RunFolder(run_dir).read_history()
    warm, timed = history[0], history[1:]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--dataset", choices=DATASETS, default="cifar100")
    parser.add_argument(
        "--loader", default="auto", help=f"the training loader(s), comma-separated: {LOADERS}"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=10, help="training batches per epoch")
    parser.add_argument("--rounds", type=int, default=3, help="timed epochs of each loop")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument(
        "--sync-variant", action="store_true", help="also time bare + the engine's host syncs"
    )
    parser.add_argument(
        "--epoch-time", action="store_true", help="the engine alone: its full epoch's time"
    )
    parser.add_argument("--train-images", type=int, default=2048)
    parser.add_argument("--test-images", type=int, default=256)
    parser.add_argument(
        "--out", default=None, help="default: results/bench/{train_throughput,epoch_time}*.json"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a few steps at tiny sizes, to a temporary folder"
    )
    args = parser.parse_args()
    loaders = args.loader.split(",")
    if unknown := [name for name in loaders if name not in LOADERS]:
        parser.error(f"--loader {','.join(unknown)}: choose from {', '.join(LOADERS)}")
    if args.smoke:
        args.batch_size, args.batches, args.rounds = 2, 1, 1
        args.train_images, args.test_images = 8, 4
        args.out = args.out or str(Path(tempfile.mkdtemp(prefix="bench_smoke_")) / "train.json")
    if args.train_images < args.batches * args.batch_size:
        parser.error("--train-images must be at least --batches x --batch-size")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA device is visible")
    if args.device == "cpu":
        regularizer._kernel_available()  # build or load the fused AGR kernel before timing

    rows, cfg, failed = [], {}, False
    with tempfile.TemporaryDirectory(prefix="bench_train_data_") as tmp:
        data_dir = Path(tmp) / "data"
        write_dataset(args.dataset, data_dir, args.train_images, args.test_images)
        for model in args.models.split(","):
            for loader in loaders:
                if not args.epoch_time:
                    row, cfg = bench_model(model, data_dir, loader, args)
                else:
                    try:  # one run failing (a compiler error, say) leaves the others' numbers
                        row, cfg = epoch_time(model, data_dir, loader, args)
                    except Exception as error:  # recorded in the report
                        failed = True
                        row = {"model": model, "loader": loader}
                        row["error"] = f"{type(error).__name__}: {error}"
                    if args.device == "cuda":
                        torch.cuda.empty_cache()  # the next run starts from the same free memory
                rows.append(row)
                print(
                    json.dumps({k: v for k, v in row.items() if not isinstance(v, list)}),
                    flush=True,
                )

    kind = "epoch_time" if args.epoch_time else "train_throughput"
    suffix = "" if args.dataset == "cifar100" else f"_{args.dataset}"
    suffix += "" if args.device == "cpu" else f"_{args.device}"
    suffix += "" if loaders == ["auto"] else "_" + "_".join(loaders)
    suffix += "" if args.precision == "fp32" else f"_{args.precision}"
    suffix += "_channels_last" if args.channels_last else ""
    suffix += "_compile" if args.compile else ""
    out = Path(args.out) if args.out else ROOT / "results" / "bench" / f"{kind}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    what = (
        "the engine's epoch time (agr_suite.engine.train, history.jsonl epoch_time_s): one run "
        "of a warm-up epoch and `rounds` timed epochs of `batches_per_epoch` batches; median; the "
        "full epoch extrapolated from it and the loader's start (see scripts/bench_train.py)"
        if args.epoch_time
        else "training images/s of agr_suite.engine.train (history.jsonl train_samples_per_s) vs a "
        "bare hand-written PyTorch loop on the same model, data, batch and optimizer; one "
        "warm-up epoch of each, then epochs alternated; medians and ratio engine/bare"
    )
    report = {
        "what": what,
        "settings": {
            "device": args.device,
            "batch_size": args.batch_size,
            "batches_per_epoch": args.batches,
            "rounds": args.rounds,
            "warmup_rounds": 1,
            "loaders": loaders,
            "num_workers": args.num_workers,
            "precision": args.precision,
            "channels_last": args.channels_last,
            "compile": args.compile,
            "dataset": (
                f"synthetic {args.dataset} in its real on-disk format, read by agr_suite.images"
            ),
            "train_images": args.train_images,
            "test_images": args.test_images,
            "augment": cfg.dataset.augment,
            "optimizer": as_dict(cfg.optimizer),
            "scheduler": as_dict(cfg.scheduler),
        },
        "environment": {
            **environment(torch.device(args.device)),
            "cpu_count": os.cpu_count(),
            "agr_cpu_kernel": regularizer._kernel is not None,
        },
        "results": rows,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
