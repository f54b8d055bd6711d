"""ViT and ConvNeXt for small (CIFAR 32x32, TinyImageNet 64x64) inputs, built from timm's classes.

No pretrained weights are ever loaded: the timm classes are constructed directly (not through
``timm.create_model``), with timm's own initialisation. Besides the options named in each
builder, any other keyword argument of the timm constructor (e.g. ``qkv_bias``, ``attn_drop_rate``,
``drop_rate``, ``ls_init_value``, ``kernel_sizes``) is passed through; a name that the
constructor does not take raises ``TypeError``.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from timm.models.convnext import ConvNeXt
from timm.models.vision_transformer import VisionTransformer
from torch import nn

__all__ = ["convnext", "vit"]


def _passthrough(
    cls: type[nn.Module], kwargs: dict[str, Any], reserved: set[str]
) -> dict[str, Any]:
    """Check that ``kwargs`` are constructor arguments of ``cls`` that this module does not set."""
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"} - reserved
    bad = sorted(set(kwargs) - accepted)
    if bad:
        raise TypeError(
            f"unknown option(s) {', '.join(map(repr, bad))} for {cls.__name__}; "
            f"accepted besides the named options: {', '.join(sorted(accepted))}"
        )
    return kwargs


def vit(
    *,
    num_classes: int,
    image_size: int,
    in_chans: int = 3,
    patch_size: int | None = None,
    embed_dim: int = 384,
    depth: int = 12,
    num_heads: int = 6,
    mlp_ratio: float = 4.0,
    drop_path_rate: float = 0.1,
    **timm_kwargs: Any,
) -> VisionTransformer:
    """ViT (Dosovitskiy et al., ICLR 2021, arXiv 2010.11929) at ViT-Small width (embed 384,
    depth 12, 6 heads: Touvron et al., DeiT, arXiv 2012.12877), timm's class token and
    ``global_pool="token"``. ``patch_size=None`` picks ``image_size // 8`` (4 at 32px, 8 at 64px),
    so both sizes give an 8x8 grid of 64 patches, as in the usual small-input ViT setups."""
    if patch_size is None:
        patch_size = max(1, image_size // 8)
    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} is not divisible by patch_size {patch_size}")
    named = {"img_size", "patch_size", "in_chans", "num_classes", "embed_dim", "depth"}
    named |= {"num_heads", "mlp_ratio", "drop_path_rate"}
    return VisionTransformer(
        img_size=image_size,
        patch_size=patch_size,
        in_chans=in_chans,
        num_classes=num_classes,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=mlp_ratio,
        drop_path_rate=drop_path_rate,
        **_passthrough(VisionTransformer, timm_kwargs, named),
    )


def convnext(
    *,
    num_classes: int,
    image_size: int,
    in_chans: int = 3,
    patch_size: int | None = None,
    depths: Sequence[int] = (3, 3, 9, 3),
    dims: Sequence[int] = (96, 192, 384, 768),
    drop_path_rate: float = 0.1,
    **timm_kwargs: Any,
) -> ConvNeXt:
    """ConvNeXt (Liu et al., CVPR 2022, arXiv 2201.03545), ConvNeXt-T depths/dims by default,
    with timm's "patch" stem (``patch_size`` x ``patch_size`` conv, stride ``patch_size``, + LN).

    ``patch_size=None`` picks ``max(1, image_size // 32)``: a stride-1 stem at 32px and stride 2
    at 64px, so the four stages always run at 32/16/8/4 (final map 4x4), the same network for
    CIFAR and TinyImageNet up to the stem. timm itself gives stage 0 a stride-2 downsample
    whenever the stem stride is exactly 2 (``stride = 2 if curr_stride == 2 or i > 0``), which
    would make a 64px input run at 16/8/4/2; for ``patch_size == 2`` that extra downsample
    (LayerNorm + 2x2 conv) is removed, leaving exactly the stage timm builds for other stems.
    """
    if patch_size is None:
        patch_size = max(1, image_size // 32)
    depths, dims = tuple(int(d) for d in depths), tuple(int(d) for d in dims)
    if len(depths) != 4 or len(dims) != 4:
        raise ValueError(f"ConvNeXt needs 4 stages: got depths={depths}, dims={dims}")
    # output_stride is reserved: dilation would interact with the stage-0 fix below.
    named = {"in_chans", "num_classes", "patch_size", "depths", "dims", "drop_path_rate"}
    named |= {"output_stride"}
    kwargs = _passthrough(ConvNeXt, timm_kwargs, named)
    model = ConvNeXt(
        in_chans=in_chans,
        num_classes=num_classes,
        patch_size=patch_size,
        depths=depths,
        dims=dims,
        drop_path_rate=drop_path_rate,
        **kwargs,
    )
    if kwargs.get("stem_type", "patch") == "patch" and patch_size == 2:
        model.stages[0].downsample = nn.Identity()
        for i, info in enumerate(model.feature_info):
            info["reduction"] = patch_size * 2**i
    return model
