"""An exponential moving average of a model's weights, and the task state that keeps one
through a run (updated after every optimizer step, saved in every checkpoint): any task may
hand the engine an :class:`EMAState` (the diffusion task does, model.ema_decay)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn


class EMA:
    """Exponential moving average of a model's parameters, kept in float32.

    ``ema = decay * ema + (1 - decay) * param`` after every :meth:`update`, starting from a copy
    of the parameters at construction (no warm-up, as in the authors' code); buffers (e.g.
    BatchNorm statistics; the UNets have none) are copied, not averaged. Parameters are matched
    by name, so pass the same (unwrapped: not DDP/compiled) model each time.

        ema = EMA(model, decay=0.9999)
        ...; optimizer.step(); ema.update(model)
        ema.store(model); ema.copy_to(model); evaluate(model); ema.restore(model)
        frozen = ema.averaged_model(model)           # a copy with the EMA weights
        torch.save({"ema": ema.state_dict()}, ...)   # and ema.load_state_dict(...) to resume
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        self.decay = float(decay)
        self.num_updates = 0
        with torch.no_grad():
            self.shadow: dict[str, Tensor] = {
                name: p.detach().to(torch.float32, copy=True)
                for name, p in model.named_parameters()
            }
            self.buffers: dict[str, Tensor] = {
                name: b.detach().clone() for name, b in model.named_buffers()
            }
        self._backup: dict[str, Tensor] | None = None

    def _params(self, model: nn.Module) -> list[Tensor]:
        params = dict(model.named_parameters())
        if params.keys() != self.shadow.keys():
            missing = sorted(self.shadow.keys() - params.keys())[:5]
            extra = sorted(params.keys() - self.shadow.keys())[:5]
            raise ValueError(
                f"model parameters do not match the EMA's (missing {missing}, extra {extra})"
            )
        return [params[name].detach() for name in self.shadow]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step towards the model's current parameters; copy its buffers."""
        shadow = list(self.shadow.values())
        params = [p if p.dtype == torch.float32 else p.float() for p in self._params(model)]
        if shadow:
            torch._foreach_mul_(shadow, self.decay)
            torch._foreach_add_(shadow, params, alpha=1.0 - self.decay)
        model_buffers = dict(model.named_buffers())
        for name, buf in self.buffers.items():
            buf.copy_(model_buffers[name])
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the EMA weights (and buffers) into ``model``'s parameters, cast to their dtype."""
        targets = self._params(model)
        torch._foreach_copy_(
            targets, [s.to(t.dtype) for s, t in zip(self.shadow.values(), targets)]
        )
        model_buffers = dict(model.named_buffers())
        for name, buf in self.buffers.items():
            model_buffers[name].copy_(buf)

    @torch.no_grad()
    def store(self, model: nn.Module) -> None:
        """Keep a copy of ``model``'s current parameters for :meth:`restore`."""
        self._backup = {n: p.clone() for n, p in zip(self.shadow, self._params(model))}

    @torch.no_grad()
    def restore(self, model: nn.Module) -> None:
        """Put back the parameters saved by :meth:`store`."""
        if self._backup is None:
            raise RuntimeError("restore() without a store()")
        for p, saved in zip(self._params(model), self._backup.values()):
            p.copy_(saved)
        self._backup = None

    def averaged_model(self, model: nn.Module) -> nn.Module:
        """A deep copy of ``model`` holding the EMA weights (``model`` is left unchanged)."""
        averaged = copy.deepcopy(model)
        self.copy_to(averaged)
        return averaged

    def state_dict(self) -> dict[str, Any]:
        return {
            "decay": self.decay,
            "num_updates": self.num_updates,
            "shadow": dict(self.shadow),
            "buffers": dict(self.buffers),
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` exactly (values copied into this EMA's tensors, which keep
        their device)."""
        for key in ("shadow", "buffers"):
            ours, theirs = getattr(self, key), state[key]
            if ours.keys() != theirs.keys():
                raise ValueError(f"EMA state {key} names do not match this model's")
            for name, tensor in ours.items():
                tensor.copy_(theirs[name])
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])

    def to(self, device: torch.device | str) -> EMA:
        self.shadow = {n: t.to(device) for n, t in self.shadow.items()}
        self.buffers = {n: t.to(device) for n, t in self.buffers.items()}
        return self


class EMAState:
    """The EMA of the weights as the engine's task state (see
    ``agr_suite.engine.task_parts.TaskState``)."""

    def __init__(self, decay: float) -> None:
        self.decay = float(decay)
        self.ema: EMA | None = None

    def setup(self, model: nn.Module, device: torch.device) -> None:
        self.ema = EMA(model, self.decay)  # a float32 copy of the weights, on their device

    def after_step(self, model: nn.Module) -> None:
        self.ema.update(model)

    def state_dict(self) -> dict[str, Any]:
        return {"ema": self.ema.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema.load_state_dict(state["ema"])
