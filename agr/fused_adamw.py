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
        deferred = handle is not None and handle._take_deferred()
        if not deferred or not self._fusable():
            if deferred:
                handle._regularize(self)  # AGR as a separate pass, then torch's update
            return _torch_adamw_step(self, closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        names, rows = [], []
        for group_index, group in enumerate(self.param_groups):
            params, grads, exp_avgs, exp_avg_sqs, steps, flags = [], [], [], [], [], []
            for param_index, param in enumerate(group["params"]):
                if param.grad is None:
                    continue
                name = handle._name(param, group_index, param_index)
                regularizer._check_tensor(param.grad, f"the gradient of {name}")
                state = self.state[param]
                if len(state) == 0:
                    state["step"] = torch.zeros((), dtype=torch.float32, device=param.device)
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(
                        param, memory_format=torch.preserve_format
                    )
                in_scope = regularizer._in_scope(param.grad, handle.scope)
                params.append(param)
                grads.append(param.grad)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                steps.append(state["step"])
                flags.append(in_scope)
                if in_scope:
                    names.append(name)
            if not params:
                continue
            beta1, beta2 = group["betas"]
            moments = regularizer._kernel_module().agr_adamw_(
                params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                steps,
                flags,
                float(group["lr"]),
                float(beta1),
                float(beta2),
                float(group["eps"]),
                float(group["weight_decay"]),
            )
            rows.append(moments[torch.tensor(flags, dtype=torch.bool)])
        if handle.track_stats and rows:
            handle._record(names, torch.cat(rows))
        return loss

    def _fusable(self) -> bool:
        if (
            getattr(self, "found_inf", None) is not None
            or getattr(self, "grad_scale", None) is not None
        ):
            return False
        if not regularizer._kernel_available():
            return False
        for group in self.param_groups:
            if group["amsgrad"] or group["maximize"] or group["capturable"]:
                return False
            if group["differentiable"] or torch.is_tensor(group["lr"]):
                return False
            if any(torch.is_tensor(b) for b in group["betas"]):
                return False
            for param in group["params"]:
                grad = param.grad
                if grad is None:
                    continue
                if param.device.type != "cpu" or param.dtype not in (torch.float32, torch.float64):
                    return False
                if grad.dtype != param.dtype or not (
                    param.is_contiguous() and grad.is_contiguous()
                ):
                    return False
                if grad.layout != torch.strided:
                    return False
                state = self.state.get(param)
                if state and not (
                    state["exp_avg"].is_contiguous() and state["exp_avg_sq"].is_contiguous()
                ):
                    return False
        return True


def make(params, *, scope: str, until_step: int | None, names, **adamw_kwargs) -> AGRFusedAdamW:
    """An :class:`AGRFusedAdamW` (torch's ``fused=True`` for its fallback) with AGR attached."""
    optimizer = AGRFusedAdamW(params, fused=True, **adamw_kwargs)
    handle = attach(optimizer, scope=scope, until_step=until_step, names=names)
    handle._fused_into_step = True
    return optimizer
