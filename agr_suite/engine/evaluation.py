"""A run's evaluations: when they happen (:func:`evaluates`), the task's own evaluation or its
evaluator over the evaluation split (each example on one rank), and the warning when one would
take hours. An evaluation draws nothing from the training RNG streams (a DataLoader draws its
base seed, a sampler its noise), so runs with and without an evaluation at some epoch, e.g. a
resumed one, then train identically."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

from agr_suite.core.config import TrainerConfig
from agr_suite.engine import distributed
from agr_suite.engine.task_parts import EvalContext, EvalOutput, TaskParts

# A task's evaluation estimated to take longer than this on the run's device is announced
# with a warning when the run starts (TaskParts.estimate_eval_s).
SLOW_EVAL_WARNING_S = 3600.0


def evaluates(trainer: TrainerConfig, epoch: int) -> bool:
    """Evaluate after every ``eval_every``-th epoch, the epochs in ``eval_at``, and the last."""
    every, extra = trainer.eval_every, set(trainer.eval_at)
    return epoch % every == 0 or epoch in extra or epoch == trainer.epochs


class ShardSampler(Sampler[int]):
    """Evaluation indices rank::world_size, without DistributedSampler's padding, so each
    example is counted exactly once across ranks."""

    def __init__(self, size: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, size, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class Evaluation:
    def __init__(
        self,
        parts: TaskParts,
        trainer: TrainerConfig,
        ctx: distributed.DistContext,
        run_dir: Path,
        seed: int,
        autocast: Callable[[], Any],
        to_device: Callable[[Any], Any],
    ) -> None:
        self.parts, self.ctx, self.run_dir, self.seed = parts, ctx, run_dir, seed
        self.autocast, self.to_device = autocast, to_device
        self.loader, self.batches = None, 0
        if parts.evaluate is None:
            self.loader = DataLoader(
                parts.eval_set,
                batch_size=trainer.eval_batch_size or trainer.batch_size,
                sampler=ShardSampler(len(parts.eval_set), ctx.rank, ctx.world_size),
                num_workers=trainer.num_workers,
                pin_memory=ctx.device.type == "cuda",
                collate_fn=parts.collate,
            )
            limit = trainer.limit_batches
            self.batches = min(len(self.loader), limit) if limit else len(self.loader)

    def context(self, epoch: int) -> EvalContext:
        return EvalContext(
            device=self.ctx.device,
            epoch=epoch,
            run_dir=self.run_dir,
            seed=self.seed,
            rank=self.ctx.rank,
            world_size=self.ctx.world_size,
            autocast=self.autocast,
            gather=lambda tensor: distributed.gather_to_main(tensor, self.ctx),
        )

    def __call__(self, model: torch.nn.Module, epoch: int, log_images) -> dict[str, Any]:
        """The metrics of ``model`` after ``epoch``; a task's images go to ``log_images``."""
        cuda = [self.ctx.device] if self.ctx.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda), torch.no_grad():
            model.eval()
            if self.parts.evaluate is not None:
                output: EvalOutput = self.parts.evaluate(model, self.context(epoch))
                if output.images:
                    log_images(output.images)
                return dict(output.metrics)
            evaluator = self.parts.make_evaluator(self.ctx.device)
            batches = iter(self.loader)
            for _ in range(self.batches):
                batch = self.to_device(next(batches))
                with self.autocast():
                    evaluator.update(model, batch)
            return evaluator.compute()

    def announce_cost(self, model: torch.nn.Module) -> float | None:
        """The task's estimate of one evaluation's seconds here (it times a few forward
        passes; TaskParts.estimate_eval_s), with a warning when that is over
        SLOW_EVAL_WARNING_S; None when the task has no estimate."""
        if self.parts.estimate_eval_s is None:
            return None
        cuda = [self.ctx.device] if self.ctx.device.type == "cuda" else []
        training = model.training
        model.eval()
        try:
            with torch.random.fork_rng(devices=cuda), torch.no_grad():
                seconds, how = self.parts.estimate_eval_s(model, self.context(0))
        finally:
            model.train(training)
        if seconds > SLOW_EVAL_WARNING_S:
            message = (
                f"warning: each evaluation of this run will take about {seconds / 3600:.1f} h "
                f"on {self.ctx.device} ({how}). trainer.limit_batches caps it for a smoke run; "
                "fewer samples or steps (metrics.num_samples, metrics.steps) shorten it."
            )
            print(message, file=sys.stderr, flush=True)
        return seconds
