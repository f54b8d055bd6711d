"""Image generation (Table 1): a DDPM UNet learns to predict the noise; evaluation samples
images with DDIM and scores them with FID and IS.

Training: ``Diffusion.loss`` (t ~ U{0..T-1}, MSE on the noise) on images in [-1, 1]; an EMA of
the weights is updated after every optimizer step and checkpointed (``TaskParts.state``).
Evaluation (``TaskParts.evaluate``): every process samples its share of ``metrics.num_samples``
images from the raw or the EMA weights (``metrics.sample_from``), the main process gathers them,
writes ``samples_epoch<N>.png`` and computes FID against the training set's feature statistics
(cached under ``paths.data_dir/fid_stats``) and IS over ``metrics.is_splits`` splits.

A smoke run (``trainer.limit_batches=K``) samples at most K batches of the evaluation batch size
(``trainer.eval_batch_size``, else ``trainer.batch_size``, at most ``metrics.batch_size``), as
the classification evaluation reads at most K batches. ``estimate_eval_s`` times a few forward
passes of the UNet so that the engine can say when an evaluation will take hours.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from agr_suite.core.config import RunConfig
from agr_suite.diffusion.config import GenerationMetricsConfig
from agr_suite.diffusion.data import build_generation_datasets
from agr_suite.diffusion.metrics import GenerationMetrics, resolve_inception_weights
from agr_suite.diffusion.process import Diffusion, save_grid, to_uint8
from agr_suite.diffusion.unet import build_unet
from agr_suite.engine.ema import EMAState
from agr_suite.engine.task_parts import EvalContext, EvalOutput, TaskParts, count_parameters


def feature_kind(features: str, dataset: str) -> str:
    """``auto``: the digits CNN for digits (Inception means nothing on 16x16 gray digits), the
    Inception network otherwise."""
    if features == "auto":
        return "digits_cnn" if dataset == "digits" else "inception"
    return features


class Scorer:
    """FID/IS of gathered samples on the main process; the extractor and the reference
    statistics are built on first use (the reference cached on disk for later runs)."""

    def __init__(
        self,
        kind: str,
        settings: GenerationMetricsConfig,
        reference_set,
        dataset: str,
        data_dir: Path,
    ) -> None:
        self.kind, self.settings, self.reference_set = kind, settings, reference_set
        self.dataset, self.data_dir = dataset, data_dir
        self.metrics: GenerationMetrics | None = None

    def _build(self, device: torch.device) -> GenerationMetrics:
        if self.kind == "inception":
            from agr_suite.diffusion.metrics import InceptionFeatures

            extractor = InceptionFeatures(self.settings.inception_weights, device)
        else:
            from agr_suite.diffusion.digits_features import DigitsFeatures

            extractor = DigitsFeatures(self.data_dir / "digits_cnn", device)
        metrics = GenerationMetrics(
            extractor,
            splits=self.settings.is_splits,
            batch_size=self.settings.batch_size,
        )
        loader = DataLoader(self.reference_set, batch_size=self.settings.batch_size)
        metrics.reference_statistics(
            loader, self.data_dir / "fid_stats", dataset=f"{self.dataset}-train"
        )
        return metrics

    def __call__(self, images: torch.Tensor, device: torch.device) -> dict[str, float]:
        if self.metrics is None:
            self.metrics = self._build(device)
        return self.metrics.compute(images)


def seconds_per_image_step(
    model: nn.Module,
    ctx: EvalContext,
    image_size: int,
    channels: int,
    max_batch: int,
    timesteps: int,
    budget_s: float = 0.25,
) -> float:
    """Seconds of one UNet forward pass per image (one DDIM step of one sample): after a
    warm-up pass, batches of 1, 2, 4, ... images until a pass takes ``budget_s`` or the batch
    reaches ``max_batch``, the sampling batch (a GPU is only efficient at large batches)."""
    generator = torch.Generator().manual_seed(0)

    def timed(batch: int) -> float:
        x = torch.randn(batch, channels, image_size, image_size, generator=generator)
        t = torch.full((batch,), timesteps // 2, dtype=torch.long)
        x, t = x.to(ctx.device), t.to(ctx.device)
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)
        started = time.perf_counter()
        with ctx.autocast():
            model(x, t)
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)
        return time.perf_counter() - started

    timed(1)
    batch = 1
    while True:
        elapsed = timed(batch)
        if elapsed >= budget_s or batch >= max_batch:
            return elapsed / batch
        batch = min(2 * batch, max_batch)


def sample_budget(cfg: RunConfig) -> tuple[int, int, bool]:
    """(samples per evaluation, sampling batch, whether ``trainer.limit_batches`` capped the
    samples): a smoke run samples at most K batches of the evaluation batch size, and at least
    one sample per IS split and two for FID's covariance."""
    settings, limit = cfg.metrics, cfg.trainer.limit_batches
    if limit is None:
        return settings.num_samples, settings.batch_size, False
    batch = min(settings.batch_size, cfg.trainer.eval_batch_size or cfg.trainer.batch_size)
    cap = max(limit * batch, settings.is_splits, 2)
    return min(settings.num_samples, cap), batch, cap < settings.num_samples


