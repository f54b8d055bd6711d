"""The optimizer hook: a gradient transform (AGR by default) inside every ``optimizer.step()``.

``attach(optimizer)`` registers a step pre-hook that transforms the gradients the optimizer is
about to use, once per step (after backward, the DDP all-reduce, GradScaler's unscale and
gradient clipping), and keeps its step counter and settings in ``optimizer.state_dict()``.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .regularizer import SCOPES, _check_choice, _check_tensor, _in_scope
from .transforms import AGR, GradientTransform, make_transform

__all__ = ["AGRHandle", "AGRStats", "FrozenParameterWarning", "attach", "handle_of"]

GROUP_SWITCH = "grad_transform"
"""A parameter group with ``grad_transform: False`` is left out of the transform."""

AGR_DEFAULTS = {"strength": 1.0, "permuted": False, "seed": 0, "backend": "auto"}
"""attach()'s AGR-only options at their defaults (another transform refuses any other value)."""


class FrozenParameterWarning(UserWarning):
    """A transform attached to an optimizer would zero some parameter's gradient on every
    step (AGR on a one-element tensor), so that parameter would never move."""


@dataclass(frozen=True)
class AGRStats:
    """What the transform did on one optimizer step.

    removed_fraction: share of the gradients' total L1 mass that the transform changed,
        sum over tensors of sum|g - g'| over sum|g|; for AGR, sum(alpha*|g|) / sum|g|, the
        mass it removed; 0 means the transform changed nothing.
    max_alpha: the largest alpha = |g|/sum|g| of any element (1 for a one-element tensor),
        the largest factor AGR would take away (read from the gradients before the transform).
    per_param: removed fraction of each transformed tensor, by parameter name.
    per_param_l1, per_param_removed: each transformed tensor's sum |g| before the transform
        and the L1 mass of its change, by parameter name (to pool tensors exactly, e.g. by
        kind).
    """

    step: int
    removed_fraction: float
    max_alpha: float
    per_param: dict[str, float] = field(default_factory=dict)
    per_param_l1: dict[str, float] = field(default_factory=dict)
    per_param_removed: dict[str, float] = field(default_factory=dict)


