"""The hand-computed pre-training batch of tests/pretraining/test_pretraining.py and a DDP rank that
evaluates half of it. A module of its own, importing only torch and the evaluator, so that
spawned ranks start quickly."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import torch

from agr_suite.pretraining.metrics import PretrainingEvaluator


class FixedLogits(torch.nn.Module):
    """Returns logits looked up by example id (``input_ids[:, 0]``)."""

    def __init__(self, sop: torch.Tensor, mlm: torch.Tensor) -> None:
        super().__init__()
        self.sop, self.mlm = sop, mlm

    def forward(self, input_ids, attention_mask, token_type_ids, mlm_positions):
        index = input_ids[:, 0]
        return SimpleNamespace(sop_logits=self.sop[index], prediction_logits=self.mlm[index])


VOCAB = 5  # the hand batch's vocabulary


def hand_batch():
    """4 examples, 3 MLM slots each, vocabulary 5; what each prediction is, by hand:

    SOP logits / label / argmax:  [2,0] 0 0 right, [0,1] 0 1 wrong, [1,3] 1 1 right,
    [5,4] 1 0 wrong -> 2 of 4 right. MLM: example 0 has slots at positions 1, 2 (targets 1, 2;
    predicted 1, 3: one right) and a padded slot; example 1 one target (4, predicted 4: right);
    example 2 three (0, 1, 2; predicted 0, 1, 3: two right); example 3 none. 4 of 6 right.
    """
    sop = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 3.0], [5.0, 4.0]])
    predicted = torch.tensor([[1, 3, 0], [4, 0, 0], [0, 1, 3], [0, 0, 0]])
    mlm = torch.zeros(4, 3, VOCAB)
    mlm.scatter_(2, predicted.unsqueeze(-1), 3.0)  # logit 3 for the predicted token, 0 elsewhere
    positions = torch.tensor([[1, 2, 0], [3, 0, 0], [1, 4, 5], [0, 0, 0]])
    labels = torch.full((4, 6), -100)
    labels[0, 1], labels[0, 2] = 1, 2
    labels[1, 3] = 4
    labels[2, 1], labels[2, 4], labels[2, 5] = 0, 1, 2
    batch = {
        "input_ids": torch.arange(4).unsqueeze(1).expand(4, 6).clone(),
        "attention_mask": torch.ones(4, 6, dtype=torch.long),
        "token_type_ids": torch.zeros(4, 6, dtype=torch.long),
        "labels": labels,
        "mlm_positions": positions,
        "sentence_order_label": torch.tensor([0, 0, 1, 1]),
    }
    return FixedLogits(sop, mlm), batch


def hand_metrics() -> dict[str, float]:
    # SOP cross-entropy: log(1 + e^-2) for the two right ones, log(1 + e) for the wrong ones.
    sop_loss = (2 * math.log1p(math.exp(-2)) + 2 * math.log1p(math.e)) / 4
    # MLM: logsumexp of (3, 0, 0, 0, 0) is log(e^3 + 4); minus 3 if right, minus 0 if wrong.
    lse = math.log(math.exp(3) + 4)
    return {
        "sop_acc": 50.0,
        "mlm_acc": 100 * 4 / 6,
        "sop_loss": sop_loss,
        "mlm_loss": (4 * (lse - 3) + 2 * lse) / 6,
        # SOP predicted 0, 1, 1, 0: two classes, twice each (1 bit). Labels 0, 0, 1, 1: either
        # constant prediction is right on 2 of 4 (each rank alone sees one label only, so
        # per-rank rates would give 100 and 0).
        "sop_acc_examples": 4,
        "sop_acc_pred_classes": 2,
        "sop_acc_pred_entropy": 1.0,
        "sop_acc_majority": 50.0,
        "sop_acc_minority": 50.0,
        "sop_acc_label_entropy": math.log(2),  # two orders, two of each
        # MLM targets 1, 2, 4, 0, 1, 2, predicted 1, 3, 4, 0, 1, 3: predictions 1 and 3 twice,
        # 0 and 4 once; the most common targets (1, 2) are 2 of 6; token 3 is never a target.
        "mlm_acc_examples": 6,
        "mlm_acc_pred_classes": 4,
        "mlm_acc_pred_entropy": 2 * (1 / 6) * math.log2(6) + 2 * (2 / 6) * math.log2(3),
        "mlm_acc_majority": 100 * 2 / 6,
        "mlm_acc_minority": 0.0,
        # targets 1 and 2 twice, 4 and 0 once: shares 1/3, 1/3, 1/6, 1/6
        "mlm_acc_label_entropy": 2 * (1 / 3) * math.log(3) + 2 * (1 / 6) * math.log(6),
    }


def halves(batch):
    return [{k: v[:2] for k, v in batch.items()}, {k: v[2:] for k, v in batch.items()}]


def rank_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model, batch = hand_batch()
        evaluator = PretrainingEvaluator(torch.device("cpu"), vocab_size=VOCAB)
        evaluator.update(model, halves(batch)[rank])  # each rank sees its own half only
        result = evaluator.compute()
        if rank == 0:
            Path(out).write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()
