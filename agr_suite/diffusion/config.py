"""Table 1's settings: the DDPM UNet and its diffusion process
(``agr_suite_schema/model/unet``) and how samples are drawn and scored
(``agr_suite_schema/metrics/generation``), with checks and sources."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any  # noqa: UP035 (OmegaConf reads these hints)

from agr_suite.core.config import (
    DDPM,
    DDPM_MODEL,
    MetricsConfig,
    ModelConfig,
    _check,
    at_least,
    fraction,
    one_of,
    register_schema,
    setting,
)

FEATURES = ("auto", "inception", "digits_cnn")
SAMPLE_FROM = ("raw", "ema")
# agr_suite.diffusion.process.DDIM_VARIANTS (a test checks they agree)
DDIM_VARIANTS = ("ddim", "authors")
UNET_INITS = ("ddpm", "default")


@dataclass
class DiffusionProcessConfig:
    timesteps: int = _check(at_least(1), 1000, f"[code: {DDPM}] T")
    beta_start: float = _check(at_least(0, integer=False), 1.0e-4, f"[code: {DDPM}] beta_1")
    beta_end: float = _check(at_least(0, integer=False), 0.02, f"[code: {DDPM}] beta_T")
    schedule: str = _check(one_of(("linear", "cosine")), "linear", f"[code: {DDPM}] noise_schedule")
    prediction: str = _check(
        one_of(("epsilon",)), "epsilon", f"[code: {DDPM}] mean_type, an MSE on the noise"
    )


@dataclass
class UNetConfig(ModelConfig):
    """The paper's CIFAR-10 DDPM UNet [code: Image_generation/main_ddpm.py TrainingConfig]: 128
    channels, multipliers [1, 2, 2, 2], 2 residual blocks per level, attention at 16x16,
    dropout 0.1. The UNet class it builds is pytorch-ddpm's model.py, which the authors'
    repository does not contain: its middle-block attention, GroupNorm(32) and Xavier init
    are [choice: that file's design]."""

    task: str = "diffusion"
    block_out_channels: list[int] = setting(
        [128, 256, 256, 256], source=f"[code: {DDPM}] ch 128, ch_mult [1, 2, 2, 2]"
    )
    layers_per_block: int = _check(at_least(1), 2, f"[code: {DDPM}] num_res_blocks")
    # indices of the levels (0 = full resolution) with self-attention
    attention_levels: list[int] = setting([1], source=f"[code: {DDPM}] attn [1]: 16x16")
    mid_attention: bool = setting(True, source=f"[choice: as {DDPM_MODEL}]")
    norm_num_groups: int = _check(at_least(1), 32, f"[choice: GroupNorm(32, ch) as {DDPM_MODEL}]")
    dropout: float = _check(fraction(high_open=True), 0.1, f"[code: {DDPM}] dropout")
    # ddpm: the DDPM UNet's Xavier-uniform init (pytorch-ddpm's model.py); default: PyTorch's
    init: str = _check(one_of(UNET_INITS), "ddpm", f"[choice: the Xavier init of {DDPM_MODEL}]")
    ema_decay: float = _check(
        fraction(), 0.9999, f"[code: {DDPM}] ema_decay, after every optimizer step"
    )
    diffusion: DiffusionProcessConfig = field(default_factory=DiffusionProcessConfig)

    def problems(self, cfg: Any) -> list[str]:
        if cfg.metrics is not None:
            return []
        return ["  metrics: a diffusion model needs metrics=generation (or another)"]


@dataclass
class GenerationMetricsConfig(MetricsConfig):
    """How Table 1's samples are drawn and scored [code: Image_generation/main_ddpm.py]."""

    # auto: Inception-v3 on CIFAR, the digits CNN on digits
    features: str = _check(
        one_of(FEATURES),
        "auto",
        "[code: Image_generation/score/both.py] Inception-v3 features on CIFAR-10 (the digits "
        "CNN on the embedded digits)",
    )
    # torch-fidelity's weights-inception-2015-12-05-6726825d.pth; null: the torch.hub cache,
    # downloaded there when missing (needs network)
    inception_weights: str | None = setting(None, result=False)
    num_samples: int = _check(
        at_least(2), 50000, f"[code: {DDPM}] num_images, per evaluation, over all processes"
    )
    # authors: their DDIMSampler (timesteps t+1, ends at abar_0), what Table 1 ran;
    # ddim: Song et al.'s timesteps, the standard CIFAR-10 evaluation
    ddim_variant: str = _check(
        one_of(DDIM_VARIANTS),
        "authors",
        "[code: Image_generation/DDIM/utils/engine.py] DDIMSampler, linear method",
    )
    steps: int = _check(at_least(1), 100, f"[code: {DDPM}] steps, DDIM steps")
    eta: float = _check(at_least(0, integer=False), 0.0, f"[code: {DDPM}] eta")
    # raw: the authors sampled the raw (non-EMA) weights | ema
    sample_from: str = _check(
        one_of(SAMPLE_FROM),
        "raw",
        "[code: Image_generation/DDIM/generate.py] loads the checkpoint's net_model, not EMA",
    )
    is_splits: int = _check(at_least(1), 10, "[code: Image_generation/score/both.py] splits=10")
    batch_size: int = _check(at_least(1), 500)  # sampling and feature batch per process
    # torch.compile the UNet for DDIM sampling: auto = on CUDA. (Any, not Union[str, bool]:
    # OmegaConf 2.3 cannot fill an Optional section that holds a Union field.)
    compile: Any = _check((lambda v: v in ("auto", True, False), "auto, true or false"), "auto")
    # images in each samples_epoch<N>.png
    grid_size: int = _check(at_least(1), 64, result=False)


register_schema("model", "unet", UNetConfig)
register_schema("metrics", "generation", GenerationMetricsConfig)
