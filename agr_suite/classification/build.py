"""Image classification (Table 2): a data set from agr_suite.images, a model from
agr_suite.classification.models, cross-entropy, and top-1/top-5 accuracy.

The ImageNet recipes' parts are settings (agr_suite/core/config.py): the PIL augmentations of
agr_suite.images.augmentation (``dataset.crop``, ``rand_augment``, ``random_erasing``), timm's
Mixup on each training batch (``dataset.mixup_alpha``, ``cutmix_alpha``: the loss then takes
its soft targets, which carry the label smoothing), and an EMA of the weights
(``trainer.ema_decay``) scored beside the raw weights at every evaluation. The raw weights'
``top1`` stays the primary metric."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.data import Mixup

from agr_suite.classification.metrics import ClassificationEvaluator
from agr_suite.classification.models import build_model
from agr_suite.core.config import RunConfig
from agr_suite.engine.ema import EMAState
from agr_suite.engine.task_parts import TaskParts, count_parameters
from agr_suite.images import DATASETS, Augmentation, build_datasets
from agr_suite.images.config import ImageDatasetConfig


def augmentation_of(data: ImageDatasetConfig) -> Augmentation:
    return Augmentation(
        crop=data.crop,
        interpolation=data.interpolation,
        rand_augment=data.rand_augment,
        random_erasing=data.random_erasing,
        random_erasing_mode=data.random_erasing_mode,
        random_erasing_count=data.random_erasing_count,
    )


def mixup_of(data: ImageDatasetConfig, label_smoothing: float, num_classes: int) -> Mixup | None:
    """timm's Mixup with the run's settings, as the official ConvNeXt and TinyViT code build
    it (no cutmix_minmax, timm's lambda correction for clipped boxes); None when off."""
    if not data.mixes:
        return None
    return Mixup(
        mixup_alpha=data.mixup_alpha,
        cutmix_alpha=data.cutmix_alpha,
        prob=data.mixup_prob,
        switch_prob=data.mixup_switch_prob,
        mode=data.mixup_mode,
        label_smoothing=label_smoothing,
        num_classes=num_classes,
    )


def build(cfg: RunConfig) -> TaskParts:
    data = cfg.dataset
    train_set, eval_set, info = build_datasets(
        data.name,
        data_dir=cfg.paths.data_dir,
        download=data.download,
        augment=data.augment,
        augmentation=augmentation_of(data),
        seed=cfg.seed,
    )
    model = build_model(
        cfg.model.name,
        num_classes=info.num_classes,
        image_size=info.image_size,
        in_chans=info.channels,
        **cfg.model.options(),
    )
    label_smoothing = cfg.trainer.label_smoothing
    mixup = mixup_of(data, label_smoothing, info.num_classes)

    def loss(model: torch.nn.Module, batch) -> torch.Tensor:
        images, labels = batch
        if mixup is not None:  # the batch mixed in place, the targets soft
            images, targets = mixup(images, labels)
            return F.cross_entropy(model(images), targets)
        return F.cross_entropy(model(images), labels, label_smoothing=label_smoothing)

    decay = cfg.trainer.ema_decay
    ema = EMAState(decay) if decay is not None else None

    def make_evaluator(device: torch.device) -> ClassificationEvaluator:
        # the EMA weights, in the EMA's float32 copy of the model (in eval mode)
        averaged = ema.ema.module if ema is not None else None
        return ClassificationEvaluator(info.num_classes, device, ema_model=averaged)

    return TaskParts(
        model=model,
        train_set=train_set,
        eval_set=eval_set,
        loss=loss,
        make_evaluator=make_evaluator,
        primary_metric="top1",
        state=ema,
        drop_last=mixup is not None,
        info={
            "params": count_parameters(model),
            "num_classes": info.num_classes,
            "image_size": info.image_size,
            "train_size": len(train_set),
            "eval_size": len(eval_set),
            "data_sha256": DATASETS[data.name].data_sha256(train_set, eval_set),
        },
    )
