"""Sweeps finish: under every launcher a failed (here: diverged) run fails alone, the sweep
runs the rest, lists the failed runs with their folders and exits non-zero
(hydra_plugins/agr_run_list; the Slurm case is in test_slurm.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from helpers import FAST, ROOT, RUN_PY_RUNNERS, TINY_MODELS, run_cli, run_folder_of

from agr_suite.launch import local_pool

TINY = [*FAST, "trainer.epochs=1", "model=vit", *TINY_MODELS["vit"]]
# Three runs; the middle one's learning rate makes it diverge in its first epoch.
LRS = ("1e-3", "1e6", "2e-3")


def statuses(runs: Path) -> list[str]:
    """The status of each of the three runs, in the sweep's order."""
    folders = [run_folder_of([*TINY, f"paths.runs={runs}", f"optimizer.lr={lr}"]) for lr in LRS]
    return [json.loads((f / "results.json").read_text())["status"] for f in folders]


def assert_summary(output: str, runs: Path) -> None:
    assert "1 of 3 runs failed; the others ran:" in output, output[-3000:]
    failed = run_folder_of([*TINY, f"paths.runs={runs}", f"optimizer.lr={LRS[1]}"])
    assert f"run folder: {failed}" in output
    assert "Traceback" not in output


@pytest.mark.parametrize("run", RUN_PY_RUNNERS)
def test_a_basic_sweep_whose_middle_run_diverges_runs_the_third_and_exits_1(tmp_path, run):
    result = run(["-m", *TINY, f"paths.runs={tmp_path}", f"optimizer.lr={','.join(LRS)}"], tmp_path)
    assert result.returncode == 1
    assert "run failed: diverged at epoch 1" in result.stderr
    assert_summary(result.stdout + result.stderr, tmp_path)
    assert statuses(tmp_path) == ["completed", "failed", "completed"]


def test_a_run_list_sweep_whose_middle_run_diverges_runs_the_third_and_exits_1(tmp_path):
    """The sweeper of scripts/reproduce.py (one process over a table's runs, and each shard
    of --shards), in this process."""
    from helpers import run_in_process

    listing = tmp_path / "runs.yaml"
    listing.write_text(yaml.safe_dump({"runs": [[f"optimizer.lr={lr}"] for lr in LRS]}))
    args = ["-m", "hydra/sweeper=run_list", f"hydra.sweeper.runs_file={listing}"]
    result = run_in_process([*args, *TINY, f"paths.runs={tmp_path}"], tmp_path)
    assert result.returncode == 1
    assert_summary(result.stdout + result.stderr, tmp_path)
    assert statuses(tmp_path) == ["completed", "failed", "completed"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_submitit_local_sweep_whose_middle_run_diverges_runs_the_others(tmp_path):
    args = ["-m", "launcher=submitit_local", *TINY, f"paths.runs={tmp_path}"]
    result = run_cli([*args, f"optimizer.lr={','.join(LRS)}"], tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert_summary(result.stdout + result.stderr, tmp_path)
    assert statuses(tmp_path) == ["completed", "failed", "completed"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_local_pool_runs_the_others_when_the_middle_run_diverges(tmp_path):
    jobs = [
        local_pool.PoolJob(
            name=f"lr {lr}",
            command=[sys.executable, str(ROOT / "run.py"), *TINY, f"paths.runs={tmp_path}"]
            + [f"optimizer.lr={lr}"],
            log=tmp_path / f"lr{lr}.log",
        )
        for lr in LRS
    ]
    slots = [local_pool.Slot(gpu=None, threads=1)]
    result = local_pool.run_pool(jobs, slots)
    assert result.failed == [f"lr {LRS[1]}"] and result.exit_code == 1
    assert "diverged at epoch 1" in (tmp_path / f"lr{LRS[1]}.log").read_text()
    assert statuses(tmp_path) == ["completed", "failed", "completed"]
