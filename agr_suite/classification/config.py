"""The image classifiers' settings (``agr_suite_schema/model/resnet|vgg|vit|convnext``), with their
checks and sources."""

from __future__ import annotations

from dataclasses import dataclass

from agr_suite.core.config import (
    ModelConfig,
    _check,
    at_least,
    register_schema,
    setting,
)

# The image classifiers' settings: null is the architecture's own value, which its builder in
# agr_suite/classification/models documents (ResNet/VGG width 64; ViT-S: patch
# image_size // 8, embed 384, depth 12, 6 heads, MLP ratio 4, drop path 0.1; ConvNeXt-T:
# patch image_size // 32, depths (3, 3, 9, 3), dims (96, 192, 384, 768), drop path 0.1).
ARCH = "[choice] null: the architecture's standard value, which its builder documents"


@dataclass
class ResNetConfig(ModelConfig):
    task: str = "classification"
    base_width: int | None = _check(at_least(1, optional=True), None, ARCH)  # first-stage channels
    zero_init_residual: bool | None = setting(None, source=ARCH)


@dataclass
class VGGConfig(ModelConfig):
    task: str = "classification"
    base_width: int | None = _check(at_least(1, optional=True), None, ARCH)
    hidden_dim: int | None = _check(at_least(0, optional=True), None, ARCH)  # 0: one linear layer
    dropout: float | None = _check(at_least(0, integer=False, optional=True), None, ARCH)


@dataclass
class ViTConfig(ModelConfig):
    task: str = "classification"
    patch_size: int | None = _check(at_least(1, optional=True), None, ARCH)
    embed_dim: int | None = _check(at_least(1, optional=True), None, ARCH)
    depth: int | None = _check(at_least(1, optional=True), None, ARCH)
    num_heads: int | None = _check(at_least(1, optional=True), None, ARCH)
    mlp_ratio: float | None = _check(at_least(0, integer=False, optional=True), None, ARCH)
    drop_path_rate: float | None = _check(at_least(0, integer=False, optional=True), None, ARCH)


@dataclass
class ConvNeXtConfig(ModelConfig):
    task: str = "classification"
    patch_size: int | None = _check(at_least(1, optional=True), None, ARCH)
    depths: list[int] | None = setting(None, source=ARCH)
    dims: list[int] | None = setting(None, source=ARCH)
    drop_path_rate: float | None = _check(at_least(0, integer=False, optional=True), None, ARCH)


for _kind, _schema in (
    ("resnet", ResNetConfig),
    ("vgg", VGGConfig),
    ("vit", ViTConfig),
    ("convnext", ConvNeXtConfig),
):
    register_schema("model", _kind, _schema)
