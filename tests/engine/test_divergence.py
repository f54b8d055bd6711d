"""Diverged runs: a NaN/inf training loss or evaluation metric, a training loss past
trainer.divergence_factor x the first loss, or NaN weights end the run as `failed` with
`diverged at epoch E step S`, keep the last good checkpoint, and are listed, never averaged,
by the tables."""

from __future__ import annotations

import csv
import json
import math
import re

import pytest
import torch
from helpers import FAST, RUN_PY_RUNNERS, TINY_MODELS, resolved, run_folder_of, run_torchrun

from agr_suite.engine import DivergedError, train
from agr_suite.engine.checkpoint import load
from agr_suite.registry import build_task
from agr_suite.report.outputs import write_outputs
from agr_suite.report.spec import load_spec, plan_runs
from agr_suite.report.tables import aggregate

# Two optimizer steps per epoch (FAST: limit_batches=2, accumulate 1), a constant lr.
TINY = [*FAST, "model=vit", *TINY_MODELS["vit"]]
STEPS_PER_EPOCH = 2


@pytest.mark.parametrize("run", RUN_PY_RUNNERS)
def test_cli_exploding_lr_fails_the_run_with_the_epoch_and_step(tmp_path, run):
    runs = tmp_path / "runs"
    args = [*TINY, "trainer.epochs=2", "optimizer.lr=1e6", f"paths.runs={runs}"]
    result = run(args, tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr + result.stdout
    assert re.search(r"run failed: diverged at epoch 1 step \d+: ", result.stderr)
    folder = run_folder_of(args)
    results = json.loads((folder / "results.json").read_text())
    assert results["status"] == "failed" and results["epochs_completed"] == 0
    assert results["error"].startswith("diverged at epoch 1 step ")
    assert not (folder / "checkpoints").exists()  # no epoch finished: nothing to keep


def _nan_loss(parts, calls):
    real = parts.loss

    def loss(model, batch):
        calls["batches"] += 1
        value = real(model, batch)
        return value * float("nan") if calls["batches"] == 4 else value  # epoch 2, batch 2

    parts.loss = loss


def _exploding_loss(parts, calls):
    real = parts.loss

    def loss(model, batch):
        calls["batches"] += 1
        value = real(model, batch)
        return value * 1e4 if calls["batches"] == 3 else value  # epoch 2, batch 1

    parts.loss = loss


def _nan_metric(parts, calls):
    real = parts.make_evaluator

    def make_evaluator(device):
        evaluator = real(device)
        compute = evaluator.compute

        def computed():
            calls["evaluations"] += 1
            metrics = compute()
            return {**metrics, "loss": math.nan} if calls["evaluations"] == 2 else metrics

        evaluator.compute = computed
        return evaluator

    parts.make_evaluator = make_evaluator


CAUSES = {
    # cause: (patch, the step in the message, what the message says: a regular expression)
    "nan_loss": (_nan_loss, STEPS_PER_EPOCH + 2, "the training loss is nan"),
    "exploding_loss": (
        _exploding_loss,
        STEPS_PER_EPOCH + 1,
        r"the training loss \S+ exceeds trainer\.divergence_factor=100 x the run's first loss",
    ),
    "nan_metric": (_nan_metric, 2 * STEPS_PER_EPOCH, "evaluation metric not finite: loss = nan"),
}


@pytest.mark.parametrize("cause", sorted(CAUSES))
def test_a_diverged_run_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, cause):
    patch, step, what = CAUSES[cause]
    # The independent reference: the same run stopped after one epoch, its weights as they are.
    reference = train(resolved([*TINY, "trainer.epochs=1"]), tmp_path / "one_epoch", build_task)
    assert reference["status"] == "completed"
    good = load(tmp_path / "one_epoch" / "checkpoints" / "last.pt")["model"]

    calls = {"batches": 0, "evaluations": 0}

    def build(cfg):
        parts = build_task(cfg)
        patch(parts, calls)
        return parts

    folder = tmp_path / "diverging"
    with pytest.raises(DivergedError, match=f"^diverged at epoch 2 step {step}: {what}"):
        train(resolved([*TINY, "trainer.epochs=3"]), folder, build)
    results = json.loads((folder / "results.json").read_text())
    assert results["status"] == "failed" and results["epochs_completed"] == 1
    assert re.match(f"diverged at epoch 2 step {step}: {what}", results["error"])
    assert "checkpoints/last.pt of epoch 1 is kept" in results["error"]
    history = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1]
    kept = load(folder / "checkpoints" / "last.pt")
    assert kept["epoch"] == 1 and kept["global_step"] == STEPS_PER_EPOCH
    assert kept["model"].keys() == good.keys()
    assert all(torch.equal(kept["model"][k], good[k]) for k in good)


