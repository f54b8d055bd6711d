"""Tables that cannot mislead: degenerate comparisons are `not informative`, a zero sd never
becomes certainty, time to target, margins with their history, the primary endpoint and its
plan. Run folders are written by hand in the engine's format; every expected number comes
from the fixture's own arithmetic or scipy, not from the code under test."""

import json
import math
from pathlib import Path

import pytest
from scipy import stats

from agr_suite.report.outputs import write_outputs
from agr_suite.report.run_folders import epochs_to_target, evaluation_interval
from agr_suite.report.spec import SpecError, load_spec, plan_runs
from agr_suite.report.tables import aggregate

SPEC = """
title: Informative or not
seeds: [0, 1, 2, 3, 4]
metrics:
  - key: top1
    label: Top-1 (%)
    margin: 0.5
    margin_reason: half a point
    time_to_target: {target: 90.0, target_reason: a level all reach, margin: 1,
                     margin_reason: one epoch}
  - {key: loss, label: Loss, higher_is_better: false, decimals: 3, collapse_key: top1}
columns:
  - {name: Base, overrides: [optimizer=adamw]}
  - {name: AGR, overrides: [optimizer=adamw_agr]}
primary: {metric: top1, rows: all, reason: the headline}
scales:
  paper:
    overrides: [experiment_name=informative, dataset=digits]
    rows:
      - {name: ResNet, overrides: [model=resnet18]}
"""

DIGITS = 360  # test examples: one is 100/360 = 0.278 pp


def stats_of(classes: int, examples: int = DIGITS) -> dict:
    """The prediction statistics a classification run records beside top1 (10 classes of
    36 examples each: a model ignoring its input scores 10%)."""
    return {
        "top1_pred_classes": classes,
        "top1_majority": 10.0,
        "top1_minority": 10.0,
        "top1_examples": examples,
    }


def write_run(folder: Path, top1: float, curve=(), classes: int = 10, loss: float = 0.5):
    folder.mkdir(parents=True, exist_ok=True)
    metrics = {"top1": top1, "loss": loss, **stats_of(classes)}
    results = {"status": "completed", "metrics": metrics, "best": metrics, "seed": 0}
    (folder / "results.json").write_text(json.dumps(results))
    history = [{"epoch": i + 1, "top1": v} for i, v in enumerate(curve)]
    (folder / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))


def table_of(tmp_path, arms: dict[str, list[dict]], spec_text: str = SPEC):
    """Write the runs (arm -> one kwargs dict per seed) and aggregate the table."""
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(spec_text)
    for optimizer, runs in arms.items():
        for seed, kwargs in enumerate(runs):
            write_run(tmp_path / "runs" / "informative" / f"digits-resnet18-{optimizer}" /
                      f"seed{seed}", **kwargs)  # fmt: skip
    spec = load_spec(str(spec_file))
    return aggregate(spec, plan_runs(spec, tmp_path / "runs"))


def verdict(table, key="top1"):
    return table.paired[("ResNet", "AGR", "Base", key)].verdict


def test_an_input_independent_predictor_is_not_informative_on_every_metric(tmp_path):
    """Both arms predict one class in every run: top1 and the loss (whose collapse_key is
    top1) are not informative, although the losses differ from seed to seed."""
    runs = [{"top1": 10.0, "classes": 1, "loss": 2.3 + s / 100} for s in range(5)]
    table = table_of(tmp_path, {"adamw": runs, "adamw_agr": runs})
    for key in ("top1", "loss"):
        assert verdict(table, key).text == (
            "not informative (both arms predict a single class in every run)"
        )


def test_values_inside_the_band_of_an_input_ignoring_model_are_not_informative(tmp_path):
    """Predictions of several classes, but every run scores exactly the 10% that a model
    ignoring its input scores."""
    runs = [{"top1": 10.0, "classes": 3} for _ in range(5)]
    table = table_of(tmp_path, {"adamw": runs, "adamw_agr": runs})
    assert verdict(table).text == (
        "not informative (every run of both arms within 10.00–10.00%, what a model ignoring "
        "its input scores)"
    )


def test_constant_arms_are_not_informative(tmp_path):
    runs = [{"top1": 97.5}] * 5
    shifted = [{"top1": 97.5 + 100 / DIGITS}] * 5
    table = table_of(tmp_path, {"adamw": runs, "adamw_agr": shifted})
    assert verdict(table).text == "not informative (both arms constant across seeds)"


