"""The training loop shared by every task.

``train(cfg, run_dir, build_task)``: the launcher hands the engine its task builder
(:data:`agr_suite.engine.task_parts.TaskBuilder`); the engine imports no task. One optimizer step
(:meth:`_Run._train_step`): batches -> forward -> backward -> [unscale, clip] -> optimizer
step (AGR inside) -> LR step; evaluation every ``eval_every`` epochs; ``last.pt`` (and
``best.pt``) after every epoch; ``history.jsonl`` and ``results.json`` in the run folder.
Rank 0 writes; every rank trains. Beside it: the divergence checks
(:mod:`agr_suite.engine.divergence`), the evaluations (:mod:`agr_suite.engine.evaluation`) and
the record of what AGR did (:mod:`agr_suite.engine.agr_record`).
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

import agr
from agr import regularizer, update_change
from agr_suite.core.config import RunConfig
from agr_suite.engine import checkpoint, distributed
from agr_suite.engine.agr_record import AGRRecord
from agr_suite.engine.divergence import DivergedError, DivergenceGuard
from agr_suite.engine.evaluation import Evaluation, evaluates
from agr_suite.engine.loaders import build_train_loader
from agr_suite.engine.loggers import Progress, log_epoch, make_logger
from agr_suite.engine.machine import environment
from agr_suite.engine.optimizer import build_from_config
from agr_suite.engine.run_folder import RunFolder
from agr_suite.engine.schedule import build_scheduler
from agr_suite.engine.task_parts import TaskBuilder, TaskParts

__all__ = ["DivergedError", "autocast_dtype", "seed_everything", "train"]


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (seed the global RNG user code draws from)
    torch.manual_seed(seed)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def train(cfg: RunConfig, run_dir: str | Path, build_task: TaskBuilder) -> dict[str, Any]:
    """Train, evaluate and checkpoint one run described by ``cfg`` in ``run_dir``, on the task
    ``build_task(cfg)`` gives (called once the run is seeded); resumes from
    ``checkpoints/last.pt`` when it exists. Returns results.json."""
    ctx = distributed.setup(cfg.trainer.devices)
    threads = torch.get_num_threads()
    if cfg.trainer.cpu_threads is not None:
        torch.set_num_threads(cfg.trainer.cpu_threads)
    try:
        return _Run(cfg, RunFolder(run_dir), ctx, build_task).fit()
    finally:
        torch.set_num_threads(threads)  # the next run of a multirun starts from the default
        distributed.cleanup()


class _Run:
    def __init__(
        self,
        cfg: RunConfig,
        folder: RunFolder,
        ctx: distributed.DistContext,
        build_task: TaskBuilder,
    ) -> None:
        self.cfg, self.folder, self.ctx, self.build_task = cfg, folder, ctx, build_task
        self.trainer = cfg.trainer
        self.device = ctx.device

    # ------------------------------------------------------------------ setup
    def _build(self) -> None:
        seed_everything(self.cfg.seed + self.ctx.rank)
        if self.trainer.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        self.parts: TaskParts = self.build_task(self.cfg)
        self._build_model()
        self._build_loaders()
        self._build_optimization()

    def _build_model(self) -> None:
        """The model on its device (``self.model``, unwrapped: checkpoints, optimizer,
        evaluation) and the module the training step calls (DDP, compile)."""
        model = self.parts.model.to(self.device)
        if self.trainer.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        if self.parts.state is not None:
            self.parts.state.setup(model, self.device)
        self.train_model = (
            DistributedDataParallel(
                model, device_ids=[self.device] if self.device.type == "cuda" else None
            )
            if self.ctx.distributed
            else model
        )
        if self.trainer.compile:
            self.train_model = torch.compile(self.train_model)

    def _build_loaders(self) -> None:
        """The training loader (each rank its share) and how many batches an epoch reads; the
        evaluation (its loader puts each example on one rank)."""
        trainer, ctx = self.trainer, self.ctx
        self.train_loader, self.sampler = build_train_loader(
            self.parts.train_set,
            cfg=self.cfg,
            device=self.device,
            rank=ctx.rank,
            world_size=ctx.world_size,
            collate=self.parts.collate,
            drop_last=self.parts.drop_last,
        )
        limit = trainer.limit_batches
        self.train_batches = min(len(self.train_loader), limit) if limit else len(self.train_loader)
        self.evaluation = Evaluation(
            self.parts,
            trainer,
            ctx,
            self.folder.path,
            self.cfg.seed,
            self._autocast,
            lambda batch: _to_device(batch, self.device, trainer.channels_last),
        )
        self.steps_per_epoch = math.ceil(self.train_batches / trainer.accumulate)
        self.epochs = trainer.epochs

    def _build_optimization(self) -> None:
        """Optimizer (AGR attached by its name), LR schedule, mixed precision."""
        trainer = self.trainer
        self.optimizer = build_from_config(
            self.cfg.optimizer,
            self.model,
            steps_per_epoch=self.steps_per_epoch,
            seed=self.cfg.seed,
            total_batch=trainer.batch_size * trainer.accumulate * self.ctx.world_size,
        )
        self.agr_handle = agr.handle_of(self.optimizer)
        if self.agr_handle is not None and self.device.type == "cpu":
            regularizer.load_cpu_kernel()  # a first build here, not inside epoch 1's timing
        self.agr_record = AGRRecord(self.agr_handle, self.model)
        self.scheduler = build_scheduler(
            self.optimizer, self.cfg.scheduler, self.steps_per_epoch, self.epochs
        )
        self.amp_dtype = autocast_dtype(self.trainer.precision, self.device)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16
        )

    # ------------------------------------------------------------------ state
    def _state(self, epoch: int) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": epoch,
            "global_step": self.global_step,
            "best": self.best,
            **self.agr_record.state_dict(),
            "reference_loss": self.guard.reference_loss,
            "history": self.history,
            "rng": checkpoint.rng_state(),
            "wandb_id": getattr(self.logger, "run_id", None),
            "machines": self.machines,
            "task_state": self.parts.state.state_dict() if self.parts.state is not None else None,
        }

    def _resume(self) -> int:
        path = self.folder.last_checkpoint
        if not path.exists():
            return 0
        state = checkpoint.load(path, map_location=self.device)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.global_step = int(state["global_step"])
        self.best = state.get("best") or {}
        self.agr_record.load_state_dict(state)
        self.history = list(state.get("history") or [])
        self.guard.reference_loss = state.get("reference_loss")
        self.wandb_id = state.get("wandb_id")
        self.machines = list(state.get("machines") or [])
        if self.parts.state is not None:
            if state.get("task_state") is None:
                raise checkpoint.CheckpointError(
                    f"{path} holds no task state (e.g. the EMA weights) that this run needs; "
                    "it was written by another kind of run. Move it away to start afresh."
                )
            self.parts.state.load_state_dict(state["task_state"])
        checkpoint.set_rng_state(state["rng"])
        if self.ctx.rank:  # each rank continues its own stream, as in an unbroken run
            seed_everything(self.cfg.seed + self.ctx.rank + 7919 * int(state["epoch"]))
        return int(state["epoch"])

    # ------------------------------------------------------------------ loop
    def fit(self) -> dict[str, Any]:
        folder, main = self.folder, self.ctx.is_main
        if main:
            folder.path.mkdir(parents=True, exist_ok=True)
        self.global_step, self.best, self.wandb_id = 0, {}, None
        self.guard = DivergenceGuard(self.ctx, self.trainer.divergence_factor)
        self.agr_record = AGRRecord()  # the optimizer's, once it is built
        self.history: list[dict[str, Any]] = []
        self.results: dict[str, Any] = {"status": "running", "seed": self.cfg.seed}
        # the machine type and precision of each session of the run (one unless it was
        # resumed elsewhere): the tables flag a run or a cell that mixes them
        self.machines: list[dict[str, str]] = []
        started = time.time()
        self.logger = None
        try:
            self._build()
            start_epoch = self._resume()
            if main:
                folder.write_history(self.history)
            self.logger = make_logger(self.cfg, folder.path, main, self.wandb_id)
            self.progress = Progress(main, self.epochs)
            self.progress.line(
                f"run {folder.path} | {self.cfg.model.name} "
                f"{self.parts.info.get('params', 0) / 1e6:.2f}M params | "
                f"{self.cfg.optimizer.name} | device {self.device} x{self.ctx.world_size}"
                + (f" | resumed after epoch {start_epoch}" if start_epoch else "")
            )
            env = environment(self.device, self.ctx.world_size, self.amp_dtype)
            session = {"machine": env["machine"], "precision": env["precision"]}
            if session not in self.machines:
                self.machines.append(session)
            self.results.update(info=self.parts.info, environment=env, machines=self.machines)
            if main and start_epoch < self.epochs:
                seconds = self.evaluation.announce_cost(self.model)
                if seconds is not None:
                    self.results["eval_estimate_s"] = seconds
            self._write_results(start_epoch, time.time() - started)
            for epoch in range(start_epoch, self.epochs):
                record = self._train_epoch(epoch)
                metrics = self._evaluate(epoch + 1) if evaluates(self.trainer, epoch + 1) else {}
                self.guard.check_metrics(epoch, self.global_step, metrics)
                self.guard.check_state(epoch, self.global_step, self.model, self.optimizer)
                record.update(metrics)
                self._end_epoch(epoch, record, metrics, time.time() - started)
            self.results["status"] = "completed"
            self._write_results(self.epochs, time.time() - started)
            return self.results
        except (SystemExit, KeyboardInterrupt):
            # Asked to exit mid-run: by submitit after it requeued the Slurm job at a time
            # limit or on preemption, or by Ctrl-C (the local pool passes it on as SIGINT).
            # The run is not over, it resumes from last.pt, so results.json keeps saying
            # "running" (as it does when the process is killed).
            raise
        except BaseException as error:
            self.results["status"] = "failed"
            diverged = isinstance(error, DivergedError)  # its message starts "diverged at"
            self.results["error"] = str(error) if diverged else f"{type(error).__name__}: {error}"
            if main and folder.path.exists():
                self._write_results(self.results.get("epochs_completed", 0), time.time() - started)
            raise
        finally:
            if getattr(self, "progress", None) is not None:
                self.progress.close()
            if self.logger is not None:
                self.logger.finish(0 if self.results["status"] == "completed" else 1)

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        self.sampler.set_epoch(epoch)
        if isinstance(self.train_loader, DataLoader):  # its workers' seeds
            self.train_loader.generator.manual_seed(self.cfg.seed * 100_003 + epoch)
        self.train_model.train()
        self.progress.start_epoch(epoch, self.train_batches)
        # The losses stay on the device: the host reads them (one sync) on the logging steps
        # and at the end of the epoch, where they are checked for divergence.
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        samples, started, shown = 0, time.time(), ""
        unchecked: list[tuple[torch.Tensor, int]] = []  # (batch loss, its optimizer step)
        batches = iter(self.train_loader)
        accumulate = self.trainer.accumulate
        for first in range(0, self.train_batches, accumulate):
            count = min(accumulate, self.train_batches - first)
            for loss, size in self._train_step(batches, count):
                unchecked.append((loss, self.global_step))
                loss_sum += loss.double() * size
                samples += size
            if (
                self.global_step % self.trainer.log_every == 0
                or first + count == self.train_batches
            ):
                last = self.guard.check_losses(epoch, unchecked)
                unchecked = []
                shown = f"loss {last:.4f} lr {self._lr():.2e}"
            for _ in range(count):
                self.progress.update(shown)
        elapsed = time.time() - started
        samples_t = torch.tensor(float(samples), dtype=torch.float64, device=self.device)
        count_t = torch.stack([loss_sum, samples_t])
        if self.ctx.distributed:
            torch.distributed.all_reduce(count_t)
        return {
            "epoch": epoch + 1,
            "step": self.global_step,
            "train_loss": float(count_t[0] / max(1.0, float(count_t[1]))),
            "lr": self._lr(),
            "train_samples_per_s": float(count_t[1]) / max(elapsed, 1e-9),
            "epoch_time_s": elapsed,
        }

    def _train_step(self, batches, count: int) -> list[tuple[torch.Tensor, int]]:
        """One optimizer step on the next ``count`` batches, top to bottom: data -> forward ->
        backward (the gradient of the batches' mean loss; DDP syncs on the last batch only)
        -> [unscale, clip] -> optimizer step (AGR inside) -> LR schedule -> task state.
        Returns each batch's loss (detached, still on the device) and size."""
        handle, trainer = self.agr_handle, self.trainer
        diagnostics = (self.global_step + 1) % trainer.log_every == 0
        if handle is not None:
            handle.track_stats = diagnostics
        losses = []
        for index in range(count):
            batch = _to_device(next(batches), self.device, trainer.channels_last)
            deferred_sync = self.ctx.distributed and index < count - 1
            with self.train_model.no_sync() if deferred_sync else contextlib.nullcontext():
                with self._autocast():
                    loss = self.parts.loss(self.train_model, batch)
                self.scaler.scale(loss / count).backward()
            losses.append((loss.detach(), self.parts.batch_size(batch)))
        if trainer.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), trainer.grad_clip)
        changes = None
        if diagnostics and handle is not None and handle.active and not self.scaler.is_enabled():
            # AGR's effect on the update, on a float64 twin of this step (agr.update_change)
            changes = update_change.measure(self.optimizer, handle)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if changes:
            self.agr_record.add_update_change(changes, self.logger, self.global_step + 1)
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.parts.state is not None:
            self.parts.state.after_step(self.model)
        self.global_step += 1
        if diagnostics:
            self.agr_record.add_stats(self.logger, self.global_step)
        return losses

    def _autocast(self):
        return torch.autocast(self.device.type, self.amp_dtype, enabled=self.amp_dtype is not None)

    def _evaluate(self, epoch: int) -> dict[str, Any]:
        def log_images(images):
            self.logger.log_images(images, step=self.global_step)

        return self.evaluation(self.model, epoch, log_images)

    def _end_epoch(
        self, epoch: int, record: dict[str, Any], metrics: dict[str, Any], wall: float
    ) -> None:
        best_now = improves(metrics, self.best, self.parts.primary_metric, self.parts.minimize)
        if best_now:
            self.best = dict(record)
        if self.agr_record.removed:
            record["agr_removed_fraction"] = self.agr_record.removed[-1]
        self.history.append({**record, "time_s": wall})
        if self.ctx.is_main:
            state = self._state(epoch + 1)  # carries the history: see RunFolder.write_history
            checkpoint.save_atomic(state, self.folder.last_checkpoint)
            if best_now:
                checkpoint.save_atomic(state, self.folder.best_checkpoint)
            self.folder.append_history(self.history[-1])
            if metrics:
                self.results["metrics"] = dict(metrics)
            self._write_results(epoch + 1, wall)
            log_epoch(self.logger, self.progress, record, metrics, self.global_step, self.epochs)
        if self.ctx.distributed:
            torch.distributed.barrier()

    def _write_results(self, epochs_completed: int, wall: float) -> None:
        if not self.ctx.is_main:
            return
        self.results.update(
            epochs_completed=epochs_completed,
            wall_time_s=wall,
            best=self.best,
            error=self.results.get("error"),
            agr=self.agr_record.summary(),
        )
        self.results.setdefault("metrics", {})
        self.folder.write_results(self.results)

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


def improves(metrics: dict[str, Any], best: dict[str, Any], key: str, minimize: bool) -> bool:
    """Whether ``metrics`` beat the best epoch's ``key`` (a missing or non-finite value never
    does; the first finite one always does)."""
    value = metrics.get(key)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    if key not in best:
        return True
    return value < best[key] if minimize else value > best[key]


def _to_device(batch, device: torch.device, channels_last: bool = False):
    if isinstance(batch, torch.Tensor):
        moved = batch.to(device, non_blocking=True)
        if channels_last and moved.dim() == 4:
            moved = moved.contiguous(memory_format=torch.channels_last)
        return moved
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device, channels_last) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device, channels_last) for k, v in batch.items()}
    return batch
