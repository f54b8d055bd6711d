"""The optimizer registry behind the configs: AdamW, Adan and SGD, each bare, with AGR, or
with one of AGR's neighbours (gradient centralization, adaptive gradient clipping).

``build_optimizer("adamw_agr", model, lr=1e-3)`` returns a plain ``torch.optim.AdamW``
with AGR attached as a step pre-hook (``agr.handle_of(optimizer)`` gives the handle);
``adamw_gc`` and ``adamw_agc`` attach GC and AGC the same way (:mod:`agr.transforms`).
Every name takes the same keyword arguments, so a config switches optimizers by name
alone; a transform's arguments do nothing without it (``agr_scope`` and ``agr_until_step``
apply to whichever transform is attached), ``no_prox`` only applies to Adan and
``momentum`` only to SGD (SGD has no betas or eps: leave them None).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from .hook import attach
from .regularizer import SCOPES, _check_strength
from .transforms import AGC, AGR, GC, TRANSFORMS

__all__ = [
    "FAMILIES",
    "IMPLS",
    "Family",
    "OptionError",
    "build_optimizer",
    "check_options",
    "optimizer_names",
    "param_groups",
]


@dataclass(frozen=True)
class Family:
    """One optimizer family. ``defaults`` are the keyword arguments its class takes besides
    the impl flags, with the values of the reference implementation: an option the family
    lacks (betas for SGD, momentum for AdamW) must be left None. ``fastest_impl`` maps a
    device type to the implementation ``impl="auto"`` takes there."""

    load: Callable[[], type]
    """Returns the optimizer class (imported when first asked for)."""
    defaults: dict[str, Any]
    impls: tuple[str, ...]
    fastest_impl: Callable[[str], str]


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


def _fused_on_cpu_and_cuda(device_type: str) -> str:
    return "fused" if device_type in ("cpu", "cuda") else "foreach"


IMPLS = ("auto", "fused", "foreach", "loop")
FAMILIES = {
    # torch.optim.AdamW's defaults.
    "adamw": Family(
        lambda: torch.optim.AdamW,
        dict(lr=1e-3, weight_decay=1e-2, betas=(0.9, 0.999), eps=1e-8),
        IMPLS,
        _fused_on_cpu_and_cuda,
    ),
    # Adan: the official code's (and timm's) code-convention betas, 1 - beta of the paper's
    # notation; weight decay 0 as in timm and the Table 1 runs; no_prox False = proximal
    # decay (the Adan paper's results), True = decoupled as in AdamW.
    "adan": Family(
        _adan,
        dict(lr=1e-3, weight_decay=0.0, betas=(0.98, 0.92, 0.99), eps=1e-8, no_prox=False),
        ("auto", "foreach", "loop"),
        lambda device_type: "foreach" if device_type == "cuda" else "loop",
    ),
    # torch.optim.SGD with heavy-ball momentum 0.9 (dampening 0, no Nesterov): the update
    # scales with the gradient, so no normalisation cancels AGR's per-tensor factors.
    "sgd": Family(
        lambda: torch.optim.SGD,
        dict(lr=1e-2, weight_decay=0.0, momentum=0.9),
        IMPLS,
        _fused_on_cpu_and_cuda,
    ),
}
"""The optimizer families, each built bare (``adamw``) or with a gradient transform
(``adamw_agr``, ``adamw_gc``, ``adamw_agc``); a new family is one entry here (and, in the
suite, its ``configs/optimizer/*.yaml``)."""

SUFFIXES = tuple(f"_{name}" for name in TRANSFORMS)
"""The optimizer name's suffix for each transform of :data:`agr.TRANSFORMS`."""


def optimizer_names() -> list[str]:
    """Every name :func:`build_optimizer` takes: each family bare and with each transform."""
    return [f"{family}{suffix}" for family in FAMILIES for suffix in ("", *SUFFIXES)]


def split_name(name: str) -> tuple[str, str | None]:
    """(family, transform name or None): ``adamw_gc`` -> (``adamw``, ``gc``)."""
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix), suffix[1:]
    return name, None


def final_linear_names(model: torch.nn.Module) -> list[str]:
    """The parameter names of a model's final linear layer: its classifier (timm's
    ``get_classifier()``) when it has one, else its last ``nn.Linear`` in module order;
    [] when it has neither."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if not isinstance(head, torch.nn.Module) or not any(True for _ in head.parameters()):
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        head = linears[-1] if linears else None
    if head is None:
        return []
    ids = {id(p) for p in head.parameters()}
    return [name for name, param in model.named_parameters() if id(param) in ids]


def build_optimizer(
    name: str,
    params_or_model: torch.nn.Module | Iterable[Any],
    *,
    lr: float | None = None,
    weight_decay: float | None = None,
    betas: tuple[float, ...] | None = None,
    eps: float | None = None,
    no_prox: bool | None = None,
    momentum: float | None = None,
    agr_scope: str = "all",
    agr_until_step: int | None = None,
    agr_strength: float = 1.0,
    agr_permuted: bool = False,
    agr_seed: int = 0,
    gc_conv_only: bool = False,
    agc_clipping: float = 0.01,
    agc_eps: float = 1e-3,
    agc_skip_final_linear: bool = True,
    impl: str = "auto",
    decay_bias_and_norm: bool = True,
) -> torch.optim.Optimizer:
    """Build a registered optimizer.

    Args:
        name: ``adamw``, ``adan`` or ``sgd``, each also with ``_agr``, ``_gc`` or ``_agc``.
        params_or_model: a model (its parameter names label the AGR diagnostics), an
            iterable of parameters, or a list of parameter-group dicts.
        lr, weight_decay, betas, eps: None takes the family default (AdamW: 1e-3, 1e-2,
            (0.9, 0.999), 1e-8; Adan: 1e-3, 0, (0.98, 0.92, 0.99), 1e-8; SGD: 1e-2, 0, and
            no betas or eps).
        no_prox: Adan's weight-decay form: False (None) = proximal (the Adan paper's
            results), True = decoupled as in AdamW; must be None for the others.
        momentum: SGD's heavy-ball momentum (None: 0.9); must be None for AdamW and Adan.
        agr_scope: the tensors the transform sees: ``all`` (every parameter with a
            gradient: the authors' AGR code, the default) or ``weights`` (tensors with
            ndim >= 2: the AGR paper's text).
        agr_until_step: the transform applies on optimizer steps 1..N and not after (None:
            always).
        agr_strength, agr_permuted, agr_seed: the ablation controls of ``agr.attach``
            (``strength``, ``permuted``, ``seed``): the dose k, ``g <- g * (1 - alpha)**k``,
            and the null matched to it on removed L1 mass per tensor; 1, False: AGR itself.
        gc_conv_only: GC on tensors with more than three dimensions only (the GC paper's
            conv-only form); False: every tensor with more than one (conv and FC).
        agc_clipping, agc_eps: AGC's lambda and epsilon (the NFNet code's 0.01 and 1e-3).
        agc_skip_final_linear: AGC leaves the model's final linear layer alone, as the
            NFNet paper does (needs the model, to find that layer: :func:`final_linear_names`).
        impl: ``fused``, ``foreach`` or ``loop`` (Adan has no fused kernel); ``auto``
            takes the fastest for the parameters' device: AdamW fused on CPU and CUDA,
            Adan foreach on CUDA and loop on CPU.
        decay_bias_and_norm: True (the authors' code): every parameter decays. False:
            biases, 1-D parameters (norms) and a model's ``no_weight_decay()`` names go to
            a group with weight_decay 0, as timm does.
    """
    options = dict(lr=lr, weight_decay=weight_decay, betas=betas, eps=eps)
    options.update(no_prox=no_prox, momentum=momentum)
    family, kwargs = _checked(name, options, impl, agr_scope, agr_until_step, decay_bias_and_norm)
    transform = _transform(
        name,
        dict(strength=agr_strength, permuted=agr_permuted, seed=agr_seed),
        dict(conv_only=gc_conv_only),
        dict(clipping=agc_clipping, eps=agc_eps),
    )
    groups = param_groups(params_or_model, decay_bias_and_norm)
    chosen = family.fastest_impl(_device_of(groups).type) if impl == "auto" else impl
    if "fused" in family.impls:
        kwargs["fused"] = chosen == "fused"
    if chosen != "fused":
        kwargs["foreach"] = chosen == "foreach"
    model = params_or_model if isinstance(params_or_model, torch.nn.Module) else None
    exclude = []
    if isinstance(transform, AGC) and agc_skip_final_linear:
        if model is None:
            raise OptionError(
                "agc_skip_final_linear",
                f"{name}: agc_skip_final_linear needs the model (to find its final linear "
                "layer); pass the model, or agc_skip_final_linear=False",
            )
        exclude = final_linear_names(model)
    # A transform's arm is the very optimizer of the baseline with the hook in front of its
    # step, so a pair differs by the transform alone (with it a no-op, the two are identical
    # bit for bit).
    optimizer = family.load()(groups, **kwargs)
    if transform is not None:
        attach(
            optimizer,
            transform=transform,
            scope=agr_scope,
            until_step=agr_until_step,
            names=model,
            exclude=exclude,
        )
    return optimizer


def _transform(name: str, agr_options: dict, gc_options: dict, agc_options: dict):
    """The transform ``name`` attaches, built from its options (None for a bare family)."""
    _, which = split_name(name)
    if which is None:
        return None
    options = {"agr": agr_options, "gc": gc_options, "agc": agc_options}[which]
    try:
        return {"agr": AGR, "gc": GC, "agc": AGC}[which](**options)
    except ValueError as error:
        key = {"agr": "agr_strength", "gc": "gc_conv_only", "agc": "agc_clipping"}[which]
        if "eps" in str(error):
            key = "agc_eps"
        raise OptionError(key, f"{name}: {error}") from None


class OptionError(ValueError):
    """An option :func:`build_optimizer` refuses; ``key`` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def check_options(name: str, **options: Any) -> None:
    """Raise :class:`OptionError` for the first option of :func:`build_optimizer`'s that it
    would refuse for ``name``, without building anything (a config checks its options so)."""
    impl = options.pop("impl", "auto")
    scope, until = options.pop("agr_scope", "all"), options.pop("agr_until_step", None)
    decay_bias_and_norm = options.pop("decay_bias_and_norm", True)
    try:
        _check_strength(options.pop("agr_strength", 1.0))
    except ValueError as error:
        raise OptionError("agr_strength", str(error)) from None
    for key in ("agr_permuted", "agr_seed"):  # any value will do
        options.pop(key, None)
    if not isinstance(options.pop("agc_skip_final_linear", True), bool):
        raise OptionError("agc_skip_final_linear", f"{name}: must be True or False")
    gc_options = dict(conv_only=options.pop("gc_conv_only", False))
    agc_options = dict(clipping=options.pop("agc_clipping", 0.01), eps=options.pop("agc_eps", 1e-3))
    _checked(name, options, impl, scope, until, decay_bias_and_norm)
    family = split_name(name)[0]  # every arm checks every transform's options
    _transform(f"{family}_gc", {}, gc_options, {})
    _transform(f"{family}_agc", {}, {}, agc_options)


def _checked(name, options, impl, agr_scope, agr_until_step, decay_bias_and_norm):
    """(family, the class's keyword arguments without impl flags): the given options over the
    family's defaults, each checked."""
    family = FAMILIES.get(split_name(name)[0])
    if family is None:
        names = ", ".join(optimizer_names())
        raise OptionError("name", f"unknown optimizer {name!r}; choose one of {names}")
    given = {key: value for key, value in options.items() if value is not None}
    for key in given:
        if key not in family.defaults:
            raise OptionError(key, f"{name} takes no {key}; leave it unset (None)")
    kwargs = {**family.defaults, **given}
    for key, value in kwargs.items():
        ok, must_be = _RULES[key]
        if not ok(value):
            raise OptionError(key, f"{name}: {key} must be {must_be}, got {value!r}")
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
        if len(kwargs["betas"]) != len(family.defaults["betas"]):
            raise OptionError(
                "betas",
                f"{name} takes {len(family.defaults['betas'])} betas, got "
                f"{len(kwargs['betas'])} (default {family.defaults['betas']})",
            )
    if impl not in family.impls:
        raise OptionError(
            "impl", f"{name}: impl={impl!r} is not valid; choose one of {family.impls}"
        )
    if agr_scope not in SCOPES:
        raise OptionError(
            "agr_scope", f"{name}: agr_scope={agr_scope!r} is not valid; choose one of {SCOPES}"
        )
    if agr_until_step is not None and not (_integer(agr_until_step) and agr_until_step >= 0):
        raise OptionError(
            "agr_until_step", f"{name}: agr_until_step must be None or an integer >= 0"
        )
    if not isinstance(decay_bias_and_norm, bool):
        raise OptionError(
            "decay_bias_and_norm", f"{name}: decay_bias_and_norm must be True or False"
        )
    return family, kwargs


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "lr": (lambda v: _number(v) and v > 0, "a number > 0"),
    "weight_decay": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "eps": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "betas": (
        lambda v: isinstance(v, (list, tuple)) and all(_number(b) and 0 <= b < 1 for b in v),
        "numbers in [0, 1)",
    ),
    "momentum": (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "no_prox": (lambda v: isinstance(v, bool), "True or False"),
}
"""What each constructor option must be; a new family's new option adds its rule here."""


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