class AGRHandle:
    """A gradient transform attached to one optimizer. Made by :func:`attach`; see its
    docstring. (The name is AGR's, the default transform; GC, AGC and callables use it too.)"""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        scope: str,
        until_step: int | None,
        names: Mapping[int, str],
        track_stats: bool,
        transform: GradientTransform,
        exclude: frozenset[int] = frozenset(),
    ) -> None:
        self.optimizer = optimizer
        self.scope = scope
        self.until_step = until_step
        self.transform = transform
        self.track_stats = track_stats
        self.enabled = True
        self.steps = 0
        self._names = dict(names)
        self._exclude = exclude
        self._pending: tuple[int, list[str], torch.Tensor] | None = None
        self._stats: AGRStats | None = None
        self._hooks = [
            optimizer.register_step_pre_hook(self._pre_step),
            optimizer.register_state_dict_post_hook(self._save),
            optimizer.register_load_state_dict_pre_hook(self._load),
        ]

    @property
    def variant(self):
        """AGR's :class:`agr.regularizer.Variant` (None for another transform)."""
        return getattr(self.transform, "variant", None)

    @property
    def backend(self) -> str | None:
        """AGR's backend (None for another transform)."""
        return getattr(self.transform, "backend", None)

    @property
    def active(self) -> bool:
        """Whether the transform will change the gradients on the next optimizer step."""
        return self.enabled and (self.until_step is None or self.steps < self.until_step)

    @property
    def last_stats(self) -> AGRStats | None:
        """Diagnostics of the last step the transform ran on (None before the first); reading
        them synchronises with the device once."""
        if self._pending is not None:
            step, names, moments = self._pending
            self._pending = None
            moments = moments.double().cpu()
            l1, removed, maxabs = moments.unbind(dim=1)
            live = l1 > 0
            total = float(l1.sum())
            per_param_l1 = dict(zip(names, l1.tolist()))
            per_param_removed = dict(zip(names, removed.tolist()))
            per_param = {
                name: per_param_removed[name] / mass if mass > 0 else 0.0
                for name, mass in per_param_l1.items()
            }
            self._stats = AGRStats(
                step=step,
                removed_fraction=float(removed.sum()) / total if total > 0 else 0.0,
                max_alpha=float((maxabs[live] / l1[live]).max()) if bool(live.any()) else 0.0,
                per_param=per_param,
                per_param_l1=per_param_l1,
                per_param_removed=per_param_removed,
            )
        return self._stats

    def remove(self) -> None:
        """Detach the transform: the optimizer behaves exactly as without it from the next
        step."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        if getattr(self.optimizer, "_agr_handle", None) is self:
            del self.optimizer._agr_handle

    def state_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "enabled": self.enabled,
            "scope": self.scope,
            "until_step": self.until_step,
            "transform": self.transform.name,
            **self.transform.options(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the step counter and switches. ``scope``, ``until_step`` and the
        transform's settings come from the checkpoint, so a resumed run continues exactly as
        the original; a checkpoint of another transform is refused."""
        saved = state.get("transform", "agr")  # checkpoints before GC and AGC were AGR's
        if saved != self.transform.name:
            raise ValueError(
                f"this optimizer state was saved with the gradient transform {saved!r}, but "
                f"{self.transform.name!r} is attached: resume with the optimizer it was saved "
                "with"
            )
        options = {key: state[key] for key in self.transform.options() if key in state}
        if options:
            self.transform = make_transform(
                self.transform.name, **{**self._own_options(), **options}
            )
        self.steps = int(state["steps"])
        self.enabled = bool(state["enabled"])
        self.scope = state.get("scope", self.scope)
        self.until_step = state.get("until_step", self.until_step)

    def _own_options(self) -> dict[str, Any]:
        """The transform's constructor options, backend included (AGR's is not saved: it
        changes roundings, not the method)."""
        options = dict(self.transform.options())
        if isinstance(self.transform, AGR):
            options["backend"] = self.transform.backend
        return options

    def __repr__(self) -> str:
        until = "never" if self.until_step is None else f"after step {self.until_step}"
        what = "" if self.transform == AGR() else f", transform={self.transform!r}"
        backend = f", backend={self.backend!r}" if self.backend is not None else ""
        return (
            f"AGRHandle(scope={self.scope!r}, steps={self.steps}, stops={until}, "
            f"enabled={self.enabled}{backend}{what})"
        )

    # -- hooks ------------------------------------------------------------------------

    def _pre_step(self, optimizer, args, kwargs):
        replaced = None
        # torch passes step()'s own arguments: args = (optimizer, [closure]).
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        if closure is not None:
            # The optimizer would evaluate the closure after this hook; evaluate it now so
            # the transform sees this step's gradients, and hand the optimizer the loss.
            with torch.enable_grad():
                loss = closure()
            replaced = _replace_closure(args, kwargs, lambda: loss)
        if self._skipped_by_scaler(optimizer):
            return replaced
        apply = self.active
        self.steps += 1
        if apply:
            self._transform(optimizer, step=self.steps)
        return replaced

    def _skipped_by_scaler(self, optimizer) -> bool:
        # GradScaler hands fused optimizers a found_inf flag and the step is skipped inside
        # the kernel; such a step must not count towards until_step. Only read (a sync) when
        # the count matters.
        found_inf = getattr(optimizer, "found_inf", None)
        return self.until_step is not None and found_inf is not None and bool(found_inf.item())

    def _transform(self, optimizer, step: int) -> None:
        targets = self._targets(optimizer)
        params = [param for param, _ in targets]
        grads = [param.grad for param in params]
        # GradScaler hands a fused optimizer its gradients still scaled (the kernel unscales
        # them): a transform that is not scale-invariant (AGC, a callable) sees them unscaled.
        # GradScaler's scales are powers of 2, so dividing and multiplying back is exact.
        scale = getattr(optimizer, "grad_scale", None)
        unscale = scale is not None and not self.transform.scale_invariant
        if unscale:
            for grad in grads:
                grad.div_(scale.to(grad.device))
        moments = self.transform.transform_(grads, params, step=step, want_stats=self.track_stats)
        if unscale:
            for grad in grads:
                grad.mul_(scale.to(grad.device))
        if moments is not None:
            self._pending = (self.steps, [name for _, name in targets], moments)

    def _targets(self, optimizer) -> list[tuple[torch.Tensor, str]]:
        """(parameter, name) of each gradient the transform changes, in the order it does (a
        tensor's position in this list seeds AGR's null permutation)."""
        targets = []
        for group_index, group in enumerate(optimizer.param_groups):
            if group.get(GROUP_SWITCH, True) is False:
                continue
            for param_index, param in enumerate(group["params"]):
                grad = param.grad
                if grad is None or id(param) in self._exclude:
                    continue
                name = self._name(param, group_index, param_index)
                _check_tensor(grad, f"the gradient of {name}")
                if _in_scope(grad, self.scope):
                    targets.append((param, name))
        return targets

    @torch.no_grad()
    def preview(self) -> dict[torch.Tensor, torch.Tensor]:
        """The gradients the next ``optimizer.step()`` would hand the optimizer, on copies:
        {parameter: its gradient transformed as the step's hook will (same scope, settings,
        step number, tensor order)}, for the parameters in scope. Nothing is changed: not the
        gradients, not the step counter, not the statistics. (It ignores whether the
        transform is :attr:`active`.)"""
        targets = self._targets(self.optimizer)
        params = [param for param, _ in targets]
        copies = [param.grad.detach().clone() for param in params]
        self.transform.transform_(copies, params, step=self.steps + 1, want_stats=False)
        return dict(zip(params, copies))

    def _name(self, param: torch.Tensor, group_index: int, param_index: int) -> str:
        return self._names.get(id(param), f"group{group_index}.param{param_index}")

    def _save(self, optimizer, state_dict):
        state_dict["agr"] = self.state_dict()
        return state_dict

    def _load(self, optimizer, state_dict):
        state = state_dict.pop("agr", None)
        if state is not None:
            self.load_state_dict(state)
        return state_dict


