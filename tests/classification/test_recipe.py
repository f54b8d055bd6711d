"""The classification task's recipe pieces against the libraries they come from, on the digits:
the batch its loss mixes and the targets it scores are timm's Mixup's for the same RNG state
and the loss is timm's SoftTargetCrossEntropy of them; the EMA of the weights after n steps is
timm's ModelEma (the class the official ConvNeXt code keeps) and the closed form; the
evaluator scores the EMA weights as a separate pass over them would, the raw weights as
before; a run records both."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from helpers import resolved
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.utils import ModelEma
from torch import nn
from torch.utils.data import DataLoader

from agr_suite.classification.build import build
from agr_suite.classification.metrics import ClassificationEvaluator
from agr_suite.engine import train
from agr_suite.engine.loaders import build_train_loader
from agr_suite.registry import build_task

CPU = torch.device("cpu")
BASE = [
    "dataset=digits",
    "model=vit",
    "model.embed_dim=32",
    "model.depth=1",
    "model.num_heads=2",
    "trainer.devices=cpu",
    "trainer.num_workers=0",
    "trainer.batch_size=16",
]


class Recorder(nn.Module):
    """The model, keeping the last batch it was given."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.seen = model, None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.seen = images.clone()
        return self.model(images)


def first_batch(parts, size: int = 16):
    return next(iter(DataLoader(parts.train_set, batch_size=size)))


@pytest.mark.parametrize(
    "mixup, cutmix, mode",
    [(0.8, 1.0, "batch"), (0.8, 0.0, "pair"), (0.0, 1.0, "elem")],
    ids=["both-batch", "mixup-pair", "cutmix-elem"],
)
def test_the_loss_mixes_and_scores_as_timms_mixup(mixup, cutmix, mode):
    cfg = resolved(
        [
            *BASE,
            f"dataset.mixup_alpha={mixup}",
            f"dataset.cutmix_alpha={cutmix}",
            f"dataset.mixup_mode={mode}",
            "trainer.label_smoothing=0.1",
        ]
    )
    parts = build(cfg)
    assert parts.drop_last  # the pairs need even batches, as the official loaders drop
    model = Recorder(parts.model.eval())  # eval: no drop path, the same logits twice
    images, labels = first_batch(parts)
    changed = 0
    for seed in range(6):
        np.random.seed(seed)  # noqa: NPY002 (timm's Mixup draws from the global RNG)
        loss = parts.loss(model, (images.clone(), labels))
        np.random.seed(seed)  # noqa: NPY002
        theirs = Mixup(
            mixup_alpha=mixup,
            cutmix_alpha=cutmix,
            prob=1.0,
            switch_prob=0.5,
            mode=mode,
            label_smoothing=0.1,
            num_classes=10,
        )
        want_images, want_targets = theirs(images.clone(), labels)
        assert torch.equal(model.seen, want_images), f"seed {seed}"
        want = SoftTargetCrossEntropy()(parts.model(want_images), want_targets)
        torch.testing.assert_close(loss, want, rtol=1e-6, atol=1e-6)
        changed += not torch.equal(model.seen, images)
    assert changed == 6


def test_without_mixup_the_loss_is_timms_label_smoothing_cross_entropy():
    parts = build(resolved([*BASE, "trainer.label_smoothing=0.1"]))
    assert not parts.drop_last and parts.state is None
    model = parts.model.eval()
    images, labels = first_batch(parts)
    want = LabelSmoothingCrossEntropy(smoothing=0.1)(model(images), labels)
    torch.testing.assert_close(parts.loss(model, (images, labels)), want)


def test_mixing_drops_the_last_partial_batch():
    cfg = resolved([*BASE, "dataset.mixup_alpha=0.8"])
    parts = build(cfg)
    loader, _ = build_train_loader(
        parts.train_set,
        cfg=cfg,
        device=CPU,
        rank=0,
        world_size=1,
        collate=None,
        drop_last=parts.drop_last,
    )
    assert len(parts.train_set) % 16 and len(loader) == len(parts.train_set) // 16
    assert all(len(images) == 16 for images, _ in loader)


