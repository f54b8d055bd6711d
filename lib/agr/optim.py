"""The optimizer registry behind the configs: AdamW, Adan and SGD, each with and without AGR.

``build_optimizer("adamw_agr", model, lr=1e-3)`` returns a plain ``torch.optim.AdamW``
with AGR attached as a step pre-hook (``agr.handle_of(optimizer)`` gives the handle).
Every name takes the same keyword arguments, so a config switches optimizers by name
alone; the AGR arguments do nothing without AGR, ``no_prox`` only applies to Adan and
``momentum`` only to SGD (SGD has no betas or eps: leave them None).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from .regularizer import SCOPES, attach

__all__ = ["OPTIMIZERS", "IMPLS", "build_optimizer", "param_groups"]

IMPLS = ("auto", "fused", "foreach", "loop")


@dataclass(frozen=True)
class _Family:
    """Defaults of one optimizer family (the values of the reference implementations)."""

    load: Callable[[], type]
    """Returns the optimizer class (imported when first asked for)."""
    lr: float
    weight_decay: float
    betas: tuple[float, ...]
    eps: float
    impls: tuple[str, ...]
    momentum: float | None = None


def _adan() -> type:
    """timm's Adan, imported only when an Adan optimizer is built: timm imports torchvision
    and more, which ``import agr`` should not pay for. timm is an optional dependency of the
    library (the ``adan`` extra): without it, only the Adan optimizers are unavailable."""
    try:
        from timm.optim import Adan
    except ImportError as error:
        missing = "is not installed" if error.name == "timm" else f"could not be imported ({error})"
        raise ImportError(
            f"the adan and adan_agr optimizers use timm's Adan, and timm {missing}: "
            "pip install timm (or the library with its extra: pip install 'torch-agr[adan]')"
        ) from error
    return Adan


_FAMILIES = {
    # torch.optim.AdamW defaults.
    "adamw": _Family(lambda: torch.optim.AdamW, 1e-3, 1e-2, (0.9, 0.999), 1e-8, IMPLS),
    # Adan: the official code's (and timm's) code-convention betas; they are 1 - beta of
    # the paper's notation. Weight decay 0 as in timm and the Table 1 runs.
    "adan": _Family(_adan, 1e-3, 0.0, (0.98, 0.92, 0.99), 1e-8, ("auto", "foreach", "loop")),
    # torch.optim.SGD with heavy-ball momentum 0.9 (dampening 0, no Nesterov): the update
    # scales with the gradient, so no normalisation cancels AGR's per-tensor factors.
    "sgd": _Family(lambda: torch.optim.SGD, 1e-2, 0.0, (), 0.0, IMPLS, momentum=0.9),
}

OPTIMIZERS = {
    "adamw": ("adamw", False),
    "adamw_agr": ("adamw", True),
    "adan": ("adan", False),
    "adan_agr": ("adan", True),
    "sgd": ("sgd", False),
    "sgd_agr": ("sgd", True),
}
"""name -> (family, AGR attached)."""


def build_optimizer(
    name: str,
    params_or_model: torch.nn.Module | Iterable[Any],
    *,
    lr: float | None = None,
    weight_decay: float | None = None,
    betas: tuple[float, ...] | None = None,
    eps: float | None = None,
    no_prox: bool = False,
    momentum: float | None = None,
    agr_scope: str = "all",
    agr_until_step: int | None = None,
    agr_strength: float = 1.0,
    agr_permuted: bool = False,
    agr_seed: int = 0,
    impl: str = "auto",
    decay_bias_and_norm: bool = True,
) -> torch.optim.Optimizer:
    """Build a registered optimizer.

    Args:
        name: ``adamw``, ``adan`` or ``sgd``, each also with ``_agr``.
        params_or_model: a model (its parameter names label the AGR diagnostics), an
            iterable of parameters, or a list of parameter-group dicts.
        lr, weight_decay, betas, eps: None takes the family default (AdamW: 1e-3, 1e-2,
            (0.9, 0.999), 1e-8; Adan: 1e-3, 0, (0.98, 0.92, 0.99), 1e-8; SGD: 1e-2, 0, and
            no betas or eps).
        no_prox: Adan's weight-decay form: False = proximal (the Adan paper's results),
            True = decoupled as in AdamW.
        momentum: SGD's heavy-ball momentum (None: 0.9); must be None for AdamW and Adan.
        agr_scope: ``all`` (every parameter with a gradient: the authors' code, the
            default) or ``weights`` (tensors with ndim >= 2: the paper text).
        agr_until_step: AGR applies on optimizer steps 1..N and not after (None: always).
        agr_strength, agr_permuted, agr_seed: the ablation controls of ``agr.attach``
            (``strength``, ``permuted``, ``seed``): the dose k, ``g <- g * (1 - alpha)**k``,
            and the null matched to it on removed L1 mass per tensor; 1, False: AGR itself.
        impl: ``fused``, ``foreach`` or ``loop`` (Adan has no fused kernel); ``auto``
            takes the fastest for the parameters' device: AdamW fused on CPU and CUDA,
            Adan foreach on CUDA and loop on CPU.
        decay_bias_and_norm: True (the authors' code): every parameter decays. False:
            biases, 1-D parameters (norms) and a model's ``no_weight_decay()`` names go to
            a group with weight_decay 0, as timm does.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid names: {', '.join(OPTIMIZERS)}")
    family_name, with_agr = OPTIMIZERS[name]
    family = _FAMILIES[family_name]
    lr = family.lr if lr is None else lr
    weight_decay = family.weight_decay if weight_decay is None else weight_decay
    betas = family.betas if betas is None else tuple(betas)
    eps = family.eps if eps is None else eps
    _validate(name, family, lr, weight_decay, betas, eps, impl, agr_scope, agr_until_step)
    momentum = _momentum(name, family, momentum)
    if not isinstance(no_prox, bool) or not isinstance(decay_bias_and_norm, bool):
        raise ValueError("no_prox and decay_bias_and_norm must be True or False")

    groups = param_groups(params_or_model, decay_bias_and_norm)
    device = _device_of(groups)
    impl = _resolve_impl(family_name, impl, device)
    kwargs: dict[str, Any] = dict(lr=lr, weight_decay=weight_decay, betas=betas, eps=eps)
    if family_name == "adamw":
        kwargs.update(fused=impl == "fused", foreach=impl == "foreach")
        if impl == "fused":
            kwargs.pop("foreach")
    elif family_name == "adan":
        kwargs.update(no_prox=no_prox, foreach=impl == "foreach")
    else:
        kwargs = dict(lr=lr, weight_decay=weight_decay, momentum=momentum)
        kwargs.update(fused=impl == "fused", foreach=impl == "foreach")
        if impl == "fused":
            kwargs.pop("foreach")
    names = params_or_model if isinstance(params_or_model, torch.nn.Module) else None
    # The AGR arm is the very optimizer of the baseline with the hook in front of its step,
    # so a pair differs by AGR alone (with AGR a no-op, the two are identical bit for bit).
    optimizer = family.load()(groups, **kwargs)
    if with_agr:
        attach(
            optimizer,
            scope=agr_scope,
            until_step=agr_until_step,
            names=names,
            strength=agr_strength,
            permuted=agr_permuted,
            seed=agr_seed,
        )
    return optimizer


def _validate(name, family, lr, weight_decay, betas, eps, impl, agr_scope, agr_until_step):
    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    if not number(lr) or not lr > 0:
        raise ValueError(f"{name}: lr must be a number > 0, got {lr!r}")
    if not number(weight_decay) or weight_decay < 0:
        raise ValueError(f"{name}: weight_decay must be a number >= 0, got {weight_decay!r}")
    if not number(eps) or eps < 0:
        raise ValueError(f"{name}: eps must be a number >= 0, got {eps!r}")
    if len(betas) != len(family.betas) or not all(number(b) and 0 <= b < 1 for b in betas):
        raise ValueError(
            f"{name}: betas must be {len(family.betas)} numbers in [0, 1) "
            f"(default {family.betas}), got {betas!r}"
        )
    if impl not in family.impls:
        raise ValueError(f"{name}: impl={impl!r} is not valid; choose one of {family.impls}")
    if agr_scope not in SCOPES:
        raise ValueError(f"{name}: agr_scope={agr_scope!r} is not valid; choose one of {SCOPES}")
    if agr_until_step is not None and (
        isinstance(agr_until_step, bool)
        or not isinstance(agr_until_step, int)
        or agr_until_step < 0
    ):
        raise ValueError(f"{name}: agr_until_step must be None or an integer >= 0")


def _momentum(name: str, family: _Family, momentum: float | None) -> float | None:
    if family.momentum is None:
        if momentum is not None:
            raise ValueError(f"{name}: momentum applies to SGD only; leave it unset (None)")
        return None
    momentum = family.momentum if momentum is None else momentum
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)):
        raise ValueError(f"{name}: momentum must be a number in [0, 1), got {momentum!r}")
    if not 0 <= momentum < 1:
        raise ValueError(f"{name}: momentum must be a number in [0, 1), got {momentum!r}")
    return float(momentum)


