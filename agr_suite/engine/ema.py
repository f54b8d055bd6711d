"""An exponential moving average of a model's weights (torch's AveragedModel), and the task
state that keeps one through a run (updated after every optimizer step, saved in every
checkpoint): any task may hand the engine an :class:`EMAState` (the diffusion task does,
model.ema_decay)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel


class EMA(AveragedModel):
    """Exponential moving average of a model's parameters; ``ema.module`` is a float32 copy of
    the model in eval mode that holds them, to evaluate or sample.

    ``ema = decay * ema + (1 - decay) * param`` after every :meth:`update_parameters`, starting
    from the parameters at construction (no warm-up, as in the authors' code); buffers (e.g.
    BatchNorm statistics; the UNets have none) are copied, not averaged. Pass the same
    unwrapped model each time: its parameter names must be the EMA's.

    The step multiplies then adds, with the decay and ``1 - decay`` rounded to float32, as this
    project always did; ``get_ema_multi_avg_fn``'s lerp rounds differently (about 1e-5 apart
    after 10^4 steps at decay 0.9999), and earlier runs must keep their numbers.

        ema = EMA(model, decay=0.9999)
        ...; optimizer.step(); ema.update_parameters(model)
        evaluate(ema.module)
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        super().__init__(model, multi_avg_fn=self._ema_step)
        self.decay = float(decay)
        self.module.float().eval().requires_grad_(False)
        self.update_parameters(model)  # AveragedModel's first update copies: the EMA's start

    def _ema_step(self, ema: list[Tensor], params: list[Tensor], _n_averaged: Tensor) -> None:
        torch._foreach_mul_(ema, self.decay)
        torch._foreach_add_(ema, [p.float() for p in params], alpha=1.0 - self.decay)

    def update_parameters(self, model: nn.Module) -> None:
        """One EMA step towards ``model``'s parameters (AveragedModel pairs them by order, so
        their names are checked first); its buffers copied."""
        names = [name for name, _ in model.named_parameters()]
        if names != [name for name, _ in self.module.named_parameters()]:
            raise ValueError("model parameters do not match the EMA's (pass the unwrapped model)")
        super().update_parameters(model)

    @property
    def num_updates(self) -> int:
        return int(self.n_averaged) - 1  # AveragedModel counts the initial copy


class EMAState:
    """The EMA of the weights as the engine's task state (see
    ``agr_suite.engine.task_parts.TaskState``). Its checkpoint entry keeps the layout of the
    hand-written EMA it replaced (tensors by name in ``shadow`` and ``buffers``), so checkpoints
    written before still load."""

    def __init__(self, decay: float) -> None:
        self.decay = float(decay)
        self.ema: EMA | None = None

    def setup(self, model: nn.Module, device: torch.device) -> None:
        self.ema = EMA(model, self.decay)  # a float32 copy of the model, on its device

    def after_step(self, model: nn.Module) -> None:
        self.ema.update_parameters(model)

    def state_dict(self) -> dict[str, Any]:
        module = self.ema.module
        return {
            "ema": {
                "decay": self.ema.decay,
                "num_updates": self.ema.num_updates,
                "shadow": {name: p.detach() for name, p in module.named_parameters()},
                "buffers": dict(module.named_buffers()),
            }
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` exactly (values copied into the EMA's tensors, which keep
        their device)."""
        saved, module = state["ema"], self.ema.module
        ours = {**dict(module.named_parameters()), **dict(module.named_buffers())}
        theirs = {**saved["shadow"], **saved["buffers"]}
        if ours.keys() != theirs.keys():
            raise ValueError("the checkpoint's EMA tensor names do not match this model's")
        for name, tensor in ours.items():
            tensor.copy_(theirs[name])
        self.ema.decay = float(saved["decay"])
        self.ema.n_averaged.fill_(int(saved["num_updates"]) + 1)