class SampleEvaluation:
    """A generation run's evaluation: every process draws its share of the DDIM samples from
    the raw or the EMA weights; the main process gathers them, saves a grid and scores them.
    ``protocol`` says how, for results.json."""

    def __init__(self, cfg: RunConfig, diffusion: Diffusion, ema: EMAState, reference_set, info):
        settings, data = cfg.metrics, cfg.dataset
        data_dir = Path(cfg.paths.data_dir).expanduser().resolve()
        self.settings, self.diffusion, self.ema, self.info = settings, diffusion, ema, info
        self.kind = feature_kind(settings.features, data.name)
        self.score = Scorer(self.kind, settings, reference_set, data.name, data_dir)
        self.num_samples, self.batch_size, capped = sample_budget(cfg)
        self.sampler = f"DDIM ({settings.ddim_variant}), {settings.steps} steps, eta {settings.eta}"
        self.compiled: dict[int, nn.Module] = {}
        digits = self.kind == "digits_cnn"
        self.protocol: dict[str, Any] = {
            "metric": "FID (digits-CNN features)" if digits else "FID (Inception-v3)",
            "is_metric": "IS (digits-CNN classifier)" if digits else "IS (Inception-v3)",
            "features": self.kind,
            "implementation": GenerationMetrics.implementation,
            "num_samples": self.num_samples,
            **(
                {"num_samples_capped_by": f"trainer.limit_batches={cfg.trainer.limit_batches}"}
                if capped
                else {}
            ),
            "reference_set": f"{data.name} train ({len(reference_set)} images)",
            "sampler": self.sampler,
            "sample_from": settings.sample_from,
            "is_splits": settings.is_splits,
            "is_std": "std over the IS splits of one run (population std)",
        }

    def sampling_model(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The module DDIM calls: with ``metrics.compile`` (auto: on CUDA) the model compiled
        once per run, its shapes fixed by the sampling batch; it shares the model's weights
        (the raw model's or the EMA module's), so their current values are the ones sampled."""
        compile_sampler = self.settings.compile
        if compile_sampler is False or (compile_sampler == "auto" and device.type != "cuda"):
            return model
        if id(model) not in self.compiled:
            self.compiled[id(model)] = torch.compile(model, dynamic=False)
        return self.compiled[id(model)]

    @torch.no_grad()
    def __call__(self, model: nn.Module, ctx: EvalContext) -> EvalOutput:
        settings, started = self.settings, time.time()
        count = len(range(ctx.rank, self.num_samples, ctx.world_size))
        generator = torch.Generator(ctx.device).manual_seed(
            (ctx.seed * 1_000_003 + ctx.epoch * 7919 + ctx.rank) % 2**63
        )
        source = self.ema.ema.module if settings.sample_from == "ema" else model
        sampler_model = self.sampling_model(source, ctx.device)
        with ctx.autocast():
            images = self.diffusion.sample(
                sampler_model,
                count,
                image_size=self.info.image_size,
                channels=self.info.channels,
                steps=settings.steps,
                eta=float(settings.eta),
                generator=generator,
                batch_size=self.batch_size,
            )
        if ctx.device.type == "cuda":  # the samples are done, not just queued
            torch.cuda.synchronize(ctx.device)
        sampling_s = time.time() - started
        gathered = ctx.gather(to_uint8(images))
        if not ctx.is_main:
            return EvalOutput({})
        grid_path = ctx.run_dir / f"samples_epoch{ctx.epoch}.png"
        grid = save_grid(gathered[: settings.grid_size], grid_path)
        scores = self.score(gathered, ctx.device)
        self.protocol.setdefault("extractor", self.score.metrics.describe()["extractor_details"])
        metrics = {
            **scores,
            "sample_from": settings.sample_from,
            "num_samples": int(len(gathered)),
            "sampler": self.sampler,
            "features": self.kind,
            "sampling_s_per_image_step": sampling_s / max(1, count * settings.steps),
            "sampling_images_per_s": count / sampling_s if sampling_s > 0 else None,
            "sampling_compiled": sampler_model is not source,
        }
        return EvalOutput(metrics, images={"samples": grid})

    def estimate_s(self, model: nn.Module, ctx: EvalContext) -> tuple[float, str]:
        """Seconds this process's share of an evaluation will take, and how that was found."""
        count, steps = len(range(ctx.rank, self.num_samples, ctx.world_size)), self.settings.steps
        per_image_step = seconds_per_image_step(
            model,
            ctx,
            self.info.image_size,
            self.info.channels,
            self.batch_size,
            self.diffusion.num_train_timesteps,
        )
        return per_image_step * count * steps, (
            f"{count} samples x {steps} DDIM steps at {per_image_step * 1e3:.3g} ms per image "
            "per step, timed on a few UNet forward passes"
        )


def build(cfg: RunConfig) -> TaskParts:
    data, model_cfg, settings = cfg.dataset, cfg.model, cfg.metrics
    if feature_kind(settings.features, data.name) == "inception":
        resolve_inception_weights(settings.inception_weights)  # before training, not after it
    train_set, reference_set, info = build_generation_datasets(
        data.name, data_dir=cfg.paths.data_dir, download=data.download, hflip=data.hflip
    )
    model = build_unet(model_cfg, image_size=info.image_size, in_chans=info.channels)
    process = model_cfg.diffusion
    diffusion = Diffusion(
        num_train_timesteps=process.timesteps,
        beta_start=process.beta_start,
        beta_end=process.beta_end,
        schedule=process.schedule,
        prediction=process.prediction,
        ddim=settings.ddim_variant,
    )
    ema = EMAState(model_cfg.ema_decay)
    evaluation = SampleEvaluation(cfg, diffusion, ema, reference_set, info)
    return TaskParts(
        model=model,
        train_set=train_set,
        eval_set=None,
        loss=lambda model, batch: diffusion.loss(model, batch[0]),
        make_evaluator=None,
        primary_metric="fid",
        minimize=True,
        evaluate=evaluation,
        estimate_eval_s=evaluation.estimate_s,
        state=ema,
        info={
            "params": count_parameters(model),
            "image_size": info.image_size,
            "channels": info.channels,
            "train_size": len(train_set),
            "data_sha256": info.data_sha256,
            "diffusion": repr(diffusion),
            "ema_decay": ema.decay,
            "generation_metrics": evaluation.protocol,
        },
    )
