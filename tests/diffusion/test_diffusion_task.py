"""The image-generation task through the engine: a tiny UNet trains on fixture CIFAR-10 and on
the digits, evaluation samples, scores and writes grids, resume keeps the EMA and the warm-up
position, and the Inception path offline fails before any training."""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import replace

import pytest
import torch
from fixtures import accept_fixture_checksums, write_cifar
from helpers import RUN_PY_RUNNERS, resolved
from PIL import Image
from torchvision.datasets import CIFAR10
from wandb_records import offline_runs

from agr_suite.core.config import RunConfig
from agr_suite.diffusion import build as diffusion_task
from agr_suite.diffusion.config import DDIM_VARIANTS
from agr_suite.diffusion.data import build_generation_datasets
from agr_suite.diffusion.digits_features import DigitsFeatures
from agr_suite.diffusion.metrics import InceptionWeightsMissingError
from agr_suite.diffusion.process import DDIM_VARIANTS as DIFFUSION_DDIM_VARIANTS
from agr_suite.engine import train
from agr_suite.engine.checkpoint import load
from agr_suite.engine.task_parts import EvalOutput
from agr_suite.registry import build_task

# A UNet of a few thousand parameters, few samples and DDIM steps: seconds per run.
TINY_UNET = [
    "model=ddpm_small",
    "model.block_out_channels=[8,16]",
    "model.norm_num_groups=4",
    "model.dropout=0.0",
    "metrics.num_samples=24",
    "metrics.steps=3",
    "metrics.batch_size=12",
    "metrics.grid_size=16",
]
FAST = [
    "trainer.devices=cpu",
    "trainer.num_workers=0",
    "trainer.batch_size=8",
    "trainer.log_every=1",
    "optimizer=adan_agr",
    "optimizer.lr=1.0e-3",
    "scheduler=constant",
]


@pytest.fixture(scope="module")
def digits_cnn_file(tmp_path_factory):
    """The digits CNN behind the digits FID features, trained once for this module (its
    training is deterministic: the same file each run would write)."""
    return DigitsFeatures(tmp_path_factory.mktemp("digits_cnn")).cache_path


@pytest.fixture(autouse=True)
def _digits_cnn_already_trained(tmp_path, digits_cnn_file):
    """Each test's data folder (paths.data_dir) holds that CNN, as after an earlier run."""
    (tmp_path / "data" / "digits_cnn").mkdir(parents=True)
    shutil.copy(digits_cnn_file, tmp_path / "data" / "digits_cnn")


def _cfg(tmp_path, *overrides: str) -> RunConfig:
    return resolved(
        [
            *FAST,
            *TINY_UNET,
            f"paths.data_dir={tmp_path / 'data'}",
            f"paths.runs={tmp_path / 'runs'}",
            *overrides,
        ]
    )


