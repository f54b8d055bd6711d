"""Adaptive Gradient Regularization: the operator and the optimizer hook.

For each gradient tensor ``G`` (one tensor at a time)::

    alpha = |G| / sum(|G|)      # sum over all elements of the tensor, so sum(alpha) == 1
    G    <- G - alpha * G

Two controls generalise the operator (both for ablations; the defaults are AGR itself):

* the dose, ``strength`` k: AGR's factor applied k times with the same alpha,
  ``G <- G * (1 - alpha)**k``. The damping ``d = 1 - (1 - alpha)**k`` is computed as
  ``-expm1(k * log1p(-alpha))`` (accurate for tiny alpha). k = 1 is AGR (its own fast paths),
  k = 0 the identity; for 0 < alpha < 1 the factor lies strictly between 0 and 1 and falls as
  k grows, so no dose zeroes an element AGR keeps: only alpha = 1 (a one-element tensor, or
  one nonzero element) gives 0, as in AGR.
* the matched null, ``permuted``: the dosed dampings d_i of a tensor's nonzero elements are
  shuffled among those elements (a seeded permutation per tensor and step), then rescaled,
  ``d_i' = min(1, c * d_perm_i)``, with the one c >= 1 that makes the tensor lose exactly the
  L1 mass the unpermuted operator at the same strength removes, ``sum_i d_i |g_i|``. The
  null thus removes as much mass as AGR, tensor by tensor, but with no link to |G|.

This module depends on torch alone, so it can be copied into any training loop.
``agr.regularize_`` (:mod:`agr.transforms`) applies the operator to a list of gradients.
``agr.attach(optimizer)`` (:mod:`agr.hook`) runs the operator as a step pre-hook: once per
optimizer step, on the gradients the optimizer is about to use (after backward, the DDP
all-reduce, GradScaler's unscale and gradient clipping).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["SCOPES", "BACKENDS", "Variant"]

SCOPES = ("all", "weights")
"""``all`` (the default): every tensor with a gradient, biases and norm weights included, as
the authors' released code does (the only published numbers came from it); ``weights``:
tensors with ndim >= 2, the paper text's fully-connected and conv weights."""

BACKENDS = ("auto", "kernel", "foreach", "torch")
"""``kernel``: the C++ CPU kernel (float32/float64, contiguous); ``foreach``: torch's
multi-tensor ops (fast on CUDA); ``torch``: plain per-tensor torch ops (any device and
dtype); ``auto``: kernel on CPU, foreach on CUDA, torch for everything else."""

_FULL_PRECISION = (torch.float32, torch.float64)
_FOREACH_CHUNK = 1 << 25  # elements (128 MiB of float32 temporaries)
_log = logging.getLogger("agr")


# --------------------------------------------------------------------------- the operator


@dataclass(frozen=True)
class Variant:
    """How the factors are made: ``strength`` k, the dose ``(1 - alpha)**k`` (1 is AGR), and
    ``permuted``, the mass-matched null (its permutations drawn from ``seed``, the step and
    the tensor's position). See the module docstring for both definitions."""

    strength: float = 1.0
    permuted: bool = False
    seed: int = 0

    @property
    def plain(self) -> bool:
        return self.strength == 1.0 and not self.permuted


AGR = Variant()


