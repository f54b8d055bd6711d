"""How much AGR (or whichever transform is attached: GC, AGC, ...) changes the optimizer's
update, measured where it acts, and how much gradient mass it removes, by parameter kind.

For Adam-type optimizers a per-tensor constant factor cancels in m / sqrt(v), so AGR's
factor (1 - |g| / sum|g|), which differs from 1 by about 1/size, changes the update far less
than it changes the gradient. This module measures it, per parameter tensor::

    change = ||u_AGR - u|| / ||u||

where ``u`` is the update the optimizer makes from the raw gradient and ``u_AGR`` the one it
makes from the gradient AGR hands it (the handle's own transform: same scope, variant, step
number and tensor order), both from the same parameters and optimizer state.

The measurement runs in float64 on a twin: :func:`measure` copies the parameters that have
gradients, their gradients, the optimizer's per-parameter state (floating tensors to float64,
``step`` counters as they are) and per-group hyperparameters into a new optimizer of the same
class (its plain for-loop implementation: ``foreach``, ``fused`` and ``capturable`` off), and
takes the twin's step twice from that same state, once with each gradient; u and u_AGR are
the float64 differences of its parameters. In float32 the difference ``p_after - p_start``
rounds to 0 once the update falls below half the weight's ulp (late in a cosine schedule);
in float64 it resolves updates down to about 1e-16 x |w| per element, so the change is exact
to about ``1e-16 |w| / |u_AGR - u|`` relative. The real optimizer, parameters, gradients and
AGR step counter are never touched, so training is bit for bit the one it would be without
the measurement. The engine measures on its logging steps only (the twin holds a float64
copy of the parameters, gradients and state while it runs). An optimizer class whose
constructor refuses the twin's groups is skipped with one warning.

The gradient mass AGR removes is pooled by kind with :func:`removed_fraction_by_kind` from the
handle's per-parameter statistics (``AGRStats.per_param_l1`` and ``per_param_removed``):
``sum of removed mass / sum of |g|`` over the kind's tensors on one step.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Mapping

import torch
from torch import nn

from .hook import AGRHandle, AGRStats

KINDS = ("conv_linear", "norm", "bias", "embedding", "other")
"""Parameter kinds the summaries are grouped by: conv/linear weights (ndim >= 2), norm
weights, biases, embeddings (embedding tables, and a module's own position embeddings and
class/mask tokens such as a ViT's ``pos_embed`` and ``cls_token``), anything else."""

_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


def _is_layer_free_embedding(module: nn.Module, name: str) -> bool:
    """A parameter a model holds itself (not inside a Linear/Conv) named like an embedding
    or a token: timm's ``pos_embed``, ``cls_token``, ``dist_token``, ``mask_token``."""
    if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
        return False
    return "embed" in name or name.endswith("token")


def parameter_kinds(model: nn.Module) -> dict[str, str]:
    """Parameter name -> kind (see :data:`KINDS`), from the module that owns it."""
    kinds = {}
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            kind_name = type(module).__name__.lower()
            if isinstance(module, nn.Embedding) or "embedding" in kind_name:
                kind = "embedding" if param.dim() >= 2 else ("bias" if name == "bias" else "other")
            elif name == "bias":
                kind = "bias"
            elif _is_layer_free_embedding(module, name):
                kind = "embedding"
            elif isinstance(module, _NORMS) or "norm" in kind_name:
                kind = "norm"
            elif param.dim() >= 2:
                kind = "conv_linear"
            else:
                kind = "other"
            kinds[full] = kind
    return kinds


def measure(optimizer: torch.optim.Optimizer, handle: AGRHandle) -> dict[torch.Tensor, float]:
    """``{param: ||u_AGR - u|| / ||u||}`` of the optimizer's next step, in float64 on a twin
    (see the module docstring), for every parameter with a gradient and a nonzero raw update.
    Call it after backward (and clipping) and before ``optimizer.step()``; it changes nothing.
    u_AGR is the update with AGR applied (as if it were :attr:`AGRHandle.active`).
    Returns {} (with one warning per optimizer class) when the twin cannot be built."""
    params = _params_with_grad(optimizer)
    if not params:
        return {}
    with torch.no_grad():
        raw = {p: p.grad for p in params}
        regularized = handle.preview()  # the gradients the real step will use, bit for bit
        plain = _twin_step(optimizer, raw)
        if plain is None:
            return {}
        treated = _twin_step(optimizer, {p: regularized.get(p, g) for p, g in raw.items()})
        return _relative_changes(params, plain, treated)


def _relative_changes(
    params: list[torch.Tensor],
    plain: Mapping[torch.Tensor, torch.Tensor],
    treated: Mapping[torch.Tensor, torch.Tensor],
) -> dict[torch.Tensor, float]:
    """||u_AGR - u|| / ||u|| per parameter from the twin's float64 parameters after the plain
    and the AGR'd step (parameters whose plain update is exactly 0 are left out)."""
    changes = {}
    for param in params:
        norm = float((plain[param] - param.detach().double()).norm())
        if norm > 0:
            changes[param] = float((treated[param] - plain[param]).norm()) / norm
    return changes


def _params_with_grad(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]


_TWIN_SWITCHES = ("foreach", "fused", "capturable")
"""Group keys turned off in the twin, so the plain for-loop implementation runs (in float64)."""

_refused: set[type] = set()
"""Optimizer classes whose twin could not be built (warned about once)."""


def _twin_step(
    optimizer: torch.optim.Optimizer, grads: Mapping[torch.Tensor, torch.Tensor]
) -> dict[torch.Tensor, torch.Tensor] | None:
    """The float64 parameters after one step of a twin of ``optimizer`` from its current
    state, with ``grads`` (keyed by the real parameter, copied to float64); None if the twin
    cannot be built."""
    twin, copies = _build_twin(optimizer, grads)
    if twin is None:
        return None
    twin.step()
    for twin_param in copies.values():
        twin_param.grad = None
    return copies


def _build_twin(
    optimizer: torch.optim.Optimizer, grads: Mapping[torch.Tensor, torch.Tensor]
) -> tuple[torch.optim.Optimizer | None, dict[torch.Tensor, torch.Tensor]]:
    copies: dict[torch.Tensor, torch.Tensor] = {}
    groups = []
    for group in optimizer.param_groups:
        params = [p for p in group["params"] if p in grads]
        if not params:
            continue
        settings = {k: _twin_value(k, v) for k, v in group.items() if k != "params"}
        settings.update({k: False for k in _TWIN_SWITCHES if k in settings})
        for param in params:
            copies[param] = param.detach().to(torch.float64, copy=True)
            copies[param].grad = grads[param].detach().to(torch.float64, copy=True)
        groups.append({**settings, "params": [copies[p] for p in params]})
    cls = type(optimizer)
    try:
        twin = cls(groups)
    except Exception as error:  # a constructor with required arguments, or that refuses these
        _warn_refused(cls, error)
        return None, {}
    for param, twin_param in copies.items():
        if param in optimizer.state:
            state = optimizer.state[param]
            twin.state[twin_param] = {k: _twin_value(k, v) for k, v in state.items()}
    return twin, copies


def _twin_value(key: str, value):
    """A copy for the twin: floating tensors in float64, except ``step`` counters (kept as
    they are: torch keeps them as float32 tensors); other tensors cloned, the rest deep-copied."""
    if not torch.is_tensor(value):
        return copy.deepcopy(value)
    value = value.detach()
    if key == "step" or not value.is_floating_point():
        return value.clone()
    return value.to(torch.float64, copy=True)


def _warn_refused(cls: type, error: Exception) -> None:
    if cls in _refused:
        return
    _refused.add(cls)
    warnings.warn(
        f"agr.update_change: cannot build a float64 twin of {cls.__name__} "
        f"({type(error).__name__}: {error}); the update change is not measured for it",
        RuntimeWarning,
        stacklevel=5,  # the caller of measure()
    )


def summarize_by_kind(
    changes: Mapping[torch.Tensor, float], names: Mapping[int, str], kinds: Mapping[str, str]
) -> dict[str, dict[str, float]]:
    """Per kind: median, max and count of the per-tensor changes of one step."""
    grouped: dict[str, list[float]] = {}
    for param, value in changes.items():
        kind = kinds.get(names.get(id(param), ""), "other")
        grouped.setdefault(kind, []).append(value)
    return {
        kind: {"median": _median(values), "max": max(values), "tensors": len(values)}
        for kind, values in grouped.items()
    }


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def average_over_steps(steps: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """results.json ``agr.update_change``: per kind, the mean over logged steps of the
    per-step median, the largest per-tensor change seen, and the tensors per step."""
    out: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        seen = [step[kind] for step in steps if kind in step]
        if seen:
            out[kind] = {
                "median": math.fsum(s["median"] for s in seen) / len(seen),
                "max": max(s["max"] for s in seen),
                "tensors": seen[-1]["tensors"],
                "steps": len(seen),
            }
    return out


def removed_fraction_by_kind(stats: AGRStats, kinds: Mapping[str, str]) -> dict[str, float]:
    """Per kind, the share of gradient L1 mass AGR removed on one step: the mass removed from
    the kind's tensors over their sum |g| (``kinds``: parameter name -> kind, names unknown to
    it count as ``other``). A kind whose gradients are all zero is left out."""
    l1: dict[str, list[float]] = {}
    removed: dict[str, list[float]] = {}
    for name, mass in stats.per_param_l1.items():
        kind = kinds.get(name, "other")
        l1.setdefault(kind, []).append(mass)
        removed.setdefault(kind, []).append(stats.per_param_removed[name])
    totals = {kind: math.fsum(masses) for kind, masses in l1.items()}
    return {kind: math.fsum(removed[kind]) / total for kind, total in totals.items() if total > 0}


def average_removed_by_kind(steps: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """results.json ``agr.removed_fraction_by_kind``: per kind, the mean over the logged steps
    of the per-step removed fraction, and the number of those steps."""
    out: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        seen = [step[kind] for step in steps if kind in step]
        if seen:
            out[kind] = {"mean": math.fsum(seen) / len(seen), "steps": len(seen)}
    return out
