"""``torch.optim.AdamW`` with AGR folded into its CPU update.

A separate AGR pass reads and writes every gradient once more before the optimizer reads
it again. Here the C++ kernel rescales each gradient inside the AdamW update, while it is
in cache, so AGR costs one extra read of the gradient (its L1 sum) and the write-back of
``p.grad``. The class *is* a ``torch.optim.AdamW`` (same state_dict, schedulers, GradScaler,
``isinstance``); ``agr.build_optimizer("adamw_agr", ..., impl="fused")`` returns it on CPU.

Whenever the fused kernel does not apply (CUDA, fp16/bf16, amsgrad, maximize,
capturable, differentiable, a tensor learning rate, GradScaler's ``found_inf``, the
kernel not built), the step is torch's own fused AdamW step, with AGR run by the hook.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from . import regularizer
from .regularizer import attach, handle_of


def _unhooked(step):
    """torch wraps ``Optimizer.step`` to run the step hooks; the wrapped original."""
    while getattr(step, "hooked", False):
        step = step.__wrapped__
    return step


_torch_adamw_step = _unhooked(torch.optim.AdamW.step)


class AGRFusedAdamW(torch.optim.AdamW):
    """AdamW with AGR in one pass per parameter on CPU. Build with :func:`make`."""

    @torch.no_grad()
    def step(self, closure=None):
        handle = handle_of(self)
        if handle is None or not handle._take_deferred():
            return _torch_adamw_step(self, closure)
        batches = self._fused_batches(handle.scope)
        if batches is None:
            handle._regularize(self)  # AGR as a separate pass, then torch's own update
            return _torch_adamw_step(self, closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        kernel = regularizer._kernel_module()
        names, rows = [], []
        for batch in batches:
            group = batch.group
            beta1, beta2 = group["betas"]
            moments = kernel.agr_adamw_(
                batch.params,
                batch.grads,
                batch.exp_avgs,
                batch.exp_avg_sqs,
                batch.steps,
                batch.agr,
                float(group["lr"]),
                float(beta1),
                float(beta2),
                float(group["eps"]),
                float(group["weight_decay"]),
            )
            if handle.track_stats:
                rows.append(moments[torch.tensor(batch.agr, dtype=torch.bool)])
                names += [
                    handle._name(param, batch.group_index, position)
                    for param, position, agr in zip(batch.params, batch.positions, batch.agr)
                    if agr
                ]
        if handle.track_stats and rows:
            handle._record(names, torch.cat(rows))
        return loss

    def _fused_batches(self, scope: str) -> list[_Batch] | None:
        """The kernel's arguments per parameter group, with the state initialised as torch's
        fused AdamW does; None when the kernel cannot run this step."""
        if (
            getattr(self, "found_inf", None) is not None
            or getattr(self, "grad_scale", None) is not None
        ):
            return None  # GradScaler's fused-optimizer protocol: torch's kernel handles it
        if not regularizer._kernel_available():
            return None
        batches = []
        for group_index, group in enumerate(self.param_groups):
            if group["amsgrad"] or group["maximize"] or group["capturable"]:
                return None
            if group["differentiable"] or torch.is_tensor(group["lr"]):
                return None
            if any(torch.is_tensor(b) for b in group["betas"]):
                return None
            batch = _Batch(group, group_index)
            for position, param in enumerate(group["params"]):
                grad = param.grad
                if grad is None:
                    continue
                if not (
                    param.device.type == "cpu"
                    and param.dtype in _KERNEL_DTYPES
                    and grad.dtype == param.dtype
                    and grad.layout == torch.strided
                    and param.is_contiguous()
                    and grad.is_contiguous()
                ):
                    return None
                state = self.state[param]
                if len(state) == 0:
                    state["step"] = torch.zeros((), dtype=torch.float32, device=param.device)
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(
                        param, memory_format=torch.preserve_format
                    )
                elif not (state["exp_avg"].is_contiguous() and state["exp_avg_sq"].is_contiguous()):
                    return None
                batch.add(param, grad, state, position, regularizer._in_scope(grad, scope))
            if batch.params:
                batches.append(batch)
        return batches


_KERNEL_DTYPES = (torch.float32, torch.float64)


@dataclass
class _Batch:
    """One parameter group's arguments to the kernel (parallel lists)."""

    group: dict
    group_index: int
    params: list = field(default_factory=list)
    grads: list = field(default_factory=list)
    exp_avgs: list = field(default_factory=list)
    exp_avg_sqs: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    positions: list = field(default_factory=list)
    agr: list = field(default_factory=list)

    def add(self, param, grad, state, position: int, agr: bool) -> None:
        self.params.append(param)
        self.grads.append(grad)
        self.exp_avgs.append(state["exp_avg"])
        self.exp_avg_sqs.append(state["exp_avg_sq"])
        self.steps.append(state["step"])
        self.positions.append(position)
        self.agr.append(agr)


def make(params, *, scope: str, until_step: int | None, names, **adamw_kwargs) -> AGRFusedAdamW:
    """An :class:`AGRFusedAdamW` (torch's ``fused=True`` for its fallback) with AGR attached."""
    optimizer = AGRFusedAdamW(params, fused=True, **adamw_kwargs)
    handle = attach(optimizer, scope=scope, until_step=until_step, names=names)
    handle._fused_into_step = True
    return optimizer
