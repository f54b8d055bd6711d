"""Per-tensor gradient transforms that run inside ``optimizer.step()``: AGR and its neighbours.

Each transform changes one step's gradients in place, one tensor at a time, and
:func:`agr.attach` runs any of them at the same point (after backward, the DDP all-reduce,
GradScaler's unscale and gradient clipping; before the optimizer's own weight decay):

* :class:`AGR` (the default): ``G <- G * (1 - |G| / sum|G|)`` (the operator, its dose and its
  null control are in :mod:`agr.regularizer`).
* :class:`GC`, gradient centralization (Yong et al., ECCV 2020, arXiv 2004.01461): a tensor
  with more than one dimension loses its mean over every dimension but the first,
  ``G <- G - mean_{dims 1..}(G)``, so each output unit's gradient sums to zero (the paper's
  conv-and-FC form); ``conv_only=True`` transforms tensors with more than three dimensions
  only (its conv-only form). Tensors with one dimension or none are left unchanged.
* :class:`AGC`, adaptive gradient clipping (Brock et al. 2021, arXiv 2102.06171): per output
  unit i (a row of a Linear weight, a filter of a conv; a vector or a scalar is one unit),
  ``G_i <- G_i * lambda * max(||W_i||, eps) / ||G_i||`` where ``||G_i|| > lambda *
  max(||W_i||, eps)``, Frobenius norms over all dimensions but the first. The defaults are
  the paper's code's, ``clipping`` lambda = 0.01 and ``eps`` = 1e-3; the paper does not clip
  the final linear layer (``attach(..., exclude=...)``, or ``build_optimizer``'s
  ``agc_skip_final_linear``).
* a callable of your own, ``fn(grad, param)``, which changes ``grad`` in place or returns
  the new gradient (:class:`CallableTransform`; ``attach(optimizer, transform=fn)``).

Where a transform is degenerate, it says so. AGR gives a one-element tensor alpha = 1 and
zeroes its gradient on every step; GC zeroes the gradient of a tensor whose output units have
one element each (shape ``(n, 1)``, ``(n, 1, 1, 1)``). Such a parameter never moves, so
:func:`agr.attach` warns once and names them (:meth:`GradientTransform.freezes`). AGC caps a
unit whose weights are all zero (a zero-initialised bias or gain) at a gradient norm of
lambda * eps = 1e-5, so such units move slowly until their weights grow; that is AGC as
published and is not warned about.

fp16/bf16 gradients are transformed in float32 and rounded once, as AGR is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from .regularizer import (
    BACKENDS,
    SCOPES,
    Variant,
    _apply,
    _check_choice,
    _check_strength,
    _check_tensor,
    _in_scope,
)

__all__ = [
    "AGC",
    "AGR",
    "GC",
    "TRANSFORMS",
    "CallableTransform",
    "GradientTransform",
    "make_transform",
    "regularize_",
]

_FULL_PRECISION = (torch.float32, torch.float64)


class GradientTransform:
    """One per-tensor gradient transform. A subclass sets :attr:`name` and implements
    :meth:`transform_`; :meth:`options` (its settings, for ``state_dict`` and ``repr``) and
    :meth:`freezes` are optional."""

    name: str = ""
    scale_invariant: bool = False
    """Whether T(c g) = c T(g) for every c > 0: such a transform may see gradients that
    GradScaler has not unscaled yet (a fused optimizer unscales them inside its kernel); the
    hook unscales them for any other."""

    def transform_(
        self,
        grads: list[torch.Tensor],
        params: list[torch.Tensor],
        *,
        step: int,
        want_stats: bool,
    ) -> torch.Tensor | None:
        """Change ``grads`` (the gradients of ``params``) in place. With ``want_stats``,
        return a float64 ``[n, 3]`` tensor, per gradient: sum|g| before, the L1 mass of the
        change, sum|g - g'|, and max|g| before."""
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        return {}

    def freezes(self, param: torch.Tensor) -> str | None:
        """Why this transform always zeroes ``param``'s gradient (None if it does not)."""
        return None

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.options() == self.options()

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(self.options().items()))))

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({settings})"


