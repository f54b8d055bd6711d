"""Image classification (Table 2): a data set from agr_suite.images, a model from
agr_suite.classification.models, cross-entropy, and top-1/top-5 accuracy. The ImageNet
recipes' PIL augmentations are settings (``dataset.crop``, ``rand_augment``,
``random_erasing``: agr_suite.images.augmentation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from agr_suite.classification.metrics import ClassificationEvaluator
from agr_suite.classification.models import build_model
from agr_suite.config import ImageDatasetConfig, RunConfig
from agr_suite.engine.task import TaskParts, count_parameters
from agr_suite.images import Augmentation, build_datasets, cifar, digits, tinyimagenet


def _data_sha256(name: str, train_set, eval_set) -> str:
    """What the run's numbers depend on, for results.json (each reader says what it hashes)."""
    if name in cifar.INFOS:
        return cifar.data_sha256(train_set, eval_set)
    if name == "tinyimagenet":
        return tinyimagenet.data_sha256(train_set, eval_set)
    return digits.data_sha256()


def augmentation_of(data: ImageDatasetConfig) -> Augmentation:
    return Augmentation(
        crop=data.crop,
        interpolation=data.interpolation,
        rand_augment=data.rand_augment,
        random_erasing=data.random_erasing,
        random_erasing_mode=data.random_erasing_mode,
        random_erasing_count=data.random_erasing_count,
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

    def loss(model: torch.nn.Module, batch) -> torch.Tensor:
        images, labels = batch
        return F.cross_entropy(model(images), labels, label_smoothing=label_smoothing)

    return TaskParts(
        model=model,
        train_set=train_set,
        eval_set=eval_set,
        loss=loss,
        make_evaluator=lambda device: ClassificationEvaluator(info.num_classes, device),
        primary_metric="top1",
        info={
            "params": count_parameters(model),
            "num_classes": info.num_classes,
            "image_size": info.image_size,
            "train_size": len(train_set),
            "eval_size": len(eval_set),
            "data_sha256": _data_sha256(data.name, train_set, eval_set),
        },
    )
