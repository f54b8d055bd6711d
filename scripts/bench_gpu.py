"""The suite's speed on one GPU, measured in one go: writes results/bench/gpu.json.

Each piece runs an existing benchmark of scripts/ as a subprocess on synthetic data written in
the real on-disk formats (the GPU machine has no network) and its JSON is collected here:

- ``cifar100_epoch``: the engine's epoch time (``bench_train.py --epoch-time``) for the CIFAR
  ResNet-18 (100 classes) on a synthetic CIFAR-100 of 50,000 training images, with
  ``dataset.loader=torch`` (torchvision's PIL augmentation in ``--num-workers`` DataLoader
  workers) and ``dataset.loader=device`` (the split on the GPU, augmented there), each in
  fp32, bf16, bf16 + channels_last and bf16 + channels_last + torch.compile: one engine run of
  a warm-up epoch and ``--rounds`` timed epochs of ``--steps`` batches, the full epoch
  extrapolated (the measured steps and images are recorded beside it);
- ``tinyimagenet_epoch``: the same for ResNet-18 on a synthetic TinyImageNet (64x64, 200
  classes, the official folders of JPEGs), device loader, bf16, extrapolated to 100,000 images;
- ``runs_per_gpu``: K = 1, 2, 4 training processes on the GPU at once: max(K) processes
  (this script's ``--worker`` mode: the bare ResNet-18 loop of bench_train.py, bf16, device
  loader) start and warm up, then for each K the first K of them run ``--rounds`` windows of
  ``--steps`` steps started together at a file barrier while the others wait (an idle process
  holds its CUDA context and memory, no GPU time); per window the images of all K over the
  time from the first start to the last end; median over windows, and ``throughput_vs_1`` =
  that at K / that at K = 1;
- ``ddpm``: the Table 1 UNet (``model=ddpm``, 32x32x3): training images/s and DDIM sampling
  images/s in bf16 (``bench_diffusion.py``);
- ``optimizer_step``: optimizer.step() with and without AGR on the GPU, interleaved, medians
  (``bench_optimizer.py``).

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

import os

# Before any import that might reach the network; the pieces inherit it.
os.environ.update(
    HF_HUB_OFFLINE="1",
    HF_DATASETS_OFFLINE="1",
    TRANSFORMERS_OFFLINE="1",
    WANDB_MODE="disabled",
    PYTHONUNBUFFERED="1",
)

import argparse  # noqa: E402
import collections  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

from agr_suite.core.config import preset  # noqa: E402
from agr_suite.engine.machine import environment  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
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
        "max(K) processes started at once (scripts/bench_gpu.py --worker: bench_train.py's "
        "bare loop, ResNet-18, bf16, device loader, batch_size), each warmed up by "
        "warmup_steps; then for each K, `rounds` windows of `steps` steps run by the first K "
        "processes, started together at a file barrier, the others idle; a window's "
        "images_per_s = the K processes' images / (last end - first start); images_per_s is "
        "the median over windows; throughput_vs_1 = images_per_s / that of K = 1"
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


def python(script: str) -> list[str]:
    return [sys.executable, str(SCRIPTS / script)]


# --------------------------------------------------------------------------- the pieces


def epoch_piece(args: argparse.Namespace, tmp: Path, dataset: str) -> dict[str, Any]:
    """The engine's epoch time per loader and variant (bench_train.py --epoch-time)."""
    if dataset == "cifar100":
        variants, loaders = dict(VARIANTS), "torch,device"
    else:
        variants, loaders = {"bf16": VARIANTS["bf16"]}, "device"
    # CIFAR-100's 50,000 images (150 MB); TinyImageNet's JPEGs only as many as are read
    train_images = 50_000 if dataset == "cifar100" and not args.smoke else 0
    piece: dict[str, Any] = {"runs": {}}
    if args.smoke and dataset == "cifar100":  # the others differ only by bench_train's flags
        kept = "bf16+channels_last"
        piece["skipped"] = {name: "--smoke runs one variant" for name in variants if name != kept}
        variants = {kept: variants[kept]}
    errors: dict[str, str] = {}
    for name, flags in variants.items():
        command = python("bench_train.py") + [
            "--epoch-time",
            "--models=resnet18",
            f"--dataset={dataset}",
            f"--loader={loaders}",
            f"--device={args.device}",
            f"--batch-size={args.batch_size}",
            f"--batches={args.steps}",
            f"--rounds={args.rounds}",
            f"--num-workers={args.num_workers}",
            f"--train-images={max(train_images, args.steps * args.batch_size)}",
            f"--test-images={2 * args.batch_size}",
            *flags,
        ]
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
    windows, failure = concurrent_windows(args, tmp)
    piece: dict[str, Any] = {}
    for k in args.runs_per_gpu:
        per_process = [windows[index].get(str(k), []) for index in range(k)]
        if any(len(w) < args.rounds for w in per_process):
            piece[str(k)] = {"error": failure or "a worker reported no windows"}
            continue
        totals, skews = [], []
        for index in range(args.rounds):
            starts = [w[index]["start"] for w in per_process]
            ends = [w[index]["end"] for w in per_process]
            images = sum(w[index]["images"] for w in per_process)
            totals.append(images / (max(ends) - min(starts)))
            skews.append(max(starts) - min(starts))
        rates = [
            statistics.median(x["images"] / (x["end"] - x["start"]) for x in w) for w in per_process
        ]
        piece[str(k)] = {
            "images_per_s": round(statistics.median(totals), 2),
            "throughput_vs_1": None,  # below, once K = 1 is known
            "processes": k,
            "round_images_per_s": [round(t, 2) for t in totals],
            "per_process_images_per_s": [round(v, 2) for v in rates],
            "start_skew_s": round(max(skews), 4),
            "batch_size": args.batch_size,
            "steps": args.steps,
            "warmup_steps": args.warmup_steps,
            "rounds": args.rounds,
            "precision": "bf16",
            "loader": "device",
        }
        shown = ", ".join(f"{v:.1f}" for v in rates)
        print(f"[runs_per_gpu] K={k}: {statistics.median(totals):.1f} img/s ({shown})", flush=True)
    one = piece.get("1", {}).get("images_per_s")
    for entry in piece.values():
        if "images_per_s" in entry and one:
            entry["throughput_vs_1"] = round(entry["images_per_s"] / one, 4)
    return piece