class AGR(GradientTransform):
    """Adaptive gradient regularization, ``G <- G * (1 - alpha)**strength`` with
    ``alpha = |G| / sum|G|`` (strength 1: AGR itself), optionally the mass-matched null
    (``permuted``, drawn from ``seed``); ``backend`` chooses the implementation
    (:data:`agr.BACKENDS`). See :mod:`agr.regularizer`."""

    name = "agr"
    scale_invariant = True  # alpha = |g| / sum|g| does not change with the scale

    def __init__(
        self,
        strength: float = 1.0,
        permuted: bool = False,
        seed: int = 0,
        backend: str = "auto",
    ) -> None:
        _check_strength(strength)
        if not isinstance(permuted, bool):
            raise ValueError(f"AGR permuted must be True or False, got {permuted!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"AGR seed must be an integer, got {seed!r}")
        _check_choice("backend", backend, BACKENDS)
        self.variant = Variant(strength=float(strength), permuted=permuted, seed=seed)
        self.backend = backend

    def transform_(self, grads, params, *, step, want_stats):
        return _apply(grads, self.backend, want_stats, variant=self.variant, step=step)

    def options(self) -> dict[str, Any]:
        v = self.variant
        return {"strength": v.strength, "permuted": v.permuted, "seed": v.seed}

    def freezes(self, param):
        if param.numel() == 1:
            return "one element: alpha = |g| / sum|g| = 1, so AGR sets its gradient to 0"
        return None


class GC(GradientTransform):
    """Gradient centralization: ``G <- G - mean(G over dims 1..)`` for tensors with more than
    one dimension (``conv_only``: more than three)."""

    name = "gc"
    scale_invariant = True  # linear

    def __init__(self, conv_only: bool = False) -> None:
        if not isinstance(conv_only, bool):
            raise ValueError(f"GC conv_only must be True or False, got {conv_only!r}")
        self.conv_only = conv_only

    def applies_to(self, tensor: torch.Tensor) -> bool:
        return tensor.dim() > (3 if self.conv_only else 1)

    @torch.no_grad()
    def transform_(self, grads, params, *, step, want_stats):
        rows = []
        for grad in grads:
            work = grad if grad.dtype in _FULL_PRECISION else grad.float()
            if not self.applies_to(grad):
                rows.append(_stats(work, None) if want_stats else None)
                continue
            mean = work.mean(dim=tuple(range(1, work.dim())), keepdim=True)
            if want_stats:  # the change is the mean, repeated over each unit's elements
                rows.append(_stats(work, mean.abs().sum() * (work[0].numel())))
            if work is grad:
                grad.sub_(mean)
            else:
                grad.copy_(work - mean)
        return _stacked(rows, grads) if want_stats else None

    def options(self) -> dict[str, Any]:
        return {"conv_only": self.conv_only}

    def freezes(self, param):
        if self.applies_to(param) and param[0].numel() == 1:
            shape = tuple(param.shape)
            return f"shape {shape}: each output unit has one element, so GC sets it to 0"
        return None


class AGC(GradientTransform):
    """Adaptive gradient clipping, unit-wise: ``G_i <- G_i * lambda * max(||W_i||, eps) /
    ||G_i||`` where that factor is below 1 (``clipping`` lambda, ``eps``)."""

    name = "agc"

    def __init__(self, clipping: float = 0.01, eps: float = 1e-3) -> None:
        for key, value in (("clipping", clipping), ("eps", eps)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"AGC {key} must be a number > 0, got {value!r}")
            if not (0 < value < math.inf):
                raise ValueError(f"AGC {key} must be a finite number > 0, got {value!r}")
        self.clipping = float(clipping)
        self.eps = float(eps)

    @torch.no_grad()
    def transform_(self, grads, params, *, step, want_stats):
        rows = []
        for grad, param in zip(grads, params):
            work = grad if grad.dtype in _FULL_PRECISION else grad.float()
            weight = param.detach().to(work.dtype)
            max_norm = _unit_norm(weight).clamp_(min=self.eps).mul_(self.clipping)
            grad_norm = _unit_norm(work)
            clipped = work * (max_norm / grad_norm.clamp(min=1e-6))
            new = torch.where(grad_norm > max_norm, clipped, work)
            if want_stats:
                rows.append(_stats(work, (work.double() - new.double()).abs().sum()))
            grad.copy_(new)
        return _stacked(rows, grads) if want_stats else None

    def options(self) -> dict[str, Any]:
        return {"clipping": self.clipping, "eps": self.eps}


class CallableTransform(GradientTransform):
    """A user's function ``fn(grad, param)`` as a transform: it changes ``grad`` in place, or
    returns the new gradient (copied into ``grad``). Its statistics compare each gradient
    before and after, so with statistics on every step keeps one copy of a gradient."""

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor | None]) -> None:
        if not callable(fn):
            raise TypeError(f"a gradient transform must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.name = f"callable:{getattr(fn, '__qualname__', type(fn).__name__)}"

    @torch.no_grad()
    def transform_(self, grads, params, *, step, want_stats):
        rows = []
        for grad, param in zip(grads, params):
            before = grad.detach().clone() if want_stats else None
            result = self.fn(grad, param)
            if result is not None and result is not grad:
                grad.copy_(result)
            if want_stats:
                work = before.double()
                rows.append(_stats(work, (work - grad.double()).abs().sum()))
        return _stacked(rows, grads) if want_stats else None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CallableTransform) and other.fn is self.fn

    def __hash__(self) -> int:
        return hash(self.fn)

    def __repr__(self) -> str:
        return f"CallableTransform({self.name.removeprefix('callable:')})"


