"""Checks of a composed run config before any work starts: wrong types and impossible
values stop the run with a message naming the key. (Unknown keys are already refused by
Hydra's struct mode; unknown group choices by Hydra's list of options.) Checks of the
machine a run needs (its folder, device, W&B login) are in :mod:`agr_suite.preflight`; both raise
:class:`ConfigError`, which ``run.py`` reports with exit code 2 (:mod:`agr_suite.errors`)."""

from __future__ import annotations

from typing import Any

from agr.optim import IMPLS, OPTIMIZERS
from agr.regularizer import SCOPES

from .engine.loaders import LOADERS
from .engine.trainer import PRECISIONS
from .errors import ConfigError
from .tasks import TASKS

__all__ = ["ConfigError", "validate"]

FEATURES = ("auto", "inception", "digits_cnn")
SAMPLE_FROM = ("raw", "ema")
DDIM_VARIANTS = ("ddim", "authors")

# How many betas each optimizer family takes (its reference implementation's defaults:
# AdamW (beta1, beta2), Adan (beta1, beta2, beta3), SGD none); tests/test_errors.py checks these
# against the optimizers agr.build_optimizer returns.
BETAS_PER_FAMILY = {"adamw": 2, "adan": 3, "sgd": 0}
WANDB_MODES = ("online", "offline", "disabled", "shared")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# key -> (check, what the value must be)
_RULES: dict[str, tuple] = {
    "seed": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
    "overwrite": (lambda v: isinstance(v, bool), "true or false"),
    "trainer.epochs": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "trainer.batch_size": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "trainer.eval_batch_size": (
        lambda v: v is None or (_int(v) and v >= 1),
        "null or an integer >= 1",
    ),
    "trainer.accumulate": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "trainer.precision": (lambda v: v in PRECISIONS, "one of " + ", ".join(PRECISIONS)),
    "trainer.grad_clip": (lambda v: v is None or (_number(v) and v > 0), "null or a number > 0"),
    "trainer.label_smoothing": (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "trainer.eval_every": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "trainer.log_every": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "trainer.compile": (lambda v: isinstance(v, bool), "true or false"),
    "trainer.channels_last": (lambda v: isinstance(v, bool), "true or false"),
    "trainer.devices": (lambda v: v in ("auto", "cpu", "cuda"), "auto, cpu or cuda"),
    "trainer.num_workers": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
    "trainer.limit_batches": (
        lambda v: v is None or (_int(v) and v >= 1),
        "null or an integer >= 1",
    ),
    "trainer.deterministic": (lambda v: isinstance(v, bool), "true or false"),
    "trainer.divergence_factor": (
        lambda v: v is None or (_number(v) and v > 1),
        "null or a number > 1",
    ),
    "optimizer.name": (lambda v: v in OPTIMIZERS, "one of " + ", ".join(OPTIMIZERS)),
    "logger.mode": (
        lambda v: v is None or v in WANDB_MODES,
        "null (W&B decides) or one of " + ", ".join(WANDB_MODES),
    ),
    "optimizer.lr": (lambda v: _number(v) and v > 0, "a number > 0"),
    "optimizer.weight_decay": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "optimizer.eps": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "optimizer.betas": (
        lambda v: isinstance(v, list) and all(_number(b) and 0 <= b < 1 for b in v),
        "a list of numbers in [0, 1)",
    ),
    "optimizer.agr_scope": (lambda v: v in SCOPES, "one of " + ", ".join(SCOPES)),
    "optimizer.agr_until_epoch": (
        lambda v: v is None or (_number(v) and v >= 0),
        "null or a number >= 0",
    ),
    "optimizer.impl": (lambda v: v in IMPLS, "one of " + ", ".join(IMPLS)),
    "optimizer.momentum": (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "optimizer.agr_strength": (
        lambda v: _number(v) and 0 <= v < float("inf"),
        "a finite number >= 0",
    ),
    "optimizer.agr_permuted": (lambda v: isinstance(v, bool), "true or false"),
    "trainer.eval_at": (
        lambda v: isinstance(v, list) and all(_int(e) and e >= 1 for e in v),
        "a list of epoch numbers >= 1",
    ),
    "dataset.download": (lambda v: isinstance(v, bool), "true or false"),
    "dataset.loader": (lambda v: v in LOADERS, "one of " + ", ".join(LOADERS)),
    "dataset.hflip": (lambda v: isinstance(v, bool), "true or false"),
    "scheduler.warmup_steps": (lambda v: v is None or (_int(v) and v >= 0), "null or an int >= 0"),
    "model.ema_decay": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    # Image generation (configs/metrics/); the choices are those of agr_suite.tasks.diffusion and
    # agr_suite.diffusion.DDIM_VARIANTS (kept literal here so validation imports no diffusers;
    # tests/test_config_choices.py checks they agree).
    "metrics.features": (lambda v: v in FEATURES, "one of " + ", ".join(FEATURES)),
    "metrics.sample_from": (lambda v: v in SAMPLE_FROM, "one of " + ", ".join(SAMPLE_FROM)),
    "metrics.ddim_variant": (lambda v: v in DDIM_VARIANTS, "one of " + ", ".join(DDIM_VARIANTS)),
    "metrics.num_samples": (lambda v: _int(v) and v >= 2, "an integer >= 2"),
    "metrics.steps": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "metrics.eta": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "metrics.is_splits": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "metrics.batch_size": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "metrics.compile": (lambda v: v in ("auto", True, False), "auto, true or false"),
    "metrics.grid_size": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    # Text pre-training (configs/dataset/{wikitext2,pydoc}.yaml)
    "dataset.variant": (lambda v: v in ("raw", "tokens"), "raw or tokens"),
    "dataset.eval_split": (lambda v: v in ("test", "validation"), "test or validation"),
    "dataset.tokenizer": (lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string"),
    "dataset.vocab_size": (lambda v: _int(v) and v >= 16, "an integer >= 16"),
    "dataset.lowercase": (lambda v: isinstance(v, bool), "true or false"),
    "dataset.max_length": (lambda v: _int(v) and v >= 8, "an integer >= 8"),
    "dataset.short_seq_prob": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "dataset.mask_prob": (lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1]"),
    "dataset.max_ngram": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "dataset.max_predictions": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "dataset.mask_token_fraction": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "dataset.random_token_fraction": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "dataset.eval_seed": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
    "model.hidden_dropout_prob": (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "model.attention_probs_dropout_prob": (
        lambda v: _number(v) and 0 <= v < 1,
        "a number in [0, 1)",
    ),
    "model.task": (lambda v: v in TASKS, "one of " + ", ".join(TASKS)),
    "metrics.inception_weights": (lambda v: v is None or isinstance(v, str), "null or a path"),
    "scheduler.warmup_epochs": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "scheduler.gamma": (lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1]"),
    "scheduler.milestones": (
        lambda v: isinstance(v, list) and all(_int(m) and m >= 0 for m in v),
        "a list of epoch numbers",
    ),
}


def _get(cfg: dict[str, Any], dotted: str):
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def validate(cfg: dict[str, Any]) -> None:
    """Raise ConfigError listing every key whose value is of the wrong type or impossible."""
    problems = []
    for key, (check, expected) in _RULES.items():
        value = _get(cfg, key)
        if value is _MISSING:
            continue
        try:
            ok = bool(check(value))
        except TypeError:
            ok = False
        if not ok:
            problems.append(f"  {key}={value!r}: must be {expected}")
    data = cfg.get("dataset") or {}
    fractions = [data.get(k) for k in ("mask_token_fraction", "random_token_fraction")]
    if all(_number(f) for f in fractions) and sum(fractions) > 1:
        problems.append(
            f"  dataset.mask_token_fraction + dataset.random_token_fraction = {sum(fractions)}: "
            "must be <= 1 (the rest keeps the original token)"
        )
    model = cfg.get("model") or {}
    hidden, heads = model.get("hidden_size"), model.get("num_attention_heads")
    if _int(hidden) and _int(heads) and (heads < 1 or hidden % heads):
        problems.append(
            f"  model.hidden_size={hidden} must be a multiple of model.num_attention_heads={heads}"
        )
    optimizer = cfg.get("optimizer") or {}
    betas, family = optimizer.get("betas"), OPTIMIZERS.get(optimizer.get("name"), (None,))[0]
    if isinstance(betas, list) and family in BETAS_PER_FAMILY:
        if len(betas) != BETAS_PER_FAMILY[family]:
            problems.append(
                f"  optimizer.betas={betas!r}: {optimizer['name']} takes "
                f"{BETAS_PER_FAMILY[family]} betas, got {len(betas)}"
            )
    if not problems and optimizer.get("name") in OPTIMIZERS:
        problem = _optimizer_problem(optimizer)
        if problem:
            problems.append(f"  optimizer: {problem}")
    if problems:
        raise ConfigError("invalid configuration:\n" + "\n".join(problems))


def _optimizer_problem(optimizer: dict[str, Any]) -> str | None:
    """What agr.build_optimizer refuses in these options (the engine passes them the same
    way), tried on one CPU parameter; None when it accepts them."""
    import torch

    from .engine.optimizer_config import build_from_config

    try:
        build_from_config(
            optimizer, [torch.nn.Parameter(torch.zeros(1))], steps_per_epoch=1, seed=0
        )
    except (TypeError, ValueError) as error:
        return str(error)
    return None
