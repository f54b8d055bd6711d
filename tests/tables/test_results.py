"""Aggregation of run folders into a table: fixture runs written by the test in the real
on-disk format (results.json, history.jsonl), including a missing seed, a failed run and a
NaN metric; every number is checked against a hand computation."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from agr_suite.report.outputs import write_outputs
from agr_suite.report.spec import SpecError, load_spec, plan_runs
from agr_suite.report.tables import aggregate

SPEC = """
title: Fixture table
seeds: [0, 1, 2]
metrics:
  - {key: top1, label: Top-1 (%), select: final, higher_is_better: true, decimals: 2}
  - {key: loss, label: Loss, select: best, higher_is_better: false, decimals: 3}
columns:
  - {name: Base, overrides: [optimizer=adamw]}
  - {name: AGR, overrides: [optimizer=adamw_agr]}
baseline: Base
paper_source: a fixture paper
scales:
  paper:
    overrides: [experiment_name=fixture, dataset=digits]
    rows:
      - name: ResNet
        overrides: [model=resnet18]
        paper: {AGR: {top1: 55.5}}
      - name: ViT
        overrides: [model=vit]
"""


def write_run(
    folder: Path,
    status: str = "completed",
    metrics: dict | None = None,
    best: dict | None = None,
    history: list[dict] | None = None,
    removed: float | None = None,
    error: str | None = None,
) -> None:
    """A run folder as the engine writes it (NaN is written as null, like the engine's JSON)."""
    folder.mkdir(parents=True, exist_ok=True)
    results = {
        "status": status,
        "metrics": metrics or {},
        "best": best or {},
        "seed": int(folder.name.removeprefix("seed")),
        "epochs_completed": 2,
        "wall_time_s": 1.0,
        "error": error,
        "environment": {"world_size": 1},
        "agr": {"removed_fraction_mean": removed, "samples": 0 if removed is None else 4},
    }
    (folder / "results.json").write_text(json.dumps(results))
    lines = [json.dumps(record) for record in history or []]
    (folder / "history.jsonl").write_text("".join(line + "\n" for line in lines))


def curve(*top1: float) -> list[dict]:
    return [{"epoch": i + 1, "top1": v, "train_loss": 1.0} for i, v in enumerate(top1)]


@pytest.fixture()
def fixture_table(tmp_path):
    spec_file = tmp_path / "fixture.yaml"
    spec_file.write_text(SPEC)
    runs = tmp_path / "runs" / "fixture"
    # ResNet, Base: three completed seeds.
    for seed, top1, loss, first in [
        (0, 50.0, 1.0, 30.0),
        (1, 52.0, 1.2, 32.0),
        (2, 57.0, 1.4, 34.0),
    ]:
        write_run(
            runs / "digits-resnet18-adamw" / f"seed{seed}",
            metrics={"top1": top1, "top5": 90.0, "loss": 9.0},
            best={"top1": top1 + 1, "loss": loss},
            history=curve(first, top1),
        )
    # ResNet, AGR: three completed seeds with AGR diagnostics.
    for seed, top1, removed in [(0, 53.0, 0.1), (1, 56.0, 0.2), (2, 57.0, 0.3)]:
        write_run(
            runs / "digits-resnet18-adamw_agr" / f"seed{seed}",
            metrics={"top1": top1},
            best={"loss": 2.0},
            history=curve(40.0, top1),
            removed=removed,
        )
    # ViT, Base: seed 2 never ran (no folder).
    write_run(runs / "digits-vit-adamw" / "seed0", metrics={"top1": 40.0}, best={"loss": 3.0})
    write_run(runs / "digits-vit-adamw" / "seed1", metrics={"top1": 44.0}, best={"loss": 5.0})
    # ViT, AGR: seed 1 failed, seed 2 completed with a NaN accuracy (null in the JSON).
    write_run(runs / "digits-vit-adamw_agr" / "seed0", metrics={"top1": 41.0}, best={"loss": 4.0})
    write_run(
        runs / "digits-vit-adamw_agr" / "seed1",
        status="failed",
        metrics={"top1": 99.0},  # a failed run's metrics never count
        error="diverged at epoch 2 step 7: the training loss is nan. The last good state stays",
    )
    write_run(runs / "digits-vit-adamw_agr" / "seed2", metrics={"top1": None}, best={"loss": 6.0})

    spec = load_spec(str(spec_file))
    table = aggregate(spec, plan_runs(spec, tmp_path / "runs"))
    paths = write_outputs(table, tmp_path / "results")
    return table, paths, runs


def csv_rows(path: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    with path.open() as handle:
        return {(r["metric"], r["row"], r["column"]): r for r in csv.DictReader(handle)}


def test_the_folders_are_the_run_folder_contract(fixture_table, tmp_path):
    table, _, runs = fixture_table
    folders = {record.folder for record in table.records.values()}
    expected = {
        runs / f"digits-{model}-{opt}" / f"seed{seed}"
        for model in ("resnet18", "vit")
        for opt in ("adamw", "adamw_agr")
        for seed in (0, 1, 2)
    }
    assert folders == expected


def test_cell_statistics_equal_a_hand_computation(fixture_table):
    _, paths, _ = fixture_table
    rows = csv_rows(paths[1])

    base = rows[("top1", "ResNet", "Base")]
    assert int(base["n"]) == 3
    assert float(base["mean"]) == pytest.approx(53.0)
    assert float(base["std"]) == pytest.approx(math.sqrt(13.0))  # (9 + 1 + 16) / 2

    vit_base = rows[("top1", "ViT", "Base")]
    assert int(vit_base["n"]) == 2 and vit_base["missing_seeds"] == "2"
    assert float(vit_base["mean"]) == pytest.approx(42.0)
    assert float(vit_base["std"]) == pytest.approx(math.sqrt(8.0))

    vit_agr = rows[("top1", "ViT", "AGR")]
    assert int(vit_agr["n"]) == 1 and float(vit_agr["mean"]) == pytest.approx(41.0)
    assert vit_agr["std"] == ""  # undefined for one value
    assert vit_agr["nan_seeds"] == "2" and vit_agr["failed_seeds"] == "1"

    # select: best reads results.json "best"; lower is better does not change the mean.
    loss = rows[("loss", "ResNet", "Base")]
    assert float(loss["mean"]) == pytest.approx(1.2) and float(loss["std"]) == pytest.approx(0.2)
    assert rows[("loss", "ViT", "AGR")]["n"] == "2"  # seed 0: 4.0, seed 2: 6.0 (loss finite)


def test_paired_difference_and_its_t_interval(fixture_table):
    _, paths, _ = fixture_table
    rows = csv_rows(paths[1])
    resnet = rows[("top1", "ResNet", "AGR")]
    # Per seed: 53-50, 56-52, 57-57 = 3, 4, 0; mean 7/3; sd sqrt(((2/3)^2+(5/3)^2+(7/3)^2)/2).
    diffs = [3.0, 4.0, 0.0]
    mean = 7.0 / 3.0
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    half = 4.302652729911275 * sd / math.sqrt(3)  # t(0.975, df=2)
    assert resnet["diff_vs"] == "Base" and int(resnet["diff_n"]) == 3
    assert float(resnet["diff_mean"]) == pytest.approx(mean)
    assert float(resnet["diff_ci_low"]) == pytest.approx(mean - half)
    assert float(resnet["diff_ci_high"]) == pytest.approx(mean + half)
    assert mean - half == pytest.approx(-2.8378, abs=1e-4)

    vit = rows[("top1", "ViT", "AGR")]
    # Only seed 0 has both values (Base seed 2 missing, AGR seed 1 failed and seed 2 NaN).
    assert int(vit["diff_n"]) == 1 and float(vit["diff_mean"]) == pytest.approx(1.0)
    assert vit["diff_ci_low"] == "" and vit["diff_ci_high"] == ""
    assert rows[("top1", "ResNet", "Base")]["diff_vs"] == ""  # the baseline has no difference


def test_markdown_shows_values_paper_and_what_is_missing(fixture_table):
    _, paths, runs = fixture_table
    text = paths[0].read_text()
    resnet_line = next(line for line in text.splitlines() if line.startswith("| ResNet |"))
    # mean ± std (n), the paper value beside the AGR cell, the paired difference with its CI.
    assert resnet_line.startswith("| ResNet | 53.00 ± 3.61 (3) | 55.33 ± 2.08 (3) | 55.50 |")
    assert "+2.33 [−2.84, +7.50] (3)" in resnet_line
    vit_line = next(line for line in text.splitlines() if line.startswith("| ViT |"))
    assert "42.00 ± 2.83 (2; 1 missing)" in vit_line
    assert "41.00 (1; 1 NaN, 1 failed)" in vit_line and "| n/p |" in vit_line
    assert "Paper values: a fixture paper" in text
    assert f"missing: ViT / Base, seed 2 `{runs / 'digits-vit-adamw' / 'seed2'}`" in text
    assert "failed: ViT / AGR, seed 1" in text and "diverged at epoch 2 step 7" in text
    assert "NaN top1: ViT / AGR, seed 2" in text
    # AGR diagnostics: 0.1, 0.2, 0.3 -> 0.2 ± 0.1 (3).
    # no per-kind or update-change samples in these runs
    assert "| ResNet / AGR | 0.2 ± 0.1 (3) | — | — | — | — | — |" in text
    assert "| ResNet / AGR | — | — | — | — | — |" in text
    assert paths[2].stat().st_size > 0


def test_learning_curves_average_over_seeds(fixture_table):
    from agr_suite.report.curves import curves

    table, _, _ = fixture_table
    metric = table.spec.metrics[0]
    group = next(
        c.group for c in table.spec.cells if c.row.name == "ResNet" and c.column.name == "Base"
    )
    points = curves(table, group, metric)
    assert list(points) == [1, 2]
    assert points[1].mean == pytest.approx(32.0) and points[1].std == pytest.approx(2.0)
    assert points[2].mean == pytest.approx(53.0)


EPOCH_SPEC = """
title: Epoch rows
seeds: [0, 1]
metrics:
  - {key: is_mean, label: IS, select: final}
columns:
  - {name: Adan, overrides: [optimizer=adan]}
  - {name: Adan(AGR), overrides: [optimizer=adan_agr]}
baseline: Adan
scales:
  paper:
    overrides: [experiment_name=epochs, dataset=digits]
    rows:
      - {name: epoch 1, epoch: 1, paper: {Adan: {is_mean: 4.31}}}
      - {name: epoch 2, epoch: 2}
      - {name: epoch 3, epoch: 3}
"""


def test_rows_with_an_epoch_read_the_history_and_share_runs(tmp_path):
    spec_file = tmp_path / "epochs.yaml"
    spec_file.write_text(EPOCH_SPEC)
    runs = tmp_path / "runs" / "epochs"
    values = {("adan", 0): (2.0, 3.0), ("adan", 1): (2.5, 4.0), ("adan_agr", 0): (2.2, 3.5)}
    for (opt, seed), (first, second) in values.items():
        history = [{"epoch": 1, "is_mean": first}, {"epoch": 2, "is_mean": second}]
        write_run(runs / f"digits-resnet18-{opt}" / f"seed{seed}", history=history)
    write_run(  # evaluated at epoch 1 only, and NaN there
        runs / "digits-resnet18-adan_agr" / "seed1", history=[{"epoch": 1, "is_mean": None}]
    )
    spec = load_spec(str(spec_file))
    assert len(spec.groups) == 2  # three rows, two configs: rows share the runs
    table = aggregate(spec, plan_runs(spec, tmp_path / "runs"))
    cell = table.cells[("epoch 2", "Adan", "is_mean")]
    assert cell.summary.n == 2 and cell.summary.mean == pytest.approx(3.5)
    assert cell.summary.std == pytest.approx(math.sqrt(0.5))
    first = table.cells[("epoch 1", "Adan(AGR)", "is_mean")]
    assert first.values == {0: 2.2} and first.nan == [1]
    assert table.cells[("epoch 2", "Adan(AGR)", "is_mean")].absent == [1]
    assert table.cells[("epoch 3", "Adan", "is_mean")].absent == [0, 1]
    paired = table.paired[("epoch 2", "Adan(AGR)", "Adan", "is_mean")]
    assert paired.differences == {0: pytest.approx(0.5)}
    text = write_outputs(table, tmp_path / "results")[0].read_text()
    assert "| epoch 1 | 2.25 ± 0.35 (2) | 4.31 | 2.20 (1; 1 NaN) |" in text
    assert "no is_mean at epoch 3 recorded" in text


def test_a_scale_may_have_its_own_seeds(tmp_path):
    spec_file = tmp_path / "epochs.yaml"
    spec_file.write_text(EPOCH_SPEC.replace("  paper:\n", "  paper:\n    seeds: [3, 4, 5]\n"))
    assert load_spec(str(spec_file)).seeds == (3, 4, 5)
    assert load_spec(str(spec_file), seeds=[7]).seeds == (7,)  # --seeds still wins
    spec_file.write_text(EPOCH_SPEC)
    assert load_spec(str(spec_file)).seeds == (0, 1)


def test_a_running_run_is_listed_not_averaged(tmp_path):
    spec_file = tmp_path / "fixture.yaml"
    spec_file.write_text(SPEC)
    folder = tmp_path / "runs" / "fixture" / "digits-resnet18-adamw" / "seed0"
    write_run(folder, status="running", metrics={"top1": 10.0})
    spec = load_spec(str(spec_file), seeds=[0])
    table = aggregate(spec, plan_runs(spec, tmp_path / "runs"))
    cell = table.cells[("ResNet", "Base", "top1")]
    assert cell.summary.n == 0 and cell.not_done == {"running": [0]}


def test_cells_that_would_share_a_folder_are_refused(tmp_path):
    spec_file = tmp_path / "collide.yaml"
    spec_file.write_text(
        SPEC.replace("[optimizer=adamw]", "[optimizer=adamw_agr, optimizer.weight_decay=0.1]")
    )
    spec = load_spec(str(spec_file))
    with pytest.raises(SpecError, match=r"share the run folder.*experiment_name"):
        plan_runs(spec, tmp_path / "runs")


@pytest.mark.parametrize(
    "change, message",
    [
        (("select: final,", "select: last,"), "select='last'"),
        (("baseline: Base", "baseline: Nope"), "'Nope' is not a column"),
        (("[model=vit]", "[model=vit, seed=3]"), "seeds come from `seeds`"),
        (("paper: {AGR:", "paper: {Other:"), "'Other' is not a column"),
    ],
)
def test_bad_specs_name_the_file_and_the_field(tmp_path, change, message):
    spec_file = tmp_path / "bad.yaml"
    spec_file.write_text(SPEC.replace(*change))
    with pytest.raises(SpecError, match=message) as error:
        load_spec(str(spec_file))
    assert str(spec_file) in str(error.value)


CHANCE_SPEC = """
title: Chance and tiny differences
seeds: [0, 1, 2]
metrics:
  - {key: sop_acc, label: SOP accuracy (%), chance: 50.0, chance_basis: balanced labels}
  - {key: mlm_loss, label: MLM loss, higher_is_better: false, decimals: 3}
columns:
  - {name: Base, overrides: [optimizer=adamw]}
  - {name: AGR, overrides: [optimizer=adamw_agr]}
scales:
  paper:
    overrides: [experiment_name=chance, dataset=digits]
    rows:
      - {name: ResNet, overrides: [model=resnet18]}
"""


def test_chance_identical_and_tiny_differences_in_the_table(tmp_path):
    """SOP at chance and identical in both arms; MLM loss differs by ~1e-5 per seed: the
    table says so instead of printing +0.000 [+0.000, +0.000]."""
    spec_file = tmp_path / "chance.yaml"
    spec_file.write_text(CHANCE_SPEC)
    runs = tmp_path / "runs" / "chance"
    sop = [50.666666666666664, 50.666666666666664, 49.333333333333336]
    loss = [6.1363141319594305, 6.135636396741476, 6.139565406506258]
    tiny = [2.4024196158656252e-05, 1.2644313767573578e-05, 1.5594653646644474e-05]
    for seed in range(3):
        for opt, extra in (("adamw", 0.0), ("adamw_agr", tiny[seed])):
            write_run(
                runs / f"digits-resnet18-{opt}" / f"seed{seed}",
                metrics={"sop_acc": sop[seed], "mlm_loss": loss[seed] + extra},
            )
    spec = load_spec(str(spec_file))
    assert spec.metrics[0].chance == 50.0 and spec.metrics[1].chance is None
    table = aggregate(spec, plan_runs(spec, tmp_path / "runs"))
    md_path, csv_path, _ = write_outputs(table, tmp_path / "results")
    text = md_path.read_text()
    assert "Chance: 50% (balanced labels)." in text
    assert "| setting | Base | AGR | chance | AGR − Base |" in text
    assert (
        "| ResNet | 50.22 ± 0.77 (3) | 50.22 ± 0.77 (3) | 50.00 | 0 (identical in all 3 seeds) |"
        in (text)
    )
    # Per-seed differences 2.4e-5, 1.26e-5, 1.56e-5: mean 1.74e-5, t-interval [2.8e-6, 3.2e-5].
    assert (
        "| ResNet | 6.137 ± 0.002 (3) | 6.137 ± 0.002 (3) | +1.7e-05 [+2.8e-06, +3.2e-05] (3) |"
        in (text)
    )
    assert (
        "- SOP accuracy (%): chance is 50% (balanced labels). Every cell's 95% t-interval over "
        "seeds contains chance; every cell mean is within ±0.22 pp of it, every run within "
        "±0.67 pp: no cell is distinguishable from chance at this scale."
    ) in text

    # The CSV keeps exact numbers (repr round-trips), the cell's own t-interval and chance.
    rows = csv_rows(csv_path)
    agr_loss = rows[("mlm_loss", "ResNet", "AGR")]
    assert float(agr_loss["diff_mean"]) == pytest.approx(sum(tiny) / 3, rel=1e-9)
    assert float(agr_loss["diff_ci_low"]) > 0
    assert agr_loss["chance"] == ""
    base_sop = rows[("sop_acc", "ResNet", "Base")]
    assert base_sop["chance"] == "50.0"
    mean, sd = sum(sop) / 3, math.sqrt(sum((v - sum(sop) / 3) ** 2 for v in sop) / 2)
    assert float(base_sop["mean"]) == mean  # exact, not rounded
    assert float(base_sop["ci_low"]) == pytest.approx(mean - 4.302652729911275 * sd / math.sqrt(3))
    assert float(base_sop["ci_high"]) == pytest.approx(mean + 4.302652729911275 * sd / math.sqrt(3))
    assert rows[("sop_acc", "ResNet", "AGR")]["diff_values"] == "0:0.0 1:0.0 2:0.0"


def test_table3_spec_reports_sop_against_chance_and_mlm_accuracy():
    for scale in ("paper", "mini"):
        metrics = {m.key: m for m in load_spec("table3", scale).metrics}
        assert metrics["sop_acc"].chance == 50.0
        assert metrics["mlm_loss"].prediction_key == "mlm_acc"  # its model's MLM predictions
        assert load_spec("table3", scale).primary.metric == "sop_acc"
        mlm_acc = metrics["mlm_acc"]
        assert mlm_acc.label == "MLM accuracy (%), test split"
        assert mlm_acc.higher_is_better and mlm_acc.chance is None


@pytest.mark.parametrize(
    "change, message",
    [
        ("chance: fifty", "'fifty' is not a number"),
        ("decimals: -1", "decimals=-1"),
        ("chance_basis: x", "chance_basis without a chance level"),
    ],
)
def test_bad_metric_keys_are_refused(tmp_path, change, message):
    spec_file = tmp_path / "bad.yaml"
    spec_file.write_text(SPEC.replace("decimals: 2}", change + "}", 1))
    with pytest.raises(SpecError, match=message):
        load_spec(str(spec_file))


def test_a_constant_predictor_is_at_chance_even_when_its_interval_excludes_50(tmp_path):
    """Every run predicts one order for all 151 test pairs (73 swapped): 48.34% in each seed.
    The band [73/151, 78/151] comes from the runs' own prediction statistics, not the spec."""
    spec_file = tmp_path / "chance.yaml"
    spec_file.write_text(CHANCE_SPEC)
    runs = tmp_path / "runs" / "chance"
    stuck, majority = 100 * 73 / 151, 100 * 78 / 151
    for seed in range(3):
        for opt in ("adamw", "adamw_agr"):
            metrics = {"sop_acc": stuck, "mlm_loss": 6.0 + seed / 10, **sop_stats(1, 151)}
            write_run(runs / f"digits-resnet18-{opt}" / f"seed{seed}", metrics=metrics)
    spec = load_spec(str(spec_file))
    table = aggregate(spec, plan_runs(spec, tmp_path / "runs"))
    cell = table.cells[("ResNet", "Base", "sop_acc")]
    assert cell.chance_band == pytest.approx((stuck, majority))
    assert cell.summary.std == 0 and cell.collapsed == [0, 1, 2]
    md_path, csv_path, _ = write_outputs(table, tmp_path / "results")
    text = md_path.read_text()
    assert "exclude chance" not in text
    assert "scores between 48.34% and 51.66% (always the least or always the most" in text
    assert "Every run of every cell lies within that band" in text
    assert "48.34 ± 0 (3; 3 predict one class)" in text
    row = csv_rows(csv_path)[("sop_acc", "ResNet", "AGR")]
    assert float(row["chance_low"]) == pytest.approx(stuck)
    assert float(row["chance_high"]) == pytest.approx(majority)
    assert row["one_class_seeds"] == "0 1 2" and row["examples"] == "151.0"
    assert row["verdict"] == "not informative (both arms predict a single class in every run)"
    assert csv_rows(csv_path)[("mlm_loss", "ResNet", "AGR")]["chance_low"] == ""


def sop_stats(classes: int, examples: int = 151, swapped: int = 73) -> dict:
    """The prediction statistics a pre-training run records beside sop_acc."""
    return {
        "sop_acc_pred_classes": classes,
        "sop_acc_majority": 100 * max(swapped, examples - swapped) / examples,
        "sop_acc_minority": 100 * min(swapped, examples - swapped) / examples,
        "sop_acc_examples": examples,
    }


def test_verdicts_section_and_margin_checks(tmp_path):
    """Three seeds of +1e-5-ish MLM-loss differences against a 0.01 margin: equivalent; the
    margin and its reason are printed; a margin without a reason, or <= 0, is refused."""
    spec_file = tmp_path / "chance.yaml"
    with_margin = CHANCE_SPEC.replace(
        "higher_is_better: false, decimals: 3}",
        'higher_is_better: false, decimals: 3, margin: 0.01, margin_reason: "one percent"}',
    )
    spec_file.write_text(with_margin)
    runs = tmp_path / "runs" / "chance"
    loss = [6.1363, 6.1356, 6.1396]
    for seed in range(3):
        for opt, extra in (("adamw", 0.0), ("adamw_agr", 1e-5 * (seed + 1))):
            metrics = {"sop_acc": 50.0 + seed, "mlm_loss": loss[seed] + extra}
            write_run(runs / f"digits-resnet18-{opt}" / f"seed{seed}", metrics=metrics)
    spec = load_spec(str(spec_file))
    table = aggregate(spec, plan_runs(spec, tmp_path / "runs"))
    verdict = table.paired[("ResNet", "AGR", "Base", "mlm_loss")].verdict
    assert verdict.text == "equivalent (±0.01)"
    no_margin = table.paired[("ResNet", "AGR", "Base", "sop_acc")].verdict
    assert no_margin.text == "inconclusive (no margin declared)"
    md_path, csv_path, _ = write_outputs(table, tmp_path / "results")
    text = md_path.read_text()
    assert "## Verdicts" in text
    assert "Margins, fixed in the spec before the runs: `mlm_loss` ±0.01: one percent." in text
    assert csv_rows(csv_path)[("mlm_loss", "ResNet", "AGR")]["verdict"] == "equivalent (±0.01)"
    for bad, message in (
        (', margin_reason: "one percent"', "margin and margin_reason go together"),
        ("margin: 0.01", "a margin is a number > 0"),
    ):
        spec_file.write_text(with_margin.replace(bad, "" if "reason" in bad else "margin: 0"))
        with pytest.raises(SpecError, match=message):
            load_spec(str(spec_file))


def test_a_column_compared_with_two_baselines_gets_a_csv_line_for_each(tmp_path):
    """The ablation compares AGR with AdamW and with its permuted null control."""
    spec_file = tmp_path / "two.yaml"
    spec_file.write_text(
        """
title: Two baselines
seeds: [0, 1]
metrics: [{key: top1, label: Top-1}]
columns:
  - {name: Base, overrides: [optimizer=adamw]}
  - {name: AGR, overrides: [optimizer=adamw_agr]}
  - {name: Control, overrides: [optimizer=sgd_agr]}
pairs: [[AGR, Base], [Control, Base], [AGR, Control]]
scales:
  paper:
    overrides: [experiment_name=two, dataset=digits]
    rows: [{name: ResNet, overrides: [model=resnet18]}]
"""
    )
    runs = tmp_path / "runs" / "two"
    top1 = {"adamw": [50.0, 52.0], "adamw_agr": [53.0, 56.0], "sgd_agr": [51.0, 51.5]}
    for opt, values in top1.items():
        for seed, value in enumerate(values):
            write_run(runs / f"digits-resnet18-{opt}" / f"seed{seed}", metrics={"top1": value})
    spec = load_spec(str(spec_file))
    table = aggregate(spec, plan_runs(spec, tmp_path / "runs"))
    csv_path = next(p for p in write_outputs(table, tmp_path / "results") if p.suffix == ".csv")
    lines = list(csv.DictReader(csv_path.open()))
    got = {(line["column"], line["diff_vs"]): line["diff_values"] for line in lines}
    assert got == {
        ("Base", ""): "",
        ("AGR", "Base"): "0:3.0 1:4.0",
        ("AGR", "Control"): "0:2.0 1:4.5",
        ("Control", "Base"): "0:1.0 1:-0.5",
    }
    text = (tmp_path / "results" / "two.md").read_text()
    assert "AGR − Control" in text and "AGR − Base" in text


def test_the_committed_paired_intervals_are_scipys_t_intervals():
    """Every paired difference in the committed mini CSVs: its 95% interval recomputed with
    scipy from the per-seed differences the CSV lists."""
    from scipy.stats import t

    from agr_suite.report.spec import ROOT

    paths = sorted((ROOT / "results" / "mini").glob("*.csv"))
    assert paths, "no committed mini tables"
    for path in paths:
        with path.open(newline="") as handle:
            lines = [row for row in csv.DictReader(handle) if row["diff_vs"]]
        for row in lines:
            diffs = [float(item.split(":")[1]) for item in row["diff_values"].split()]
            if len(diffs) < 2:
                continue
            mean = sum(diffs) / len(diffs)
            sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1))
            if sd == 0:
                low = high = mean
            else:
                low, high = t.interval(0.95, len(diffs) - 1, loc=mean, scale=sd / len(diffs) ** 0.5)
            assert float(row["diff_ci_low"]) == pytest.approx(low, rel=1e-9, abs=1e-15)
            assert float(row["diff_ci_high"]) == pytest.approx(high, rel=1e-9, abs=1e-15)
