"""The optimizer section's recipe settings against their sources: ``optimizer.lr_scale_batch``
is TinyViT's linear scaling rule (main.py: lr x batch per process x world size x accumulation
steps / 512), in the formula and in a run; ``optimizer.decay_bias_and_norm=false`` leaves out
of weight decay exactly the parameters timm's ``param_groups_weight_decay`` does, with the
model's ``no_weight_decay()`` names (the official ConvNeXt and TinyViT rule)."""

from __future__ import annotations

import json

import pytest
from helpers import TINY_MODELS, resolved
from timm.optim import param_groups_weight_decay

from agr_suite.classification.models import build_model
from agr_suite.core.config import ConfigError, OptimizerConfig, compose
from agr_suite.engine import train
from agr_suite.engine.optimizer import build_from_config, scaled_lr
from agr_suite.registry import build_task


def settings(**values) -> OptimizerConfig:
    return OptimizerConfig(**{"name": "adamw", **values})


@pytest.mark.parametrize(
    "batch, accumulate, world, scale",
    [(128, 1, 2, 512), (256, 1, 1, 512), (64, 4, 2, 512), (16, 2, 1, 64), (1024, 1, 1, 256)],
)
def test_the_scaled_lr_is_tinyvits_rule(batch, accumulate, world, scale):
    lr = 5.0e-4
    got = scaled_lr(settings(lr=lr, lr_scale_batch=scale), batch * accumulate * world)
    # TinyViT main.py: BASE_LR * DATA.BATCH_SIZE * world size / 512, then x ACCUMULATION_STEPS
    want = lr * batch * world / scale
    if accumulate > 1:
        want *= accumulate
    assert got == pytest.approx(want, rel=1e-15)
    assert scaled_lr(settings(lr=lr), 12345) == lr  # off: the lr as given
    with pytest.raises(ValueError, match="total batch"):
        scaled_lr(settings(lr=lr, lr_scale_batch=scale), None)


def test_a_run_steps_with_the_scaled_lr(tmp_path):
    cfg = resolved(
        [
            "dataset=digits",
            "dataset.augment=false",
            "model=resnet18",
            *TINY_MODELS["resnet18"],
            "trainer.devices=cpu",
            "trainer.num_workers=0",
            "trainer.batch_size=16",
            "trainer.accumulate=2",
            "trainer.limit_batches=4",
            "trainer.epochs=1",
            "scheduler=constant",
            "optimizer=adamw",
            "optimizer.lr=1.0e-3",
            "optimizer.lr_scale_batch=64",
        ]
    )
    train(cfg, tmp_path / "run", build_task)
    (record,) = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").open()]
    assert record["lr"] == pytest.approx(1.0e-3 * 16 * 2 / 64, rel=1e-12)


def test_a_scale_needs_an_lr():
    with pytest.raises(ConfigError, match="optimizer.lr_scale_batch=512: scales optimizer.lr"):
        compose(["optimizer=adamw", "optimizer.lr=null", "optimizer.lr_scale_batch=512"])


def _names_without_decay(optimizer, model) -> set[str]:
    names = {id(p): n for n, p in model.named_parameters()}
    found = [
        (names[id(p)], group["weight_decay"]) for group in optimizer.param_groups
        for p in group["params"]
    ]  # fmt: skip
    assert len(found) == len(names)  # every parameter once
    return {name for name, decay in found if decay == 0}


@pytest.mark.parametrize("name", ["vit", "convnext"])
def test_the_no_decay_groups_are_timms(name):
    options = {
        "vit": dict(embed_dim=32, depth=1, num_heads=2),
        "convnext": dict(depths=[1, 1, 1, 1], dims=[8, 16, 32, 64]),
    }[name]
    model = build_model(name, num_classes=200, image_size=64, in_chans=3, **options)
    optimizer = build_from_config(
        settings(lr=1e-3, weight_decay=0.05, decay_bias_and_norm=False),
        model, steps_per_epoch=1, seed=0,
    )  # fmt: skip
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else ()
    groups = param_groups_weight_decay(model, 0.05, no_weight_decay_list=skip)
    names = {id(p): n for n, p in model.named_parameters()}
    timm_no_decay = {names[id(p)] for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    got = _names_without_decay(optimizer, model)
    assert got == timm_no_decay
    assert {g["weight_decay"] for g in optimizer.param_groups} == {0.0, 0.05}
    # the official rule, ConvNeXt's get_parameter_groups and TinyViT's set_weight_decay
    official = {
        n for n, p in model.named_parameters()
        if len(p.shape) == 1 or n.endswith(".bias") or n in skip
    }  # fmt: skip
    assert got == official
    if name == "vit":
        assert {"pos_embed", "cls_token"} <= got and "patch_embed.proj.weight" not in got
    else:
        assert "stages.0.blocks.0.gamma" in got and "stem.0.weight" not in got