def concurrent_windows(
    args: argparse.Namespace, folder: Path
) -> tuple[list[dict[str, list[dict]]], str | None]:
    """Start max(K) --worker processes at once; (each one's windows by K, what failed)."""
    parties = max(args.runs_per_gpu)
    barrier = folder / "barrier"
    barrier.mkdir(parents=True)
    processes = []
    for index in range(parties):
        command = python("bench_gpu.py") + [
            "--worker",
            f"--worker-index={index}",
            f"--barrier={barrier}",
            f"--device={args.device}",
            f"--batch-size={args.batch_size}",
            f"--steps={args.steps}",
            f"--warmup-steps={args.warmup_steps}",
            f"--rounds={args.rounds}",
            f"--runs-per-gpu={','.join(map(str, args.runs_per_gpu))}",
            "--out",
            str(folder / f"worker{index}.json"),
        ]
        log = open(folder / f"worker{index}.log", "w")  # closed once the process ended
        processes.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log))
    print(f"[runs_per_gpu] {parties} worker processes started", flush=True)
    deadline = time.monotonic() + args.timeout
    failures = []
    for index, (process, log) in enumerate(processes):
        try:
            code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
            problem = f"exit code {code}" if code else None
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            problem = f"killed after the {args.timeout:.0f} s timeout"
        finally:
            log.close()
        if problem:
            lines = (folder / f"worker{index}.log").read_text().splitlines()[-25:]
            failures.append(f"worker {index}: {problem}; last lines:\n" + "\n".join(lines))
    windows = []
    for index in range(parties):  # a worker writes its file after each K: what it finished
        out = folder / f"worker{index}.json"
        windows.append(json.loads(out.read_text())["windows"] if out.exists() else {})
    return windows, "\n".join(failures) or None


