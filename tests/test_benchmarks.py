"""No benchmark can rot: every scripts/bench_*.py runs in its smoke mode (a few steps at tiny
sizes) as a subprocess, writing to a temporary folder and never over results/bench/ (the GPU
driver, bench_gpu.py, which runs the others, has its own test of its report); and
scripts/gpu_check.sh runs all of its steps and reports each failure. The subprocesses that
start Python are marked slow (make test-all). The harness they share (agr_suite/bench.py) is
tested here too."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import tree_digest

from agr_suite import bench

ROOT = Path(__file__).resolve().parents[1]
BENCH_GPU = ROOT / "scripts" / "bench_gpu.py"
BENCHMARKS = sorted(path for path in ROOT.glob("scripts/bench_*.py") if path != BENCH_GPU)


def test_the_benchmarks_are_found():
    names = {path.name for path in BENCHMARKS}
    assert {"bench_optimizer.py", "bench_train.py", "bench_diffusion.py", "bench_data.py"} <= names
    assert BENCH_GPU.is_file()


def run_smoke(script: Path, cwd: Path) -> Path:
    """Run ``script --smoke`` in ``cwd`` (agr and agr_suite as installed); the report it wrote."""
    result = subprocess.run(
        [sys.executable, str(script), "--smoke"],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    (wrote,) = re.findall(r"^wrote (.+)$", result.stdout, flags=re.MULTILINE)
    return Path(wrote)


@pytest.mark.slow
@pytest.mark.parametrize("script", BENCHMARKS, ids=[path.stem for path in BENCHMARKS])
def test_every_benchmark_runs_in_smoke_mode(tmp_path, script):
    committed = tree_digest(ROOT / "results" / "bench")
    out = run_smoke(script, tmp_path)
    assert out.is_absolute() and out.exists() and ROOT not in out.parents
    report = json.loads(out.read_text())
    assert report["results"] and report["environment"]["torch"] == torch.__version__
    assert tree_digest(ROOT / "results" / "bench") == committed


@pytest.mark.slow
def test_bench_gpu_runs_every_piece_in_smoke_mode(tmp_path):
    """Every piece of the GPU check, on the CPU at tiny sizes, into one report whose keys are
    the ones its readers use (scripts/reproduce.py reads runs_per_gpu[str(K)])."""
    committed = tree_digest(ROOT / "results" / "bench")
    out = run_smoke(BENCH_GPU, tmp_path)
    assert out.is_absolute() and out.exists() and ROOT not in out.parents
    report = json.loads(out.read_text())
    pieces = ["cifar100_epoch", "tinyimagenet_epoch", "runs_per_gpu", "ddpm", "optimizer_step"]
    assert list(report["pieces"]) == pieces and report["failed"] == []
    assert all(report["pieces"][name]["ok"] for name in pieces)
    assert report["environment"]["torch"] == torch.__version__ and report["date"].endswith("+00:00")
    assert "--smoke" in report["command"] and set(report["how"]) == set(pieces)

    runs = report["cifar100_epoch"]["runs"]
    assert set(runs) == {"torch/bf16+channels_last", "device/bf16+channels_last"}
    assert set(report["cifar100_epoch"]["skipped"]) == {
        "fp32",
        "bf16",
        "bf16+channels_last+compile",
    }
    for key, run in runs.items():
        assert run["loader"] == key.split("/")[0] and run["classes"] == 100
        assert run["precision"] == "bf16" and run["channels_last"] is True
        assert run["measured_images"] == run["measured_steps"] * run["batch_size"] > 0
        assert run["epoch_images"] == 50_000 and run["epoch_s"] > 0 and run["measured_s"] > 0
    (tiny,) = report["tinyimagenet_epoch"]["runs"].values()
    assert (tiny["loader"], tiny["classes"], tiny["image_size"]) == ("device", 200, 64)
    assert tiny["epoch_images"] == 100_000 and tiny["epoch_s"] > 0

    per_k = report["runs_per_gpu"]
    assert set(per_k) == {"1", "2"} and per_k["1"]["throughput_vs_1"] == 1.0
    for k, entry in per_k.items():
        assert entry["processes"] == int(k) == len(entry["per_process_images_per_s"])
        assert entry["images_per_s"] > 0
        assert entry["throughput_vs_1"] == pytest.approx(
            entry["images_per_s"] / per_k["1"]["images_per_s"], rel=1e-3
        )
    assert report["ddpm"]["train_images_per_s"] > 0 and report["ddpm"]["ddim_images_per_s"] > 0
    optimizer = report["optimizer_step"]
    assert (
        optimizer["results"]
        and "resnet18_cifar adamw_agr (fused)" in optimizer["default_impl_ratio"]
    )
    assert tree_digest(ROOT / "results" / "bench") == committed


def test_bench_gpu_records_a_failed_piece_runs_the_rest_and_exits_1(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH_GPU)
    bench_gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_gpu)

    def broken(args, tmp):
        raise bench_gpu.PieceError("exit code 3; last lines:\nCUDA error: out of memory")

    calls = []
    monkeypatch.setitem(bench_gpu.RUNNERS, "ddpm", broken)
    monkeypatch.setitem(
        bench_gpu.RUNNERS, "optimizer_step", lambda args, tmp: calls.append(tmp) or {"results": [1]}
    )
    monkeypatch.setitem(
        bench_gpu.RUNNERS,
        "runs_per_gpu",
        lambda args, tmp: {"1": {"images_per_s": 10.0}, "2": {"error": "K=2: worker 1 died"}},
    )
    out = tmp_path / "gpu.json"
    argv = [
        "bench_gpu.py",
        "--smoke",
        "--only",
        "ddpm,runs_per_gpu,optimizer_step",
        "--out",
        str(out),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        bench_gpu.main()
    assert exit_info.value.code == 1 and len(calls) == 1  # the piece after the failures ran
    report = json.loads(out.read_text())
    assert report["failed"] == ["ddpm", "runs_per_gpu"]
    assert report["ddpm"] == {
        "error": "PieceError: exit code 3; last lines:\nCUDA error: out of memory"
    }
    assert report["runs_per_gpu"]["2"] == {"error": "K=2: worker 1 died"}
    assert report["optimizer_step"] == {"results": [1]} and report["pieces"]["optimizer_step"]["ok"]


def test_in_turns_alternates_the_measures_and_drops_the_warmup():
    calls = []

    def measure(name):
        return lambda: calls.append(name) or float(len(calls))

    values = bench.in_turns({"a": measure("a"), "b": measure("b")}, repeats=2, warmup=1)
    assert calls == ["a", "b", "a", "b", "a", "b"]
    assert values == {"a": [3.0, 5.0], "b": [4.0, 6.0]}  # the 3rd to 6th calls


def test_timed_and_repeat_return_wall_seconds():
    sleeps = []
    seconds = bench.repeat(lambda: sleeps.append(time.sleep(0.02)), repeats=3, warmup=2)
    assert len(sleeps) == 5 and len(seconds) == 3
    assert all(0.02 <= s < 0.5 for s in seconds)
    assert 0.02 <= bench.timed(lambda: time.sleep(0.02))() < 0.5


def test_spread():
    assert bench.spread([0.003, 0.001, 0.002], scale=1e3) == {
        "median": 2.0,
        "min": 1.0,
        "max": 3.0,
    }


def test_common_flags_smoke_values_and_where_a_report_goes(tmp_path):
    parser = bench.parser("A benchmark.\n\nMore.", rounds=5)
    parser.add_argument("--steps", type=int, default=30)
    args = bench.parse(parser, smoke={"steps": 1, "rounds": 1}, argv=[])
    assert (args.steps, args.rounds, args.smoke, args.threads) == (30, 5, False, None)
    assert bench.out_path(args, "x.json") == ROOT / "results" / "bench" / "x.json"
    args = bench.parse(parser, smoke={"steps": 1, "rounds": 1}, argv=["--smoke"])
    assert (args.steps, args.rounds) == (1, 1)
    smoke_out = bench.out_path(args, "x.json")
    assert smoke_out.name == "x.json" and ROOT not in smoke_out.parents
    args = bench.parse(parser, smoke={}, argv=["--smoke", "--out", str(tmp_path / "y.json")])
    assert bench.out_path(args, "x.json") == tmp_path / "y.json"


def test_write_report_writes_whole_json_or_leaves_the_old_file(tmp_path, capsys):
    out = tmp_path / "sub" / "report.json"
    bench.write_report(out, {"results": [1, 2]})
    assert json.loads(out.read_text()) == {"results": [1, 2]}
    assert capsys.readouterr().out == f"wrote {out.resolve()}\n"
    with pytest.raises(TypeError):
        bench.write_report(out, {"results": [object()]})
    assert json.loads(out.read_text()) == {"results": [1, 2]}
    assert [path.name for path in out.parent.iterdir()] == ["report.json"]


FAKE_PYTHON = """#!/usr/bin/env bash
# Stands in for python in gpu_check.sh: logs each call; the equivalence tests fail.
echo "$*" >> "{log}"
if [[ $1 == - ]]; then cat > /dev/null; echo "device: fake"; exit 0; fi
if [[ $* == *pytest* ]]; then echo "a CUDA test broke" >&2; exit 3; fi
exit 0
"""

GPU_CHECK_STEPS = ["equivalence tests", "bench_gpu"]


def test_gpu_check_runs_every_step_and_reports_each_failure(tmp_path):
    log = tmp_path / "calls.log"
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON.format(log=log))
    fake.chmod(0o755)
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh")],
        env={**os.environ, "PY": str(fake)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    calls = log.read_text().splitlines()
    assert len(calls) == 1 + len(GPU_CHECK_STEPS)  # the device check, then every step
    assert "tests/library/test_cuda.py" in calls[1]
    assert calls[2] == "scripts/bench_gpu.py"  # still run after the failure, to gpu.json
    summary = result.stdout[result.stdout.index("=== summary") :]
    for name in GPU_CHECK_STEPS:
        expected = "FAILED  equivalence tests (exit code 3)" if name == GPU_CHECK_STEPS[0] else name
        assert expected in summary
    assert f"{len(GPU_CHECK_STEPS)} steps, 1 failed" in summary


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_gpu_check_without_a_gpu_says_so_and_exits_2():
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh")],
        env={**os.environ, "PY": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "no CUDA device" in result.stderr and "Traceback" not in result.stderr
