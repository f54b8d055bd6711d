"""Reproduce one table of the paper: spec -> runs -> table.

    scripts/reproduce.py TABLE [TABLE ...] [--seeds 0,1,2] [--scale paper|mini] [--dry-run]
                         [--launcher local|slurm|submitit_local] [-- override ...]

Expands tables/TABLE.yaml into runs, skips those whose results.json says completed,
launches the rest as one Hydra multirun of run.py (the run_list sweeper: every pending run
in one launch, so on Slurm one array job whose preempted tasks are requeued and resume
from their run folder), then writes results/[mini/]TABLE.{md,csv} and TABLE_curves.png.
`--dry-run` prints one line per run and the estimated cost, and starts nothing.
`--portable-cpu` caps the CPU kernels at AVX2 (agr_suite.engine.machine.PORTABLE_ENV), so
the runs repeat bit for bit on other x86-64 CPU models too (`make reproduce-mini` sets it).
Overrides after `--` go into every run (e.g. `-- trainer.devices=cuda trainer.precision=bf16`).

Locally (`--launcher local`, the default) every visible GPU is kept busy, one run.py process
per run (`--gpus`, `--runs-per-gpu`, `--jobs`; without GPUs: `--jobs`, or `--shards` for a
few one-process sweeps); on Slurm (`--launcher slurm`) the command submits one array job and
waits for it, and a second call does not submit runs that are still queued. README,
"Reproduce the paper's tables", says how each behaves (logs, failures, Ctrl-C, resuming).
The code is agr_suite.launch.reproduce.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

from agr_suite.launch.reproduce import reproduce
from agr_suite.report.spec import CONFIGS, SCALES, available_tables, parse_seeds


def launchers() -> list[str]:
    return sorted(p.stem for p in (CONFIGS / "launcher").glob("*.yaml"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Overrides after `--` go into every run: ... -- trainer.precision=bf16",
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument(
        "tables", nargs="+", help=f"specs in tables/ ({', '.join(available_tables())})"
    )
    parser.add_argument("--seeds", help="comma-separated seeds (default: the spec's)")
    parser.add_argument("--launcher", default="local", help=f"one of {', '.join(launchers())}")
    parser.add_argument("--scale", default="paper", choices=SCALES)
    parser.add_argument("--dry-run", action="store_true", help="list the runs, start nothing")
    parser.add_argument(
        "--skip-running",
        action="store_true",
        help="leave runs whose results.json says running alone (their job may still be alive)",
    )
    parser.add_argument(
        "--runs-dir",
        default=os.environ.get("AGR_RUNS_DIR", "runs"),
        help="paths.runs for every run (default: $AGR_RUNS_DIR or runs)",
    )
    parser.add_argument("--results-dir", default="results", help="where the tables go")
    parser.add_argument(
        "--portable-cpu",
        action="store_true",
        help="x86-64 CPUs: cap the CPU kernels of ATen, oneDNN, MKL and OpenBLAS at AVX2, so "
        "the runs repeat bit for bit on x86-64 CPUs of other models (README, "
        "Reproducibility; `make reproduce-mini` sets it)",
    )
    local = parser.add_argument_group("local launcher (--launcher local)")
    local.add_argument(
        "--gpus",
        type=positive_int,
        help="use the first N visible GPUs (default: all); in a dry run, the number of GPUs "
        "to estimate the wall time for (default: the visible ones, at least 1)",
    )
    local.add_argument(
        "--runs-per-gpu", type=positive_int, default=1, help="runs sharing each GPU (default 1)"
    )
    local.add_argument(
        "--jobs",
        type=positive_int,
        help="at most N runs at once, each its own process (default: one per GPU slot; 1 on "
        "a machine without GPUs)",
    )
    local.add_argument(
        "--shards",
        type=positive_int,
        help="without GPUs: N one-process sweeps at once, each over a share of the runs and "
        "of the cores (imports paid once per shard; a failed run fails alone)",
    )
    return parser


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give an integer >= 1")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Everything after `--` is an override for every run (split off before argparse, whose
    positional TABLE list would swallow it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args = build_parser().parse_args(argv[:cut])
    args.overrides = argv[cut + 1 :]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.launcher not in launchers():
        print(f"error: --launcher {args.launcher!r}: choose one of {launchers()}", file=sys.stderr)
        return 2
    if args.portable_cpu:
        if platform.machine().lower() not in ("x86_64", "amd64"):
            print(
                f"error: --portable-cpu caps x86-64 kernels; this is {platform.machine()}: "
                "leave it out (the runs then repeat on this CPU model only)",
                file=sys.stderr,
            )
            return 2
        from agr_suite.engine.machine import PORTABLE_ENV

        os.environ.update(PORTABLE_ENV)  # every run is a child process: they inherit it
    args.seeds = parse_seeds(args.seeds)
    return reproduce(args)


if __name__ == "__main__":
    sys.exit(main())
