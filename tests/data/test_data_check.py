"""The data check before a table's runs start (agr_suite.launch.data_check): which staging
names a composed run config reads; the dry run of a paper table with an empty data folder
says what is missing and the command that stages it, a mini table's says nothing; a Slurm
submission stops with exit code 2 on missing data, and goes ahead once it is staged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fixtures import accept_fixture_checksums, write_cifar
from hydra import compose, initialize_config_dir
from torchvision.datasets import CIFAR10

from agr_suite.data_staging import missing_data, needs_of
from agr_suite.launch import start_runs
from agr_suite.report.spec import PlannedRun

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scripts import reproduce  # noqa: E402

STAGE = "python -m agr_suite.data_staging stage"


@pytest.fixture
def empty_places(tmp_path, monkeypatch) -> Path:
    """An empty data folder as paths.data_dir's default, and an empty torch.hub cache."""
    data = tmp_path / "data"
    monkeypatch.setenv("AGR_DATA_DIR", str(data))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch_hub"))
    return data


def compose_run(overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("config", overrides=overrides)


@pytest.mark.parametrize(
    "preset,names",
    [
        ("table2/cifar100_resnet18", ("cifar100",)),
        ("table2/tinyimagenet_vit", ("tinyimagenet",)),
        # DDPM on CIFAR-10 scores FID/IS with Inception features
        ("table1/ddpm_adan", ("cifar10", "inception")),
        ("table3/albert_adamw", ("wikitext2",)),
        # the embedded data sets ship with installed packages; the digits' FID uses a CNN
        ("table1/mini/digits_ddpm_small", ()),
        ("table3/mini/pydoc_wd0", ()),
        ("ablation_agr/mini/digits_resnet18", ()),
    ],
)
def test_a_run_config_needs_its_downloaded_data_and_inception_for_cifar_fid(
    empty_places, preset, names
):
    needs = needs_of(compose_run([f"experiment={preset}"]))
    assert needs.names == names
    assert needs.data_dir == empty_places.resolve()


def test_a_config_that_names_the_inception_file_is_checked_there(empty_places, tmp_path):
    weights = tmp_path / "elsewhere" / "inception.pth"
    cfg = compose_run(["experiment=table1/ddpm_adan", f"metrics.inception_weights={weights}"])
    needs = needs_of(cfg)
    assert needs.inception_weights == weights
    missing = missing_data(needs.names, needs.data_dir, inception_weights=weights)
    assert missing == ["cifar10", "inception"]


def test_the_dry_run_of_a_paper_table_names_missing_data_and_the_stage_command(
    empty_places, tmp_path, capsys
):
    args = ["table1", "--dry-run", "--runs-dir", str(tmp_path / "runs")]
    assert reproduce.main(args) == 0  # a dry run reports; it starts nothing
    out = capsys.readouterr().out
    data = empty_places.resolve()
    assert "# data MISSING: cifar10: neither cifar-10-python.tar.gz" in out
    assert f"#   stage it: {STAGE} cifar10 --data-dir {data}\n" in out
    assert f"# data MISSING: inception: {tmp_path / 'torch_hub'}" in out
    assert f"#   stage it: {STAGE} inception\n" in out


@pytest.mark.slow  # table 2's 48 runs compose 16 configs
def test_the_dry_run_of_table2_names_both_image_sets(empty_places, tmp_path, capsys):
    assert reproduce.main(["table2", "--dry-run", "--runs-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    data = empty_places.resolve()
    for name in ("cifar100", "tinyimagenet"):
        assert f"# data MISSING: {name}: " in out
        assert f"#   stage it: {STAGE} {name} --data-dir {data}\n" in out


@pytest.mark.parametrize(
    "table", ["table1", "table3", pytest.param("ablation_agr", marks=pytest.mark.slow)]
)
def test_the_dry_run_of_a_mini_table_has_nothing_to_stage(empty_places, tmp_path, capsys, table):
    args = [table, "--scale", "mini", "--dry-run", "--runs-dir", str(tmp_path / "runs")]
    assert reproduce.main(args) == 0
    assert "# data" not in capsys.readouterr().out


def _cifar10_run(data: Path, folder: Path) -> PlannedRun:
    overrides = ("dataset=cifar10", "model=resnet18", f"paths.data_dir={data}", "seed=0")
    return PlannedRun(group=0, seed=0, overrides=overrides, folder=folder)


def test_a_slurm_submission_stops_on_missing_data_with_exit_2(
    empty_places, tmp_path, monkeypatch, capsys
):
    def no_submission(*args, **kwargs):
        raise AssertionError("submitted although the data is missing")

    monkeypatch.setattr(subprocess, "run", no_submission)
    run = _cifar10_run(empty_places, tmp_path / "runs" / "x")
    assert start_runs.in_multirun([run], "slurm", tmp_path / "runs") == 2
    err = capsys.readouterr().err
    assert "error: the runs read data that is not staged" in err
    assert f"{STAGE} cifar10 --data-dir {empty_places.resolve()}" in err


def test_a_slurm_submission_goes_ahead_once_the_data_is_staged(empty_places, tmp_path, monkeypatch):
    write_cifar(empty_places / "cifar10", "cifar10")  # extracted, as staging leaves it
    accept_fixture_checksums(monkeypatch, CIFAR10, empty_places / "cifar10")
    submitted = []
    monkeypatch.setattr(start_runs, "multirun_command", lambda runs, *a: ["sbatch", len(runs)])
    monkeypatch.setattr(
        subprocess,
        "run",
        lambda command, **k: submitted.append(command) or subprocess.CompletedProcess(command, 0),
    )
    run = _cifar10_run(empty_places, tmp_path / "runs" / "x")
    assert start_runs.in_multirun([run], "slurm", tmp_path / "runs") == 0
    assert submitted == [["sbatch", 1]]


def test_the_local_launcher_keeps_reporting_missing_data_from_the_run_itself(
    empty_places, tmp_path, monkeypatch
):
    """Locally a run says itself what it misses (as before): nothing is checked up front."""
    submitted = []
    monkeypatch.setattr(start_runs, "multirun_command", lambda runs, *a: ["run.py", len(runs)])
    monkeypatch.setattr(
        subprocess,
        "run",
        lambda command, **k: submitted.append(command) or subprocess.CompletedProcess(command, 1),
    )
    run = _cifar10_run(empty_places, tmp_path / "runs" / "x")
    assert start_runs.in_multirun([run], "local", tmp_path / "runs") == 1
    assert submitted == [["run.py", 1]]
