"""Pre-training metrics: SOP and MLM accuracy (percent) and mean losses, exact under DDP.

Each rank sums, over the examples it saw: correct SOP predictions, SOP cross-entropy, the
number of examples, correct MLM predictions, MLM cross-entropy and the number of predicted
tokens; ``compute`` adds those sums over the ranks (``all_reduce``, float64) before dividing.
The engine shards the evaluation set without padding, so every example counts once.
``mlm_acc`` and ``mlm_loss`` are per predicted token over the whole set (not a mean of batch
means); ``sop_acc`` and ``sop_loss`` are per example.

Next to each accuracy, the statistics of its argmax predictions, also summed over the ranks
(see :mod:`agr_suite.engine.predictions`): ``sop_acc_examples``, ``sop_acc_pred_classes``,
``sop_acc_pred_entropy``, ``sop_acc_majority``, ``sop_acc_minority``, ``sop_acc_label_entropy``
over the two orders, and the same ``mlm_acc_*`` over the vocabulary's tokens at the predicted
positions. A model that ignores its input scores, in expectation, between ``K_minority`` and
``K_majority`` (the tables' chance band): for SOP the shares of the two orders; for MLM 0 (most
tokens are never a target) and the most common target token's share. Its loss is at least
``K_label_entropy``: ln 2 for SOP, the unigram entropy of the predicted tokens for MLM. That
bound knows the evaluation split's own token shares, which no model trained on the training
split can; ``mlm_loss_unigram`` (when the evaluator is given the training text's unigram) is
the MLM loss of the input-free model the training text gives: each target scored by its
add-half unigram probability in the training text.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from agr_suite.engine.predictions import PredictionCounts

__all__ = ["PretrainingEvaluator"]

IGNORE_INDEX = -100
SOP_CLASSES = 2  # 0: original order, 1: swapped
_FIELDS = (
    "sop_correct", "sop_loss", "examples", "mlm_correct", "mlm_loss", "tokens", "unigram_loss",
)  # fmt: skip


class PretrainingEvaluator:
    """``vocab_size``: the MLM head's output size (every token it can predict);
    ``unigram_log_probs``: log p(token) of the training text (vocab_size values), to score
    the targets with (``mlm_loss_unigram``), or None."""

    def __init__(
        self, device: torch.device, vocab_size: int, unigram_log_probs: torch.Tensor | None = None
    ) -> None:
        self.sums = torch.zeros(len(_FIELDS), dtype=torch.float64, device=device)
        self.sop_predictions = PredictionCounts(SOP_CLASSES, device)
        self.mlm_predictions = PredictionCounts(vocab_size, device)
        self.unigram = None if unigram_log_probs is None else unigram_log_probs.double().to(device)

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
        sop_guess, mlm_guess = sop_logits.argmax(-1), mlm_logits.argmax(-1)
        unigram_loss = (
            -self.unigram[targets[predicted]].sum()
            if self.unigram is not None
            else self.sums.new_zeros(())
        )
        self.sums += torch.stack(
            [
                (sop_guess == sop_labels).sum(),
                F.cross_entropy(sop_logits, sop_labels, reduction="sum"),
                torch.tensor(sop_labels.numel(), device=sop_labels.device),
                ((mlm_guess == targets) & predicted).sum(),
                F.cross_entropy(mlm_logits, targets, ignore_index=IGNORE_INDEX, reduction="sum"),
                predicted.sum(),
                unigram_loss,
            ]
        ).to(self.sums)
        self.sop_predictions.update(sop_guess, sop_labels)
        self.mlm_predictions.update(mlm_guess[predicted], targets[predicted])

    def compute(self) -> dict[str, float]:
        sums = self.sums.clone()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums)
        total = dict(zip(_FIELDS, sums.tolist()))
        examples = total["examples"] or float("nan")  # nothing seen: NaN, not a fake 0
        tokens = total["tokens"] or float("nan")
        return {
            "sop_acc": 100.0 * total["sop_correct"] / examples,
            **self.sop_predictions.compute("sop_acc"),
            "mlm_acc": 100.0 * total["mlm_correct"] / tokens,
            **self.mlm_predictions.compute("mlm_acc"),
            "sop_loss": total["sop_loss"] / examples,
            "mlm_loss": total["mlm_loss"] / tokens,
            **(
                {"mlm_loss_unigram": total["unigram_loss"] / tokens}
                if self.unigram is not None
                else {}
            ),
        }
