"""The ablation's controls: AGR's dose k (dose-response) and the mass-matched permuted null.

Dose k: G <- G * (1 - alpha)**k (``reference.dosed_reference``, in float64 with pow); k = 1 is
AGR, k = 0 the identity, and only alpha = 1 gives a zero factor.
Null: the dosed dampings d_i of a tensor's nonzero elements in a random order, rescaled to
min(1, c * d_perm_i) so that the tensor loses exactly the L1 mass the unpermuted dose removes;
the order depends on the seed, the step and the tensor alone.
"""

from __future__ import annotations

import copy

import pytest
import torch
from reference import agr_reference, dosed_reference
from torch import nn

import agr
from agr import regularizer
from agr.update_change import parameter_kinds, removed_fraction_by_kind


def random_grads(seed=0, shapes=((8, 5), (32,), (4, 3, 3, 3)), dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype) for shape in shapes]


# --------------------------------------------------------------------------- the dose


@pytest.mark.parametrize("strength", [0.0, 0.5, 1.0, 3.0, 10.0, 100.0])
@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_dose_matches_the_formula(strength, dtype, rtol):
    grads = random_grads(dtype=dtype)
    expected = [dosed_reference(g, strength) for g in grads]
    agr.regularize_(grads, strength=strength)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=rtol, atol=0)


def test_dose_one_is_agr_on_its_own_fast_paths(monkeypatch):
    """k = 1 is AGR bit for bit: the plain routes (kernel/foreach/torch), never the controls'."""
    grads = random_grads()
    expected = [agr_reference(g) for g in grads]
    assert regularizer.Variant(strength=1.0).plain

    def refuse(*args, **kwargs):
        raise AssertionError("k = 1 took the controls' path")

    monkeypatch.setattr(regularizer, "_variant_", refuse)
    for backend in ("auto", "torch"):
        got = [g.clone() for g in grads]
        agr.regularize_(got, strength=1.0, backend=backend)
        for g, want in zip(got, expected):
            torch.testing.assert_close(g, want, rtol=1e-12, atol=1e-15)


def test_dose_zero_changes_nothing_even_where_alpha_is_one():
    """k = 0 is the identity; alpha = 1 (a one-element tensor) must not give 0 * log(0) = NaN."""
    grads = [
        torch.tensor([3.0]),
        torch.tensor([0.0, -2.0, 0.0]),
        *random_grads(dtype=torch.float32),
    ]
    before = [g.clone() for g in grads]
    agr.regularize_(grads, strength=0.0)
    assert all(torch.equal(a, b) for a, b in zip(grads, before))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dose_factors_lie_strictly_between_0_and_1_and_fall_with_k(dtype):
    g = torch.tensor([4.0, -1.0, 0.5, 2.5, -0.01], dtype=dtype)  # alpha from 0.001 to 0.5
    factors = []
    for strength in (0.25, 1.0, 3.0, 10.0, 30.0, 100.0):
        out = g.clone()
        agr.regularize_([out], strength=strength)
        factor = out.double() / g.double()
        assert ((factor > 0) & (factor < 1)).all(), (strength, factor)
        factors.append(factor)
    for weaker, stronger in zip(factors, factors[1:]):
        assert (stronger < weaker).all()


def test_dose_zeroes_only_what_agr_zeroes():
    """Two equal elements (alpha = 1/2) keep (1/2)**30 of their value, where the old clamped
    form min(1, k * alpha) zeroed them; alpha = 1 (one element, or one nonzero) gives 0."""
    pair = torch.tensor([1.0, -1.0])
    agr.regularize_([pair], strength=30.0)
    # float32: exp(30 * log1p(-1/2)) carries the rounding of 30 * log(2) ~ 20.8, about 1e-6
    assert pair.tolist() == pytest.approx([2.0**-30, -(2.0**-30)], rel=1e-5)
    assert min(1.0, 30.0 * 0.5) == 1.0  # the old form's damping: the pair would be zero
    alone, lone = torch.tensor([3.0]), torch.tensor([0.0, 5.0, 0.0])
    agr.regularize_([alone, lone], strength=30.0)
    assert alone.tolist() == [0.0] and lone.tolist() == [0.0, 0.0, 0.0]
    single = torch.tensor([3.0])
    agr.regularize_([single])  # AGR itself
    assert single.tolist() == [0.0]