def _replace_closure(args: tuple, kwargs: dict, closure) -> tuple[tuple, dict]:
    if "closure" in kwargs:
        return args, {**kwargs, "closure": closure}
    return (args[0], closure, *args[2:]), kwargs


def _parameter_names(names: Any) -> dict[int, str]:
    if names is None:
        return {}
    if isinstance(names, torch.nn.Module):
        names = names.named_parameters()
    elif isinstance(names, Mapping):
        names = names.items()
    result = {}
    for name, param in names:
        if not isinstance(name, str) or not isinstance(param, torch.Tensor):
            raise TypeError("AGR names must be an nn.Module or (name, parameter) pairs")
        result[id(param)] = name
    return result


def _excluded(exclude: Iterable[Any] | None, names: Mapping[int, str]) -> frozenset[int]:
    """The ids of the parameters ``exclude`` names (parameters, or names from ``names``)."""
    if exclude is None:
        return frozenset()
    by_name = {name: key for key, name in names.items()}
    ids = set()
    for item in exclude:
        if isinstance(item, torch.Tensor):
            ids.add(id(item))
        elif isinstance(item, str) and item in by_name:
            ids.add(by_name[item])
        elif isinstance(item, str):
            known = "pass names=model to name them" if not by_name else "no parameter has it"
            raise ValueError(f"exclude: {item!r} is not a parameter name ({known})")
        else:
            raise TypeError(f"exclude takes parameters or their names, got {type(item).__name__}")
    return frozenset(ids)


