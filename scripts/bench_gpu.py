"""The suite's speed on one GPU, measured in one go: writes results/bench/gpu.json.

Each piece runs a benchmark of scripts/ as a subprocess (runs_per_gpu: this script's workers)
on synthetic data written in the real on-disk formats (the GPU machine has no network) and
collects its JSON; HOW below (the report's ``how``) says what each measures:
``cifar100_epoch`` (the engine's ResNet-18 epoch with the torch and the device loader, in fp32,
bf16, bf16 + channels_last and bf16 + channels_last + torch.compile), ``tinyimagenet_epoch``,
``runs_per_gpu`` (K = 1, 2, 4 training processes sharing the GPU), ``ddpm`` (the Table 1 UNet's
training and DDIM sampling) and ``optimizer_step`` (AGR's cost in optimizer.step()).

    python scripts/bench_gpu.py [--only PIECE,...] [--steps 60] [--rounds 3]
        [--batch-size 128] [--num-workers 8] [--runs-per-gpu 1,2,4] [--device cuda|cpu]
        [--timeout 420] [--smoke] [--out results/bench/gpu.json]

A piece that fails is recorded with its error (and its output's last lines) under its own key
and the others still run; the script exits 1 when any failed. ``pieces`` in the JSON says how
long each took. ``--smoke``: every piece on the CPU at tiny sizes (one step of 2 images, one
round, one CIFAR-100 variant (bf16 + channels_last, both loaders: no torch.compile, which takes
minutes on a CPU), K = 1 and 2, the small UNet), written to a temporary folder unless ``--out``
is given: a check that the script still runs, timing nothing. ``make gpu-check`` runs it after
the GPU equivalence tests (scripts/gpu_check.sh).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import queue
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from agr_suite import bench
from agr_suite.core.config import preset

SCRIPTS = Path(__file__).resolve().parent
# the cifar100_epoch variants: name -> bench_train.py flags
VARIANTS = {
    "fp32": ["--precision", "fp32"],
    "bf16": ["--precision", "bf16"],
    "bf16+channels_last": ["--precision", "bf16", "--channels-last"],
    "bf16+channels_last+compile": ["--precision", "bf16", "--channels-last", "--compile"],
}
# the DDIM steps of Table 1's samples
TABLE1_DDIM_STEPS = preset("metrics", "generation").steps

HOW = {
    "cifar100_epoch": (
        "scripts/bench_train.py --epoch-time: one agr_suite.engine.train run per loader and "
        "variant (CIFAR ResNet-18, 100 classes, adamw_agr, batch_size) of a warm-up epoch, "
        "which holds the compilation, and `rounds` timed epochs of `measured_steps` batches "
        "(trainer.limit_batches); measured_s is the median of history.jsonl's epoch_time_s; "
        "loader_start_s is the median time to the first batch of a fresh iterator of the same "
        "loader, paid once an epoch, so epoch_s = loader_start_s + (measured_s - "
        "loader_start_s) * epoch_images / measured_images (epoch_s_uncorrected: measured_s * "
        "epoch_images / measured_images)"
    ),
    "tinyimagenet_epoch": "as cifar100_epoch, on a synthetic TinyImageNet (64x64, 200 classes)",
    "runs_per_gpu": (
        "max(K) processes started at once (bench_gpu.worker: bench_train.py's bare step, "
        "ResNet-18, bf16, adamw_agr, batches of batch_size from the device loader), each "
        "warmed up by warmup_steps; then for each K, `rounds` windows of `steps` steps run by "
        "the first K processes, started together at a file barrier, the others idle; a "
        "window's images_per_s = the K processes' images / (last end - first start); "
        "images_per_s is the median over windows; throughput_vs_1 = images_per_s / that of K = 1"
    ),
    "ddpm": (
        "scripts/bench_diffusion.py: training step = diffusion loss under bf16 autocast, "
        "backward, grad clip, Adan(AGR) step, EMA update; median of `timed_steps` after "
        "`warmup_steps`; DDIM sampling of `sample_batch` images over `sample_steps` steps, median "
        "of `rounds`; ddim_images_per_s_at_100_steps scales that to Table 1's 100 steps"
    ),
    "optimizer_step": (
        "scripts/bench_optimizer.py: optimizer.step() plain and with AGR, in turns, median ms "
        "over `steps` after `warmup`; ratio = agr_ms / plain_ms; default_impl_ratio is the "
        "implementation the suite picks on this device (impl=auto)"
    ),
}


class PieceError(RuntimeError):
    """A piece (or one of its subprocesses) failed; the message says how."""


# --------------------------------------------------------------------------- subprocesses


def run_logged(label: str, command: list[str], timeout: float) -> tuple[int, str]:
    """Run ``command``, echoing its output prefixed with ``[label]``; (exit code, last lines).
    Killed after ``timeout`` seconds (exit code -9)."""
    print(f"[{label}] $ {shlex.join(command)}", flush=True)
    tail: collections.deque[str] = collections.deque(maxlen=25)
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            for line in process.stdout:
                print(f"[{label}] {line}", end="", flush=True)
                tail.append(line)
        finally:
            timer.cancel()
        code = process.wait()
    if code == -9:
        tail.append(f"killed after the {timeout:.0f} s timeout\n")
    return code, "".join(tail)


def bench_json(label: str, command: list[str], out: Path, timeout: float) -> dict[str, Any]:
    """Run a benchmark that writes ``out``; its report. PieceError when it wrote none, or
    when it failed without reporting any rows of its own that say why ("error" in a row)."""
    code, tail = run_logged(label, [*command, "--out", str(out)], timeout)
    report = json.loads(out.read_text()) if out.exists() else {}
    rows = report.get("results") or []
    if not rows or (code != 0 and not any("error" in row for row in rows)):
        raise PieceError(f"exit code {code}; last lines:\n{tail}")
    return report


def python(script: str, *flags: str) -> list[str]:
    return [sys.executable, str(SCRIPTS / script), *flags]


# --------------------------------------------------------------------------- the pieces


def epoch_piece(args: argparse.Namespace, tmp: Path, dataset: str) -> dict[str, Any]:
    """The engine's epoch time per loader and variant (bench_train.py --epoch-time)."""
    cifar = dataset == "cifar100"
    variants = dict(VARIANTS) if cifar else {"bf16": VARIANTS["bf16"]}
    loaders = "torch,device" if cifar else "device"
    piece: dict[str, Any] = {"runs": {}}
    if args.smoke and cifar:  # the others differ only by bench_train's flags
        kept = "bf16+channels_last"
        piece["skipped"] = {name: "--smoke runs one variant" for name in variants if name != kept}
        variants = {kept: variants[kept]}
    # CIFAR-100's 50,000 images (150 MB); TinyImageNet's JPEGs only as many as are read
    train_images = max(50_000 if cifar and not args.smoke else 0, args.steps * args.batch_size)
    errors: dict[str, str] = {}
    for name, flags in variants.items():
        command = python(
            "bench_train.py",
            *("--epoch-time", "--models=resnet18", f"--dataset={dataset}", f"--loader={loaders}"),
            *(f"--device={args.device}", f"--batch-size={args.batch_size}"),
            *(f"--batches={args.steps}", f"--rounds={args.rounds}"),
            f"--num-workers={args.num_workers}",
            *(f"--train-images={train_images}", f"--test-images={2 * args.batch_size}"),
            *flags,
        )
        out = tmp / f"{dataset}_{name.replace('+', '_')}.json"
        try:
            report = bench_json(f"{dataset} {name}", command, out, args.timeout)
        except PieceError as error:
            errors[name] = str(error)
            continue
        for row in report["results"]:  # one per loader
            key = f"{row['loader']}/{name}"
            if "error" in row:
                errors[key] = row["error"]
            else:
                piece["runs"][key] = row
    if errors:
        piece["errors"] = errors
    return piece


