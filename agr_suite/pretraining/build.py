"""Language representation (Table 3): ALBERT pre-trained from scratch with masked-language
modelling plus sentence-order prediction; SOP and MLM accuracy on the evaluation split."""

from __future__ import annotations

import numpy as np
import torch

from agr_suite.core.config import RunConfig
from agr_suite.engine.task_parts import TaskParts, count_parameters
from agr_suite.pretraining.albert import build_albert, unigram_bias
from agr_suite.pretraining.metrics import PretrainingEvaluator
from agr_suite.pretraining.text import build_pretraining_data


def build(cfg: RunConfig) -> TaskParts:
    data = build_pretraining_data(cfg.dataset, data_dir=cfg.paths.data_dir, seed=cfg.seed)
    token_counts = _token_counts(data.train_set.pairs, data.form.vocab_size)
    model = build_albert(
        cfg.model,
        vocab_size=data.form.vocab_size,
        max_length=data.form.max_length,
        pad_token_id=data.form.pad_id,
        token_counts=token_counts if cfg.model.mlm_bias_init == "unigram" else None,
    )
    # the input-free model of the training text, to score the evaluation targets with
    unigram = unigram_bias(token_counts)

    def loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """MLM cross-entropy (mean over the batch's predicted tokens) + SOP cross-entropy."""
        return model(**batch).loss

    return TaskParts(
        model=model,
        train_set=data.train_set,
        eval_set=data.eval_set,
        loss=loss,
        make_evaluator=lambda device: PretrainingEvaluator(device, data.form.vocab_size, unigram),
        primary_metric="sop_acc",
        batch_size=lambda batch: len(batch["input_ids"]),
        info={"params": count_parameters(model), **data.info},
    )


def _token_counts(pairs, vocab_size: int) -> torch.Tensor:
    """How often each token id occurs in the training pairs' text (both segments)."""
    ids = [part.ids for pair in pairs for part in (pair.first, pair.second)]
    return torch.from_numpy(np.bincount(np.concatenate(ids), minlength=vocab_size))
