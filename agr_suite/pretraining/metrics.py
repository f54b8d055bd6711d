"""Pre-training metrics: SOP and MLM accuracy (percent) and mean losses, exact under DDP.

Each rank sums, over the examples it saw: correct SOP predictions, SOP cross-entropy, the
number of examples, correct MLM predictions, MLM cross-entropy and the number of predicted
tokens; ``compute`` adds those sums over the ranks (``all_reduce``, float64) before dividing.
The engine shards the evaluation set without padding, so every example counts once.
``mlm_acc`` and ``mlm_loss`` are per predicted token over the whole set (not a mean of batch
means); ``sop_acc`` and ``sop_loss`` are per example. ``sop_majority_acc`` is the SOP accuracy
of always predicting the set's more common order: a model that learned nothing scores it or
100 minus it (the tables' chance band).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

__all__ = ["PretrainingEvaluator"]

IGNORE_INDEX = -100
_FIELDS = ("sop_correct", "sop_loss", "examples", "mlm_correct", "mlm_loss", "tokens", "swapped")


class PretrainingEvaluator:
    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(len(_FIELDS), dtype=torch.float64, device=device)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> None:
        """``batch``: the pre-training dict (input_ids, token_type_ids, attention_mask, labels,
        mlm_positions, sentence_order_label); the model is an AlbertForPreTrainingAtMasks."""
        output = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
            mlm_positions=batch["mlm_positions"],
        )
        sop_logits = output.sop_logits.float()
        sop_labels = batch["sentence_order_label"].view(-1)
        mlm_logits = output.prediction_logits.float().flatten(0, 1)
        targets = batch["labels"].gather(1, batch["mlm_positions"]).flatten()
        predicted = targets != IGNORE_INDEX
        self.sums += torch.stack(
            [
                (sop_logits.argmax(-1) == sop_labels).sum(),
                F.cross_entropy(sop_logits, sop_labels, reduction="sum"),
                torch.tensor(sop_labels.numel(), device=sop_labels.device),
                ((mlm_logits.argmax(-1) == targets) & predicted).sum(),
                F.cross_entropy(mlm_logits, targets, ignore_index=IGNORE_INDEX, reduction="sum"),
                predicted.sum(),
                sop_labels.sum(),
            ]
        ).to(self.sums)

    def compute(self) -> dict[str, float]:
        sums = self.sums.clone()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums)
        total = dict(zip(_FIELDS, sums.tolist()))
        examples = total["examples"] or float("nan")  # nothing seen: NaN, not a fake 0
        tokens = total["tokens"] or float("nan")
        return {
            "sop_acc": 100.0 * total["sop_correct"] / examples,
            "mlm_acc": 100.0 * total["mlm_correct"] / tokens,
            "sop_loss": total["sop_loss"] / examples,
            "mlm_loss": total["mlm_loss"] / tokens,
            # What a model that ignores its input scores: always the more common order.
            "sop_majority_acc": 100.0
            * max(total["swapped"], total["examples"] - total["swapped"])
            / examples,
        }
