"""The diffusion process of the image-generation runs (Table 1): training loss, DDIM sampling
and sample grids (the EMA of the weights is the engine's: agr_suite.engine.ema). No training
loop here.

    from agr_suite.engine.ema import EMA
    from agr_suite.diffusion.process import Diffusion, save_grid
    diffusion = Diffusion()                                   # T=1000, linear betas 1e-4..0.02
    loss = diffusion.loss(unet, images)                       # images in [-1, 1]; scalar MSE
    ema = EMA(unet, decay=0.9999); ...; ema.update_parameters(unet)  # after each optimizer step
    images = diffusion.sample(ema.module, 64, image_size=32, channels=3)  # the EMA weights
    save_grid(images, "samples.png")                          # DDIM, 100 steps, eta 0, in [-1, 1]

Sources (the authors' code is hjiang24/AGR-method, Image_generation/):

- ``main_ddpm.py`` ``TrainingConfig``: beta_1 = 1e-4, beta_T = 0.02, T = 1000, mean_type =
  'epsilon', var_type = 'fixedlarge', noise_schedule = 'linear', ema_decay = 0.9999, and DDIM
  evaluation with steps = 100, eta = 0.0, method = "linear"; CIFAR-10 scaled by
  ``Normalize((0.5,) * 3, (0.5,) * 3)``, i.e. to [-1, 1].
- ``diffusion.py`` ``GaussianDiffusionTrainer``: t ~ U{0..T-1}, eps ~ N(0, I),
  x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, loss ``mse_loss(model(x_t, t), eps)``
  averaged over everything (``.mean()`` in main_ddpm.py).
- ``main_ddpm.py`` ``ema``: target = decay * target + (1 - decay) * source after every step,
  starting from a copy of the initial weights (no warm-up).

DDIM settings (diffusers ``DDIMScheduler``; see :class:`Diffusion`): by default those of the
DDIM paper's CIFAR-10 evaluation (Song et al., ermongroup/ddim, ``skip_type="uniform"``):
timesteps 990, 980, ..., 0 (``timestep_spacing="leading"``, ``steps_offset=0``), the last step
going to abar = 1 (``set_alpha_to_one=True``, i.e. the output is the model's x_0 prediction at
t = 0), and no clipping of the x_0 prediction (``clip_sample=False``). The authors' own DDIM
sampler (``DDIM/utils/engine.py``, ``DDIMSampler``) shifts the timesteps by one, 991, ..., 1,
and ends at abar_0 = 1 - 1e-4 instead of 1: ``Diffusion(ddim="authors")`` reproduces it exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from torch import Tensor, nn

__all__ = ["DDIM_VARIANTS", "SCHEDULES", "Diffusion", "save_grid", "to_uint8"]

# Our schedule names -> diffusers' beta_schedule. The authors' diffusion.py also has "cosine"
# (Nichol & Dhariwal; diffusers' "squaredcos_cap_v2"); the paper's runs use "linear".
SCHEDULES: dict[str, str] = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
PREDICTIONS = ("epsilon", "sample", "v_prediction")

# DDIMScheduler settings of each DDIM variant (eta and the number of steps are sample()'s).
DDIM_VARIANTS: dict[str, dict[str, Any]] = {
    # Song et al.'s DDIM (ermongroup/ddim, runners/diffusion.py + functions/denoising.py):
    # seq = range(0, 1000, 1000 // steps); the step from t = 0 uses abar_{-1} = 1 (compute_alpha
    # pads betas with a leading 0); x0 prediction not clipped. The standard DDIM/DDPM CIFAR-10
    # evaluation; with eta = 0 and an exact noise prediction it returns x_0 exactly.
    "ddim": {
        "timestep_spacing": "leading",
        "steps_offset": 0,
        "set_alpha_to_one": True,
        "clip_sample": False,
    },
    # The authors' DDIMSampler (hjiang24/AGR-method Image_generation/DDIM/utils/engine.py):
    # time_steps = range(0, T, T // steps) + 1, previous = [0, time_steps[:-1]], abar indexed
    # directly (abar_0 = 1 - beta_1 for the last step), no clipping.
    "authors": {
        "timestep_spacing": "leading",
        "steps_offset": 1,
        "set_alpha_to_one": False,
        "clip_sample": False,
    },
}

Model = Callable[..., Any]


def _rand_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    """Where to draw random numbers: on the generator's device (a CPU generator for a CUDA run
    draws on the CPU, as diffusers' randn_tensor does), else on ``device``."""
    return generator.device if generator is not None else device


