"""AGR written out from its definition (arXiv 2407.16944), independently of the ``agr``
package: the reference every test compares against."""

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