def param_groups(
    params_or_model: torch.nn.Module | Iterable[Any], decay_bias_and_norm: bool
) -> list[dict[str, Any]]:
    """Parameter groups; with ``decay_bias_and_norm=False`` each group is split into a
    decaying part and a weight_decay=0 part (biases, 1-D parameters, no_weight_decay())."""
    if isinstance(params_or_model, torch.nn.Module):
        model = params_or_model
        skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        groups = [{"params": [p for _, p in named]}]
        no_decay_ids = {id(p) for n, p in named if n in skip or n.endswith(".bias")}
    else:
        items = list(params_or_model)
        if not items:
            raise ValueError("the optimizer got an empty parameter list")
        groups = [dict(g) for g in items] if isinstance(items[0], dict) else [{"params": items}]
        no_decay_ids = set()
    if decay_bias_and_norm:
        return groups
    split = []
    for group in groups:
        params = list(group["params"])
        quiet = [p for p in params if p.dim() <= 1 or id(p) in no_decay_ids]
        loud = [p for p in params if not (p.dim() <= 1 or id(p) in no_decay_ids)]
        if loud:
            split.append({**group, "params": loud})
        if quiet:
            split.append({**group, "params": quiet, "weight_decay": 0.0})
    return split


def _device_of(groups: list[dict[str, Any]]) -> torch.device:
    for group in groups:
        for param in group["params"]:
            return param.device
    raise ValueError("the optimizer got no parameters")


def _resolve_impl(family_name: str, impl: str, device: torch.device) -> str:
    if impl != "auto":
        return impl
    if family_name in ("adamw", "sgd"):
        return "fused" if device.type in ("cpu", "cuda") else "foreach"
    return "foreach" if device.type == "cuda" else "loop"