def _check_strength(strength: Any) -> None:
    if (
        isinstance(strength, bool)
        or not isinstance(strength, (int, float))
        or not (0 <= strength < math.inf)
    ):
        raise ValueError(f"AGR strength must be a finite number >= 0, got {strength!r}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"AGR {name}={value!r} is not valid; choose one of {', '.join(choices)}")


def _check_tensor(tensor: Any, what: str) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"AGR expects gradient tensors, but {what} is a {type(tensor).__name__}")
    if tensor.layout != torch.strided:
        raise ValueError(
            f"AGR needs dense gradients, but {what} is {tensor.layout}: the per-tensor sum of "
            "|g| over a sparse gradient is not the sum over the parameter. Use dense gradients "
            "(for nn.Embedding, sparse=False) or leave this parameter out of AGR."
        )
    if type(tensor).__name__ == "DTensor" or getattr(tensor, "_is_flat_param", False):
        raise ValueError(
            f"AGR needs each gradient tensor whole, but {what} is sharded (FSDP/DTensor): "
            "sum(|g|) would be a per-shard sum and ranks would disagree. Use DDP, or "
            "all-reduce the per-tensor sums yourself."
        )
    if not tensor.is_floating_point():
        raise ValueError(f"AGR needs floating-point gradients, but {what} is {tensor.dtype}")


def _in_scope(tensor: torch.Tensor, scope: str) -> bool:
    return scope == "all" or tensor.dim() >= 2


@torch.no_grad()
def _apply(
    grads: list[torch.Tensor],
    backend: str,
    want_stats: bool,
    variant: Variant = AGR,
    step: int = 0,
) -> torch.Tensor | None:
    """Transform ``grads`` in place. Returns, when asked, a float64 [n, 3] tensor per grad:
    sum|g|, the L1 mass removed (sum of (1 - factor)*|g|) and max|g| before the update
    (possibly on the grads' device). AGR itself takes the fast routes; the controls
    (``variant`` not plain) the per-tensor torch route."""
    if not grads:
        return torch.zeros(0, 3, dtype=torch.float64) if want_stats else None
    if not variant.plain:
        rows = [_variant_(g, variant, step, i, want_stats) for i, g in enumerate(grads)]
        return torch.stack([r.to(grads[0].device) for r in rows]) if want_stats else None
    routes: dict[str, list[int]] = {"kernel": [], "foreach": [], "torch": []}
    for index, grad in enumerate(grads):
        routes[_route(grad, backend)].append(index)
    stats: list[torch.Tensor | None] = [None] * len(grads)
    for route, indices in routes.items():
        if not indices:
            continue
        chosen = [grads[i] for i in indices]
        if route == "kernel":
            rows = _kernel_module().agr_inplace(chosen)  # sum|g|, sum g^2, max|g|
            rows[:, 1] = _removed_mass(rows[:, 0], rows[:, 1])
            for row, i in enumerate(indices):
                stats[i] = rows[row]
        elif route == "foreach":
            for i, row in zip(indices, _foreach_(chosen, want_stats)):
                stats[i] = row
        else:
            for i in indices:
                stats[i] = _torch_(grads[i], want_stats)
    if not want_stats:
        return None
    device = grads[0].device
    return torch.stack([s.to(device=device, dtype=torch.float64) for s in stats])


def _route(grad: torch.Tensor, backend: str) -> str:
    full = grad.dtype in _FULL_PRECISION
    if backend == "kernel":
        if grad.device.type != "cpu" or not full:
            raise ValueError(
                f"AGR backend='kernel' runs on CPU float32/float64 tensors; got {grad.dtype} "
                f"on {grad.device}. Use backend='auto'."
            )
        return "kernel" if grad.is_contiguous() else "torch"
    if backend == "auto":
        if grad.device.type == "cpu" and full and grad.is_contiguous() and _kernel_available():
            return "kernel"
        if grad.device.type == "cuda" and full:
            return "foreach"
        return "torch"
    if backend == "foreach" and not full:
        return "torch"  # low precision needs the float32 arithmetic of the per-tensor path
    return backend


def _removed_mass(l1: torch.Tensor, l2sq: torch.Tensor) -> torch.Tensor:
    """AGR removes sum(alpha*|g|) = sum(g^2)/sum|g| of a tensor's L1 mass (0 when sum|g| = 0)."""
    return l2sq / l1.masked_fill(l1 == 0, math.inf)