def test_one_arm_collapsing_is_a_finding_not_a_degenerate_comparison(tmp_path):
    base = [{"top1": 97.0 + s / 10} for s in range(5)]
    broken = [{"top1": 10.0, "classes": 1} for _ in range(5)]
    table = table_of(tmp_path, {"adamw": base, "adamw_agr": broken})
    assert verdict(table).text == "AGR worse"


def test_one_digit_differences_get_the_resolution_as_their_sd_floor(tmp_path):
    """Each of five seeds is one test digit better: the paired sd is 0, floored at one
    digit (100/360 pp, from top1_examples), so p is the t-test's at that sd."""
    one = 100 / DIGITS
    base = [{"top1": 95.0 + s * one} for s in range(5)]
    agr = [{"top1": 95.0 + (s + 1) * one} for s in range(5)]
    table = table_of(tmp_path, {"adamw": base, "adamw_agr": agr})
    result = verdict(table)
    assert table.cells[("ResNet", "AGR", "top1")].resolution == pytest.approx(one)
    assert result.method.startswith("t (sd ≥ 0.28")
    want = 2 * stats.t.sf(one / (one / math.sqrt(5)), 4)
    assert result.p_difference == pytest.approx(want, rel=1e-9)  # one comparison in primary
    assert 0 < result.p_difference < 1
    assert result.text.startswith("inconclusive")


def test_epochs_to_target_by_hand():
    history = [{"epoch": e, "top1": v} for e, v in ((1, 40.0), (2, 89.9), (3, 90.0), (4, 97))]
    assert epochs_to_target(history, "top1", 90.0) == (3.0, True)
    # never reached: the last evaluation plus one interval, a lower bound
    assert epochs_to_target(history, "top1", 99.0) == (5.0, False)
    every_other = [{"epoch": e, "top1": 50.0} for e in (2, 4, 6)]
    assert evaluation_interval(every_other, "top1") == 2.0
    assert epochs_to_target(every_other, "top1", 99.0) == (8.0, False)
    assert epochs_to_target([], "top1", 90.0) is None


def test_time_to_target_cells_differences_and_verdict(tmp_path):
    """AdamW reaches 90% at epoch 2 or 3, AGR one epoch later in every seed but one, and
    seed 4 of AGR never does: its value is the lower bound 6 (5 evaluations + 1)."""
    base_curves = [(50, 91, 95, 96, 97), (50, 80, 92, 96, 97), (50, 92, 95, 96, 97),
                   (50, 85, 93, 96, 97), (50, 91, 94, 96, 97)]  # fmt: skip
    agr_curves = [(50, 80, 91, 96, 97), (50, 80, 85, 96, 97), (50, 85, 92, 96, 97),
                  (50, 85, 88, 96, 97), (50, 60, 70, 80, 85)]  # fmt: skip
    base = [{"top1": c[-1], "curve": c} for c in base_curves]
    agr = [{"top1": c[-1], "curve": c} for c in agr_curves]
    table = table_of(tmp_path, {"adamw": base, "adamw_agr": agr})
    key = "top1_epochs_to_target"
    assert table.cells[("ResNet", "Base", key)].values == {0: 2, 1: 3, 2: 2, 3: 3, 4: 2}
    cell = table.cells[("ResNet", "AGR", key)]
    assert cell.values == {0: 3, 1: 4, 2: 3, 3: 4, 4: 6} and cell.not_reached == [4]
    assert cell.resolution == 1.0  # one evaluation interval
    paired = table.paired[("ResNet", "AGR", "Base", key)]
    assert list(paired.differences.values()) == [1, 1, 1, 1, 4]
    assert paired.family == "secondary" and paired.verdict.family_size == 2
    md, csv_path, _ = write_outputs(table, tmp_path / "results")
    text = md.read_text()
    assert "## Epochs to target, Top-1 (%)" in text
    assert "4.0 ± 1.2 (5; 1 not reached)" in text
    assert "reaches its target (90; a level all reach)" in text


