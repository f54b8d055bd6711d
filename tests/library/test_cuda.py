"""The operator and the optimizers on a CUDA device, against the same references as on CPU.

Skipped without a GPU; `scripts/gpu_check.sh` runs this file on a GPU machine.
"""

import pytest
import torch
from reference import agr_reference as formula
from timm.optim import Adan

import agr

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("backend", ["auto", "foreach", "torch"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_operator_matches_formula_on_cuda(backend, dtype):
    shapes = [(64, 3, 3, 3), (1000, 37), (5,), (1, 1), (2048, 2048)]
    grads = [torch.randn(s, device="cuda").to(dtype) for s in shapes] + [
        torch.zeros(8, 8, device="cuda", dtype=dtype)
    ]
    expected = [formula(g) for g in grads]
    agr.regularize_(grads, scope="all", backend=backend)
    tol = dict(rtol=1e-5, atol=1e-7) if dtype == torch.float32 else dict(rtol=1e-2, atol=1e-3)
    for got, want in zip(grads, expected):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, want, **tol)


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 6 * 6, 10),
    ).cuda()


def _run_pair(name, reference_cls, reference_kwargs, impl, scope, steps=20):
    """``name`` (AGR in ``scope``: every tensor, or those of two or more dimensions) against
    the reference optimizer on gradients the formula rescaled in that scope."""
    x = torch.randn(16, 3, 8, 8, device="cuda")
    y = torch.randint(0, 10, (16,), device="cuda")
    ours, ref = _model(0), _model(0)
    agr_kwargs = {"agr_scope": scope} if name.endswith("_agr") else {}
    opt = agr.build_optimizer(name, ours, lr=1e-2, weight_decay=0.05, impl=impl, **agr_kwargs)
    ref_opt = reference_cls(ref.parameters(), lr=1e-2, weight_decay=0.05, **reference_kwargs)
    for _ in range(steps):
        for model, optimizer in ((ours, opt), (ref, ref_opt)):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
        if name.endswith("_agr"):
            for p in ref.parameters():
                if scope == "all" or p.dim() >= 2:
                    p.grad = formula(p.grad)
        opt.step()
        ref_opt.step()
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# The bare optimizer, and AGR in each scope (all: the default, the authors' code).
NAMES_SCOPES = [("{}", None), ("{}_agr", "all"), ("{}_agr", "weights")]


@pytest.mark.parametrize(("name", "scope"), NAMES_SCOPES)
@pytest.mark.parametrize("impl", ["fused", "foreach", "loop"])
def test_adamw_on_cuda(name, scope, impl):
    flags = {"fused": dict(fused=True), "foreach": dict(foreach=True), "loop": dict(foreach=False)}
    _run_pair(name.format("adamw"), torch.optim.AdamW, flags[impl], impl, scope)


@pytest.mark.parametrize(("name", "scope"), NAMES_SCOPES)
@pytest.mark.parametrize("impl", ["foreach", "loop"])
def test_adan_on_cuda(name, scope, impl):
    _run_pair(name.format("adan"), Adan, dict(foreach=impl == "foreach"), impl, scope)


def test_fp16_grad_scaler_on_cuda_matches_fp32():
    """fp16 autocast + GradScaler with fused AdamW (unscaled inside the kernel): AGR is
    scale-equivariant, so the result tracks the fp32 run."""
    x = torch.randn(32, 3, 8, 8, device="cuda")
    y = torch.randint(0, 10, (32,), device="cuda")
    ours, ref = _model(0), _model(0)
    opt = agr.build_optimizer("adamw_agr", ours, lr=1e-3, impl="fused")
    ref_opt = agr.build_optimizer("adamw_agr", ref, lr=1e-3, impl="fused")
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0**12)
    for _ in range(10):
        opt.zero_grad()
        with torch.autocast("cuda", dtype=torch.float16):
            loss = torch.nn.functional.cross_entropy(ours(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        ref_opt.zero_grad()
        torch.nn.functional.cross_entropy(ref(x), y).backward()
        ref_opt.step()
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=5e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_gc_and_agc_match_their_formulas_on_cuda(dtype):
    from reference import agc_reference, gc_reference

    shapes = [(64, 3, 3, 3), (1000, 37), (5,), (1, 1), ()]
    weights = [torch.randn(s, device="cuda").to(dtype) for s in shapes]
    tol = dict(rtol=1e-5, atol=1e-6) if dtype != torch.bfloat16 else dict(rtol=1e-2, atol=1e-2)
    grads = [0.05 * torch.randn(s, device="cuda").to(dtype) for s in shapes]
    for transform, reference in ((agr.GC(), None), (agr.AGC(), agc_reference)):
        work = [g.clone() for g in grads]
        expected = [
            gc_reference(g.cpu()) if reference is None else reference(g.cpu(), w.cpu())
            for g, w in zip(grads, weights)
        ]
        transform.transform_(work, weights, step=1, want_stats=False)
        for got, want in zip(work, expected):
            torch.testing.assert_close(got.cpu().float(), want.float(), **tol)


@pytest.mark.parametrize("name", ["adamw_gc", "adamw_agc"])
def test_gc_and_agc_arms_under_fused_grad_scaler_on_cuda(name):
    """fp16 autocast + GradScaler with fused AdamW: the transform sees unscaled gradients
    (AGC is not scale-invariant), so the run matches the same arm in fp32 closely."""
    x = torch.randn(16, 3, 8, 8, device="cuda")
    y = torch.randint(0, 10, (16,), device="cuda")
    runs = []
    for amp in (False, True):
        model = _model(0)
        opt = agr.build_optimizer(name, model, lr=1e-3, impl="fused", agc_skip_final_linear=False)
        scaler = torch.amp.GradScaler("cuda", init_scale=2.0**12, enabled=amp)
        for _ in range(10):
            opt.zero_grad()
            with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        runs.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b, rtol=5e-2, atol=5e-3)
