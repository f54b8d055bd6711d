"""Noise-prediction UNets for image generation (Table 1), built with diffusers' ``UNet2DModel``.

    from agr_suite.core.config import preset
    from agr_suite.diffusion.unet import build_unet
    unet = build_unet(preset("model", "ddpm"), image_size=32, in_chans=3)  # the paper's UNet
    unet = build_unet(preset("model", "ddpm_small"), image_size=16, in_chans=1)  # CPU digits
    eps = unet(x_t, t).sample                                              # [B, C, H, W]

The architecture is a :class:`agr_suite.diffusion.config.UNetConfig` (its defaults: the paper's
CIFAR-10 UNet; ``configs/model/ddpm_small.yaml``: the embedded CPU run's):

- ``ddpm``: the standard CIFAR-10 DDPM UNet (Ho et al. 2020) the authors trained: base channels
  128, multipliers (1, 2, 2, 2), 2 residual blocks per level, single-head self-attention at the
  16x16 level (level 1 for 32x32 inputs) in the down and up paths plus the middle block, dropout
  0.1. 35,746,307 parameters, the same count as the authors' UNet's trainable parameters (see
  :func:`build_unet`).
- ``ddpm_small``: the same architecture scaled down for the embedded CPU run on 16x16x1 digits:
  channels (32, 64), 1 residual block per level, attention at the 8x8 level (level 1).

Settings: ``block_out_channels``, ``layers_per_block``, ``attention_levels`` (indices of the
levels, 0 = full resolution, that get self-attention after each residual block; ``[]`` for
none), ``mid_attention`` (self-attention in the middle block), ``dropout``, ``norm_num_groups``,
``init`` (``"ddpm"``: the authors' Xavier initialisation, see :func:`ddpm_init_`;
``"default"``: PyTorch's). Any other ``UNet2DModel`` argument (e.g. ``attention_head_dim``)
may be passed to :func:`build_unet` as a keyword.
"""

from __future__ import annotations

import inspect
from typing import Any

from diffusers import UNet2DModel
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from agr_suite.diffusion.config import UNetConfig

__all__ = ["build_unet", "ddpm_init_"]

# Sources. The authors' image-generation code is hjiang24/AGR-method, Image_generation/main_ddpm.py
# (class TrainingConfig): ch = 128, ch_mult = [1, 2, 2, 2], attn = [1] ("add attention to these
# levels"), num_res_blocks = 2, dropout = 0.1, img_size = 32, CIFAR-10. Its UNet is `model.UNet`
# (T, ch, ch_mult, attn, num_res_blocks, dropout), which is not in their repository; that signature
# and the training script are those of w86763777/pytorch-ddpm (model.py), a PyTorch port of Ho et
# al.'s DDPM CIFAR-10 model (35.7M parameters in the DDPM paper, Appendix B).

# UNet2DModel arguments the config's settings decide.
_FIXED = {
    "sample_size",
    "in_channels",
    "out_channels",
    "down_block_types",
    "up_block_types",
    "block_out_channels",
    "layers_per_block",
    "dropout",
    "norm_num_groups",
    "add_attention",  # use mid_attention
}
_UNET_ARGS = set(inspect.signature(UNet2DModel.__init__).parameters) - {"self"}


def build_unet(
    cfg: UNetConfig, *, image_size: int, in_chans: int, **unet_kwargs: Any
) -> UNet2DModel:
    """Build the UNet ``cfg`` describes for ``[B, in_chans, image_size, image_size]`` inputs,
    freshly initialised. ``model(x_t, t).sample`` is the predicted noise, same shape.

    Down block ``i`` works at resolution ``image_size / 2**i`` (downsampling after every block
    but the last) and up block ``i`` at the resolution of down block ``L-1-i``; a level in
    ``attention_levels`` gets ``AttnDownBlock2D``/``AttnUpBlock2D`` (single-head attention after
    each residual block, as in DDPM), every other level ``DownBlock2D``/``UpBlock2D``.

    Raises ``ValueError`` for impossible sizes, ``TypeError`` for an unknown keyword.

    Parameter count of ``ddpm`` at 32x32x3: 35,746,307, equal to the trainable parameters of
    the authors' UNet (w86763777/pytorch-ddpm ``model.UNet``), whose ``parameters()`` hold
    another 128,000 frozen entries: the sinusoidal time-embedding table
    (``nn.Embedding.from_pretrained``, 1000 x 128, ``requires_grad=False``), which diffusers
    computes on the fly. Every layer with weights matches one for one (3x3 convs, GroupNorms,
    time-embedding MLP 128 -> 512 -> 512, per-block time projections, 1x1 shortcut convs,
    q/k/v/out projections as ``Linear`` instead of 1x1 ``Conv2d``: same sizes).
    """
    for arg, value in {"image_size": image_size, "in_chans": in_chans}.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be a positive int, got {value!r}")
    bad = sorted(set(unet_kwargs) - (_UNET_ARGS - _FIXED))
    if bad:
        raise TypeError(
            f"unknown option(s) {', '.join(map(repr, bad))} for UNet {cfg.name!r}; valid "
            f"UNet2DModel keywords: {', '.join(sorted(_UNET_ARGS - _FIXED))}"
        )
    channels = tuple(int(c) for c in cfg.block_out_channels)
    levels = len(channels)
    attention = {int(i) for i in cfg.attention_levels}
    if not attention <= set(range(levels)):
        raise ValueError(f"attention_levels {sorted(attention)} out of range for {levels} levels")
    if image_size % 2 ** (levels - 1):
        raise ValueError(
            f"image_size {image_size} is not divisible by 2**{levels - 1} ({levels} levels)"
        )
    groups = cfg.norm_num_groups
    if any(c % groups for c in channels):
        raise ValueError(f"block_out_channels {channels} not all divisible by {groups} groups")

    down = tuple("AttnDownBlock2D" if i in attention else "DownBlock2D" for i in range(levels))
    up = tuple(
        "AttnUpBlock2D" if levels - 1 - i in attention else "UpBlock2D" for i in range(levels)
    )
    model = UNet2DModel(
        sample_size=image_size,
        in_channels=in_chans,
        out_channels=in_chans,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=channels,
        layers_per_block=cfg.layers_per_block,
        dropout=cfg.dropout,
        norm_num_groups=groups,
        add_attention=cfg.mid_attention,
        # One attention head over all channels, as in DDPM (head dim = channels of the level).
        attention_head_dim=unet_kwargs.pop("attention_head_dim", None),
        **unet_kwargs,
    )
    if cfg.init == "ddpm":
        ddpm_init_(model)
    return model


def ddpm_init_(model: UNet2DModel) -> UNet2DModel:
    """The initialisation of w86763777/pytorch-ddpm's ``model.py`` (the authors' UNet), in place.

    Every ``Conv2d``/``Linear`` weight Xavier-uniform with zero bias; the second conv of each
    residual block and the output conv with gain 1e-5 (so each block starts near the identity
    and the initial prediction near zero). The attention output projections keep gain 1: in
    model.py ``ResBlock.initialize`` re-initialises its ``AttnBlock``'s projections after
    ``AttnBlock.initialize`` set ``proj`` to gain 1e-5. GroupNorms stay (1, 0).
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    for module in model.modules():
        if isinstance(module, ResnetBlock2D):
            nn.init.xavier_uniform_(module.conv2.weight, gain=1e-5)
    nn.init.xavier_uniform_(model.conv_out.weight, gain=1e-5)
    return model
