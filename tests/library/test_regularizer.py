"""The AGR operator, ``agr.regularize_``, and ``agr.attach``'s statistics, against the formula.

For one gradient tensor G: alpha = |G| / sum(|G|) and G <- G - alpha * G, computed in float32 for
fp16/bf16 tensors; a tensor with sum(|G|) == 0 is left unchanged. ``scope="weights"`` transforms
only tensors with ndim >= 2, ``scope="all"`` every tensor. The reference below is written out
directly so that these tests do not depend on any code under ``agr/``.
"""

from __future__ import annotations

import pytest
import torch
from reference import agr_reference
from torch import nn

import agr

BACKENDS = ["auto", "torch"]
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    ),
]


def apply(tensors, **kwargs):
    agr.regularize_(tensors, **kwargs)
    return tensors


# --------------------------------------------------------------------------------------------
# Hand-computed values
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hand_computed_2x2(backend, dtype, device):
    # sum |g| = 1 + 3 + 0 + 4 = 8; alpha = [[1/8, 3/8], [0, 4/8]]
    g = torch.tensor([[1.0, -3.0], [0.0, 4.0]], dtype=dtype, device=device)
    expected = torch.tensor(
        [[1 - 1 / 8, -3 + 9 / 8], [0.0, 4 - 2]], dtype=dtype, device=device
    )  # = [[7/8, -15/8], [0, 2]]
    reference = agr_reference(g)
    agr.regularize_([g], backend=backend)
    torch.testing.assert_close(g, expected, rtol=0, atol=1e-7)
    torch.testing.assert_close(reference, expected, rtol=0, atol=1e-7)  # the formula agrees


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_computed_3d_and_several_tensors(backend):
    # Each tensor is regularized with its own sum; a 3-D tensor counts as a "weight".
    a = torch.tensor([[[2.0, -2.0]], [[4.0, 0.0]]])  # sum 8 -> alpha [.25, .25, .5, 0]
    b = torch.tensor([[1.0], [1.0], [-2.0]])  # sum 4 -> alpha [.25, .25, .5]
    agr.regularize_([a, b], backend=backend)
    torch.testing.assert_close(a, torch.tensor([[[1.5, -1.5]], [[2.0, 0.0]]]), rtol=0, atol=1e-7)
    torch.testing.assert_close(b, torch.tensor([[0.75], [0.75], [-1.0]]), rtol=0, atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_accepts_a_generator(backend):
    ts = [torch.tensor([[1.0, -3.0], [0.0, 4.0]]), torch.tensor([[2.0, 2.0]])]
    agr.regularize_((t for t in ts), backend=backend)
    torch.testing.assert_close(ts[0], torch.tensor([[0.875, -1.875], [0.0, 2.0]]))
    torch.testing.assert_close(ts[1], torch.tensor([[1.0, 1.0]]))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_bf16_sum_and_arithmetic_in_float32(backend, device):
    # sum = 259, which bf16 cannot hold (it rounds to 260), and 256 * (1 - 256/259) cancels
    # heavily: float32 gives 768/259 = 2.96525 -> bf16 2.96875; a bf16 sum gives 3.9375 and
    # bf16 arithmetic gives 3.0.
    g = torch.tensor([[256.0, 1.0], [-1.0, 1.0]], dtype=torch.bfloat16, device=device)
    agr.regularize_([g], backend=backend)
    expected = torch.tensor(
        [[2.96875, 0.99609375], [-0.99609375, 0.99609375]], dtype=torch.bfloat16, device=device
    )
    assert torch.equal(g, expected), g


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_fp16_sum_does_not_overflow(backend, device):
    # sum |g| = 120000 > fp16 max (65504): the sum must be taken in float32.
    g = torch.full((2, 2), 30000.0, dtype=torch.float16, device=device)
    agr.regularize_([g], backend=backend)
    assert torch.isfinite(g).all()
    # 30000 * 0.75 = 22500 -> fp16 22496
    assert torch.equal(g, torch.full((2, 2), 22496.0, dtype=torch.float16, device=device)), g


# --------------------------------------------------------------------------------------------
# Random tensors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 3), (17, 5), (64, 64), (3, 4, 5, 6)])
def test_random_full_precision(shape, dtype, backend, device):
    g = torch.randn(shape, dtype=dtype, device=device) * 3.0
    expected = agr_reference(g)
    agr.regularize_([g], backend=backend)
    torch.testing.assert_close(g, expected)


def _assert_low_precision_matches(out: torch.Tensor, expected: torch.Tensor):
    # Different float32 evaluation orders may land on the other side of a rounding tie; allow
    # at most one unit in the last place, on a small fraction of elements.
    eps = torch.finfo(out.dtype).eps
    torch.testing.assert_close(out.float(), expected.float(), rtol=eps, atol=1e-30)
    assert (out != expected).float().mean().item() <= 0.01


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(2, 3), (5, 7), (64, 64)])
def test_random_low_precision(shape, dtype, backend, device):
    g = (torch.randn(shape, device=device) * 3.0).to(dtype)
    expected = agr_reference(g)  # float32 then rounded back
    agr.regularize_([g], backend=backend)
    assert g.dtype == dtype
    _assert_low_precision_matches(g, expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mixed_dtypes_in_one_call(backend):
    ts = [
        torch.randn(4, 5),
        torch.randn(3, 3, dtype=torch.float64),
        torch.randn(6, 2).bfloat16(),
        torch.randn(2, 2).half(),
    ]
    expected = [agr_reference(t) for t in ts]
    agr.regularize_(ts, backend=backend)
    torch.testing.assert_close(ts[0], expected[0])
    torch.testing.assert_close(ts[1], expected[1])
    _assert_low_precision_matches(ts[2], expected[2])
    _assert_low_precision_matches(ts[3], expected[3])


# --------------------------------------------------------------------------------------------
# Memory layout and size
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_transposed_view_in_place(backend, dtype):
    base = torch.randn(6, 4).to(dtype)
    view = base.t()
    assert not view.is_contiguous()
    expected = agr_reference(view)
    agr.regularize_([view], backend=backend)
    # The view is correct, and the change reached the storage it shares with `base`.
    if dtype == torch.bfloat16:
        _assert_low_precision_matches(view, expected)
        _assert_low_precision_matches(base, expected.t())
    else:
        torch.testing.assert_close(view, expected)
        torch.testing.assert_close(base, expected.t())
    assert view.data_ptr() == base.data_ptr()


@pytest.mark.parametrize("backend", BACKENDS)
def test_strided_slice_in_place_leaves_the_rest_alone(backend):
    base = torch.randn(5, 8, dtype=torch.float64)
    original = base.clone()
    view = base[:, ::2]  # every other column: non-contiguous, with gaps
    assert not view.is_contiguous()
    expected = agr_reference(view)
    agr.regularize_([view], backend=backend)
    torch.testing.assert_close(base[:, ::2], expected)
    assert torch.equal(base[:, 1::2], original[:, 1::2])


@pytest.mark.parametrize("backend", BACKENDS)
def test_channels_last_in_place(backend):
    # A channels-last 4-D tensor (conv weights under channels_last): non-standard strides.
    g = torch.randn(4, 3, 5, 5).to(memory_format=torch.channels_last)
    ptr = g.data_ptr()
    expected = agr_reference(g)
    agr.regularize_([g], backend=backend)
    assert g.data_ptr() == ptr
    torch.testing.assert_close(g, expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_tensor(backend, dtype):
    g = torch.randn(1100, 1000, dtype=dtype)  # 1.1M elements
    ptr = g.data_ptr()
    expected = agr_reference(g)
    agr.regularize_([g], backend=backend)
    assert g.data_ptr() == ptr
    torch.testing.assert_close(g, expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_tensor_sum_is_accurate_float32(backend):
    # One element of 2**24 followed by 1.1M ones. A float32 running sum started at 2**24 never
    # moves (2**24 + 1 rounds back to 2**24), which would make alpha == 1 for the big element
    # and zero it; the true sum is 2**24 + (n - 1), well within float32's reach.
    n = 1_100_000
    g = torch.ones(1100, 1000)
    g[0, 0] = 2.0**24
    true_sum = 2.0**24 + (n - 1)
    expected_big = 2.0**24 * (1 - 2.0**24 / true_sum)  # ~1.03e6
    expected_one = 1 - 1 / true_sum
    agr.regularize_([g], backend=backend)
    # 1 - alpha cancels (alpha ~ 0.94), amplifying the sum's relative error ~15x: float32
    # partial sums over blocks of a few thousand elements are ~1e-3 off here, a stuck running
    # sum gives 0; an accurate sum leaves only the float32 rounding of alpha (~1e-6).
    assert g[0, 0].item() == pytest.approx(expected_big, rel=1e-4)
    torch.testing.assert_close(g.flatten()[1:], torch.full((n - 1,), expected_one))


# --------------------------------------------------------------------------------------------
# Degenerate tensors and scope
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scope", ["weights", "all"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(3, 4), (7,), (1, 1), ()])
def test_zero_tensor_unchanged(shape, dtype, scope, backend):
    g = torch.zeros(shape, dtype=dtype)
    agr.regularize_([g], scope=scope, backend=backend)
    assert not torch.isnan(g).any()
    assert torch.equal(g, torch.zeros(shape, dtype=dtype))


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_tensor_next_to_nonzero(backend):
    z = torch.zeros(2, 3)
    g = torch.tensor([[1.0, -3.0], [0.0, 4.0]])
    agr.regularize_([z, g], backend=backend)
    assert torch.equal(z, torch.zeros(2, 3))
    torch.testing.assert_close(g, torch.tensor([[0.875, -1.875], [0.0, 2.0]]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_one_element_tensors(backend, dtype):
    # scope="all": alpha = 1, so the tensor becomes 0 (sign of the input kept or not).
    for shape in [(1,), (), (1, 1), (1, 1, 1)]:
        g = torch.full(shape, -5.0, dtype=dtype)
        agr.regularize_([g], scope="all", backend=backend)
        assert torch.equal(g.abs(), torch.zeros(shape, dtype=dtype)), (shape, g)
    # scope="weights": a 1-D or 0-D tensor is left alone, a (1, 1) tensor (ndim 2) is zeroed.
    for shape in [(1,), ()]:
        g = torch.full(shape, -5.0, dtype=dtype)
        agr.regularize_([g], scope="weights", backend=backend)
        assert torch.equal(g, torch.full(shape, -5.0, dtype=dtype)), (shape, g)
    g = torch.full((1, 1), -5.0, dtype=dtype)
    agr.regularize_([g], scope="weights", backend=backend)
    assert torch.equal(g.abs(), torch.zeros((1, 1), dtype=dtype))


@pytest.mark.parametrize("backend", [*BACKENDS, "kernel"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_an_element_holding_all_the_mass_becomes_exactly_zero(backend, dtype):
    """alpha = |g| / sum|g| = 1 exactly for a one-element tensor, or a tensor's only nonzero
    element, so g - alpha*g is 0: also for values whose reciprocal does not round-trip
    (about one float32 in seven has |x| * (1/|x|) != 1, e.g. 0.36159506), which an
    Adam-type step would otherwise turn from a 1e-7 * g residue into a full-size update."""
    if backend == "kernel" and not agr.regularizer.load_cpu_kernel():
        pytest.skip("no CPU kernel here")
    values = torch.randn(500, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    values = values.to(dtype)
    reciprocal = values.abs() * (1 / values.abs())
    assert (reciprocal != 1).any()  # the test covers the values that do not round-trip
    ones = [v.reshape(1).clone() for v in values]
    lone = [
        torch.zeros(7, dtype=dtype).index_fill_(0, torch.tensor([i % 7]), v)
        for i, v in enumerate(values)
    ]
    agr.regularize_(ones + lone, backend=backend)
    assert all(torch.equal(g, torch.zeros_like(g)) for g in ones + lone)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_1d_tensor_scope_weights_unchanged_scope_all_transformed(backend, dtype):
    g = torch.randn(10).to(dtype)
    original = g.clone()
    agr.regularize_([g], scope="weights", backend=backend)
    assert torch.equal(g, original)
    agr.regularize_([g], scope="all", backend=backend)
    expected = agr_reference(original, scope="all")
    if dtype == torch.bfloat16:
        _assert_low_precision_matches(g, expected)
    else:
        torch.testing.assert_close(g, expected)
    # hand value: [1, -3] -> sum 4 -> [1 - 1/4, -3 + 9/4]
    h = torch.tensor([1.0, -3.0], dtype=dtype)
    agr.regularize_([h], scope="all", backend=backend)
    torch.testing.assert_close(h.float(), torch.tensor([0.75, -0.75]))


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("c", [2.0, 0.5, 3.7, 1024.0, 1e-3, -2.0, 2.0**20])
def test_scale_equivariance(c, backend):
    g = torch.randn(8, 9, dtype=torch.float64)
    scaled = g * c
    agr.regularize_([g, scaled], backend=backend)
    torch.testing.assert_close(scaled, c * g, rtol=1e-12, atol=0)

    g32 = torch.randn(16, 4)
    scaled32 = g32 * c
    agr.regularize_([g32, scaled32], backend=backend)
    torch.testing.assert_close(scaled32, c * g32, rtol=1e-5, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(2, 2), (10, 3), (32, 32, 2)])
def test_alpha_sums_to_one(shape, backend):
    g = torch.randn(shape, dtype=torch.float64)
    g = torch.where(g.abs() < 1e-3, torch.full_like(g, 0.5), g)  # no zeros: alpha is recoverable
    out = g.clone()
    agr.regularize_([out], backend=backend)
    alpha = (g - out) / g
    assert (alpha >= 0).all() and (alpha <= 1).all()
    assert alpha.sum().item() == pytest.approx(1.0, abs=1e-10)
    torch.testing.assert_close(alpha, g.abs() / g.abs().sum(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sign_and_magnitude(backend):
    # alpha in [0, 1] means every element keeps its sign and does not grow.
    g = torch.randn(20, 20)
    out = g.clone()
    agr.regularize_([out], backend=backend)
    assert ((out * g) >= 0).all()
    assert (out.abs() <= g.abs()).all()


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scope", ["weights", "all"])
def test_sparse_raises(scope, backend):
    sp = torch.randn(4, 4).to_sparse()
    with pytest.raises(ValueError):
        agr.regularize_([sp], scope=scope, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_sparse_csr_raises(backend):
    sp_csr = torch.randn(4, 4).to_sparse_csr()  # note: .is_sparse is False for CSR
    with pytest.raises(ValueError):
        agr.regularize_([sp_csr], backend=backend)


def test_sparse_grad_through_attach_raises():
    emb = nn.Embedding(10, 4, sparse=True)
    opt = torch.optim.SGD(emb.parameters(), lr=0.1)
    agr.attach(opt)
    emb(torch.tensor([1, 2, 3])).sum().backward()
    assert emb.weight.grad.is_sparse
    with pytest.raises(ValueError):
        opt.step()


@pytest.mark.parametrize("scope", ["weight", "bias", "", "everything"])
def test_invalid_scope_raises(scope):
    with pytest.raises(ValueError):
        agr.regularize_([torch.randn(3, 3)], scope=scope)
    with pytest.raises(ValueError):
        agr.regularize_([torch.randn(3, 3)], scope=scope, backend="torch")
    opt = torch.optim.SGD(nn.Linear(3, 3).parameters(), lr=0.1)
    with pytest.raises(ValueError):
        agr.attach(opt, scope=scope)


# --------------------------------------------------------------------------------------------
# attach: the hook and its statistics
# --------------------------------------------------------------------------------------------


class _Hand(nn.Module):
    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.zeros(2, 2))
        self.w2 = nn.Parameter(torch.zeros(3, 1))
        self.b = nn.Parameter(torch.zeros(2))

    def set_grads(self):
        self.w1.grad = torch.tensor([[1.0, -3.0], [0.0, 4.0]])  # sum 8, sum sq 26
        self.w2.grad = torch.tensor([[2.0], [2.0], [-2.0]])  # sum 6, sum sq 12
        self.b.grad = torch.tensor([5.0, -5.0])  # sum 10, sum sq 50


@pytest.mark.parametrize("names_kind", ["module", "named_parameters", "list"])
def test_last_stats_scope_weights(names_kind):
    m = _Hand()
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    names = {
        "module": m,
        "named_parameters": m.named_parameters(),
        "list": list(m.named_parameters()),
    }[names_kind]
    handle = agr.attach(opt, scope="weights", names=names)
    m.set_grads()
    opt.step()
    stats = handle.last_stats
    # removed mass: w1 26/8 = 3.25, w2 12/6 = 2 (b untouched: 1-D)
    assert stats.removed_fraction == pytest.approx((3.25 + 2.0) / (8 + 6), rel=1e-6)  # 0.375
    assert stats.max_alpha == pytest.approx(0.5, rel=1e-6)  # 4/8 in w1
    assert stats.per_param["w1"] == pytest.approx(26 / 64, rel=1e-6)
    assert stats.per_param["w2"] == pytest.approx(12 / 36, rel=1e-6)
    assert stats.per_param.get("b", 0.0) == 0.0
    # the gradients were transformed in place, then SGD used them
    torch.testing.assert_close(m.w1.grad, torch.tensor([[0.875, -1.875], [0.0, 2.0]]))
    torch.testing.assert_close(m.w2.grad, torch.tensor([[4 / 3], [4 / 3], [-4 / 3]]))
    torch.testing.assert_close(m.b.grad, torch.tensor([5.0, -5.0]))
    torch.testing.assert_close(m.w1.detach(), -0.5 * torch.tensor([[0.875, -1.875], [0.0, 2.0]]))
    torch.testing.assert_close(m.b.detach(), torch.tensor([-2.5, 2.5]))
    assert handle.steps == 1


def test_last_stats_scope_all():
    m = _Hand()
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    handle = agr.attach(opt, scope="all", names=m)
    m.set_grads()
    opt.step()
    stats = handle.last_stats
    # removed: 3.25 + 2 + 50/10 = 10.25 out of 8 + 6 + 10 = 24
    assert stats.removed_fraction == pytest.approx(10.25 / 24, rel=1e-6)
    assert stats.max_alpha == pytest.approx(0.5, rel=1e-6)  # w1 4/8 and b 5/10
    assert stats.per_param["w1"] == pytest.approx(26 / 64, rel=1e-6)
    assert stats.per_param["w2"] == pytest.approx(12 / 36, rel=1e-6)
    assert stats.per_param["b"] == pytest.approx(50 / 100, rel=1e-6)
    # the masses behind them (sum |g| and sum g^2 / sum |g|), to pool tensors exactly
    assert stats.per_param_l1 == pytest.approx({"w1": 8.0, "w2": 6.0, "b": 10.0}, rel=1e-6)
    assert stats.per_param_removed == pytest.approx({"w1": 3.25, "w2": 2.0, "b": 5.0}, rel=1e-6)
    torch.testing.assert_close(m.b.grad, torch.tensor([2.5, -2.5]))


def test_last_stats_without_names_and_on_random_grads():
    lin1, lin2 = nn.Linear(6, 5), nn.Linear(5, 3)
    params = [*lin1.parameters(), *lin2.parameters()]
    opt = torch.optim.SGD(params, lr=0.1)
    handle = agr.attach(opt)
    for p in params:
        p.grad = torch.randn_like(p)
    grads = [p.grad.clone().double() for p in params]  # the default scope: all
    opt.step()
    stats = handle.last_stats
    removed = sum((g * g).sum() / g.abs().sum() for g in grads)
    mass = sum(g.abs().sum() for g in grads)
    assert stats.removed_fraction == pytest.approx((removed / mass).item(), rel=1e-5)
    max_alpha = max((g.abs() / g.abs().sum()).max() for g in grads)
    assert stats.max_alpha == pytest.approx(max_alpha.item(), rel=1e-5)


def test_attach_steps_and_remove():
    m = _Hand()
    opt = torch.optim.SGD(m.parameters(), lr=0.0)
    handle = agr.attach(opt)
    assert handle.enabled
    for _ in range(3):
        m.set_grads()
        opt.step()
    assert handle.steps == 3
    handle.remove()
    m.set_grads()
    opt.step()
    # no longer transformed
    torch.testing.assert_close(m.w1.grad, torch.tensor([[1.0, -3.0], [0.0, 4.0]]))
    assert handle.steps == 3


def test_attach_skips_params_without_grad():
    m = _Hand()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    agr.attach(opt, names=m)
    m.w1.grad = torch.tensor([[1.0, -3.0], [0.0, 4.0]])  # w2 and b have no grad
    opt.step()
    torch.testing.assert_close(m.w1.grad, torch.tensor([[0.875, -1.875], [0.0, 2.0]]))
    assert m.w2.grad is None


@pytest.mark.parametrize("chunk", [1, 100, 1 << 25])
def test_foreach_backend_matches_formula_in_chunks(monkeypatch, chunk):
    """The multi-tensor path (CUDA's default) on CPU, with the temporaries bounded by chunks
    of every size: one tensor per chunk, a few per chunk, all in one."""
    monkeypatch.setattr(agr.regularizer, "_FOREACH_CHUNK", chunk)
    grads = [torch.randn(7, 9), torch.randn(300, 2), torch.zeros(4, 4), torch.randn(3, 3).double()]
    grads += [torch.randn(5, 5) for _ in range(3)]
    expected = [agr_reference(g) for g in grads]
    agr.regularize_(grads, backend="foreach")
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want)


# ------------------------------------------------------------- edge values, every backend

EDGE_BACKENDS = ["kernel", "foreach", "torch"]


@pytest.mark.parametrize("backend", EDGE_BACKENDS)
def test_tiny_sum_whose_reciprocal_overflows_float32(backend):
    """sum|g| = 6e-40 < 1/FLT_MAX: 1/sum overflows float32; alpha must not."""
    g = torch.tensor([1e-40, -2e-40, 3e-40], dtype=torch.float32)
    want = (g.double() * (1 - g.double().abs() / g.double().abs().sum())).float()
    agr.regularize_([g], backend=backend)
    assert torch.isfinite(g).all()
    torch.testing.assert_close(g, want, rtol=0, atol=2e-45)


@pytest.mark.parametrize("backend", EDGE_BACKENDS)
def test_nan_gradient_propagates_to_the_whole_tensor(backend):
    """sum|g| is NaN, so every alpha is NaN (IEEE); the neighbour tensor is untouched."""
    g = torch.tensor([1.0, float("nan"), 2.0])
    other = torch.tensor([1.0, 3.0])
    agr.regularize_([g, other], backend=backend)
    assert torch.isnan(g).all()
    torch.testing.assert_close(other, agr_reference(torch.tensor([1.0, 3.0])))


@pytest.mark.parametrize("backend", EDGE_BACKENDS)
def test_inf_gradient_becomes_nan_and_finite_elements_keep_their_value(backend):
    """sum|g| = inf: alpha = |g|/inf = 0 for finite g, inf/inf = NaN for the inf one."""
    g = torch.tensor([1.0, float("inf"), -2.0])
    agr.regularize_([g], backend=backend)
    assert g[0] == 1.0 and g[2] == -2.0 and torch.isnan(g[1])
