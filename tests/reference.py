"""References written out from their definitions, independently of the code under test: AGR
(arXiv 2407.16944, not the ``agr`` package) and the argmax predictions' statistics (numpy and
scipy, not agr_suite.engine.predictions)."""

import numpy as np
import scipy.stats
import torch


def agr_reference(g: torch.Tensor, scope: str = "all") -> torch.Tensor:
    """alpha = |G| / sum(|G|) over the whole tensor; G <- G - alpha * G, out of place.

    scope "all" (the default, as agr's) transforms every tensor, "weights" leaves tensors
    with ndim < 2 alone; a tensor with sum|G| == 0 is unchanged; fp16/bf16 are computed in
    float32 and rounded back.
    """
    if scope == "weights" and g.dim() < 2:
        return g.clone()
    work = g.float() if g.dtype in (torch.float16, torch.bfloat16) else g.clone()
    total = work.abs().sum()
    if total == 0:
        return g.clone()
    alpha = work.abs() / total
    return (work - alpha * work).to(g.dtype)


def dosed_reference(g: torch.Tensor, strength: float) -> torch.Tensor:
    """The dose k: G <- G * (1 - alpha)**k, alpha = |G| / sum|G|, in float64 (pow, not the
    library's expm1/log1p); k = 0 is the identity (0**0 = 1 where alpha = 1)."""
    work = g.double()
    total = work.abs().sum()
    if total == 0:
        return g.clone()
    factor = torch.pow(1 - work.abs() / total, strength)
    return (work * factor).to(g.dtype)


def prediction_statistics_reference(metric: str, predicted, true, num_classes: int) -> dict:
    """``metric``'s six prediction statistics by their definitions: how many items, how many
    distinct predicted classes, the predicted classes' entropy in bits, the accuracy (%) of
    the best and of the worst constant prediction among the ``num_classes`` classes, and the
    cross-entropy (nats) of the best input-free prediction: the true labels' shares."""
    predicted, true = np.asarray(predicted).ravel(), np.asarray(true).ravel()
    constant = [100.0 * np.mean(true == c) for c in range(num_classes)]
    _, counts = np.unique(predicted, return_counts=True)
    return {
        f"{metric}_examples": len(true),
        f"{metric}_pred_classes": len(counts),
        f"{metric}_pred_entropy": scipy.stats.entropy(counts, base=2),
        f"{metric}_majority": max(constant),
        f"{metric}_minority": min(constant),
        f"{metric}_label_entropy": scipy.stats.entropy(np.unique(true, return_counts=True)[1]),
    }
