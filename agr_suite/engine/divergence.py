"""Divergence: a training loss or evaluation metric that is NaN/inf, a training loss above
``trainer.divergence_factor`` x the run's first loss, or weights/optimizer state that became
NaN/inf end the run with :class:`DivergedError` (``results.json`` status ``failed``, error
``diverged at epoch E step S: ...``) before any checkpoint of the bad state is written, so
``last.pt`` stays the last good one. Every rank reaches the same verdict."""

from __future__ import annotations

import math
from typing import Any

import torch

from agr_suite.engine.distributed import DistContext


class DivergedError(FloatingPointError):
    """The run diverged: ``diverged at epoch E step S: <what>`` (E 1-based, S the optimizer
    step: the one being computed for a training loss, the last one taken otherwise)."""


class DivergenceGuard:
    """The run's divergence checks; ``reference_loss`` (the run's first training loss) is
    checkpointed with the run."""

    def __init__(self, ctx: DistContext, factor: float | None) -> None:
        self.ctx, self.factor = ctx, factor
        self.reference_loss: float | None = None

    def check_losses(self, epoch: int, unchecked: list[tuple[torch.Tensor, int]]) -> float:
        """Read the batch losses since the last check (one host sync; under DDP their means
        over the ranks, so every rank reaches the same verdict) and check each in order;
        returns the last one."""
        values = torch.stack([loss.float() for loss, _ in unchecked])
        if self.ctx.distributed:
            torch.distributed.all_reduce(values)
        world = self.ctx.world_size if self.ctx.distributed else 1
        read = [value / world for value in values.tolist()]
        for value, (_, step) in zip(read, unchecked):
            self._check_loss(epoch, step, value)
        return read[-1]

    def check_metrics(self, epoch: int, step: int, metrics: dict[str, Any]) -> None:
        bad = {
            k: v
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isfinite(v)
        }
        if self._any_rank(bool(bad)):
            shown = ", ".join(f"{k} = {v}" for k, v in bad.items()) or "on another rank"
            raise diverged(epoch, step, f"evaluation metric not finite: {shown}")

    def check_state(
        self, epoch: int, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer
    ) -> None:
        """Before a checkpoint is written: the weights and the optimizer state are finite (a
        last step of an epoch can break them with a finite loss, and an epoch without an
        evaluation would not notice)."""
        tensors = [p.detach() for p in model.parameters()]
        for state in optimizer.state.values():
            tensors += [v for v in state.values() if torch.is_tensor(v) and v.is_floating_point()]
        finite = torch.stack([torch.isfinite(t).all() for t in tensors]).all().item()
        if self._any_rank(not finite):
            raise diverged(epoch, step, "the weights or the optimizer state became NaN/inf")

    def _check_loss(self, epoch: int, step: int, value: float) -> None:
        if not math.isfinite(value):
            raise diverged(epoch, step, f"the training loss is {value}")
        if self.reference_loss is None:
            self.reference_loss = value
        factor = self.factor
        if factor and self.reference_loss > 0 and value > float(factor) * self.reference_loss:
            raise diverged(
                epoch,
                step,
                f"the training loss {value:.4g} exceeds trainer.divergence_factor={factor:g} "
                f"x the run's first loss {self.reference_loss:.4g}",
            )

    def _any_rank(self, flag: bool) -> bool:
        if not self.ctx.distributed:
            return flag
        value = torch.tensor([float(flag)], device=self.ctx.device)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
        return bool(value.item())


def diverged(epoch: int, step: int, what: str) -> DivergedError:
    kept = (
        f"checkpoints/last.pt of epoch {epoch} is kept"
        if epoch
        else "no epoch finished, so no checkpoint was written"
    )
    return DivergedError(
        f"diverged at epoch {epoch + 1} step {step}: {what}. The last good state stays: "
        f"{kept}. Lower optimizer.lr or set trainer.grad_clip (with fp16/bf16, try "
        "trainer.precision=fp32)."
    )