def runs_per_gpu_piece(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """K concurrent training processes; total images/s and its ratio to K = 1."""
    windows, failure = concurrent_windows(args)
    piece: dict[str, Any] = {}
    for k in args.runs_per_gpu:
        per_process = [windows[index].get(str(k), []) for index in range(k)]
        if any(len(w) < args.rounds for w in per_process):
            piece[str(k)] = {"error": failure or "a worker reported no windows"}
            continue
        rounds = [[w[index] for w in per_process] for index in range(args.rounds)]
        totals = [
            sum(x["images"] for x in r) / (max(x["end"] for x in r) - min(x["start"] for x in r))
            for r in rounds
        ]
        skew = max(max(x["start"] for x in r) - min(x["start"] for x in r) for r in rounds)
        rates = [
            statistics.median(x["images"] / (x["end"] - x["start"]) for x in w) for w in per_process
        ]
        piece[str(k)] = {
            "images_per_s": round(statistics.median(totals), 2),
            "throughput_vs_1": None,  # below, once K = 1 is known
            "processes": k,
            "round_images_per_s": [round(t, 2) for t in totals],
            "per_process_images_per_s": [round(v, 2) for v in rates],
            "start_skew_s": round(skew, 4),
            **{key: vars(args)[key] for key in ("batch_size", "steps", "warmup_steps", "rounds")},
            "precision": "bf16",
            "loader": "device",
        }
        print(f"[runs_per_gpu] K={k}: {piece[str(k)]['images_per_s']:.1f} img/s", flush=True)
    one = piece.get("1", {}).get("images_per_s")
    for entry in piece.values():
        if "images_per_s" in entry and one:
            entry["throughput_vs_1"] = round(entry["images_per_s"] / one, 4)
    return piece


def concurrent_windows(args: argparse.Namespace) -> tuple[list[dict], str | None]:
    """Start max(K) worker processes at once; (each one's windows by K, what failed)."""
    context = torch.multiprocessing.get_context("spawn")  # each with its own CUDA context
    barrier, reports = context.Barrier(max(args.runs_per_gpu)), context.Queue()
    processes = [
        context.Process(target=worker, args=(index, args, barrier, reports))
        for index in range(max(args.runs_per_gpu))
    ]
    for process in processes:
        process.start()
    print(f"[runs_per_gpu] {len(processes)} worker processes started", flush=True)
    windows, failures = [{} for _ in processes], []
    deadline = time.monotonic() + args.timeout
    for _ in processes:
        try:
            index, done, error = reports.get(timeout=max(1.0, deadline - time.monotonic()))
        except queue.Empty:
            failures.append(f"a worker did not report in the {args.timeout:.0f} s timeout")
            break
        windows[index] = done
        if error:
            failures.append(f"worker {index}: {error}")
    for process in processes:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join()
    return windows, "\n".join(failures) or None


def ddpm_piece(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The Table 1 UNet's training and DDIM sampling images/s in bf16 (bench_diffusion.py)."""
    if args.smoke:  # the paper's UNet takes seconds a step on a CPU: the small one
        model, warmup, steps, sample_batch, sample_steps = "ddpm_small", 0, 1, 2, 1
    else:
        model, warmup, steps, sample_batch, sample_steps = "ddpm", 5, 20, 500, 10
    command = python(
        "bench_diffusion.py",
        *(f"--device={args.device}", "--precision=bf16", f"--models={model}"),
        f"--batch-{'small' if model == 'ddpm_small' else 'ddpm'}={args.batch_size}",
        *(f"--warmup={warmup}", f"--steps={steps}", f"--rounds={args.rounds}"),
        *(f"--sample-batch={sample_batch}", f"--sample-steps={sample_steps}"),
    )
    report = bench_json("ddpm", command, tmp / "diffusion.json", args.timeout)
    (row,) = report["results"]
    return {
        **row,
        "precision": report["precision"],
        "warmup_steps": warmup,
        "timed_steps": steps,
        "rounds": args.rounds,
        "ddim_images_per_s": row["sampling_images_per_s"],
        "ddim_images_per_s_at_100_steps": round(
            row["sampling_images_per_s"] * row["sample_steps"] / TABLE1_DDIM_STEPS, 3
        ),
    }


def optimizer_piece(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """optimizer.step() with and without AGR (bench_optimizer.py)."""
    sizes = ["--smoke", "--models=resnet18_cifar"] if args.smoke else ["--steps=50", "--warmup=10"]
    command = python("bench_optimizer.py", f"--device={args.device}", *sizes)
    report = bench_json("optimizer_step", command, tmp / "optimizer.json", args.timeout)
    # what impl=auto takes on this device (agr.optim._resolve_impl)
    default = {"adamw": "fused", "adan": "foreach" if args.device == "cuda" else "loop"}
    return {
        "steps": report["steps"],
        "warmup": report["warmup"],
        "default_impl_ratio": {
            f"{row['model']} {row['optimizer']}_agr ({row['impl']})": row["ratio"]
            for row in report["results"]
            if default.get(row["optimizer"]) == row["impl"]
        },
        "results": report["results"],
    }


RUNNERS = {  # piece -> its function of (args, a scratch folder)
    "cifar100_epoch": lambda args, tmp: epoch_piece(args, tmp, "cifar100"),
    "tinyimagenet_epoch": lambda args, tmp: epoch_piece(args, tmp, "tinyimagenet"),
    "runs_per_gpu": runs_per_gpu_piece,
    "ddpm": ddpm_piece,
    "optimizer_step": optimizer_piece,
}


# --------------------------------------------------------------------------- the worker


def worker(index: int, args: argparse.Namespace, barrier, reports) -> None:
    """One of the max(K) processes: bench_train.py's bare step (ResNet-18, bf16, adamw_agr, the
    device loader's batches). Warm-up steps; then for each K, ``rounds`` windows that all
    processes start at the barrier, timed in the first K and skipped by the others (they wait,
    idle, at the next barrier). Reports (index, its windows by K, its error or None)."""
    windows: dict[str, list[dict[str, float]]] = {}
    error = None
    try:
        step = worker_step(args)
        for _ in range(args.warmup_steps):
            step()
        for k in args.runs_per_gpu:
            for _ in range(args.rounds):
                barrier.wait(timeout=args.timeout)
                if index >= k:
                    continue
                bench.synchronize(args.device)
                start = time.time()  # one clock for all processes of the machine
                for _ in range(args.steps):
                    step()
                bench.synchronize(args.device)
                images = args.steps * args.batch_size
                windows.setdefault(str(k), []).append(
                    {"start": start, "end": time.time(), "images": images}
                )
    except Exception as exc:
        barrier.abort()  # the others stop waiting
        traceback.print_exc()
        error = f"{type(exc).__name__}: {exc}"
    finally:
        reports.put((index, windows, error))


def worker_step(args: argparse.Namespace):
    """bench_train.py's bare step of ResNet-18 in bf16, each batch the next of the device
    loader over a synthetic CIFAR-100."""
    import bench_train  # scripts/, this script's folder, is on sys.path

    run = argparse.Namespace(
        dataset="cifar100",
        device=args.device,
        batch_size=args.batch_size,
        batches=args.steps,
        num_workers=0,
        precision="bf16",
        channels_last=False,
        compile=False,
    )
    with tempfile.TemporaryDirectory(prefix="bench_gpu_worker_") as tmp:
        bench_train.write_cifar100(Path(tmp), args.steps * args.batch_size, args.batch_size)
        cfg = bench_train.run_config("resnet18", tmp, run, loader="device")
        return bench_train.bare_step(cfg, from_loader=True)[1]


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = bench.parser(__doc__, rounds=3)
    parser.add_argument("--only", default=",".join(RUNNERS), help="comma-separated pieces")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=60, help="timed steps per epoch/window")
    parser.add_argument("--warmup-steps", type=int, default=20, help="runs_per_gpu warm-up")
    parser.add_argument("--num-workers", type=int, default=8, help="of the torch loader")
    parser.add_argument("--runs-per-gpu", default="1,2,4", help="the K of runs_per_gpu")
    parser.add_argument("--timeout", type=float, default=420, help="seconds per subprocess")
    smoke = dict(device="cpu", batch_size=2, steps=1, warmup_steps=1, rounds=1, num_workers=0)
    args = bench.parse(parser, smoke={**smoke, "runs_per_gpu": "1,2"})
    args.runs_per_gpu = sorted({int(k) for k in str(args.runs_per_gpu).split(",")})
    args.pieces = args.only.split(",")
    if unknown := [p for p in args.pieces if p not in RUNNERS]:
        parser.error(f"--only {','.join(unknown)}: choose from {', '.join(RUNNERS)}")
    if 1 not in args.runs_per_gpu:
        parser.error("--runs-per-gpu must include 1: throughput_vs_1 is relative to it")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA device is visible (--smoke runs on the CPU)")
    return args


def run_pieces(args: argparse.Namespace, report: dict[str, Any]) -> None:
    """Each piece into ``report`` (under its name, and its outcome under ``pieces``)."""
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        for name in args.pieces:
            print(f"=== {name}", flush=True)
            started = time.perf_counter()
            folder = Path(tmp) / name
            folder.mkdir()
            try:
                result = RUNNERS[name](args, folder)
            except Exception as exc:  # recorded under the piece; the others still run
                result = {"error": f"{type(exc).__name__}: {exc}"}
            seconds = round(time.perf_counter() - started, 1)
            ok = not has_errors(result)
            report[name] = result
            report["pieces"][name] = {"ok": ok, "seconds": seconds}
            print(f"=== {name}: {'ok' if ok else 'FAILED'} in {seconds:.0f} s", flush=True)


def has_errors(result: dict[str, Any]) -> bool:
    """Whether a piece failed: its own "error", or one it recorded for a variant or a K."""
    inner = any(isinstance(entry, dict) and "error" in entry for entry in result.values())
    return "error" in result or bool(result.get("errors")) or inner


def main() -> None:
    args = parse_args()
    os.environ["PYTHONUNBUFFERED"] = "1"  # the pieces' lines as they come
    environment = bench.machine(args.device)
    report: dict[str, Any] = {
        "what": "the suite's speed on one device: epoch times, runs per GPU, DDPM, AGR step",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["python", *sys.argv]),
        "smoke": args.smoke,
        "device": environment["device"],
        "environment": environment,
        "settings": {
            key: vars(args)[key]
            for key in ("batch_size", "steps", "warmup_steps", "rounds", "num_workers")
        },
        "how": {name: HOW[name] for name in args.pieces},
        "pieces": {},
    }
    report["settings"]["runs_per_gpu"] = args.runs_per_gpu
    report["settings"]["data"] = (
        "synthetic, in the real on-disk formats (torchvision's CIFAR pickles, TinyImageNet's "
        "JPEG folders), read by agr_suite.images"
    )
    run_pieces(args, report)
    report["failed"] = [name for name, entry in report["pieces"].items() if not entry["ok"]]
    bench.write_report(bench.out_path(args, "gpu.json"), report)
    if report["failed"]:
        print(f"failed: {', '.join(report['failed'])}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
