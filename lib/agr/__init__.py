"""Adaptive Gradient Regularization (AGR, Jiang et al., arXiv 2407.16944) for PyTorch.

    import agr
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    handle = agr.attach(optimizer)            # AGR now runs inside every optimizer.step()

or ``agr.build_optimizer("adamw_agr", model, lr=1e-3)``, or ``agr.regularize_(grads)``
in a loop of your own.

The library is the distribution ``torch-agr`` (``pip install ./lib`` from the agr-suite
repository) and needs torch alone. Optional: timm for the Adan optimizers (the ``adan``
extra) and ninja to build the CPU kernel ``agr/csrc/agr_cpu.cpp`` (the ``kernel`` extra;
without it AGR runs on torch ops).
"""

from .optim import FAMILIES, IMPLS, build_optimizer, check_options, optimizer_names
from .regularizer import BACKENDS, SCOPES, AGRHandle, AGRStats, attach, handle_of, regularize_

__version__ = "0.1.0"

__all__ = [
    "AGRHandle",
    "AGRStats",
    "BACKENDS",
    "FAMILIES",
    "IMPLS",
    "SCOPES",
    "attach",
    "build_optimizer",
    "check_options",
    "handle_of",
    "optimizer_names",
    "regularize_",
]
