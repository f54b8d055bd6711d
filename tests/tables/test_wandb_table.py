"""A finished table in W&B (agr_suite/report/wandb_table.py): ``scripts/reproduce.py TABLE --
logger=wandb`` over finished run folders logs the written table as one W&B run, its rows
those of the CSV and its files an artifact; a dry run logs nothing; a W&B that cannot log is
exit 2 before anything is written. Read back from the files the real ``wandb`` wrote offline
(tests/wandb_records.py)."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import sys
from pathlib import Path

import pytest
from wandb_records import offline_runs

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scripts import reproduce  # noqa: E402

SPEC = """
title: W&B fixture
seeds: [0, 1]
metrics:
  - {key: top1, label: Top-1 (%), select: final, higher_is_better: true}
  - {key: loss, label: Loss, select: best, higher_is_better: false}
columns:
  - {name: AdamW, overrides: [optimizer=adamw]}
  - {name: AGR, overrides: [optimizer=adamw_agr]}
baseline: AdamW
scales:
  mini:
    runs_subdir: mini
    overrides: [experiment_name=wbfix, dataset=digits, trainer.devices=cpu]
    rows:
      - {name: ResNet, overrides: [model=resnet18]}
"""
# (optimizer, seed) -> (final top1, best loss), and each run's two-epoch top1 curve
RUNS = {
    ("adamw", 0): (50.0, 1.0),
    ("adamw", 1): (52.0, 1.5),
    ("adamw_agr", 0): (53.0, 0.75),
    ("adamw_agr", 1): (56.0, 1.25),
}


def write_finished_runs(runs: Path) -> None:
    """The run folders of the spec, as the engine writes them (results.json, history.jsonl)."""
    for (optimizer, seed), (top1, loss) in RUNS.items():
        folder = runs / "mini" / "wbfix" / f"digits-resnet18-{optimizer}" / f"seed{seed}"
        folder.mkdir(parents=True)
        results = {
            "status": "completed",
            "metrics": {"top1": top1, "loss": loss + 0.5},
            "best": {"top1": top1, "loss": loss},
            "seed": seed,
            "epochs_completed": 2,
            "agr": {},
        }
        (folder / "results.json").write_text(json.dumps(results))
        history = [{"epoch": 1, "top1": top1 - 10, "loss": 2.0}, {"epoch": 2, "top1": top1}]
        (folder / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))


@pytest.fixture()
def finished_table(tmp_path, monkeypatch):
    """The spec, its finished runs, and the real wandb offline with no WANDB_DIR (the table's
    W&B files then go beside the table's multirun files)."""
    import wandb

    for key in ("WANDB_DIR", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb_data"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))  # no `wandb login` key
    spec = tmp_path / "wbfix.yaml"
    spec.write_text(SPEC)
    runs = tmp_path / "runs"
    write_finished_runs(runs)
    wandb.teardown()  # W&B reads the environment afresh, as in a new process
    yield [str(spec), "--scale", "mini", "--runs-dir", str(runs)], runs
    wandb.teardown()


def md5_b64(path: Path) -> str:
    return base64.b64encode(hashlib.md5(path.read_bytes()).digest()).decode()


def test_a_written_table_is_one_wandb_run_with_its_rows_and_files(finished_table, tmp_path, capsys):
    args, runs = finished_table
    out = tmp_path / "results"
    overrides = ["--", "logger=wandb", "logger.mode=offline", "logger.project=tables"]
    assert reproduce.main([*args, "--results-dir", str(out), *overrides]) == 0
    assert "logged wbfix to W&B" in capsys.readouterr().out
    written = sorted(p.name for p in out.iterdir())
    assert written == ["wbfix.csv", "wbfix.md", "wbfix_curves.png"]  # nothing of W&B's

    (run,) = offline_runs(runs / "mini" / "wbfix")  # beside the multirun's own files
    assert run.exit_code == 0
    assert (run.run.job_type, run.run.display_name) == ("table", "wbfix-mini")
    assert (run.run.run_group, run.run.project) == ("wbfix", "tables")
    assert (run.config["table"], run.config["scale"]) == ("wbfix", "mini")
    assert len(run.config["runs"]) == 4

    # the W&B table: the CSV's columns and rows, numbers as numbers
    with (out / "wbfix.csv").open(newline="") as handle:
        lines = list(csv.reader(handle))
    reference = run.summary["table"]
    assert reference["_type"] == "table-file" and reference["nrows"] == len(lines) - 1
    logged = json.loads((run.folder / "files" / reference["path"]).read_text())
    assert logged["columns"] == lines[0]
    assert len(logged["data"]) == len(lines) - 1
    for line, row in zip(lines[1:], logged["data"]):
        for column, text, value in zip(lines[0], line, row):
            if value is None:
                assert text == "", column
            elif isinstance(value, str):
                assert value == text, column
            else:
                assert value == float(text), column
    rows = [dict(zip(logged["columns"], row)) for row in logged["data"]]
    agr_top1 = next(r for r in rows if (r["metric"], r["column"]) == ("top1", "AGR"))
    assert agr_top1["mean"] == pytest.approx((53.0 + 56.0) / 2)  # by hand, from RUNS
    assert agr_top1["n"] == 2 and agr_top1["diff_mean"] == pytest.approx(3.5)
    assert agr_top1["values"] == "0:53.0 1:56.0"  # text stays text

    # the artifact: the three files, byte for byte
    (artifact,) = [a for a in run.artifacts if a.type == "table"]
    assert artifact.name == "wbfix-mini"
    contents = {entry.path: entry.digest for entry in artifact.manifest.contents}
    assert contents == {name: md5_b64(out / name) for name in written}


def test_a_dry_run_logs_no_table(finished_table, tmp_path):
    args, _ = finished_table
    dry = [*args, "--dry-run", "--results-dir", str(tmp_path / "results")]
    assert reproduce.main([*dry, "--", "logger=wandb", "logger.mode=offline"]) == 0
    assert not (tmp_path / "results").exists() and not list(tmp_path.rglob("offline-run-*"))


def test_wandb_that_cannot_log_is_exit_2_before_anything_is_written(
    finished_table, tmp_path, capsys
):
    args, _ = finished_table
    out = tmp_path / "results"
    online = ["--", "logger=wandb", "logger.mode=online"]
    assert reproduce.main([*args, "--results-dir", str(out), *online]) == 2
    message = capsys.readouterr().err
    assert "error:" in message and "wandb login" in message and "logger=none" in message
    assert not out.exists() and not list(tmp_path.rglob("offline-run-*"))