def test_weights_broken_by_an_epochs_last_step_are_never_checkpointed(tmp_path, monkeypatch):
    """Every loss finite, no evaluation at epoch 2: the NaN that epoch 2's last optimizer step
    writes into the weights (from a NaN gradient) is caught before epoch 2's checkpoint."""
    calls = {"batches": 0}

    def build(cfg):
        parts = build_task(cfg)
        real_loss = parts.loss

        def loss(model, batch):
            calls["batches"] += 1
            return real_loss(model, batch)

        def poison(grad):  # epoch 2's last batch: a NaN gradient under a finite loss
            return grad * float("nan") if calls["batches"] == 2 * STEPS_PER_EPOCH else grad

        next(parts.model.parameters()).register_hook(poison)
        parts.loss = loss
        return parts

    cfg = resolved([*TINY, "trainer.epochs=3", "trainer.eval_every=3"])
    with pytest.raises(
        DivergedError,
        match=f"^diverged at epoch 2 step {2 * STEPS_PER_EPOCH}: the weights or the optimizer",
    ):
        train(cfg, tmp_path, build)
    kept = load(tmp_path / "checkpoints" / "last.pt")
    assert kept["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())


SPEC = """
title: Divergence table
seeds: [0]
metrics:
  - {key: top1, label: Top-1 (%), select: final, higher_is_better: true, decimals: 2}
columns:
  - {name: AdamW, overrides: [optimizer=adamw]}
  - {name: AGR lr 1e6, overrides: [optimizer=adamw_agr, optimizer.lr=1e6]}
baseline: AdamW
paper_source: none
scales:
  paper:
    overrides: [experiment_name=divergence, trainer.epochs=1, OVERRIDES]
    rows:
      - {name: ViT, overrides: []}
"""


def test_the_table_lists_a_diverged_run_with_its_reason_and_never_averages_it(tmp_path):
    spec_file = tmp_path / "divergence.yaml"
    spec_file.write_text(SPEC.replace("OVERRIDES", ", ".join(TINY)))
    spec = load_spec(str(spec_file))
    planned = plan_runs(spec, tmp_path / "runs")
    outcomes = {}
    for run in planned:
        try:
            outcomes[run.group] = train(resolved(list(run.overrides)), run.folder, build_task)[
                "status"
            ]
        except DivergedError:
            outcomes[run.group] = "diverged"
    assert sorted(outcomes.values()) == ["completed", "diverged"]
    table = aggregate(spec, planned)
    markdown, csv_path = write_outputs(table, tmp_path / "results")[:2]
    text = markdown.read_text()
    section = text[text.index("## Runs not in the table") :]
    listed = r"- failed: AGR lr 1e6, seed 0 `[^`]+`: diverged at epoch 1 step \d+: "
    assert re.search(listed, section)
    with csv_path.open() as handle:
        rows = {r["column"]: r for r in csv.DictReader(handle)}
    assert rows["AGR lr 1e6"]["n"] == "0" and rows["AGR lr 1e6"]["failed_seeds"] == "0"
    assert rows["AdamW"]["n"] == "1"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_every_ddp_rank_stops_at_the_same_step(tmp_path):
    """Two processes: the loss every rank checks is the mean over the ranks, so both stop at
    the same step and rank 0 writes the failure (no rank is left waiting in an all-reduce)."""
    runs = tmp_path / "runs"
    args = [*TINY, "trainer.epochs=2", "trainer.limit_batches=4", "optimizer.lr=1e6"]
    result = run_torchrun([*args, f"paths.runs={runs}"], tmp_path)
    assert result.returncode == 1
    stops = re.findall(r"run failed: (diverged at epoch \d+ step \d+)", result.stderr)
    assert len(stops) == 2 and stops[0] == stops[1]  # one line per rank, the same step
    folder = run_folder_of([*args, f"paths.runs={runs}"])
    results = json.loads((folder / "results.json").read_text())
    assert results["status"] == "failed" and results["error"].startswith(stops[0] + ":")
    assert results["environment"]["world_size"] == 2


def test_losses_are_read_on_the_logging_steps_and_at_the_end_of_each_epoch_only(
    tmp_path, monkeypatch
):
    """No host sync per step: with log_every=3 and 7 steps an epoch, the losses are read at
    steps 3, 6 and the epoch's end (7): three reads of 3, 3 and 1 losses."""
    from helpers import tiny_run

    from agr_suite.engine.divergence import DivergenceGuard

    reads = []
    original = DivergenceGuard.check_losses

    def counting(self, epoch, unchecked):
        reads.append((epoch, [step for _, step in unchecked]))
        return original(self, epoch, unchecked)

    monkeypatch.setattr(DivergenceGuard, "check_losses", counting)
    results, _ = tiny_run(
        tmp_path / "run", ["trainer.limit_batches=7", "trainer.log_every=3", "trainer.epochs=1"]
    )
    assert results["status"] == "completed"
    assert reads == [(0, [1, 2, 3]), (0, [4, 5, 6]), (0, [7])]
