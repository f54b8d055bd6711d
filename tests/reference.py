"""References written out from their definitions, independently of the code under test: AGR
(arXiv 2407.16944, not the ``agr`` package), gradient centralization (Yong et al. 2020,
arXiv 2004.01461) and adaptive gradient clipping (Brock et al. 2021, arXiv 2102.06171),
and the argmax predictions' statistics (numpy and
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


def gc_reference(g: torch.Tensor, conv_only: bool = False) -> torch.Tensor:
    """Gradient centralization in float64, out of place: each output unit (index 0) of a
    tensor with more than one dimension (conv_only: more than three) minus its own mean."""
    if g.dim() <= (3 if conv_only else 1):
        return g.clone()
    rows = g.double().reshape(g.shape[0], -1)
    centred = torch.stack([row - sum(row.tolist()) / row.numel() for row in rows])
    return centred.reshape(g.shape).to(g.dtype)


def agc_reference(
    g: torch.Tensor, w: torch.Tensor, clipping: float = 0.01, eps: float = 1e-3
) -> torch.Tensor:
    """Unit-wise adaptive gradient clipping in float64, out of place: for each output unit i
    (a row of dims 1..; a vector or scalar is one unit), if ||G_i|| > clipping *
    max(||W_i||, eps), G_i is scaled to that norm (||G_i|| floored at 1e-6)."""
    units = g.double().reshape(1 if g.dim() <= 1 else g.shape[0], -1)
    weights = w.double().reshape(units.shape)
    out = []
    for grad_row, weight_row in zip(units, weights):
        grad_norm = sum(v * v for v in grad_row.tolist()) ** 0.5
        max_norm = clipping * max(sum(v * v for v in weight_row.tolist()) ** 0.5, eps)
        if grad_norm > max_norm:
            grad_row = grad_row * (max_norm / max(grad_norm, 1e-6))
        out.append(grad_row)
    return torch.stack(out).reshape(g.shape).to(g.dtype)


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