def _read_history(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def test_config_ddim_variants_are_the_samplers():
    # the schema names them without importing diffusers; agr_suite.diffusion.process defines them
    assert DDIM_VARIANTS == tuple(DIFFUSION_DDIM_VARIANTS)


def test_table1_presets_carry_the_papers_settings():
    for name, optimizer in (("ddpm_adan", "adan"), ("ddpm_adan_agr", "adan_agr")):
        cfg = resolved([f"experiment=table1/{name}"])
        assert cfg.task == "diffusion" and cfg.model.name == "ddpm"
        assert cfg.dataset.name == "cifar10" and cfg.dataset.hflip is True
        assert cfg.optimizer.name == optimizer
        assert cfg.optimizer.lr == 2e-4 and cfg.optimizer.weight_decay == 0.0
        assert cfg.scheduler.warmup_steps == 200
        trainer = cfg.trainer
        assert (trainer.epochs, trainer.batch_size, trainer.grad_clip) == (2000, 128, 1.0)
        # where Image_generation/main_ddpm.py evaluates: its 0-indexed epochs 0, 400, ..., 1999
        assert trainer.eval_every == 2000 and trainer.eval_at == [1, 401, 801, 1201, 1601]
        assert cfg.model.ema_decay == 0.9999
        process = cfg.model.diffusion
        assert (process.timesteps, process.beta_start, process.beta_end) == (1000, 1e-4, 0.02)
        assert (process.schedule, process.prediction) == ("linear", "epsilon")
        metrics = cfg.metrics
        assert (metrics.num_samples, metrics.steps, metrics.eta) == (50000, 100, 0.0)
        assert metrics.sample_from == "raw" and metrics.is_splits == 10


def test_digits_run_trains_samples_and_scores(tmp_path):
    cfg = _cfg(
        tmp_path,
        "dataset=digits",
        "trainer.epochs=2",
        "trainer.limit_batches=3",
        "trainer.eval_every=1",
    )
    run_dir = tmp_path / "run"
    results = train(cfg, run_dir, build_task)
    assert results["status"] == "completed"
    history = _read_history(run_dir)
    assert [h["epoch"] for h in history] == [1, 2]
    for record in history:
        assert math.isfinite(record["train_loss"]) and record["step"] == 3 * record["epoch"]
        assert record["fid"] > 0 and 1.0 <= record["is_mean"] <= 10.0 and record["is_std"] >= 0
        assert record["sample_from"] == "raw" and record["num_samples"] == 24
        assert record["sampling_compiled"] is False and record["sampling_images_per_s"] > 0
        assert record["features"] == "digits_cnn"
        with Image.open(run_dir / f"samples_epoch{record['epoch']}.png") as grid:
            # 16 images of 16x16 in a 4x4 grid with torchvision's 2-pixel padding
            assert grid.size == (4 * 18 + 2, 4 * 18 + 2)
    assert {k: results["metrics"][k] for k in ("fid", "is_mean", "is_std")} == {
        k: history[-1][k] for k in ("fid", "is_mean", "is_std")
    }
    assert results["best"]["fid"] == min(h["fid"] for h in history)  # lower FID is better
    protocol = results["info"]["generation_metrics"]
    assert protocol["metric"] == "FID (digits-CNN features)"
    assert protocol["num_samples"] == 24 and protocol["sample_from"] == "raw"
    assert protocol["extractor"]["classifier_test_accuracy"] > 0.95
    assert (tmp_path / "data" / "fid_stats").is_dir()  # reference statistics cached


def test_sampling_compiles_the_unet_once_when_asked(tmp_path, monkeypatch):
    """metrics.compile=true compiles anywhere (auto, the default, only on CUDA: the CPU runs
    of the other tests sample uncompiled); the compiled module is made once per run and is
    what DDIM calls at every evaluation; the history reports the sampling speed in images/s."""
    made: list[torch.nn.Module] = []
    calls = {"n": 0}

    def fake_compile(model, **options):
        assert options == {"dynamic": False}
        made.append(model)

        def counted(*args, **kwargs):
            calls["n"] += 1
            return model(*args, **kwargs)

        counted.parameters = model.parameters  # what the sampler reads its device from
        counted.eval, counted.train = model.eval, model.train
        return counted

    monkeypatch.setattr(torch, "compile", fake_compile)
    cfg = _cfg(
        tmp_path,
        "dataset=digits",
        "trainer.epochs=2",
        "trainer.limit_batches=1",
        "trainer.eval_every=1",
        "metrics.compile=true",
    )
    train(cfg, tmp_path / "run", build_task)
    history = _read_history(tmp_path / "run")
    assert len(made) == 1
    # limit_batches=1 caps sampling at the IS splits' minimum, 10 samples, in batches of the
    # eval batch (8): 2 batches of 3 DDIM steps at each of the 2 evaluations
    assert [record["num_samples"] for record in history] == [10, 10]
    assert calls["n"] == 2 * 2 * 3
    for record in history:
        assert record["sampling_images_per_s"] > 0 and record["sampling_compiled"] is True
        seconds = record["sampling_s_per_image_step"] * 10 * 3
        assert record["sampling_images_per_s"] == pytest.approx(10 / seconds, rel=1e-6)


def test_cifar10_fixture_run_in_minus_one_one_with_flips(tmp_path, monkeypatch):
    root = tmp_path / "data" / "cifar10"
    rows, _ = write_cifar(root, "cifar10")["train"]
    accept_fixture_checksums(monkeypatch, CIFAR10, root)
    cfg = _cfg(
        tmp_path,
        "dataset=cifar10",
        "dataset.download=false",
        "metrics.features=digits_cnn",  # no Inception weights offline; any extractor works
        "trainer.epochs=1",
        "metrics.sample_from=ema",
    )
    parts = diffusion_task.build(cfg)
    images = torch.stack([parts.train_set[i][0] for i in range(len(parts.train_set))])
    assert images.shape == (10, 3, 32, 32)
    assert images.min() >= -1.0 and images.max() <= 1.0 and images.min() < -0.9
    # The FID reference set is the training pixels mapped to [-1, 1], never flipped.
    expected = torch.from_numpy(rows).float().reshape(-1, 3, 32, 32) * 2 / 255 - 1
    _, reference_set, _ = build_generation_datasets("cifar10", data_dir=tmp_path / "data")
    for _ in range(3):  # flips are random: a flipped reference would differ on some draw
        reference = torch.stack([reference_set[i][0] for i in range(len(expected))])
        torch.testing.assert_close(reference, expected, rtol=0, atol=1e-6)
    results = train(cfg, tmp_path / "run", build_task)
    assert results["status"] == "completed"
    record = _read_history(tmp_path / "run")[-1]
    assert record["sample_from"] == "ema" and math.isfinite(record["fid"])
    with Image.open(tmp_path / "run" / "samples_epoch1.png") as grid:
        assert grid.mode == "RGB"


def test_digits_refuse_horizontal_flips(tmp_path):
    with pytest.raises(ValueError, match="dataset.hflip=false"):
        diffusion_task.build(_cfg(tmp_path, "dataset=digits", "dataset.hflip=true"))


def test_resume_keeps_the_ema_and_the_warmup_position(tmp_path):
    """Epoch 1, then a restart that runs epoch 2, ends where two epochs in one go end: the same
    weights, EMA, LR (mid warm-up) and step count."""
    overrides = [
        "dataset=digits",
        "trainer.limit_batches=3",
        "trainer.eval_every=5",
        "scheduler.warmup_steps=10",
        "model.ema_decay=0.9",
    ]
    straight = _cfg(tmp_path, *overrides, "trainer.epochs=2")
    train(straight, tmp_path / "straight", build_task)
    first = _cfg(tmp_path, *overrides, "trainer.epochs=2")
    first.trainer.epochs = 1
    train(first, tmp_path / "resumed", build_task)
    after_one = load(tmp_path / "resumed" / "checkpoints" / "last.pt")
    train(_cfg(tmp_path, *overrides, "trainer.epochs=2"), tmp_path / "resumed", build_task)

    a = load(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert a["global_step"] == b["global_step"] == 6
    assert after_one["task_state"]["ema"]["num_updates"] == 3
    assert b["task_state"]["ema"]["num_updates"] == 6
    for name, tensor in a["task_state"]["ema"]["shadow"].items():
        torch.testing.assert_close(b["task_state"]["ema"]["shadow"][name], tensor, rtol=0, atol=0)
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, rtol=0, atol=0)
    # Linear warm-up over 10 steps: the LR for step s+1 is lr * (s + 1) / 10.
    lrs = [h["lr"] for h in _read_history(tmp_path / "resumed")]
    assert lrs == pytest.approx([1e-3 * 4 / 10, 1e-3 * 7 / 10])
    assert lrs == [h["lr"] for h in _read_history(tmp_path / "straight")]
    # The EMA moved away from the weights it started from, towards the trained ones.
    ema, weights = b["task_state"]["ema"]["shadow"], b["model"]
    assert any(not torch.equal(ema[n], weights[n]) for n in ema)


def test_inception_offline_without_weights_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("AGR_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    cfg = _cfg(tmp_path, "dataset=cifar10", "metrics.features=inception")
    with pytest.raises(InceptionWeightsMissingError, match="metrics.inception_weights"):
        diffusion_task.build(cfg)
    cfg.metrics.inception_weights = str(tmp_path / "nowhere.pth")
    with pytest.raises(InceptionWeightsMissingError, match="nowhere.pth"):
        diffusion_task.build(cfg)


@pytest.mark.parametrize("run", RUN_PY_RUNNERS)
def test_cli_missing_inception_weights_exits_2_with_the_fix(tmp_path, run):
    result = run(
        [
            *FAST,
            *TINY_UNET,
            "dataset=cifar10",
            "metrics.features=inception",
            f"metrics.inception_weights={tmp_path / 'missing.pth'}",
            f"paths.runs={tmp_path / 'runs'}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "metrics.inception_weights" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow  # make test-slow; kept out of make test's time budget
def test_sample_grids_go_to_wandb_as_images(tmp_path):
    """The real wandb, offline: the grid of each evaluation is an image in the run's history at
    the optimizer step of the evaluation, beside the numbers (and only the numbers)."""
    cfg = _cfg(
        tmp_path,
        "dataset=digits",
        "trainer.epochs=1",
        "trainer.limit_batches=2",
        "logger=wandb",
        "logger.mode=offline",
    )
    train(cfg, tmp_path / "run", build_task)
    (run,) = offline_runs(tmp_path / "run")
    images = [row for row in run.history if "samples/_type" in row]  # an image's fields
    assert len(images) == 1 and images[0]["samples/_type"] == "image-file"
    assert images[0]["_step"] == 2  # logged at the optimizer step of the evaluation
    with Image.open(run.folder / "files" / images[0]["samples/path"]) as grid:
        assert grid.size == (images[0]["samples/width"], images[0]["samples/height"])
    metrics = [row for row in run.history if "fid" in row]
    assert len(metrics) == 1 and "sample_from" not in metrics[0]  # numbers only


def test_limit_batches_caps_the_generation_evaluation(tmp_path, capsys):
    """A smoke run samples at most limit_batches x the evaluation batch (trainer.batch_size 8,
    below metrics.batch_size 12): 2 x 8 = 16 of the 1,000 samples asked for."""
    cfg = _cfg(
        tmp_path,
        "dataset=digits",
        "trainer.epochs=1",
        "trainer.limit_batches=2",
        "metrics.num_samples=1000",
    )
    results = train(cfg, tmp_path / "run", build_task)
    assert results["metrics"]["num_samples"] == 16
    protocol = results["info"]["generation_metrics"]
    assert protocol["num_samples"] == 16
    assert protocol["num_samples_capped_by"] == "trainer.limit_batches=2"
    assert 0 < results["eval_estimate_s"] < 3600 and "warning:" not in capsys.readouterr().err


def test_an_evaluation_of_hours_is_announced_when_the_run_starts(tmp_path, monkeypatch, capsys):
    """10 million samples x 1000 DDIM steps: hours on any device. The estimate times the real
    UNet; the evaluation itself is replaced by a stub so that the test ends."""

    def build(cfg):
        # the task sees no limit_batches (it would cap the samples), the engine's loop does
        uncapped = replace(cfg, trainer=replace(cfg.trainer, limit_batches=None))
        parts = build_task(uncapped)
        parts.evaluate = lambda model, ctx: EvalOutput({"fid": 1.0, "is_mean": 1.0, "is_std": 0})
        return parts

    cfg = _cfg(
        tmp_path,
        "dataset=digits",
        "trainer.epochs=1",
        "trainer.limit_batches=1",
        "metrics.num_samples=10000000",
        "metrics.steps=1000",
    )
    results = train(cfg, tmp_path / "run", build)
    warning = capsys.readouterr().err
    assert "warning: each evaluation of this run will take about" in warning
    assert "trainer.limit_batches caps it" in warning
    # Beside an independent timing of the same UNet: one image per forward pass at most.
    parts = build_task(cfg)
    parts.model.eval()
    x, t = torch.randn(12, 1, 16, 16), torch.full((12,), 500)
    with torch.no_grad():
        parts.model(x, t)
        started = time.perf_counter()
        parts.model(x, t)
        per_image = (time.perf_counter() - started) / 12
    expected = per_image * 10_000_000 * 1000
    assert results["eval_estimate_s"] > 3600
    assert expected / 10 < results["eval_estimate_s"] < expected * 10
