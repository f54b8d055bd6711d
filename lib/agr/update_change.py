"""How much AGR changes the optimizer's update, measured where it acts, and how much gradient
mass it removes, by parameter kind.

For Adam-type optimizers a per-tensor constant factor cancels in m / sqrt(v), so AGR's
factor (1 - |g| / sum|g|), which differs from 1 by about 1/size, changes the update far less
than it changes the gradient. This module measures it, per parameter tensor::

    change = ||u_AGR - u|| / ||u||

where ``u`` is the update the optimizer makes from the raw gradient and ``u_AGR`` the one it
makes from the AGR'd gradient, both from the same parameters and optimizer state. A
:class:`ShadowStep` takes the plain step first (AGR switched off), records ``u`` and puts the
parameters, gradients, optimizer state (per parameter and per group) and AGR step counter
back exactly as they were; the
real step (AGR on) then runs as always, so the training path is bit for bit the one it would
have been without the measurement. The engine does this on its logging steps only.

The gradient mass AGR removes is pooled by kind with :func:`removed_fraction_by_kind` from the
handle's per-parameter statistics (``AGRStats.per_param_l1`` and ``per_param_removed``):
``sum of removed mass / sum of |g|`` over the kind's tensors on one step.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping

import torch
from torch import nn

from .regularizer import AGRHandle, AGRStats

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


class ShadowStep:
    """The plain update of the next optimizer step, taken and undone before the real one.

    ``ShadowStep(optimizer, handle).run()`` before ``optimizer.step()``; ``changes()`` after
    it gives ``{param: ||u_AGR - u|| / ||u||}`` for every parameter with a gradient and a
    nonzero plain update."""

    def __init__(self, optimizer: torch.optim.Optimizer, handle: AGRHandle) -> None:
        self.optimizer, self.handle = optimizer, handle
        self.params = [
            p for group in optimizer.param_groups for p in group["params"] if p.grad is not None
        ]
        self.start: list[torch.Tensor] = []
        self.plain: list[torch.Tensor] = []

    @torch.no_grad()
    def run(self) -> None:
        optimizer, handle = self.optimizer, self.handle
        self.start = [p.detach().clone() for p in self.params]
        grads = [p.grad.detach().clone() for p in self.params]
        saved = {p: _copy_state(optimizer.state[p]) for p in self.params if p in optimizer.state}
        # some optimizers count steps in the group (timm's Adan: group["step"])
        groups = [
            _copy_state({k: v for k, v in g.items() if k != "params"})
            for g in optimizer.param_groups
        ]
        steps, enabled = handle.steps, handle.enabled
        handle.enabled = False
        try:
            optimizer.step()
        finally:
            handle.enabled, handle.steps = enabled, steps
        self.plain = [p.detach() - s for p, s in zip(self.params, self.start)]
        for group, values in zip(optimizer.param_groups, groups):
            for key in [k for k in group if k != "params" and k not in values]:
                del group[key]
            for key, value in values.items():
                if torch.is_tensor(value) and torch.is_tensor(group.get(key)):
                    group[key].copy_(value)
                else:
                    group[key] = value
        for param, start, grad in zip(self.params, self.start, grads):
            param.copy_(start)
            param.grad.copy_(grad)
            if param not in saved:
                optimizer.state.pop(param, None)  # the shadow step created it
                continue
            state = optimizer.state[param]
            for key, value in saved[param].items():
                if torch.is_tensor(value) and torch.is_tensor(state.get(key)):
                    state[key].copy_(value)
                else:
                    state[key] = value

    @torch.no_grad()
    def changes(self) -> dict[torch.Tensor, float]:
        out = {}
        for param, start, plain in zip(self.params, self.start, self.plain):
            norm = float(plain.double().norm())
            if norm > 0:
                moved = param.detach() - start
                out[param] = float((moved - plain).double().norm()) / norm
        return out


def _copy_state(state: Mapping) -> dict:
    return {
        k: v.detach().clone() if torch.is_tensor(v) else copy.deepcopy(v) for k, v in state.items()
    }


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