def _randn(shape, generator, device, dtype=torch.float32) -> Tensor:
    at = _rand_device(generator, device)
    return torch.randn(shape, generator=generator, device=at, dtype=dtype).to(device)


def _predict(model: Model, x: Tensor, t: Tensor) -> Tensor:
    """``model(x, t)``: a diffusers output's ``.sample``, or a plain tensor."""
    out = model(x, t)
    return getattr(out, "sample", out)


def _model_device_dtype(model: Model) -> tuple[torch.device | None, torch.dtype | None]:
    if isinstance(model, nn.Module):
        for p in model.parameters():
            return p.device, p.dtype
    return None, None


class Diffusion:
    """Gaussian diffusion with ``num_train_timesteps`` steps (DDPM, Ho et al. 2020).

    Defaults are the paper's (see the module docstring): T = 1000, linear betas 1e-4 -> 0.02,
    epsilon prediction. ``ddim`` picks the DDIM timestep convention (:data:`DDIM_VARIANTS`):
    ``"ddim"`` (default, Song et al.'s) or ``"authors"`` (the AGR authors' sampler).

    ``train_scheduler`` (diffusers ``DDPMScheduler``, fixed-large variance as the authors'
    ``var_type='fixedlarge'``) adds the noise in :meth:`loss` and runs :meth:`sample_ddpm`;
    :meth:`sample` builds a ``DDIMScheduler`` with the same betas.
    """

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        schedule: str = "linear",
        prediction: str = "epsilon",
        *,
        ddim: str = "ddim",
    ) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {tuple(SCHEDULES)}, got {schedule!r}")
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        if ddim not in DDIM_VARIANTS:
            raise ValueError(f"ddim must be one of {tuple(DDIM_VARIANTS)}, got {ddim!r}")
        if num_train_timesteps < 2:
            raise ValueError(f"num_train_timesteps must be >= 2, got {num_train_timesteps}")
        self.num_train_timesteps = int(num_train_timesteps)
        self.beta_start, self.beta_end = float(beta_start), float(beta_end)
        self.schedule, self.prediction, self.ddim = schedule, prediction, ddim
        self._common = {
            "num_train_timesteps": self.num_train_timesteps,
            "beta_start": self.beta_start,
            "beta_end": self.beta_end,
            "beta_schedule": SCHEDULES[schedule],
            "prediction_type": prediction,
        }
        self.train_scheduler = DDPMScheduler(
            **self._common, variance_type="fixed_large", clip_sample=False
        )

    def __repr__(self) -> str:
        return (
            f"Diffusion(num_train_timesteps={self.num_train_timesteps}, beta_start="
            f"{self.beta_start}, beta_end={self.beta_end}, schedule={self.schedule!r}, "
            f"prediction={self.prediction!r}, ddim={self.ddim!r})"
        )

    @property
    def alphas_cumprod(self) -> Tensor:
        """abar_t for t = 0..T-1 (float32, as diffusers computes it)."""
        return self.train_scheduler.alphas_cumprod.cpu()

    def ddim_scheduler(self, steps: int = 100) -> DDIMScheduler:
        """A fresh ``DDIMScheduler`` with the training betas, set to ``steps`` steps."""
        scheduler = DDIMScheduler(**self._common, **DDIM_VARIANTS[self.ddim])
        scheduler.set_timesteps(steps)
        if int(scheduler.timesteps.max()) >= self.num_train_timesteps:
            raise ValueError(
                f"{steps} steps with the {self.ddim!r} DDIM timesteps reach t = "
                f"{int(scheduler.timesteps.max())} >= T = {self.num_train_timesteps}"
            )
        return scheduler

    # ----------------------------------------------------------------------------------------
    # Training
    # ----------------------------------------------------------------------------------------

    def target(self, clean_images: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        """What the model regresses on: the noise (epsilon), x_0 (sample) or v."""
        if self.prediction == "epsilon":
            return noise
        if self.prediction == "sample":
            return clean_images
        return self.train_scheduler.get_velocity(clean_images, noise, timesteps)

    def loss(
        self,
        model: Model,
        clean_images: Tensor,
        generator: torch.Generator | None = None,
        *,
        timesteps: Tensor | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        """Scalar MSE between ``model(x_t, t).sample`` and the target (the noise), averaged over
        every element; t ~ U{0, ..., T-1} per image, noise ~ N(0, I), both drawn from
        ``generator`` (on its device) unless given. ``clean_images`` in [-1, 1], [B, C, H, W].
        The MSE is computed in float32 (the model may run under autocast)."""
        x0 = clean_images
        device = x0.device
        if timesteps is None:
            timesteps = torch.randint(
                0,
                self.num_train_timesteps,
                (x0.shape[0],),
                generator=generator,
                device=_rand_device(generator, device),
            ).to(device)
        if noise is None:
            noise = _randn(x0.shape, generator, device, x0.dtype)
        x_t = self.train_scheduler.add_noise(x0, noise, timesteps)
        prediction = _predict(model, x_t, timesteps)
        target = self.target(x0, noise, timesteps)
        return F.mse_loss(prediction.float(), target.float())

    # ----------------------------------------------------------------------------------------
    # Sampling
    # ----------------------------------------------------------------------------------------

    def sample(
        self,
        model: Model,
        n: int,
        *,
        image_size: int,
        channels: int,
        steps: int = 100,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        batch_size: int | None = None,
    ) -> Tensor:
        """``n`` images ``[n, channels, image_size, image_size]`` float32 in [-1, 1] by DDIM with
        ``steps`` model calls per batch (eta = 0: deterministic given the initial noise).

        The model runs in eval mode under ``torch.no_grad()`` (its mode is restored after), in
        batches of ``batch_size`` (default: all ``n`` at once), on ``device`` (default: the
        model's). x_T and, for eta > 0, the step noise come from ``generator``; the same
        generator state and batch size give the same images. The result is clamped to [-1, 1]
        (the x_0 estimate is not clipped during sampling, as in DDIM's CIFAR-10 evaluation).
        """
        if steps < 1 or steps > self.num_train_timesteps:
            raise ValueError(f"steps must be in 1..{self.num_train_timesteps}, got {steps}")

        def make() -> DDIMScheduler:
            return self.ddim_scheduler(steps)

        kwargs = {"eta": float(eta)}
        return self._sample(
            model, n, make, kwargs, image_size, channels, generator, device, batch_size
        )

    def sample_ddpm(
        self,
        model: Model,
        n: int,
        *,
        image_size: int,
        channels: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        batch_size: int | None = None,
    ) -> Tensor:
        """Ancestral DDPM sampling over all T steps with the fixed-large variance (sigma_t^2 =
        beta_t; the authors' ``var_type='fixedlarge'``, whose mean uses the unclipped x_0
        estimate), clamped to [-1, 1]. T model calls per batch; not used for the table."""

        def make() -> DDPMScheduler:
            scheduler = DDPMScheduler.from_config(self.train_scheduler.config)
            scheduler.set_timesteps(self.num_train_timesteps)
            return scheduler

        return self._sample(model, n, make, {}, image_size, channels, generator, device, batch_size)

    @torch.no_grad()
    def _sample(
        self,
        model: Model,
        n: int,
        make_scheduler: Callable[[], Any],
        step_kwargs: dict[str, Any],
        image_size: int,
        channels: int,
        generator: torch.Generator | None,
        device: torch.device | str | None,
        batch_size: int | None,
    ) -> Tensor:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        model_device, model_dtype = _model_device_dtype(model)
        device = torch.device(device) if device is not None else model_device or torch.device("cpu")
        batch_size = n if batch_size is None else int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        was_training = getattr(model, "training", None)
        if was_training is not None:
            model.eval()
        try:
            out = []
            for start in range(0, n, batch_size):
                size = min(batch_size, n - start)
                scheduler = make_scheduler()
                x = _randn((size, channels, image_size, image_size), generator, device)
                for t in scheduler.timesteps:
                    t_batch = torch.full((size,), int(t), device=device, dtype=torch.long)
                    x_in = x if model_dtype is None else x.to(model_dtype)
                    prediction = _predict(model, x_in, t_batch).float()
                    x = scheduler.step(
                        prediction, int(t), x, generator=generator, **step_kwargs
                    ).prev_sample
                out.append(x.clamp_(-1.0, 1.0))
            return torch.cat(out)
        finally:
            if was_training:
                model.train()


def to_uint8(images: Tensor) -> Tensor:
    """[-1, 1] float images -> uint8 in 0..255: ``round((x + 1) * 127.5)``, clamped."""
    return ((images.float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


def save_grid(images: Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Write ``images`` ([n, C, H, W], float in [-1, 1] or uint8) as one PNG grid with ``nrow``
    images a row (default ceil(sqrt(n))) and torchvision's 2-pixel padding; returns the path."""
    from torchvision.utils import save_image

    if images.dim() != 4:
        raise ValueError(f"images must be [n, C, H, W], got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        unit = images.float() / 255.0
    else:
        unit = ((images.detach().float() + 1.0) / 2.0).clamp_(0.0, 1.0)
    nrow = nrow or math.ceil(math.sqrt(images.shape[0]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(unit.cpu(), path, nrow=nrow, format="png")
    return path