def test_a_row_may_set_its_own_target_and_every_row_needs_one(tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(SPEC.replace("- {name: ResNet, overrides: [model=resnet18]}",
                                      "- {name: ResNet, overrides: [model=resnet18], "
                                      "targets: {top1: 95.0}}"))  # fmt: skip
    spec = load_spec(str(spec_file))
    metric = next(m for m in spec.metrics if m.time_to_target)
    assert spec.rows[0].target(metric) == 95.0
    spec_file.write_text(SPEC.replace("target: 90.0, ", ""))
    with pytest.raises(SpecError, match="no time-to-target target for top1"):
        load_spec(str(spec_file))


MARGIN_HISTORY = """
    metrics:
      top1:
        margin_history:
          - {margin: 1.0, from: 2026-12-01, until: 2026-12-03, reason: chosen after a run}
        paired_sd: 0.6
        paired_sd_reason: measured before
"""


def test_the_margin_its_history_the_endpoint_and_the_plan_are_printed(tmp_path):
    spec_text = SPEC.replace("    overrides: [experiment_name", MARGIN_HISTORY.lstrip("\n")
                             + "    overrides: [experiment_name")  # fmt: skip
    runs = [{"top1": 97.0 + s / 10} for s in range(5)]
    table = table_of(tmp_path, {"adamw": runs, "adamw_agr": runs}, spec_text)
    text = write_outputs(table, tmp_path / "results")[0].read_text()
    assert "Margins, fixed in the spec before the runs: `top1` ±0.5: half a point" in text
    assert "Earlier margins at this scale: `top1` ±1 from 2026-12-01 until 2026-12-03 " in text
    assert "Primary endpoint: `top1` on every row (1 comparison; the headline)" in text
    # one primary comparison: planned at alpha/1; 0.5 at sd 0.6 with 80% power
    n = 3
    while True:
        crit, shift = stats.t.ppf(0.975, n - 1), 0.5 / (0.6 / math.sqrt(n))
        if stats.nct.sf(crit, n - 1, shift) + stats.nct.cdf(-crit, n - 1, shift) >= 0.8:
            break
        n += 1
    assert f"`top1` (primary: 1 comparison, planned at alpha/1 = 0.05) needs {n} seeds" in text
    for bad in ("{margin: 1.0, from: 2026-12-01, reason: x}", "{margin: 0, from: a, until: b, "
                "reason: c}"):  # fmt: skip
        (tmp_path / "bad.yaml").write_text(spec_text.replace(
            "{margin: 1.0, from: 2026-12-01, until: 2026-12-03, reason: chosen after a run}", bad
        ))  # fmt: skip
        with pytest.raises(SpecError, match="margin"):
            load_spec(str(tmp_path / "bad.yaml"))


@pytest.mark.parametrize("table", ["table1", "table2", "table3", "ablation_agr", "neighbours"])
def test_every_table_declares_its_primary_endpoint(table):
    for scale in ("paper", "mini"):
        spec = load_spec(table, scale)
        assert not spec.primary.reason.startswith("not declared"), (table, scale)


def test_the_mini_ablation_is_judged_at_half_a_point_with_its_old_margin_kept():
    spec = load_spec("ablation_agr", "mini")
    top1 = next(m for m in spec.metrics if m.key == "top1")
    assert top1.margin == 0.5
    assert [c.margin for c in top1.margin_history] == [0.5, 1.0]
    assert ("AdamW lr/2", "AdamW") in spec.pairs  # the positive control


def test_the_dose_per_parameter_kind_is_averaged_over_runs(tmp_path):
    """results.json agr.removed_fraction_by_kind of three runs: norm 0.1, 0.2, 0.6 -> 0.3."""
    runs = [{"top1": 97.0 + s / 10} for s in range(5)]
    table = table_of(tmp_path, {"adamw": runs, "adamw_agr": runs})
    for seed, norm in enumerate((0.1, 0.2, 0.6)):
        path = tmp_path / "runs" / "informative" / "digits-resnet18-adamw_agr" / f"seed{seed}"
        results = json.loads((path / "results.json").read_text())
        results["agr"] = {
            "removed_fraction_mean": 0.01,
            "removed_fraction_by_kind": {"norm": {"mean": norm, "steps": 3}},
            "update_change": {"bias": {"median": 0.5}},
        }
        (path / "results.json").write_text(json.dumps(results))
    table = aggregate(table.spec, plan_runs(table.spec, tmp_path / "runs"))
    text = write_outputs(table, tmp_path / "results")[0].read_text()
    assert "| ResNet / AGR | 0.01 ± 0 (3) | — | 0.3 | — | — | — |" in text
    assert "| ResNet / AGR | — | — | 0.5 | — | — |" in text
