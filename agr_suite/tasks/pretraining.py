"""Language representation (Table 3): ALBERT pre-trained from scratch with masked-language
modelling plus sentence-order prediction; SOP and MLM accuracy on the evaluation split."""

from __future__ import annotations

from typing import Any

import torch

from ..data.text import build_pretraining_data
from ..metrics.pretraining import PretrainingEvaluator
from ..models import count_parameters
from ..models.albert import build_albert
from .base import TaskParts


def build(cfg: dict[str, Any]) -> TaskParts:
    data = build_pretraining_data(
        dict(cfg["dataset"]), data_dir=cfg["paths"]["data_dir"], seed=int(cfg["seed"])
    )
    model_options = {k: v for k, v in cfg["model"].items() if k not in ("name", "task")}
    model = build_albert(
        cfg["model"]["name"],
        vocab_size=data.form.vocab_size,
        max_length=data.form.max_length,
        pad_token_id=data.form.pad_id,
        **model_options,
    )

    def loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """MLM cross-entropy (mean over the batch's predicted tokens) + SOP cross-entropy."""
        return model(**batch).loss

    return TaskParts(
        model=model,
        train_set=data.train_set,
        eval_set=data.eval_set,
        loss=loss,
        make_evaluator=PretrainingEvaluator,
        primary_metric="sop_acc",
        batch_size=lambda batch: len(batch["input_ids"]),
        info={"params": count_parameters(model), **data.info},
    )