def ddpm_piece(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The Table 1 UNet's training and DDIM sampling images/s in bf16 (bench_diffusion.py)."""
    if args.smoke:  # the paper's UNet takes seconds a step on a CPU: the small one
        model, warmup, steps, sample_batch, sample_steps = "ddpm_small", 0, 1, 2, 1
    else:
        model, warmup, steps, sample_batch, sample_steps = "ddpm", 5, 20, 500, 10
    command = python("bench_diffusion.py") + [
        f"--device={args.device}",
        "--precision=bf16",
        f"--models={model}",
        f"--batch-{'small' if model == 'ddpm_small' else 'ddpm'}={args.batch_size}",
        f"--warmup={warmup}",
        f"--steps={steps}",
        f"--sample-batch={sample_batch}",
        f"--sample-steps={sample_steps}",
        f"--rounds={args.rounds}",
    ]
    report = bench_json("ddpm", command, tmp / "diffusion.json", args.timeout)
    (row,) = report["results"]
    return {
        "model": row["model"],
        "params": row["params"],
        "precision": report["precision"],
        "batch": row["batch"],
        "warmup_steps": warmup,
        "timed_steps": steps,
        "train_step_ms": row["train_step_ms"],
        "train_images_per_s": row["train_images_per_s"],
        "sample_batch": row["sample_batch"],
        "sample_steps": row["sample_steps"],
        "rounds": args.rounds,
        "ddim_images_per_s": row["sampling_images_per_s"],
        "ddim_images_per_s_at_100_steps": round(
            row["sampling_images_per_s"] * row["sample_steps"] / TABLE1_DDIM_STEPS, 3
        ),
        "sampling_ms_per_image_step": row["sampling_ms_per_image_step"],
        "table1_eval_hours": row["table1_eval_hours"],
    }


def optimizer_piece(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """optimizer.step() with and without AGR (bench_optimizer.py)."""
    sizes = ["--smoke", "--models=resnet18_cifar"] if args.smoke else ["--steps=50", "--warmup=10"]
    command = python("bench_optimizer.py") + [f"--device={args.device}", *sizes]
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


def wait_at(barrier: Path, name: str, index: int, parties: int, timeout: float = 600) -> None:
    """Return once all ``parties`` processes have reached ``name``; raise when one failed."""
    (barrier / f"{name}.{index}").touch()
    deadline = time.monotonic() + timeout
    while len(list(barrier.glob(f"{name}.*"))) < parties:
        if any(barrier.glob("failed.*")):
            raise RuntimeError("another worker failed")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the other workers did not reach {name} in {timeout:.0f} s")
        time.sleep(0.001)


def worker(args: argparse.Namespace) -> None:
    """One of the max(K) processes: bench_train.py's bare loop (ResNet-18, bf16, device loader)
    on its own synthetic CIFAR-100. Warm-up steps; then for each K, ``rounds`` windows that all
    processes start at the barrier, timed in the first K and skipped by the others (they wait,
    idle, at the next barrier). Its windows so far are written after each K."""
    barrier, out = Path(args.barrier), Path(args.out)
    parties = max(args.runs_per_gpu)
    try:
        import bench_train  # scripts/ is this script's folder, so it is on sys.path

        device = torch.device(args.device)
        loop_args = argparse.Namespace(
            dataset="cifar100",
            device=args.device,
            batch_size=args.batch_size,
            batches=args.steps,
            num_workers=0,
            precision="bf16",
            channels_last=False,
            compile=False,
        )
        windows: dict[str, list[dict[str, float]]] = {}
        with tempfile.TemporaryDirectory(prefix="bench_gpu_worker_") as tmp:
            data_dir = Path(tmp) / "data"
            bench_train.write_cifar100(data_dir, args.steps * args.batch_size, args.batch_size)
            cfg = bench_train.resolved_config("resnet18", data_dir, loop_args, loader="device")
            loop = bench_train.BareLoop(cfg, loop_args)
            total = args.warmup_steps + len(args.runs_per_gpu) * args.rounds * args.steps
            parts = loop.prepare(steps=total)
            loop.run(parts, args.warmup_steps)
            for k in args.runs_per_gpu:
                for index in range(args.rounds):
                    wait_at(barrier, f"k{k}.round{index}", args.worker_index, parties)
                    if args.worker_index >= k:
                        continue
                    bench_train.synchronize(device)
                    start = time.time()  # one clock for all processes of the machine
                    images = loop.run(parts, args.steps)
                    bench_train.synchronize(device)
                    window = {"start": start, "end": time.time(), "images": images}
                    windows.setdefault(str(k), []).append(window)
                out.write_text(json.dumps({"windows": windows}) + "\n")
    except BaseException:
        (barrier / f"failed.{args.worker_index}").touch()
        raise


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(RUNNERS), help="comma-separated pieces")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=60, help="timed steps per epoch/window")
    parser.add_argument("--warmup-steps", type=int, default=20, help="runs_per_gpu warm-up")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--num-workers", type=int, default=8, help="of the torch loader")
    parser.add_argument("--runs-per-gpu", default="1,2,4", help="the K of runs_per_gpu")
    parser.add_argument("--timeout", type=float, default=420, help="seconds per subprocess")
    parser.add_argument("--out", default=None, help="default: results/bench/gpu.json")
    parser.add_argument(
        "--smoke", action="store_true", help="every piece on the CPU at tiny sizes, to a temp file"
    )
    # the runs_per_gpu processes
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--barrier", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.device, args.batch_size, args.steps, args.warmup_steps = "cpu", 2, 1, 1
        args.rounds, args.num_workers, args.runs_per_gpu = 1, 0, "1,2"
        args.out = args.out or str(Path(tempfile.mkdtemp(prefix="bench_smoke_")) / "gpu.json")
    args.runs_per_gpu = sorted({int(k) for k in str(args.runs_per_gpu).split(",")})
    if args.worker:
        worker(args)
        return
    command = shlex.join(["python", *sys.argv])
    pieces = args.only.split(",")
    if unknown := [p for p in pieces if p not in RUNNERS]:
        parser.error(f"--only {','.join(unknown)}: choose from {', '.join(RUNNERS)}")
    if 1 not in args.runs_per_gpu:
        parser.error("--runs-per-gpu must include 1: throughput_vs_1 is relative to it")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA device is visible (--smoke runs on the CPU)")
    device = torch.device(args.device)
    measured_on = environment(device)
    cuda = args.device == "cuda"
    memory = torch.cuda.get_device_properties(device).total_memory if cuda else None

    report: dict[str, Any] = {
        "what": "the suite's speed on one device: epoch times, runs per GPU, DDPM, AGR step",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "smoke": args.smoke,
        "device": measured_on["device"],
        "environment": {
            **measured_on,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if cuda else None,
            "gpu_memory_gib": round(memory / 2**30, 1) if memory else None,
            "cpu_count": os.cpu_count(),
        },
        "settings": {
            "batch_size": args.batch_size,
            "steps": args.steps,
            "warmup_steps": args.warmup_steps,
            "rounds": args.rounds,
            "num_workers": args.num_workers,
            "runs_per_gpu": args.runs_per_gpu,
            "data": "synthetic, in the real on-disk formats (torchvision's CIFAR pickles, "
            "TinyImageNet's JPEG folders), read by agr_suite.images",
        },
        "how": {name: HOW[name] for name in pieces},
        "pieces": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        for name in pieces:
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

    failed = [name for name, entry in report["pieces"].items() if not entry["ok"]]
    report["failed"] = failed
    out = Path(args.out) if args.out else ROOT / "results" / "bench" / "gpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        raise SystemExit(1)


def has_errors(result: dict[str, Any]) -> bool:
    """Whether a piece failed: its own "error", or one it recorded for a variant or a K."""
    inner = any(isinstance(entry, dict) and "error" in entry for entry in result.values())
    return "error" in result or bool(result.get("errors")) or inner


if __name__ == "__main__":
    main()