def _torch_(grad: torch.Tensor, want_stats: bool) -> torch.Tensor | None:
    """Per-tensor AGR with torch ops: one full-size temporary (alpha), no host sync."""
    full = grad.dtype in _FULL_PRECISION
    alpha = grad.abs() if full else grad.float().abs_()
    l1 = alpha.sum()
    row = None
    if want_stats:
        flat = alpha.reshape(-1)
        row = torch.stack([l1, _removed_mass(l1, torch.dot(flat, flat)), alpha.max()])
    # |g| / inf == 0: a tensor with sum |g| == 0 stays unchanged, without a sync.
    alpha.div_(l1.masked_fill(l1 == 0, math.inf))
    if full:
        grad.addcmul_(grad, alpha, value=-1.0)
    else:
        grad.copy_(alpha.mul_(grad).neg_().add_(grad))  # g - g*alpha in float32, then rounded
    return row


def _foreach_(grads: list[torch.Tensor], want_stats: bool) -> list[torch.Tensor | None]:
    """Multi-tensor AGR (one kernel launch per op over all tensors): the CUDA path."""
    rows: list[torch.Tensor | None] = [None] * len(grads)
    groups: dict[tuple[torch.device, torch.dtype], list[list[int]]] = {}
    sizes: dict[tuple[torch.device, torch.dtype], int] = {}
    for index, grad in enumerate(grads):
        # Chunks of at most _FOREACH_CHUNK elements bound the alpha temporaries alive at once.
        key = (grad.device, grad.dtype)
        chunks = groups.setdefault(key, [[]])
        if chunks[-1] and sizes[key] + grad.numel() > _FOREACH_CHUNK:
            chunks.append([])
            sizes[key] = 0
        chunks[-1].append(index)
        sizes[key] = sizes.get(key, 0) + grad.numel()
    for indices in (chunk for chunks in groups.values() for chunk in chunks):
        group = [grads[i] for i in indices]
        l1 = torch.stack(torch._foreach_norm(group, 1))
        if want_stats:
            l2 = torch.stack(torch._foreach_norm(group, 2))
            mx = torch.stack(torch._foreach_norm(group, math.inf))
            removed = _removed_mass(l1, l2 * l2)
            for k, row in zip(indices, torch.stack([l1, removed, mx], dim=1)):
                rows[k] = row
        alphas = torch._foreach_abs(group)
        torch._foreach_div_(alphas, list(l1.masked_fill(l1 == 0, math.inf).unbind()))
        torch._foreach_addcmul_(group, group, alphas, value=-1.0)
    return rows


def _variant_(
    grad: torch.Tensor, variant: Variant, step: int, index: int, want_stats: bool
) -> torch.Tensor | None:
    """A control (the dose, optionally its mass-matched null; see the module docstring) on one
    tensor, computed in float32 (fp16/bf16 grads) or the grad's own float32/float64."""
    full = grad.dtype in _FULL_PRECISION
    magnitude = grad.abs() if full else grad.float().abs_()
    l1 = magnitude.sum()
    alpha = magnitude / l1.masked_fill(l1 == 0, math.inf)  # 0 everywhere when sum|g| = 0
    damping, kept = _dose(alpha, variant.strength)
    if variant.permuted:
        generator = _permutation_generator(variant.seed, step, index, grad.device)
        damping, kept = _matched_null(damping, kept, magnitude, generator)
    row = None
    if want_stats:
        removed = _mass_removed(magnitude, damping, kept)
        row = torch.stack([l1.double(), removed, magnitude.max().double()])
    _damp_(grad, damping, kept)
    return row


