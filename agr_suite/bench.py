"""What the benchmarks in scripts/ (bench_*.py) share: the common flags, a timer that waits for
the GPU, turns that give every contender the same machine load, the machine's description and
the report, written whole. Each benchmark says what it measures and leaves the rest here.

Importing this module sets the offline variables (no hub, no W&B) for what a benchmark imports
next (transformers) and for the processes it starts; huggingface_hub, which ``import agr_suite``
loads, has read its own by then, so the Makefile's targets set them before Python starts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from agr import regularizer
from agr_suite.core.atomic import write_text_atomic
from agr_suite.engine.machine import environment

os.environ.update(
    HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="disabled"
)

RESULTS = Path(__file__).resolve().parents[1] / "results" / "bench"
"""Where the committed reports live (an editable install's checkout)."""


def parser(doc: str, rounds: int | None = None, threads: int | None = None):
    """An argument parser (described by ``doc``'s first line) with the flags every benchmark
    has: ``--smoke``, ``--out``, ``--threads`` and, when ``rounds`` is given, ``--rounds``."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, timing nothing, to a temporary folder"
    )
    parser.add_argument("--out", default=None, help="the report (default: under results/bench)")
    parser.add_argument("--threads", type=int, default=threads, help="torch's CPU threads")
    if rounds is not None:
        parser.add_argument("--rounds", type=int, default=rounds, help="timed repetitions")
    return parser


def parse(
    parser: argparse.ArgumentParser, smoke: dict[str, Any], argv: list[str] | None = None
) -> argparse.Namespace:
    """The arguments, ``smoke``'s values over them under ``--smoke`` (a check that the script
    still runs); torch's CPU threads set as ``--threads`` says."""
    args = parser.parse_args(argv)
    if args.smoke:
        vars(args).update(smoke)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def out_path(args: argparse.Namespace, name: str) -> Path:
    """``--out``; else a fresh temporary folder's ``name`` under ``--smoke`` (a smoke run never
    writes over a committed report); else results/bench/``name``."""
    if args.out:
        return Path(args.out)
    if args.smoke:
        return Path(tempfile.mkdtemp(prefix="bench_smoke_")) / name
    return RESULTS / name


def synchronize(device: torch.device | str) -> None:
    """Wait for the work queued on a CUDA device (a no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device | str = "cpu") -> Callable[[], float]:
    """``fn`` as a measure: a call runs it once and returns its wall seconds, the work it
    queued on ``device`` included."""

    def measure() -> float:
        synchronize(device)
        started = time.perf_counter()
        fn()
        synchronize(device)
        return time.perf_counter() - started

    return measure


def in_turns(
    measures: dict[str, Callable[[], float]], repeats: int, warmup: int = 0
) -> dict[str, list[float]]:
    """Each measure's values over ``repeats`` turns after ``warmup`` untimed ones. The
    measures take turns (a, b, a, b, ...), so all of them see the same machine load."""
    values: dict[str, list[float]] = {name: [] for name in measures}
    for turn in range(warmup + repeats):
        for name, measure in measures.items():
            value = measure()
            if turn >= warmup:
                values[name].append(value)
    return values


def repeat(
    fn: Callable[[], Any], repeats: int, warmup: int = 0, device: torch.device | str = "cpu"
) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    return in_turns({"fn": timed(fn, device)}, repeats, warmup)["fn"]


def spread(values: list[float], scale: float = 1.0, digits: int = 4) -> dict[str, float]:
    """The median, min and max of ``values`` times ``scale`` (e.g. 1e3: seconds to ms)."""
    return {
        "median": round(statistics.median(values) * scale, digits),
        "min": round(min(values) * scale, digits),
        "max": round(max(values) * scale, digits),
    }


def machine(device: torch.device | str) -> dict[str, Any]:
    """What the numbers were measured on (agr_suite.engine.machine.environment) with the
    CPU count, the GPU's memory and whether AGR's CPU kernel was in use. On the CPU it loads
    the kernel (built once per environment), so call it before timing anything."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    memory = torch.cuda.get_device_properties(device).total_memory if cuda else None
    return {
        **environment(device),
        "cpu_count": os.cpu_count(),
        "gpu_memory_gib": round(memory / 2**30, 1) if memory else None,
        "agr_cpu_kernel": None if cuda else regularizer.load_cpu_kernel(),
    }


def write_report(out: Path, report: dict[str, Any]) -> None:
    """Write ``report`` as JSON to ``out``, whole or not at all, and say where."""
    write_text_atomic(out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {out.resolve()}", flush=True)
