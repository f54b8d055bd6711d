"""What a training run's W&B run holds (agr_suite/engine/loggers.py): every epoch metric on the
x-axis ``epoch`` (define_metric), each metric's final and best value in the summary with the
direction the table specs give it, the resolved config with the run folder and its hash;
read back from the files the real ``wandb`` wrote offline (tests/wandb_records.py) and
checked against the run folder and hand computations."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import yaml
from helpers import FAST, TINY_MODELS, resolved, run_folder_of, run_in_process
from PIL import Image
from wandb_records import offline_runs

from agr_suite.engine import train
from agr_suite.engine.loggers import Progress, WandbLogger, direction, log_epoch
from agr_suite.registry import build_task

ROOT = Path(__file__).resolve().parents[2]
TINY = [*FAST, "model=vit", *TINY_MODELS["vit"]]
# the prediction statistics each accuracy gets (tests/engine/test_run.py lists them too)
STATISTICS = ("examples", "pred_classes", "pred_entropy", "majority", "minority", "label_entropy")
W_AND_B_OWN = {"_step", "_runtime", "_timestamp"}


def offline_env(tmp_path: Path) -> dict[str, str]:
    """The real wandb, offline and silent, its files and staging areas under ``tmp_path``."""
    return {
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(tmp_path / "wandb_files"),
        "WANDB_SILENT": "true",
        "WANDB_DATA_DIR": str(tmp_path / "wandb_data"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb_cache"),
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb_config"),
    }


@pytest.fixture()
def offline_wandb(tmp_path, monkeypatch):
    import wandb

    env = offline_env(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    Path(env["WANDB_DIR"]).mkdir()
    wandb.teardown()  # W&B reads the environment afresh, as in a new process
    yield Path(env["WANDB_DIR"])
    wandb.teardown()


def best_and_final(rows: list[dict], key: str, higher: bool) -> tuple[float, float]:
    """The best finite value of ``key`` over ``rows`` and its value in the last row that has it
    (null is history.jsonl's NaN)."""
    values = [row[key] for row in rows if key in row]
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return (max(finite) if higher else min(finite)), values[-1]


def test_metric_directions_are_those_of_the_table_specs():
    """Every metric a table reads has the direction its spec's higher_is_better gives it."""
    seen = 0
    for path in sorted((ROOT / "tables").glob("*.yaml")):
        for metric in yaml.safe_load(path.read_text())["metrics"]:
            higher = metric.get("higher_is_better", True)
            assert direction(metric["key"]) == ("max" if higher else "min"), (path, metric)
            seen += 1
    assert seen >= 6  # top1, is_mean, fid, sop_acc, mlm_loss, mlm_acc
    # what no table reads: the training loss, the other losses and accuracies, and numbers
    # that have no better side
    assert [direction(k) for k in ("train_loss", "loss", "sop_loss", "top5")] == [
        "min",
        "min",
        "min",
        "max",
    ]
    for key in ("lr", "epoch", "step", "is_std", "mlm_loss_unigram", "top1_majority"):
        assert direction(key) is None, key
    assert direction("predictions/top1_examples") is None
    assert direction("agr_removed_fraction") is None


@pytest.mark.slow  # about 3 s; make test checks a one-epoch run so (tests/engine/test_wandb.py)
def test_a_run_logs_its_epochs_on_the_epoch_axis_with_final_and_best_in_the_summary(tmp_path):
    """Through run.py and the engine: three epochs of a tiny ViT, logged offline."""
    env = offline_env(tmp_path)
    Path(env["WANDB_DIR"]).mkdir()
    runs = tmp_path / "runs"
    args = [*TINY, "trainer.epochs=3", f"paths.runs={runs}"]
    result = run_in_process([*args, "logger=wandb"], cwd=tmp_path, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr[-3000:]
    folder = run_folder_of(args)  # the logger is no result key: the same folder
    (run,) = offline_runs(Path(env["WANDB_DIR"]))
    assert run.exit_code == 0

    # config: the run folder's config.yaml, its path, and the hash in its name
    recorded = yaml.safe_load((folder / "config.yaml").read_text())
    config = dict(run.config)
    config.pop("_wandb", None)
    assert config.pop("run_folder") == str(folder.resolve())
    assert config.pop("run_hash") == folder.parent.name.rsplit("-", 1)[1]
    assert config == recorded

    # history: every number of each epoch's record, on the epoch axis
    rows = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    statistics = {f"top1_{name}" for name in STATISTICS}
    epoch_keys = {
        f"predictions/{k}" if k in statistics else k
        for row in rows
        for k, v in row.items()
        if isinstance(v, (int, float)) and k not in ("epoch", "time_s")
    }
    assert {"train_loss", "top1", "top5", "loss", "predictions/top1_majority"} <= epoch_keys
    assert run.metrics["epoch"].step_metric == ""  # the axis itself
    on_epoch = {name for name, m in run.metrics.items() if m.step_metric == "epoch"}
    assert on_epoch == epoch_keys
    logged = [row for row in run.history if "top1" in row]
    assert [row["epoch"] for row in logged] == [1, 2, 3]
    assert [row["_step"] for row in logged] == [row["step"] for row in rows]
    # the per-step AGR diagnostics stay on W&B's step (no epoch to put them at)
    assert any("agr/removed_fraction" in row for row in run.history)
    assert "agr/removed_fraction" not in run.metrics

    # summary: final and best of each metric with a direction, from history.jsonl
    expected = {}
    for key, higher in [("top1", True), ("top5", True), ("loss", False), ("train_loss", False)]:
        best, final = best_and_final(rows, key, higher)
        expected[f"best/{key}"], expected[f"final/{key}"] = best, final
    ours = {k: v for k, v in run.summary.items() if k.startswith(("best/", "final/"))}
    assert ours == pytest.approx(expected, rel=1e-12)
    assert run.summary["top1"] == pytest.approx(rows[-1]["top1"], rel=1e-12)  # W&B's own


def test_final_and_best_count_every_epoch_of_a_resumed_run(tmp_path, offline_wandb):
    """The logger alone, as a resumed session sees it: epochs 1-2 in history.jsonl (written
    by the engine from the checkpoint), epochs 3-4 logged now, under the W&B run id the
    checkpoint kept. Values by hand: the best top1 is in the first session, the best loss
    in the second, a NaN loss (null in the file) is never best."""
    folder = tmp_path / "run"
    folder.mkdir()
    earlier = [
        {"epoch": 1, "step": 2, "train_loss": 2.0, "lr": 0.1, "top1": 10.0, "loss": 2.5},
        {"epoch": 2, "step": 4, "train_loss": 1.5, "lr": 0.1, "top1": 50.0, "loss": None},
    ]
    (folder / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in earlier))
    later = [
        {"epoch": 3, "step": 6, "train_loss": 1.1, "lr": 0.1, "top1": 30.0, "loss": 1.2},
        {"epoch": 4, "step": 8, "train_loss": 1.3, "lr": 0.1, "top1": 40.0, "loss": 1.7},
    ]
    cfg = resolved([*TINY, "trainer.epochs=4", "logger=wandb"])
    logger = WandbLogger(cfg, folder, run_id="resumed01")
    progress = Progress(False, 4)
    for record in later:
        full = {**record, "train_samples_per_s": 100.0, "epoch_time_s": 1.0}
        full["top1_majority"] = 0.5
        metrics = {k: full[k] for k in ("top1", "loss", "top1_majority")}
        log_epoch(logger, progress, full, metrics, step=record["step"], epochs=4)
    grid = tmp_path / "grid.png"
    Image.new("RGB", (4, 4)).save(grid)
    logger.log_images({"samples": grid}, step=8)
    logger.finish()

    (run,) = offline_runs(offline_wandb)
    assert run.run.run_id == "resumed01" and run.exit_code == 0
    ours = {k: v for k, v in run.summary.items() if k.startswith(("best/", "final/"))}
    assert ours == {
        "best/top1": 50.0,
        "final/top1": 40.0,
        "best/loss": 1.2,
        "final/loss": 1.7,
        "best/train_loss": 1.1,
        "final/train_loss": 1.3,
    }
    on_epoch = {name for name, m in run.metrics.items() if m.step_metric == "epoch"}
    assert on_epoch == {
        "step",
        "train_loss",
        "lr",
        "top1",
        "loss",
        "train_samples_per_s",
        "epoch_time_s",
        "predictions/top1_majority",
        "samples",
    }
    (grid_row,) = [row for row in run.history if "samples/_type" in row]  # an image's fields
    assert grid_row["epoch"] == 4 and grid_row["_step"] == 8  # beside the epoch of its step


@pytest.mark.slow  # two engine runs, about 3 s
def test_a_resumed_run_continues_its_wandb_run_and_its_summary(
    tmp_path, offline_wandb, monkeypatch
):
    """Through the engine: epoch 1, then the same folder resumed for epoch 2 (as
    tests/engine/test_machine.py resumes): the second session is the same W&B run (the id
    the checkpoint kept), and its summary counts both epochs of history.jsonl."""
    folder = tmp_path / "run"
    base = [*TINY, "logger=wandb"]
    train(resolved([*base, "trainer.epochs=1"]), folder, build_task)
    # the second session's files in a folder of their own (an offline run's folder is named
    # after its start to the second, and its id, which is the same)
    later = tmp_path / "wandb_files_2"
    later.mkdir()
    monkeypatch.setenv("WANDB_DIR", str(later))
    train(resolved([*base, "trainer.epochs=2"]), folder, build_task)
    (first,), (second,) = offline_runs(offline_wandb), offline_runs(later)
    assert first.run.run_id == second.run.run_id and second.exit_code == 0
    assert [row["epoch"] for row in second.history if "top1" in row] == [2]
    rows = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2]
    for key, higher in [("top1", True), ("top5", True), ("loss", False), ("train_loss", False)]:
        best, final = best_and_final(rows, key, higher)
        assert second.summary[f"best/{key}"] == pytest.approx(best, rel=1e-12)
        assert second.summary[f"final/{key}"] == pytest.approx(final, rel=1e-12)
