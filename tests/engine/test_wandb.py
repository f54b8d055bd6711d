"""W&B by its own conventions, with the real ``wandb`` package in offline mode: its environment
variables choose the mode, project, entity and folder unless the config sets them; without an
API key an online run stops before any work with exit code 2; what a run logs is read back
from the files W&B wrote (tests/wandb_records.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from helpers import FAST, RUN_PY_RUNNERS, TINY_MODELS, resolved, run_folder_of, tree_digest
from wandb_records import offline_runs

from agr_suite.engine import DivergedError, train
from agr_suite.registry import build_task

TINY = [*FAST, "trainer.epochs=1", "model=vit", *TINY_MODELS["vit"]]


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The test process's environment without any W&B setting or credential: the netrc file
    (where `wandb login` writes the key) and the W&B config folder are in an empty folder.
    (HOME stays: the built AGR kernel is cached under it.)"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    home.mkdir(parents=True, exist_ok=True)
    env.update(NETRC=str(home / "netrc"), WANDB_CONFIG_DIR=str(home / "wandb_config"), **extra)
    return env


def history_rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("run", RUN_PY_RUNNERS)
def test_wandb_environment_variables_run_offline_without_a_key(tmp_path, run):
    wandb_dir = tmp_path / "wandb_files"
    wandb_dir.mkdir()
    env = clean_env(
        tmp_path / "home",
        WANDB_MODE="offline",
        WANDB_PROJECT="env-project",
        WANDB_ENTITY="env-entity",
        WANDB_DIR=str(wandb_dir),
    )
    runs = tmp_path / "runs"
    result = run([*TINY, "logger=wandb", f"paths.runs={runs}"], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    folder = run_folder_of([*TINY, f"paths.runs={runs}"])
    assert not (folder / "wandb").exists()  # WANDB_DIR, not the run folder
    (run,) = offline_runs(wandb_dir)
    assert (run.run.project, run.run.entity) == ("env-project", "env-entity")
    assert run.run.display_name == "digits-vit-adamw_agr-seed0" and run.run.run_group == "default"
    assert run.config["optimizer"]["name"] == "adamw_agr"
    assert run.config["logger"]["mode"] is None  # the config left the mode to W&B
    assert run.exit_code == 0
    # The epoch's numbers in W&B are the ones in history.jsonl.
    (epoch,) = history_rows(run_folder_of([*TINY, f"paths.runs={runs}"]))
    logged = next(row for row in run.history if "top1" in row)
    for key in ("train_loss", "top1", "top5", "loss"):
        assert logged[key] == pytest.approx(epoch[key], rel=1e-12)
    assert logged["_step"] == epoch["step"]
    # The prediction statistics: a W&B section of their own, the same numbers
    for key in ("top1_examples", "top1_pred_entropy", "top1_majority"):
        assert key not in logged
        assert logged[f"predictions/{key}"] == pytest.approx(epoch[key], rel=1e-12)
    # On the epoch axis; the summary's final and best (one epoch: its values; several:
    # tests/engine/test_wandb_keys.py); the config: config.yaml, the folder and its hash
    assert run.metrics["top1"].step_metric == "epoch" and "epoch" in run.metrics
    for key in ("top1", "loss", "train_loss"):
        assert run.summary[f"final/{key}"] == run.summary[f"best/{key}"] == epoch[key]
    config = {k: v for k, v in run.config.items() if k != "_wandb"}
    folder = run_folder_of([*TINY, f"paths.runs={runs}"])
    assert config.pop("run_folder") == str(folder.resolve())
    assert config.pop("run_hash") == folder.parent.name.rsplit("-", 1)[1]
    assert config == yaml.safe_load((folder / "config.yaml").read_text())


def test_an_explicit_logger_mode_overrides_wandb_mode(tmp_path):
    """WANDB_MODE=disabled (set for the whole test suite) loses to logger.mode=offline; the
    W&B files then go to the run folder (no WANDB_DIR)."""
    assert os.environ["WANDB_MODE"] == "disabled"
    assert "WANDB_DIR" not in os.environ
    results = train(resolved([*TINY, "logger=wandb", "logger.mode=offline"]), tmp_path, build_task)
    (run,) = offline_runs(tmp_path)
    assert run.run.project == "agr-suite" and run.config["logger"]["mode"] == "offline"
    assert run.exit_code == 0 and results["status"] == "completed"
    assert any("top1" in row for row in run.history)


def test_a_diverged_run_finishes_its_wandb_run_as_failed(tmp_path):
    cfg = resolved([*TINY, "logger=wandb", "logger.mode=offline", "optimizer.lr=1e6"])
    with pytest.raises(DivergedError):
        train(cfg, tmp_path, build_task)
    (run,) = offline_runs(tmp_path)
    assert run.exit_code == 1
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "failed"


@pytest.mark.parametrize(
    "mode_env, override",
    [(None, None), ("offline", "logger.mode=online")],
    ids=["no-key-no-mode", "explicit-online-over-WANDB_MODE"],
)
@pytest.mark.parametrize("run", RUN_PY_RUNNERS)
def test_no_api_key_online_is_a_message_and_exit_2_before_any_work(
    tmp_path, mode_env, override, run
):
    runs = tmp_path / "runs"
    first = run([*TINY, f"paths.runs={runs}"], cwd=tmp_path)  # a finished run, logger=none
    assert first.returncode == 0, first.stderr[-3000:]
    before = tree_digest(runs)
    env = clean_env(tmp_path / "home", **({"WANDB_MODE": mode_env} if mode_env else {}))
    args = [*TINY, f"paths.runs={runs}", "logger=wandb", "overwrite=true"]
    result = run([*args, *([override] if override else [])], cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr + result.stdout
    message = result.stderr
    for advice in ("wandb login", "WANDB_MODE=offline", "logger=none"):
        assert advice in message
    assert "epoch 1/1" not in result.stdout  # nothing trained
    # overwrite=true would have moved the finished run aside: the check came first.
    assert tree_digest(runs) == before
    assert not list(runs.rglob("*.replaced-*")) and not (tmp_path / "wandb").exists()