def _train_steps(parts, steps: int, ema: ModelEma):
    """SGD steps on the first batch, the task's EMA and timm's updated after each; returns
    the parameters before and after every step."""
    model = parts.model
    parts.state.setup(model, CPU)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    batch = first_batch(parts)
    weights = [{n: p.detach().clone() for n, p in model.named_parameters()}]
    for _ in range(steps):
        optimizer.zero_grad()
        parts.loss(model, batch).backward()
        optimizer.step()
        parts.state.after_step(model)
        ema.update(model)
        weights.append({n: p.detach().clone() for n, p in model.named_parameters()})
    return weights


def test_the_ema_is_timms_model_ema_and_the_closed_form():
    decay, steps = 0.8, 6
    parts = build(resolved([*BASE, "model.drop_path_rate=0.0", f"trainer.ema_decay={decay}"]))
    theirs = ModelEma(parts.model, decay=decay)  # a copy of the initial weights, as ours
    weights = _train_steps(parts, steps, theirs)
    ours = parts.state.ema.module.state_dict()
    assert parts.state.ema.num_updates == steps
    for name, tensor in theirs.ema.state_dict().items():
        torch.testing.assert_close(ours[name], tensor, rtol=1e-6, atol=1e-7)
        # ema_n = d^n w_0 + (1 - d) sum_k d^(n-k) w_k
        closed = decay**steps * weights[0][name].double()
        for k in range(1, steps + 1):
            closed += (1 - decay) * decay ** (steps - k) * weights[k][name].double()
        torch.testing.assert_close(ours[name].double(), closed, rtol=1e-5, atol=1e-6)
    assert not torch.equal(ours["head.weight"], parts.model.state_dict()["head.weight"])


def test_the_evaluator_scores_the_ema_weights_beside_the_raw_ones():
    parts = build(resolved([*BASE, "trainer.ema_decay=0.5"]))
    _train_steps(parts, 3, ModelEma(parts.model, decay=0.5))
    model = parts.model.eval()
    batches = list(DataLoader(parts.eval_set, batch_size=64))[:3]
    evaluator = parts.make_evaluator(CPU)
    raw, ema = (ClassificationEvaluator(10, CPU) for _ in range(2))
    # an independent pass: the checkpoint's EMA tensors written into a copy of the model
    saved = parts.state.state_dict()["ema"]
    averaged = copy.deepcopy(model)
    averaged.load_state_dict({**saved["shadow"], **saved["buffers"]})
    with torch.no_grad():
        for batch in batches:
            evaluator.update(model, batch)
            raw.update(model, batch)
            ema.update(averaged, batch)
    got, raw, ema = evaluator.compute(), raw.compute(), ema.compute()
    assert {k: got[k] for k in raw} == raw  # the raw weights' numbers, unchanged
    assert {k: got[f"ema_{k}"] for k in ("top1", "top5", "loss")} == {
        k: ema[k] for k in ("top1", "top5", "loss")
    }
    assert got["ema_loss"] != got["loss"]


def test_a_run_with_mixup_and_ema_records_both_models(tmp_path):
    cfg = resolved(
        [
            *BASE,
            "trainer.limit_batches=3",
            "trainer.epochs=1",
            "scheduler=constant",
            "dataset.mixup_alpha=0.8",
            "dataset.cutmix_alpha=1.0",
            "trainer.label_smoothing=0.1",
            "trainer.ema_decay=0.9",
        ]
    )
    results = train(cfg, tmp_path / "run", build_task)
    assert results["status"] == "completed"
    metrics = results["metrics"]
    assert {"top1", "ema_top1", "ema_top5", "ema_loss"} <= set(metrics)
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").open()]
    assert history[-1]["ema_top1"] == metrics["ema_top1"]
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)
    assert last["task_state"]["ema"]["num_updates"] == 3
    assert math.isfinite(metrics["ema_loss"]) and math.isfinite(metrics["loss"])