def test_dose_removed_mass_is_accurate_for_tiny_alpha():
    """100k float32 elements (alpha ~ 1e-5): the reported removed fraction matches the float64
    formula to 1e-6; 1 - (1 - alpha)**k computed naively in float32 is off by ~3e-5."""
    gen = torch.Generator().manual_seed(4)
    g = torch.randn(100_000, generator=gen)
    param = nn.Parameter(torch.zeros_like(g))
    optimizer = torch.optim.SGD([param], lr=0.0)
    handle = agr.attach(optimizer, strength=3.0)
    param.grad = g.clone()
    optimizer.step()
    magnitude = g.double().abs()
    alpha = magnitude / magnitude.sum()
    want = float((magnitude * (1 - (1 - alpha) ** 3)).sum() / magnitude.sum())
    assert handle.last_stats.removed_fraction == pytest.approx(want, rel=1e-6)
    alpha32 = g.abs() / g.abs().sum()
    naive = float((g.abs() * (1 - (1 - alpha32) ** 3)).double().sum() / magnitude.sum())
    assert abs(naive / want - 1) > 1e-5  # the test can tell an inaccurate damping


def test_dose_reports_a_tiny_kept_factor_as_mass_kept():
    """Three equal float32 elements at k = 50 keep (2/3)**50 ~ 1.6e-9 of their mass: the
    damping rounds to 1 in float32, yet the reported removed fraction is 1 - 1.6e-9, not 1."""
    param = nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([param], lr=0.0)
    handle = agr.attach(optimizer, strength=50.0)
    param.grad = torch.tensor([0.5, -0.5, 0.5])
    optimizer.step()
    kept = (2 / 3) ** 50
    assert param.grad.double().abs().sum().item() / 1.5 == pytest.approx(kept, rel=1e-5)
    assert 1 - handle.last_stats.removed_fraction == pytest.approx(kept, rel=1e-5)


@pytest.mark.parametrize("bad", [-1.0, float("inf"), float("nan"), True, "2"])
def test_bad_strength_is_refused(bad):
    with pytest.raises(ValueError, match="strength"):
        agr.regularize_(random_grads(), strength=bad)
    with pytest.raises(ValueError, match="strength"):
        agr.attach(torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1), strength=bad)


def test_bf16_dose_is_computed_in_float32():
    g32 = torch.randn(64, 16)
    g = g32.to(torch.bfloat16)
    expected = dosed_reference(g.float(), 10.0).to(torch.bfloat16)
    agr.regularize_([g], strength=10.0)
    torch.testing.assert_close(g, expected, rtol=1e-2, atol=1e-6)