TRANSFORMS: dict[str, type[GradientTransform]] = {"agr": AGR, "gc": GC, "agc": AGC}
"""The transforms by name; the optimizer names ``<family>_<name>`` (``adamw_gc``) use them."""


def make_transform(transform: Any = "agr", **options: Any) -> GradientTransform:
    """A transform from a name of :data:`TRANSFORMS` and its options, a
    :class:`GradientTransform` (returned as it is; no options), or a callable."""
    if isinstance(transform, GradientTransform):
        if options:
            raise ValueError(
                f"give {sorted(options)} to the transform itself, not beside {transform!r}"
            )
        return transform
    if isinstance(transform, str):
        cls = TRANSFORMS.get(transform)
        if cls is None:
            raise ValueError(
                f"unknown gradient transform {transform!r}; choose one of "
                f"{', '.join(TRANSFORMS)}, or pass a GradientTransform or a callable"
            )
        try:
            return cls(**options)
        except TypeError as error:  # an option this transform does not take
            raise ValueError(f"gradient transform {transform!r}: {error}") from None
    if callable(transform):
        if options:
            raise ValueError(f"a callable transform takes no options, got {sorted(options)}")
        return CallableTransform(transform)
    raise TypeError(
        "transform must be a name, a GradientTransform or a callable, got "
        f"{type(transform).__name__}"
    )


def regularize_(
    tensors: Iterable[torch.Tensor],
    *,
    scope: str = "all",
    backend: str = "auto",
    strength: float = 1.0,
    transform: Any = "agr",
    params: Iterable[torch.Tensor] | None = None,
    **options: Any,
) -> None:
    """Apply AGR (or another gradient transform) in place to each gradient tensor in
    ``tensors``.

    A tensor whose sum(|g|) is zero is left unchanged. fp16/bf16 tensors are summed and
    rescaled in float32. With ``scope="all"`` (the default, the authors' code) every tensor
    is transformed (a one-element tensor then has alpha = 1 and becomes zero); with
    ``scope="weights"`` tensors with fewer than two dimensions are left unchanged.
    ``strength`` k != 1 applies the dose ``g <- g * (1 - alpha)**k`` (a dose-response
    control; k = 0 changes nothing).

    ``transform`` takes what :func:`agr.attach` takes (``"gc"``, ``"agc"`` with their
    ``options``, a :class:`agr.GradientTransform`, a callable); ``params`` are the parameters
    the gradients belong to, in the same order, which AGC (and a callable that reads them)
    needs.
    """
    _check_choice("scope", scope, SCOPES)
    _check_choice("backend", backend, BACKENDS)
    _check_strength(strength)
    tensors = list(tensors)
    for index, tensor in enumerate(tensors):
        _check_tensor(tensor, f"tensor {index}")
    if transform == "agr" and params is None and not options:
        in_scope = [t for t in tensors if _in_scope(t, scope)]
        _apply(in_scope, backend, want_stats=False, variant=Variant(strength=float(strength)))
        return
    agr_options = {"strength": strength, "backend": backend} if transform == "agr" else {}
    if transform != "agr" and (strength != 1.0 or backend != "auto"):
        raise ValueError(f"strength and backend are AGR's options; transform={transform!r}")
    chosen = make_transform(transform, **agr_options, **options)
    params = tensors if params is None else list(params)
    if len(params) != len(tensors) or isinstance(chosen, AGC) and params is tensors:
        raise ValueError(
            "regularize_: give params=, the parameters of the gradients in the same order "
            f"({len(tensors)} gradients{'' if params is tensors else f', {len(params)} params'})"
        )
    pairs = [(g, p) for g, p in zip(tensors, params) if _in_scope(g, scope)]
    chosen.transform_([g for g, _ in pairs], [p for _, p in pairs], step=0, want_stats=False)


def _unit_norm(tensor: torch.Tensor) -> torch.Tensor:
    """The Frobenius norm of each output unit (all dims but the first, kept for broadcasting);
    of the whole tensor for a vector or a scalar."""
    if tensor.dim() <= 1:
        return tensor.norm(2.0)
    return tensor.norm(2.0, dim=tuple(range(1, tensor.dim())), keepdim=True)


def _stats(work: torch.Tensor, changed: torch.Tensor | None) -> torch.Tensor:
    """[sum|g|, L1 mass of the change, max|g|] of one gradient, in float64."""
    magnitude = work.abs()
    l1 = magnitude.sum(dtype=torch.float64)
    largest = magnitude.max().double() if work.numel() else l1.new_zeros(())
    return torch.stack([l1, l1.new_zeros(()) if changed is None else changed.double(), largest])


def _stacked(rows: list[torch.Tensor], grads: list[torch.Tensor]) -> torch.Tensor:
    if not rows:
        return torch.zeros(0, 3, dtype=torch.float64)
    return torch.stack([row.to(grads[0].device) for row in rows])