def _dose(alpha: torch.Tensor, strength: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(damping, kept factor) of the dose k: ``kept = (1 - alpha)**k``, ``damping = 1 - kept``,
    each computed directly so that neither loses its digits to the other (a tiny damping to
    rounding near 1, or a tiny kept factor, e.g. (1/2)**30, to a damping that rounds to 1)."""
    if strength == 1.0:
        return alpha, 1.0 - alpha  # AGR's own damping, bit for bit
    if strength == 0.0:
        # the identity; also keeps 0 * log1p(-1) = 0 * -inf = NaN out of alpha = 1
        return torch.zeros_like(alpha), torch.ones_like(alpha)
    log_kept = torch.log1p(-alpha).mul_(strength)  # alpha = 1: -inf, so kept 0 and damping 1
    return torch.expm1(log_kept).neg_(), log_kept.exp_()


def _damp_(grad: torch.Tensor, damping: torch.Tensor, kept: torch.Tensor) -> None:
    """``grad <- grad * (1 - damping)`` in place (in float32 for fp16/bf16, then rounded).
    Below a damping of 1/2 it is ``g - d*g`` (keeps a small damping exact), above it
    ``g * kept`` (keeps a tiny kept factor from rounding to 0)."""
    work = grad if grad.dtype in _FULL_PRECISION else grad.float()
    damped = torch.where(damping > 0.5, work * kept, work - damping * work)
    grad.copy_(damped)


def _mass_removed(
    magnitude: torch.Tensor, damping: torch.Tensor, kept: torch.Tensor
) -> torch.Tensor:
    """The L1 mass ``sum (1 - kept_i) |g_i|`` that :func:`_damp_` removes, in float64, each
    element from whichever of damping and kept factor it used (so a kept factor of 1e-13 is
    not reported as a whole element removed)."""
    magnitude = magnitude.double()
    far = magnitude - kept.double() * magnitude
    return torch.where(damping > 0.5, far, damping.double() * magnitude).sum()


def _matched_null(
    damping: torch.Tensor, kept: torch.Tensor, magnitude: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(damping, kept factor) of the mass-matched null: the dampings of the nonzero elements
    permuted among them, then rescaled by :func:`_scale_to_mass` so that the tensor loses the
    mass the unpermuted dampings remove. Zero elements carry no mass and keep damping 0: a
    damping moved onto one would be lost, and then no rescaling could match the mass (think
    of [5, 0, 0, 0], whose one damping of 1 removes everything). Without zeros the
    permutation is ``randperm(numel)``, the one the null has always drawn."""
    flat_damping, flat_magnitude = damping.reshape(-1), magnitude.reshape(-1)
    live = flat_magnitude.nonzero().squeeze(1)  # a host sync: fine on this ablation path
    order = torch.randperm(live.numel(), generator=generator, device=damping.device)
    shuffled = flat_damping[live][order].double()
    live_magnitude = flat_magnitude[live].double()
    target = _mass_removed(magnitude, damping, kept)  # what the unpermuted dose removes
    live_damping = _scale_to_mass(shuffled, live_magnitude, target)
    null = torch.zeros_like(flat_damping, dtype=torch.float64)
    null[live] = live_damping
    null_kept = 1 - null  # in float64 before rounding: the kept factor of a damping near 1
    return _shaped(null, damping), _shaped(null_kept, damping)


def _shaped(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(like.dtype).reshape(like.shape)


def _scale_to_mass(
    damping: torch.Tensor, magnitude: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """``min(1, c * damping)`` with the c that removes ``target`` mass: sum min(1, c d_i)|g_i|
    = target, by water-filling in float64. Start from c = target / sum d_i|g_i|; elements with
    c d_i >= 1 are clamped at 1 (they lose all their mass) and c is recomputed for the rest,
    until the clamped set stops growing (c only grows, so at most one round per element, a
    few in practice). A solution exists when target <= sum of |g_i| over d_i > 0, which holds
    for the null (every nonzero element has d_i > 0 and target <= sum|g|); otherwise every
    element with d_i > 0 is removed whole, the most that can be.

    Each round reads the clamped count on the host (``.item()``): a few syncs per tensor,
    accepted on this ablation path; AGR itself never comes here."""
    weight = damping * magnitude
    clamped = torch.zeros_like(damping, dtype=torch.bool)
    count = 0
    while True:
        free_weight = weight.masked_fill(clamped, 0).sum()
        if float(free_weight) == 0.0:  # nothing left to rescale: remove all that can be
            return (clamped | (damping > 0)).to(damping.dtype)
        free_target = (target - magnitude.masked_fill(~clamped, 0).sum()).clamp_(min=0)
        scale = free_target / free_weight
        clamped = clamped | (scale * damping >= 1)  # grows only, so the loop ends
        grown = int(clamped.sum())
        if grown == count:
            return torch.where(clamped, 1.0, scale * damping)
        count = grown


def _permutation_generator(seed: int, step: int, index: int, device: torch.device):
    """A generator for one tensor on one step: the permutation depends on (seed, step,
    tensor position) alone, so a resumed run draws the ones the uninterrupted run drew."""
    digest = hashlib.blake2b(f"agr-permuted:{seed}:{step}:{index}".encode(), digest_size=8)
    generator = torch.Generator(device=device)
    generator.manual_seed(int.from_bytes(digest.digest(), "little") >> 1)
    return generator


# --------------------------------------------------------------------------- the CPU kernel

_kernel_lock = threading.Lock()
_kernel: Any = None
_kernel_error: str | None = None


def load_cpu_kernel() -> bool:
    """Build (first time on a machine, about a minute) or load the CPU kernel now, instead of
    inside the first AGR step; True when it is available. ``make install`` calls it."""
    return _kernel_available()


def _kernel_available() -> bool:
    if os.environ.get("AGR_CPU_KERNEL", "1") == "0":
        return False
    if _kernel is None and _kernel_error is None:
        _build_kernel()
    return _kernel is not None


def _kernel_module() -> Any:
    if not _kernel_available():
        raise RuntimeError(
            "the AGR CPU kernel is not available"
            + (f": {_kernel_error}" if _kernel_error else " (AGR_CPU_KERNEL=0)")
            + ". Use backend='auto' or 'torch', or install a C++ compiler and ninja."
        )
    return _kernel


def kernel_build_directory() -> str | None:
    """Where the CPU kernel is built and cached: a folder of this Python environment
    (``<sys.prefix>/var/cache/torch-agr/torch<version>-py<X.Y>``), so that each environment
    builds it once and two environments (two clones, two venvs) never rebuild each other's:
    torch's own cache is keyed by the extension's name alone, and a build from another
    source path replaces it. None (torch's cache) when TORCH_EXTENSIONS_DIR chooses a folder
    or the environment cannot be written."""
    if os.environ.get("TORCH_EXTENSIONS_DIR"):
        return None
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    folder = (
        Path(sys.prefix) / "var" / "cache" / "torch-agr" / f"torch{torch.__version__}-py{python}"
    )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return str(folder) if os.access(folder, os.W_OK) else None


def _build_kernel() -> None:
    """Compile agr/csrc/agr_cpu.cpp once per environment (:func:`kernel_build_directory`)."""
    global _kernel, _kernel_error
    with _kernel_lock:
        if _kernel is not None or _kernel_error is not None:
            return
        source = Path(__file__).with_name("csrc") / "agr_cpu.cpp"
        _log.info("agr: loading the CPU AGR kernel (the first build takes about a minute)")
        try:
            from torch.utils import cpp_extension

            _kernel = cpp_extension.load(
                name="agr_cpu",
                sources=[str(source)],
                # -fno-math-errno lets the compiler vectorise sqrt (3x on the AdamW step).
                extra_cflags=["-O3", "-fopenmp", "-fno-math-errno"],
                extra_ldflags=["-fopenmp"],
                build_directory=kernel_build_directory(),
                verbose=False,
            )
        except Exception as error:  # no compiler, no ninja, read-only cache: fall back
            _kernel_error = f"{type(error).__name__}: {error}".strip()[:500]
            _log.warning(
                "agr: could not build the CPU AGR kernel, using torch ops instead (slower). "
                "Cause: %s",
                _kernel_error,
            )
