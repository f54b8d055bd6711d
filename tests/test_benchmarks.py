"""No benchmark can rot: every scripts/bench_*.py runs in its smoke mode (a few steps at tiny
sizes) as a subprocess, writing to a temporary folder and never over results/bench/; and
scripts/gpu_check.sh runs all of its steps and reports each failure."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_run import tree_digest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted(ROOT.glob("scripts/bench_*.py"))


def test_the_benchmarks_are_found():
    names = {path.name for path in BENCHMARKS}
    assert {"bench_optimizer.py", "bench_train.py", "bench_diffusion.py", "bench_data.py"} <= names


@pytest.mark.parametrize("script", BENCHMARKS, ids=[path.stem for path in BENCHMARKS])
def test_every_benchmark_runs_in_smoke_mode(tmp_path, script):
    committed = tree_digest(ROOT / "results" / "bench")
    result = subprocess.run(
        [sys.executable, str(script), "--smoke"],
        cwd=tmp_path,
        # this checkout's agr and agr_suite, whichever ones the environment has installed
        env={
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": f"{ROOT / 'lib'}{os.pathsep}{ROOT}",
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    (wrote,) = re.findall(r"^wrote (.+)$", result.stdout, flags=re.MULTILINE)
    out = Path(wrote)
    assert out.is_absolute() and out.exists() and ROOT not in out.parents
    report = json.loads(out.read_text())
    assert report["results"] and report["environment"]["torch"] == torch.__version__
    assert tree_digest(ROOT / "results" / "bench") == committed


FAKE_PYTHON = """#!/usr/bin/env bash
# Stands in for python in gpu_check.sh: logs each call; the optimizer benchmark fails.
echo "$*" >> "{log}"
if [[ $1 == - ]]; then cat > /dev/null; echo "device: fake"; exit 0; fi
if [[ $* == *bench_optimizer.py* ]]; then echo "optimizer benchmark broke" >&2; exit 3; fi
exit 0
"""

GPU_CHECK_STEPS = [
    "equivalence tests",
    "optimizer step",
    "train (sync variant)",
    "train channels_last",
    "train compiled",
    "diffusion",
]


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
    assert "tests/test_cuda.py" in calls[1] and "bench_optimizer.py" in calls[2]
    assert all("bench_train.py" in call for call in calls[3:6])
    assert "bench_diffusion.py" in calls[6]  # still run after the failure
    summary = result.stdout[result.stdout.index("=== summary") :]
    for name in GPU_CHECK_STEPS:
        expected = "FAILED  optimizer step (exit code 3)" if name == "optimizer step" else name
        assert expected in summary
    assert f"{len(GPU_CHECK_STEPS)} steps, 1 failed" in summary


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