def attach(
    optimizer: torch.optim.Optimizer,
    *,
    transform: Any = "agr",
    scope: str = "all",
    until_step: int | None = None,
    names: Any = None,
    exclude: Iterable[Any] | None = None,
    backend: str = "auto",
    track_stats: bool = True,
    strength: float = 1.0,
    permuted: bool = False,
    seed: int = 0,
    **options: Any,
) -> AGRHandle:
    """Run AGR (or another gradient transform) on ``optimizer``'s gradients at the start of
    every ``optimizer.step()``.

    Works with any ``torch.optim.Optimizer`` (AdamW fused/foreach/for-loop, timm's Adan,
    SGD, ...), ``step(closure)``, LR schedulers and ``GradScaler.step``. The transform applies
    on optimizer steps 1..``until_step`` (all steps when None). ``names`` (an ``nn.Module`` or
    ``(name, parameter)`` pairs) labels the per-parameter diagnostics in ``last_stats``.
    The handle's state travels inside ``optimizer.state_dict()`` under the key ``"agr"``.

    The gradients are changed in place: after ``step()``, ``p.grad`` holds the transformed
    gradient the optimizer used.

    ``transform``: ``"agr"`` (the default), ``"gc"`` or ``"agc"`` (their options as keyword
    arguments: ``conv_only``; ``clipping``, ``eps``), a :class:`agr.GradientTransform`, or a
    callable ``fn(grad, param)`` that changes ``grad`` in place (see :mod:`agr.transforms`).
    Which tensors it sees: ``scope`` ``"all"`` (every gradient) or ``"weights"`` (ndim >= 2);
    never those in ``exclude`` (parameters, or names from ``names``) or in a parameter group
    with ``"grad_transform": False``.

    A parameter the transform would freeze (AGR on a one-element tensor: alpha = 1 zeroes its
    gradient on every step) is named in one :class:`FrozenParameterWarning`, with the way out.

    AGR's own controls, for ablations (definitions in :mod:`agr.regularizer`): ``strength``
    k, the dose, multiplies each element by ``(1 - alpha)**k`` instead of ``1 - alpha``;
    ``permuted=True``, the mass-matched null, applies each tensor's dosed dampings in a random
    order, rescaled to remove the L1 mass the unpermuted operator removes (a new permutation
    per tensor and step, drawn from ``seed``, the step number and the tensor's position, so
    runs and resumed runs repeat exactly); ``backend`` picks its implementation.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"attach() needs a torch.optim.Optimizer, got {type(optimizer).__name__}")
    _check_choice("scope", scope, SCOPES)
    if until_step is not None and (
        isinstance(until_step, bool) or not isinstance(until_step, int) or until_step < 0
    ):
        raise ValueError(f"AGR until_step must be None or an integer >= 0, got {until_step!r}")
    agr_options = dict(strength=strength, permuted=permuted, seed=seed, backend=backend)
    if transform == "agr":
        chosen = make_transform("agr", **agr_options, **options)
    else:
        changed = {k: v for k, v in agr_options.items() if v != AGR_DEFAULTS[k]}
        if changed:
            raise ValueError(f"{sorted(changed)} are AGR's options; transform={transform!r}")
        chosen = make_transform(transform, **options)
    if handle_of(optimizer) is not None:
        raise ValueError("this optimizer already has AGR attached; call handle.remove() first")
    labels = _parameter_names(names)
    handle = AGRHandle(
        optimizer,
        scope=scope,
        until_step=until_step,
        names=labels,
        track_stats=track_stats,
        transform=chosen,
        exclude=_excluded(exclude, labels),
    )
    _warn_frozen(handle, optimizer)
    optimizer._agr_handle = handle
    return handle


def _warn_frozen(handle: AGRHandle, optimizer: torch.optim.Optimizer) -> None:
    """One warning naming every parameter the transform would freeze, with the way out."""
    frozen = []
    for group_index, group in enumerate(optimizer.param_groups):
        if group.get(GROUP_SWITCH, True) is False:
            continue
        for param_index, param in enumerate(group["params"]):
            if id(param) in handle._exclude or not _in_scope(param, handle.scope):
                continue
            why = handle.transform.freezes(param)
            if why is not None:
                frozen.append(f"{handle._name(param, group_index, param_index)} ({why})")
    if not frozen:
        return
    shown = ", ".join(frozen[:10]) + (f" and {len(frozen) - 10} more" if len(frozen) > 10 else "")
    warnings.warn(
        f"{handle.transform.name}: these parameters would never move, because the transform "
        f"sets their gradient to 0 on every step: {shown}. If they should learn, leave them "
        "out: scope='weights' (tensors with ndim >= 2), exclude=[...] in attach, or a "
        "parameter group with 'grad_transform': False. (The authors' AGR code freezes them "
        "too.)",
        FrozenParameterWarning,
        stacklevel=_caller_level(),
    )


def _caller_level() -> int:
    """The warnings stacklevel of the first frame outside this package (the user's line)."""
    package = str(Path(__file__).parent)
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def handle_of(optimizer: torch.optim.Optimizer) -> AGRHandle | None:
    """The AGR handle attached to ``optimizer``, or None."""
    return getattr(optimizer, "_agr_handle", None)
