"""The training loop shared by every task.

``train(cfg, run_dir, build_task)``: the launcher hands the engine its task builder
(:data:`agr_suite.engine.task_parts.TaskBuilder`); the engine imports no task. One optimizer step
(:meth:`_Run._train_step`): batches -> forward -> backward -> [unscale, clip] -> optimizer
step (AGR inside) -> LR step; evaluation every ``eval_every`` epochs; ``last.pt`` (and
``best.pt``) after every epoch; ``history.jsonl`` and ``results.json`` in the run folder.
Rank 0 writes; every rank trains.

Divergence: a training loss or evaluation metric that is NaN/inf, a training loss above
``trainer.divergence_factor`` x the run's first loss, or weights/optimizer state that became
NaN/inf end the run with :class:`DivergedError` (``results.json`` status ``failed``, error
``diverged at epoch E step S: ...``) before any checkpoint of the bad state is written, so
``last.pt`` stays the last good one. Every rank reaches the same verdict.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler

import agr
from agr import regularizer, update_change
from agr_suite.core.config import RunConfig
from agr_suite.engine import checkpoint, distributed, predictions
from agr_suite.engine.loaders import build_train_loader
from agr_suite.engine.loggers import Progress, make_logger
from agr_suite.engine.machine import environment
from agr_suite.engine.optimizer import build_from_config
from agr_suite.engine.run_folder import RunFolder
from agr_suite.engine.schedule import build_scheduler
from agr_suite.engine.task_parts import EvalContext, EvalOutput, TaskBuilder, TaskParts

# A task's evaluation estimated to take longer than this on the run's device is announced
# with a warning when the run starts (TaskParts.estimate_eval_s).
SLOW_EVAL_WARNING_S = 3600.0


class DivergedError(FloatingPointError):
    """The run diverged: ``diverged at epoch E step S: <what>`` (E 1-based, S the optimizer
    step: the one being computed for a training loss, the last one taken otherwise)."""


class ShardSampler(Sampler[int]):
    """Evaluation indices rank::world_size, without DistributedSampler's padding, so each
    example is counted exactly once across ranks."""

    def __init__(self, size: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, size, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


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
        """The training loader (each rank its share), the evaluation loader (each example on
        one rank) and how many batches of each an epoch reads."""
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
        self.eval_loader, self.eval_batches = None, 0
        if self.parts.evaluate is None:
            self.eval_loader = DataLoader(
                self.parts.eval_set,
                batch_size=trainer.eval_batch_size or trainer.batch_size,
                sampler=ShardSampler(len(self.parts.eval_set), ctx.rank, ctx.world_size),
                num_workers=trainer.num_workers,
                pin_memory=self.device.type == "cuda",
                collate_fn=self.parts.collate,
            )
            self.eval_batches = (
                min(len(self.eval_loader), limit) if limit else len(self.eval_loader)
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
        self.param_names = {id(p): n for n, p in self.model.named_parameters()}
        self.param_kinds = update_change.parameter_kinds(self.model)
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
            "agr_removed": self.agr_removed,
            "agr_removed_by_kind": self.agr_removed_by_kind,
            "agr_update_change": self.agr_update_change,
            "reference_loss": self.reference_loss,
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
        self.agr_removed = list(state.get("agr_removed") or [])
        self.agr_removed_by_kind = list(state.get("agr_removed_by_kind") or [])
        self.agr_update_change = list(state.get("agr_update_change") or [])
        self.history = list(state.get("history") or [])
        self.reference_loss = state.get("reference_loss")
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
        self.global_step, self.best, self.agr_removed, self.wandb_id = 0, {}, [], None
        self.reference_loss: float | None = None  # the run's first training loss
        self.agr_update_change: list[dict[str, dict[str, float]]] = []  # per logging step
        self.agr_removed_by_kind: list[dict[str, float]] = []  # per logging step
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
                self._announce_eval_cost()
            self._write_results(start_epoch, time.time() - started)
            for epoch in range(start_epoch, self.epochs):
                record = self._train_epoch(epoch)
                metrics = self._evaluate(epoch + 1) if self._evaluates(epoch + 1) else {}
                self._check_metrics(epoch, metrics)
                self._check_state(epoch)
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
                last = self._check_losses(epoch, unchecked)
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
            self._record_update_change(changes)
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.parts.state is not None:
            self.parts.state.after_step(self.model)
        self.global_step += 1
        if diagnostics:
            self._record_agr_stats()
        return losses

    def _record_update_change(self, changes: dict[torch.Tensor, float]) -> None:
        """||u_AGR - u|| / ||u|| of the step just taken, by parameter kind."""
        step_change = update_change.summarize_by_kind(changes, self.param_names, self.param_kinds)
        self.agr_update_change.append(step_change)
        self.logger.log(
            {f"agr/update_change/{k}": v["median"] for k, v in step_change.items()},
            step=self.global_step + 1,
        )

    def _record_agr_stats(self) -> None:
        """The L1 fraction AGR removed (in all and per parameter kind) and its largest
        alpha, on the step just taken."""
        handle = self.agr_handle
        if handle is None or handle.last_stats is None or handle.last_stats.step != handle.steps:
            return
        stats = handle.last_stats
        by_kind = update_change.removed_fraction_by_kind(stats, self.param_kinds)
        self.agr_removed.append(stats.removed_fraction)
        self.agr_removed_by_kind.append(by_kind)
        self.logger.log(
            {
                "agr/removed_fraction": stats.removed_fraction,
                "agr/max_alpha": stats.max_alpha,
                **{f"agr/removed_fraction/{kind}": value for kind, value in by_kind.items()},
            },
            step=self.global_step,
        )

    # ------------------------------------------------------------------ divergence
    def _check_losses(self, epoch: int, unchecked: list[tuple[torch.Tensor, int]]) -> float:
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

    def _any_rank(self, flag: bool) -> bool:
        if not self.ctx.distributed:
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
        return bool(value.item())

    def _diverged(self, epoch: int, step: int, what: str) -> DivergedError:
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

    def _check_loss(self, epoch: int, step: int, value: float) -> None:
        if not math.isfinite(value):
            raise self._diverged(epoch, step, f"the training loss is {value}")
        if self.reference_loss is None:
            self.reference_loss = value
        factor = self.trainer.divergence_factor
        if factor and self.reference_loss > 0 and value > float(factor) * self.reference_loss:
            raise self._diverged(
                epoch,
                step,
                f"the training loss {value:.4g} exceeds trainer.divergence_factor={factor:g} "
                f"x the run's first loss {self.reference_loss:.4g}",
            )

    def _check_metrics(self, epoch: int, metrics: dict[str, Any]) -> None:
        bad = {
            k: v
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isfinite(v)
        }
        if self._any_rank(bool(bad)):
            shown = ", ".join(f"{k} = {v}" for k, v in bad.items()) or "on another rank"
            raise self._diverged(epoch, self.global_step, f"evaluation metric not finite: {shown}")

    def _check_state(self, epoch: int) -> None:
        """Before a checkpoint is written: the weights and the optimizer state are finite (a
        last step of an epoch can break them with a finite loss, and an epoch without an
        evaluation would not notice)."""
        tensors = [p.detach() for p in self.model.parameters()]
        for state in self.optimizer.state.values():
            tensors += [v for v in state.values() if torch.is_tensor(v) and v.is_floating_point()]
        finite = torch.stack([torch.isfinite(t).all() for t in tensors]).all().item()
        if self._any_rank(not finite):
            raise self._diverged(
                epoch, self.global_step, "the weights or the optimizer state became NaN/inf"
            )

    def _announce_eval_cost(self) -> None:
        """Warn when one evaluation would take more than SLOW_EVAL_WARNING_S here (the task
        times a few forward passes; see TaskParts.estimate_eval_s)."""
        if self.parts.estimate_eval_s is None:
            return
        cuda = [self.device] if self.device.type == "cuda" else []
        training = self.model.training
        self.model.eval()
        try:
            with torch.random.fork_rng(devices=cuda), torch.no_grad():
                seconds, how = self.parts.estimate_eval_s(self.model, self._eval_context(0))
        finally:
            self.model.train(training)
        self.results["eval_estimate_s"] = seconds
        if seconds > SLOW_EVAL_WARNING_S:
            message = (
                f"warning: each evaluation of this run will take about {seconds / 3600:.1f} h "
                f"on {self.device} ({how}). trainer.limit_batches caps it for a smoke run; "
                "fewer samples or steps (metrics.num_samples, metrics.steps) shorten it."
            )
            print(message, file=sys.stderr, flush=True)

    def _evaluates(self, epoch: int) -> bool:
        """Evaluate after every ``eval_every``-th epoch, the epochs in ``eval_at``, and the last."""
        every, extra = self.trainer.eval_every, set(self.trainer.eval_at)
        return epoch % every == 0 or epoch in extra or epoch == self.epochs

    def _autocast(self):
        return torch.autocast(self.device.type, self.amp_dtype, enabled=self.amp_dtype is not None)

    def _evaluate(self, epoch: int) -> dict[str, Any]:
        """Evaluate without drawing from the training RNG streams (a DataLoader draws its base
        seed, a sampler its noise): runs with and without an evaluation at some epoch, e.g.
        a resumed one, then train identically."""
        cuda = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda), torch.no_grad():
            return self._evaluate_now(epoch)

    def _eval_context(self, epoch: int) -> EvalContext:
        return EvalContext(
            device=self.device,
            epoch=epoch,
            run_dir=self.folder.path,
            seed=self.cfg.seed,
            rank=self.ctx.rank,
            world_size=self.ctx.world_size,
            autocast=self._autocast,
            gather=lambda tensor: distributed.gather_to_main(tensor, self.ctx),
        )

    def _evaluate_now(self, epoch: int) -> dict[str, Any]:
        self.model.eval()
        if self.parts.evaluate is not None:
            output: EvalOutput = self.parts.evaluate(self.model, self._eval_context(epoch))
            if output.images:
                self.logger.log_images(output.images, step=self.global_step)
            return dict(output.metrics)
        evaluator = self.parts.make_evaluator(self.device)
        batches = iter(self.eval_loader)
        for _ in range(self.eval_batches):
            batch = _to_device(next(batches), self.device, self.trainer.channels_last)
            with self._autocast():
                evaluator.update(self.model, batch)
        return evaluator.compute()

    def _is_better(self, metrics: dict[str, Any]) -> bool:
        key = self.parts.primary_metric
        value = metrics.get(key)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if not self.best or key not in self.best:
            return True
        return value < self.best[key] if self.parts.minimize else value > self.best[key]

    def _end_epoch(
        self, epoch: int, record: dict[str, Any], metrics: dict[str, Any], wall: float
    ) -> None:
        best_now = self._is_better(metrics)
        if best_now:
            self.best = dict(record)
        if self.agr_removed:
            record["agr_removed_fraction"] = self.agr_removed[-1]
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
            # The accuracies' prediction statistics (agr_suite.engine.predictions) go to
            # W&B in a section of their own and stay off the progress line.
            statistics = {key for k in metrics for key in predictions.statistic_keys(k)}
            self.logger.log(
                {
                    (f"predictions/{k}" if k in statistics else k): v
                    for k, v in record.items()
                    if isinstance(v, (int, float))
                },
                step=self.global_step,
            )
            numbers = [
                k for k, v in metrics.items() if isinstance(v, (int, float)) and k not in statistics
            ]
            shown = " ".join(f"{k} {record[k]:.4g}" for k in ["train_loss", *numbers])
            self.progress.line(
                f"epoch {epoch + 1}/{self.epochs} {shown} "
                f"({record['train_samples_per_s']:.0f} samples/s)"
            )
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
            agr={
                "removed_fraction_mean": sum(self.agr_removed) / len(self.agr_removed)
                if self.agr_removed
                else None,
                "samples": len(self.agr_removed),
                # the same per parameter kind: {kind: {"mean", "steps"}}
                "removed_fraction_by_kind": update_change.average_removed_by_kind(
                    self.agr_removed_by_kind
                ),
                # ||u_AGR - u|| / ||u|| per parameter kind (agr.update_change)
                "update_change": update_change.average_over_steps(self.agr_update_change),
            },
        )
        self.results.setdefault("metrics", {})
        self.folder.write_results(self.results)

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


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