class ConvNet(nn.Module):
    """conv + norm + bias + linear: every kind but embeddings, small tensors among them."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.norm = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.norm(self.conv(x))).mean((2, 3)))


def kind_fractions(before, after, names, kinds):
    """Removed L1 fraction per kind from the gradients before and after, in float64."""
    removed, mass = {}, {}
    for name, g, out in zip(names, before, after):
        kind = kinds[name]
        removed[kind] = removed.get(kind, 0.0) + float(
            (g.double().abs() - out.double().abs()).sum()
        )
        mass[kind] = mass.get(kind, 0.0) + float(g.double().abs().sum())
    return {kind: removed[kind] / mass[kind] for kind in mass}


def test_removed_fraction_by_kind_grows_with_the_dose_and_never_reaches_one():
    """One step of a conv/norm/bias/linear model at k = 1, 3, 10, 30, 100: every kind's removed
    fraction (pooled from the handle's per-parameter statistics) grows strictly with k and
    stays below 1. The old clamped form min(1, k * alpha) removes everything from a kind of
    small tensors at k = 100, so the fixture tells the two apart."""
    torch.manual_seed(0)
    model = ConvNet()
    nn.functional.cross_entropy(
        model(torch.randn(4, 3, 6, 6)), torch.tensor([0, 1, 2, 0])
    ).backward()
    names = [n for n, _ in model.named_parameters()]
    before = [p.grad.clone() for p in model.parameters()]
    kinds = parameter_kinds(model)
    assert set(kinds.values()) == {"conv_linear", "norm", "bias"}
    by_strength = {}
    for strength in (1.0, 3.0, 10.0, 30.0, 100.0):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        handle = agr.attach(optimizer, strength=strength, names=model)
        for param, grad in zip(model.parameters(), before):
            param.grad = grad.clone()
        optimizer.step()
        reported = removed_fraction_by_kind(handle.last_stats, kinds)
        after = [p.grad for p in model.parameters()]
        independent = kind_fractions(before, after, names, kinds)
        assert reported == pytest.approx(independent, rel=1e-5)
        assert all(0 < value < 1.0 for value in reported.values()), (strength, reported)
        by_strength[strength] = reported
        handle.remove()
    ladder = list(by_strength.values())
    for kind in ladder[0]:
        assert all(a[kind] < b[kind] for a, b in zip(ladder, ladder[1:])), kind
    old = [g * (1 - (100 * g.abs() / g.abs().sum()).clamp(max=1)) for g in before]
    assert max(kind_fractions(before, old, names, kinds).values()) == 1.0


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(12, 20)
        self.fc2 = nn.Linear(20, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


def one_step_grads(model, optimizer, seed=0):
    """Backward on a fixed batch, then the optimizer's step (AGR runs in its pre-hook);
    returns the gradients before and after the hook."""
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, 12, generator=gen), torch.randint(0, 3, (16,), generator=gen)
    optimizer.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    before = [p.grad.clone() for p in model.parameters()]
    optimizer.step()
    return before, [p.grad.clone() for p in model.parameters()]


def permuted_optimizer(model, seed=0):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    agr.attach(optimizer, permuted=True, seed=seed, names=model)
    return optimizer


def null_and_dose(grads, strength, seed=0):
    """The null's and the dose's outputs on copies of ``grads`` (one optimizer step each)."""
    outputs = []
    for permuted in (True, False):
        params = [nn.Parameter(torch.zeros_like(g)) for g in grads]
        optimizer = torch.optim.SGD(params, lr=0.0)
        agr.attach(optimizer, strength=strength, permuted=permuted, seed=seed)
        for param, g in zip(params, grads):
            param.grad = g.clone()
        optimizer.step()
        outputs.append([p.grad for p in params])
    return outputs


def heavy_tailed(size, dtype, seed, zeros=False):
    """Gaussian times |Cauchy| magnitudes: a few elements carry most of the mass, so the
    rescaled null has to clamp some dampings at 1; ``zeros``: every third element 0."""
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(size, generator=gen, dtype=torch.float64)
    g *= (
        torch.randn(size, generator=gen, dtype=torch.float64)
        .div(torch.randn(size, generator=gen, dtype=torch.float64))
        .abs()
    )
    if zeros:
        g[::3] = 0.0
    return g.to(dtype)


def removed_mass(before, after):
    return float((before.double().abs() - after.double().abs()).sum())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("strength", [0.5, 1.0, 3.0, 30.0])
def test_null_removes_exactly_the_mass_the_dose_removes(dtype, strength):
    """Per tensor, the null's removed L1 mass (from the gradients before and after, in
    float64) equals the unpermuted dose's at the same strength within 1e-6 relative, for
    sizes 1..10k, heavy-tailed gradients and tensors with zeros."""
    sizes = (1, 2, 3, 10, 100, 1000, 10_000)
    grads = [heavy_tailed(n, dtype, seed=n) for n in sizes]
    grads += [heavy_tailed(n, dtype, seed=n + 1, zeros=True) for n in sizes[2:]]
    grads.append(torch.zeros(50, dtype=dtype))
    null, dose = null_and_dose(grads, strength)
    for g, out_null, out_dose in zip(grads, null, dose):
        want = removed_mass(g, out_dose)
        assert removed_mass(g, out_null) == pytest.approx(want, rel=1e-6, abs=0), g.numel()
        assert torch.equal(out_null[g == 0], g[g == 0])  # zeros stay zero
    assert torch.equal(null[-1], grads[-1])  # a zero gradient stays unchanged


def test_null_clamps_on_heavy_tailed_gradients():
    """The fixture above does force the water-filling to clamp: some null factor is 0 where
    the gradient is not, while the dose zeroes nothing there."""
    grads = [heavy_tailed(1000, torch.float64, seed=1000)]
    (null,), (dose,) = null_and_dose(grads, 3.0)
    live = grads[0] != 0
    assert (null[live] == 0).any() and not (dose[live] == 0).any()


@pytest.mark.parametrize("strength", [1.0, 10.0])
def test_null_is_a_rescaled_permutation_of_the_dosed_dampings(strength):
    """Sorted, the null's dampings are min(1, c * the dose's dampings) for one c > 1: the
    dose's multiset rescaled, not AGR's multiset itself."""
    g = heavy_tailed(400, torch.float64, seed=7)
    (null,), (dose,) = null_and_dose([g], strength)
    d_null = (1 - null / g).sort().values
    d_dose = (1 - dose / g).sort().values
    free = d_null < 1
    scale = (d_null[free] / d_dose[free]).median()
    assert scale > 1.01
    torch.testing.assert_close(d_null, (scale * d_dose).clamp(max=1), rtol=1e-9, atol=1e-15)
    assert not torch.allclose(d_null, d_dose)
    assert not torch.allclose(null, dose)  # another order


def test_permuted_factors_lose_their_link_to_the_gradient():
    """AGR damps the largest |g| most (factor and |g| perfectly anti-correlated); the
    permuted factors are uncorrelated with |g| (|r| < 4/sqrt(n) for n = 4096 elements)."""
    g = torch.randn(64, 64, dtype=torch.float64)
    factors_agr = agr_reference(g) / g
    permuted = g.clone()
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(64, 64, dtype=torch.float64))], lr=0)
    agr.attach(optimizer, permuted=True, seed=3)
    optimizer.param_groups[0]["params"][0].grad = permuted
    optimizer.step()
    factors_null = permuted / g

    def corr(a, b):
        return torch.corrcoef(torch.stack([a.reshape(-1), b.reshape(-1)]))[0, 1].item()

    assert corr(factors_agr, g.abs()) == pytest.approx(-1.0, abs=1e-9)
    assert abs(corr(factors_null, g.abs())) < 4 / 64


def test_permuted_removed_fraction_is_that_of_the_applied_factors():
    torch.manual_seed(1)
    model = Net()
    optimizer = permuted_optimizer(model)
    before, after = one_step_grads(model, optimizer)
    removed = sum((g.abs() - o.abs()).sum() for g, o in zip(before, after)).item()
    total = sum(g.abs().sum() for g in before).item()
    stats = agr.handle_of(optimizer).last_stats
    assert stats.removed_fraction == pytest.approx(removed / total, rel=1e-5)


def trajectory(seed, steps=6, resume_at=None):
    torch.manual_seed(0)
    model = Net()
    optimizer = permuted_optimizer(model, seed=seed)
    for step in range(steps):
        if step == resume_at:  # a fresh process: new objects, state from the "checkpoint"
            state = (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()))
            model = Net()
            model.load_state_dict(state[0])
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            agr.attach(optimizer, names=model)  # the checkpoint brings the variant back
            optimizer.load_state_dict(state[1])
        one_step_grads(model, optimizer, seed=100 + step)
    return [p.detach().clone() for p in model.parameters()]


def test_permutations_repeat_for_a_seed_and_survive_resume():
    first, again, resumed = trajectory(0), trajectory(0), trajectory(0, resume_at=3)
    other = trajectory(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert all(torch.equal(a, b) for a, b in zip(first, resumed))
    assert any(not torch.equal(a, b) for a, b in zip(first, other))


def test_build_optimizer_passes_the_controls():
    model = Net()
    opt = agr.build_optimizer("sgd_agr", model, agr_strength=10.0, agr_permuted=True, agr_seed=5)
    handle = agr.handle_of(opt)
    assert (handle.variant.strength, handle.variant.permuted, handle.variant.seed) == (10, True, 5)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9
    with pytest.raises(ValueError, match="takes no momentum"):
        agr.build_optimizer("adamw", model, momentum=0.9)
    with pytest.raises(ValueError, match="betas"):
        agr.build_optimizer("sgd", model, betas=(0.9, 0.99))


def test_sgd_agr_step_is_sgd_on_the_agr_gradient():
    """SGD's first step with momentum is p - lr * g: with AGR, g is AGR's gradient."""
    torch.manual_seed(2)
    model = Net()
    start = [p.detach().clone() for p in model.parameters()]
    opt = agr.build_optimizer("sgd_agr", model, lr=0.1, weight_decay=0.0)
    before, _ = one_step_grads(model, opt)
    for p, p0, g in zip(model.parameters(), start, before):
        torch.testing.assert_close(p.detach(), p0 - 0.1 * agr_reference(g), rtol=1e-6, atol=1e-7)
