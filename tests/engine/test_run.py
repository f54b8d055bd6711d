"""The launcher and the engine end to end: configs compose, runs leave complete run folders,
resume is exact, DDP evaluates every example once, bad input stops cleanly."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch
import yaml
from helpers import (
    CONFIGS,
    FAST,
    ROOT,
    RUN_PY_RUNNERS,
    TINY_MODELS,
    compose_cfg,
    resolved,
    run_cli,
    run_folder_of,
    run_in_process,
    run_torchrun,
    tree_digest,
)
from omegaconf import OmegaConf, open_dict

from agr_suite.core.config import ConfigError, validate
from agr_suite.engine import CheckpointError, train
from agr_suite.engine.checkpoint import load
from agr_suite.registry import build_task

GROUPS = ["dataset", "model", "optimizer", "scheduler", "logger", "launcher", "experiment"]


def choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


# ------------------------------------------------------------------------- composition


def test_default_is_the_papers_headline_setting():
    cfg = resolved([])
    assert (cfg.dataset.name, cfg.model.name, cfg.optimizer.name) == (
        "cifar100",
        "resnet18",
        "adamw_agr",
    )
    validate(cfg)


@pytest.mark.parametrize("group", GROUPS)
def test_every_choice_of_every_group_composes_and_validates(group):
    for choice in choices(group):
        cfg = compose_cfg([f"{group}={choice}"], hydra_cfg=True)  # the Hydra part composes too
        with open_dict(cfg):
            del cfg["hydra"]  # the rest is what run.py validates
        validate(OmegaConf.to_container(cfg, resolve=True))


def covering_pairs(*groups: list[str]) -> list[tuple[str, ...]]:
    """Combinations, one choice of each group, such that every two choices of two different
    groups appear together in at least one (greedy: each next combination covers the most
    pairs not yet covered)."""
    combos = list(itertools.product(*groups))

    def pairs(combo):
        return {(i, combo[i], j, combo[j]) for i, j in itertools.combinations(range(len(combo)), 2)}

    left = set().union(*(pairs(c) for c in combos))
    chosen = []
    while left:
        best = max(combos, key=lambda c: len(pairs(c) & left))
        chosen.append(best)
        left -= pairs(best)
    return chosen


def test_covering_pairs_covers_every_pair_in_fewer_combinations():
    groups = [choices("dataset"), choices("model"), choices("optimizer")]
    chosen = covering_pairs(*groups)
    for (i, a), (j, b) in itertools.combinations(enumerate(groups), 2):
        assert {(x, y) for x in a for y in b} == {(c[i], c[j]) for c in chosen}
    assert len(chosen) < len(list(itertools.product(*groups))) / 3


@pytest.mark.slow  # make test-slow; kept out of make test's time budget
def test_every_pair_of_dataset_model_optimizer_choices_composes():
    """Every dataset with every model, every model with every optimizer and every dataset
    with every optimizer (all three at once: make test-all, below)."""
    for dataset, model, optimizer in covering_pairs(
        choices("dataset"), choices("model"), choices("optimizer")
    ):
        validate(resolved([f"dataset={dataset}", f"model={model}", f"optimizer={optimizer}"]))


@pytest.mark.slow
def test_every_dataset_model_optimizer_combination_composes():
    for dataset, model, optimizer in itertools.product(
        choices("dataset"), choices("model"), choices("optimizer")
    ):
        validate(resolved([f"dataset={dataset}", f"model={model}", f"optimizer={optimizer}"]))


def test_agr_variants_only_switch_agr_on():
    for base in ("adamw", "adan", "sgd"):
        plain = resolved([f"optimizer={base}"]).optimizer
        with_agr = resolved([f"optimizer={base}_agr"]).optimizer
        assert replace(with_agr, name=plain.name) == plain
        assert with_agr.name == f"{base}_agr"


def test_slurm_launcher_selects_submitit():
    cfg = compose_cfg(["launcher=slurm"], hydra_cfg=True)
    assert "submitit" in cfg.hydra.launcher._target_.lower()
    assert cfg.hydra.launcher.max_num_timeout > 0


@pytest.mark.parametrize(
    "override, key",
    [
        ("trainer.epochs=0", "trainer.epochs"),
        ("trainer.batch_size=0", "trainer.batch_size"),
        ("optimizer.lr=0", "optimizer.lr"),
        ("optimizer.lr=-1e-3", "optimizer.lr"),
        ("trainer.epochs=abc", "trainer.epochs"),
        ("trainer.precision=fp8", "trainer.precision"),
        ("optimizer.betas=[0.9,1.5]", "optimizer.betas"),
        ("optimizer.agr_strength=-1", "optimizer.agr_strength"),
        ("optimizer.agr_permuted=maybe", "optimizer.agr_permuted"),
        ("optimizer=sgd optimizer.momentum=1.0", "optimizer.momentum"),
        ("model=ddpm_small metrics.sample_from=best", "metrics.sample_from"),
        ("model=ddpm_small metrics.num_samples=1", "metrics.num_samples"),
        ("model=ddpm_small trainer.eval_at=[0]", "trainer.eval_at"),
        ("model=ddpm_small model.ema_decay=1.5", "model.ema_decay"),
        ("model=albert_tiny dataset=pydoc dataset.mask_prob=0", "dataset.mask_prob"),
        ("model=albert_tiny dataset=pydoc dataset.mask_token_fraction=0.95", "token_fraction"),
        ("model=albert_tiny dataset=pydoc model.num_attention_heads=3", "model.hidden_size"),
    ],
)
def test_validation_names_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(resolved(override.split()))


# ------------------------------------------------------------------------- end-to-end runs


@pytest.mark.parametrize("model", sorted(TINY_MODELS))
def test_end_to_end_run_per_model_family(tmp_path, model, capsys):
    cfg = resolved([*FAST, f"model={model}", *TINY_MODELS[model], "trainer.epochs=1"])
    results = train(cfg, tmp_path, build_task)
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("epoch 1/1")]
    assert " top1 " in line and "top1_" not in line  # the statistics stay off the progress line
    assert results["status"] == "completed"
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["status"] == "completed" and on_disk["epochs_completed"] == 1
    statistics = {
        "top1_examples",
        "top1_pred_classes",
        "top1_pred_entropy",
        "top1_majority",
        "top1_minority",
        "top1_label_entropy",
    }
    assert set(on_disk["metrics"]) == {"top1", "top5", "loss", *statistics}
    assert 0 <= on_disk["metrics"]["top1"] <= on_disk["metrics"]["top5"] <= 100
    assert on_disk["metrics"]["top1_examples"] == 2 * 16  # limit_batches=2 of batch 16
    assert set(on_disk["best"]) >= statistics
    assert on_disk["info"]["params"] > 0 and on_disk["environment"]["world_size"] == 1
    assert on_disk["agr"]["samples"] >= 1 and 0 < on_disk["agr"]["removed_fraction_mean"] < 1
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1] and history[0]["step"] == 2
    assert set(history[0]) >= statistics
    state = load(tmp_path / "checkpoints" / "last.pt")
    assert state["epoch"] == 1 and state["optimizer"]["agr"]["steps"] == 2
    assert (tmp_path / "checkpoints" / "best.pt").exists()


def test_accumulation_and_clip_count_optimizer_steps(tmp_path):
    cfg = resolved(
        [
            *FAST,
            "model=vit",
            *TINY_MODELS["vit"],
            "trainer.epochs=1",
            "trainer.limit_batches=4",
            "trainer.accumulate=2",
            "trainer.grad_clip=1.0",
            "optimizer.agr_until_epoch=0.5",
        ]
    )
    train(cfg, tmp_path, build_task)
    state = load(tmp_path / "checkpoints" / "last.pt")
    handle_state = state["optimizer"]["agr"]
    assert state["global_step"] == 2 and handle_state["steps"] == 2
    assert handle_state["until_step"] == 1  # 0.5 epoch of 2 optimizer steps


@pytest.mark.slow  # make test-slow; kept out of make test's time budget
def test_resume_after_a_killed_process_matches_an_uninterrupted_run(tmp_path):
    args = [
        *FAST,
        "trainer.epochs=3",
        "trainer.limit_batches=3",
        "model=vit",
        *TINY_MODELS["vit"],
        "experiment_name=resume",
    ]
    # The uninterrupted reference runs in this process (run.py's main, no start-up cost); the
    # killed and the resumed runs are real `python run.py` processes.
    straight = run_in_process([*args, f"paths.runs={tmp_path / 'a'}"], cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr
    runs_b = tmp_path / "b"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), *args, f"paths.runs={runs_b}"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    history = run_folder_of([*args, f"paths.runs={runs_b}"]) / "history.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if (history.parent / "checkpoints" / "last.pt").exists():
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed = json.loads(history.with_name("results.json").read_text())
    assert killed["status"] == "running" and killed["epochs_completed"] < 3  # really cut short
    resumed = run_cli([*args, f"paths.runs={runs_b}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed after epoch" in resumed.stdout
    result_a = json.loads(
        (run_folder_of([*args, f"paths.runs={tmp_path / 'a'}"]) / "results.json").read_text()
    )
    result_b = json.loads(history.with_name("results.json").read_text())
    assert result_b["status"] == "completed"
    assert result_a["metrics"] == result_b["metrics"]
    # the AGR diagnostics (removed fraction in all and by kind, update change) carry through
    assert result_b["agr"]["removed_fraction_by_kind"]["conv_linear"]["steps"] > 0
    assert result_a["agr"] == result_b["agr"]
    assert [json.loads(x)["epoch"] for x in history.read_text().splitlines()] == [1, 2, 3]


# ------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("run", RUN_PY_RUNNERS)
def test_bad_values_exit_non_zero_and_leave_a_finished_run_untouched(tmp_path, run):
    args = [*FAST, "trainer.epochs=1", f"paths.runs={tmp_path}", "model=vit", *TINY_MODELS["vit"]]
    first = run(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    folder = run_folder_of(args)
    before = tree_digest(folder)

    again = run(args, cwd=tmp_path)
    assert again.returncode == 0 and "already completed" in again.stdout

    bad = run([*args, "trainer.batch_size=0"], cwd=tmp_path)
    assert bad.returncode != 0 and "trainer.batch_size" in bad.stderr

    typo = run([*args, "model=vitt"], cwd=tmp_path)
    assert typo.returncode != 0 and "vit" in typo.stderr and "convnext" in typo.stderr

    unknown = run([*args, "trainer.epochz=3"], cwd=tmp_path)
    assert unknown.returncode != 0 and "epochz" in unknown.stderr
    assert tree_digest(folder) == before

    replaced = run([*args, "overwrite=true"], cwd=tmp_path)
    assert replaced.returncode == 0, replaced.stderr
    (old_folder,) = folder.parent.glob("seed0.replaced-*")
    assert tree_digest(old_folder) == before  # the earlier result is kept, not overwritten
    assert json.loads((folder / "results.json").read_text())["status"] == "completed"


@pytest.mark.parametrize("run", RUN_PY_RUNNERS)
def test_corrupt_checkpoint_is_a_clear_error_and_stays(tmp_path, run):
    args = [*FAST, "trainer.epochs=1", f"paths.runs={tmp_path}", "model=vit", *TINY_MODELS["vit"]]
    folder = run_folder_of(args)
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    result = run(args, cwd=tmp_path)
    assert result.returncode == 2
    assert "last.pt" in result.stderr and "left in place" in result.stderr
    assert (folder / "checkpoints" / "last.pt").read_bytes() == b"not a checkpoint"
    with pytest.raises(CheckpointError):
        load(folder / "checkpoints" / "last.pt")


# ------------------------------------------------------------------------- distributed


@pytest.mark.slow  # make test-slow; kept out of make test's time budget
@pytest.mark.timeout(600)
def test_two_process_ddp_run_evaluates_every_example_once(tmp_path):
    args = [
        *FAST,
        "trainer.epochs=1",
        "trainer.limit_batches=null",
        "trainer.batch_size=64",
        "model=vit",
        *TINY_MODELS["vit"],
        f"paths.runs={tmp_path}",
    ]
    result = run_torchrun(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = run_folder_of(args)
    results = json.loads((folder / "results.json").read_text())
    assert results["environment"]["world_size"] == 2
    # rank 0 alone writes the provenance: one invocation, one log, no file per rank
    files = sorted(p.name for p in folder.iterdir() if p.is_file())
    assert files == sorted(
        ["config.yaml", "history.jsonl", "invocations.yaml", "results.json", "run.log"]
    )
    assert len(yaml.safe_load((folder / "invocations.yaml").read_text())) == 1
    log = (folder / "run.log").read_text().splitlines()
    assert sum(line.startswith("--- ") for line in log) == 1
    assert sum(line.startswith("epoch 1/1 ") for line in log) == 1  # rank 0's epoch line
    # Rank 0 alone, over the whole test set, with the trained weights.
    cfg = resolved([*args])
    parts = build_task(cfg)
    parts.model.load_state_dict(load(folder / "checkpoints" / "last.pt")["model"])
    parts.model.eval()
    evaluator = parts.make_evaluator(torch.device("cpu"))
    loader = torch.utils.data.DataLoader(parts.eval_set, batch_size=100)
    for batch in loader:
        evaluator.update(parts.model, batch)
    single = evaluator.compute()
    assert len(parts.eval_set) == 360
    assert results["metrics"]["top1"] == pytest.approx(single["top1"], abs=1e-4)
    assert results["metrics"]["loss"] == pytest.approx(single["loss"], rel=1e-4)
    # The prediction counts, summed over the two ranks, are the single pass's
    assert results["metrics"]["top1_examples"] == 360
    for key in ("top1_pred_classes", "top1_pred_entropy", "top1_majority", "top1_minority"):
        assert results["metrics"][key] == pytest.approx(single[key], rel=1e-9), key


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_cpu_precision_and_channels_last_options_run(tmp_path, precision):
    cfg = resolved(
        [
            *FAST,
            "trainer.epochs=1",
            "model=resnet18",
            # not TINY_MODELS' width 4: in torch 2.14.1 oneDNN's AVX2 weight-gradient kernel for
            # that ResNet's channels_last 1x1 convolutions crashed with one thread and spun
            # forever with two (plain torch, no suite code; width 8 ran, as did width 4 with
            # ONEDNN_MAX_CPU_ISA=AVX; measured on a 2-core AMD EPYC, AVX2, 2026-12-03)
            "model.base_width=8",
            f"trainer.precision={precision}",
            "trainer.channels_last=true",
        ]
    )
    assert train(cfg, tmp_path, build_task)["status"] == "completed"


def test_cpu_threads_fixes_the_runs_thread_count_whatever_the_process_default(tmp_path):
    """trainer.cpu_threads=1 runs on one thread (recorded in results.json) whether the process
    starts with one thread or two, so the two runs agree bit for bit; the process's own
    count is back afterwards (the next run of a multirun starts from it)."""
    cfg = resolved([*FAST, "trainer.epochs=1", "model=vgg11", *TINY_MODELS["vgg11"]])
    cfg.trainer.cpu_threads = 1
    outer = torch.get_num_threads()
    histories = []
    try:
        for start in (1, 2):
            torch.set_num_threads(start)
            results = train(cfg, tmp_path / f"from{start}", build_task)
            assert torch.get_num_threads() == start
            assert results["environment"]["threads"] == 1
            histories.append((tmp_path / f"from{start}" / "history.jsonl").read_text())
    finally:
        torch.set_num_threads(outer)
    losses = [[json.loads(line).get("train_loss") for line in h.splitlines()] for h in histories]
    assert losses[0] == losses[1]


def test_history_follows_the_checkpoint_when_a_job_died_between_the_two_writes(tmp_path):
    fast = [*FAST, "model=vit", *TINY_MODELS["vit"]]
    train(resolved([*fast, "trainer.epochs=1"]), tmp_path, build_task)
    history = tmp_path / "history.jsonl"
    epoch_one = json.loads(history.read_text().splitlines()[0])
    history.write_text("")  # killed after last.pt landed, before the history line did
    train(resolved([*fast, "trainer.epochs=2"]), tmp_path, build_task)
    records = [json.loads(line) for line in history.read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[0] == epoch_one
