"""Image-classification models for small inputs (CIFAR 32x32, TinyImageNet 64x64, digits 1x32x32).

    from agr_suite.classification.models import build_model
    model = build_model("resnet18", num_classes=100, image_size=32)
    model = build_model("vit", num_classes=200, image_size=64, depth=6)

Every model maps ``[B, in_chans, image_size, image_size]`` to logits ``[B, num_classes]``.
Architecture numbers are keyword ``options`` with documented defaults (see each builder):

- resnet18/34/50 (:mod:`.cifar_resnet`): ``base_width=64``, ``zero_init_residual=False``
- vgg11/vgg16 (:mod:`.cifar_vgg`): ``base_width=64``, ``hidden_dim=0``, ``dropout=0.0``
- vit (:mod:`.timm_models`): ``patch_size=None`` (image_size // 8), ``embed_dim=384``,
  ``depth=12``, ``num_heads=6``, ``mlp_ratio=4.0``, ``drop_path_rate=0.1``, other
  ``VisionTransformer`` arguments passed through
- convnext (:mod:`.timm_models`): ``patch_size=None`` (max(1, image_size // 32)),
  ``depths=(3, 3, 9, 3)``, ``dims=(96, 192, 384, 768)``, ``drop_path_rate=0.1``, other
  ``ConvNeXt`` arguments passed through
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from agr_suite.classification.models.cifar_resnet import resnet18, resnet34, resnet50
from agr_suite.classification.models.cifar_vgg import vgg11, vgg16
from agr_suite.classification.models.timm_models import convnext, vit

__all__ = ["MODELS", "build_model"]

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "vgg11": vgg11,
    "vgg16": vgg16,
    "vit": vit,
    "convnext": convnext,
}
MODELS: tuple[str, ...] = tuple(_BUILDERS)


def build_model(
    name: str, *, num_classes: int, image_size: int, in_chans: int = 3, **options: Any
) -> nn.Module:
    """Build model ``name`` (one of :data:`MODELS`) with freshly initialised weights.

    Raises ``ValueError`` for an unknown name and ``TypeError`` for an unknown option.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    sizes = {"num_classes": num_classes, "image_size": image_size, "in_chans": in_chans}
    for arg, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be a positive int, got {value!r}")
    builder = _BUILDERS[name]
    params = inspect.signature(builder).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    fixed = {"num_classes", "image_size", "in_chans"}
    bad = sorted(set(options) - set(params)) if not takes_any else []
    if bad:
        valid = [n for n, p in params.items() if n not in fixed and p.kind is p.KEYWORD_ONLY]
        raise TypeError(
            f"unknown option(s) {', '.join(map(repr, bad))} for model {name!r}; "
            f"valid options: {', '.join(valid)}"
        )
    return builder(num_classes=num_classes, image_size=image_size, in_chans=in_chans, **options)
