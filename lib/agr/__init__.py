"""Adaptive Gradient Regularization (AGR, Jiang et al., arXiv 2407.16944) for PyTorch.

    import agr
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    handle = agr.attach(optimizer)            # AGR now runs inside every optimizer.step()

or ``agr.build_optimizer("adamw_agr", model, lr=1e-3)``, or ``agr.regularize_(grads)``
in a loop of your own. AGR's neighbours run the same way: ``agr.attach(optimizer,
transform="gc")`` (gradient centralization), ``transform="agc"`` (adaptive gradient
clipping), or a function of your own, ``transform=fn`` (``agr.transforms``).

The library is the distribution ``torch-agr`` (``pip install ./lib`` from the agr-suite
repository) and needs torch alone. Optional: timm for the Adan optimizers (the ``adan``
extra) and ninja to build the CPU kernel ``agr/csrc/agr_cpu.cpp`` (the ``kernel`` extra;
without it AGR runs on torch ops).
"""

from .hook import AGRHandle, AGRStats, FrozenParameterWarning, attach, handle_of
from .optim import FAMILIES, IMPLS, build_optimizer, check_options, optimizer_names
from .regularizer import BACKENDS, SCOPES
from .transforms import (
    AGC,
    AGR,
    GC,
    TRANSFORMS,
    CallableTransform,
    GradientTransform,
    regularize_,
)

__version__ = "0.1.0"

__all__ = [
    "AGC",
    "AGR",
    "AGRHandle",
    "AGRStats",
    "BACKENDS",
    "FAMILIES",
    "GC",
    "IMPLS",
    "SCOPES",
    "TRANSFORMS",
    "CallableTransform",
    "FrozenParameterWarning",
    "GradientTransform",
    "attach",
    "build_optimizer",
    "check_options",
    "handle_of",
    "optimizer_names",
    "regularize_",
]
