"""What AGR did during a run, sampled every ``trainer.log_every`` optimizer steps: the share of
the gradients' L1 mass it removed (in all and per parameter kind) and how much it changed the
optimizer's update, ||u_AGR - u|| / ||u|| per kind (agr.update_change). Logged as it is taken,
checkpointed with the run and averaged into results.json's ``agr``."""

from __future__ import annotations

from typing import Any

import torch

from agr import AGRHandle, update_change


class AGRRecord:
    def __init__(
        self, handle: AGRHandle | None = None, model: torch.nn.Module | None = None
    ) -> None:
        """An empty record (a run that failed before its optimizer existed reports it so),
        or one of ``model``'s optimizer, whose AGR ``handle`` may be None (no AGR)."""
        self.handle = handle
        named = list(model.named_parameters()) if model is not None else []
        self.param_names = {id(p): n for n, p in named}
        self.param_kinds = update_change.parameter_kinds(model) if model is not None else {}
        self.removed: list[float] = []  # per sampled step
        self.removed_by_kind: list[dict[str, float]] = []
        self.update_change: list[dict[str, dict[str, float]]] = []

    def add_update_change(self, changes: dict[torch.Tensor, float], logger, step: int) -> None:
        """||u_AGR - u|| / ||u|| of the step just taken, by parameter kind."""
        by_kind = update_change.summarize_by_kind(changes, self.param_names, self.param_kinds)
        self.update_change.append(by_kind)
        logger.log({f"agr/update_change/{k}": v["median"] for k, v in by_kind.items()}, step=step)

    def add_stats(self, logger, step: int) -> None:
        """The L1 fraction AGR removed (in all and per parameter kind) and its largest alpha,
        on the step just taken."""
        handle = self.handle
        if handle is None or handle.last_stats is None or handle.last_stats.step != handle.steps:
            return
        stats = handle.last_stats
        by_kind = update_change.removed_fraction_by_kind(stats, self.param_kinds)
        self.removed.append(stats.removed_fraction)
        self.removed_by_kind.append(by_kind)
        logger.log(
            {
                "agr/removed_fraction": stats.removed_fraction,
                "agr/max_alpha": stats.max_alpha,
                **{f"agr/removed_fraction/{kind}": value for kind, value in by_kind.items()},
            },
            step=step,
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "agr_removed": self.removed,
            "agr_removed_by_kind": self.removed_by_kind,
            "agr_update_change": self.update_change,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.removed = list(state.get("agr_removed") or [])
        self.removed_by_kind = list(state.get("agr_removed_by_kind") or [])
        self.update_change = list(state.get("agr_update_change") or [])

    def summary(self) -> dict[str, Any]:
        """results.json's ``agr``."""
        removed = self.removed
        return {
            "removed_fraction_mean": sum(removed) / len(removed) if removed else None,
            "samples": len(removed),
            # the same per parameter kind: {kind: {"mean", "steps"}}
            "removed_fraction_by_kind": update_change.average_removed_by_kind(self.removed_by_kind),
            # ||u_AGR - u|| / ||u|| per parameter kind (agr.update_change)
            "update_change": update_change.average_over_steps(self.update_change),
        }
