"""The ablation's controls: AGR's strength k (dose-response) and the permuted null control.

Strength k: G <- G * max(0, 1 - k*|G|/sum|G|) (``reference.damped_reference``); k = 1 is AGR.
Permuted: each tensor's AGR factors (1 - alpha) applied in a random order, so the multiset of
factors is AGR's but their link to |G| is gone; the order depends on the seed, the step and
the tensor alone.
"""

from __future__ import annotations

import copy

import pytest
import torch
from reference import agr_reference, damped_reference
from torch import nn

import agr


def random_grads(seed=0, shapes=((8, 5), (32,), (4, 3, 3, 3))):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen, dtype=torch.float64) for shape in shapes]


@pytest.mark.parametrize("strength", [0.0, 0.5, 1.0, 10.0, 100.0])
def test_strength_matches_the_formula(strength):
    grads = random_grads()
    expected = [damped_reference(g, strength) for g in grads]
    agr.regularize_(grads, strength=strength)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)


def test_strength_one_is_agr_and_zero_changes_nothing():
    grads = random_grads()
    agr_out = [agr_reference(g) for g in grads]
    one, zero = [g.clone() for g in grads], [g.clone() for g in grads]
    agr.regularize_(one, strength=1.0)
    agr.regularize_(zero, strength=0.0)
    for got, want in zip(one, agr_out):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)
    assert all(torch.equal(a, b) for a, b in zip(zero, grads))


def test_large_strength_clips_factors_at_zero():
    g = torch.tensor([4.0, -1.0, 0.5, 0.0, 2.5])  # sum |g| = 8
    agr.regularize_([g], strength=4.0)
    # k*alpha = 2, 0.5, 0.25, 0, 1.25 -> factors 0, 0.5, 0.75, 1, 0: no sign flips
    assert g.tolist() == [0.0, -0.5, 0.375, 0.0, 0.0]


@pytest.mark.parametrize("bad", [-1.0, float("inf"), float("nan"), True, "2"])
def test_bad_strength_is_refused(bad):
    with pytest.raises(ValueError, match="strength"):
        agr.regularize_(random_grads(), strength=bad)
    with pytest.raises(ValueError, match="strength"):
        agr.attach(torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1), strength=bad)


def test_bf16_strength_is_computed_in_float32():
    g32 = torch.randn(64, 16)
    g = g32.to(torch.bfloat16)
    expected = damped_reference(g.float(), 10.0).to(torch.bfloat16)
    agr.regularize_([g], strength=10.0)
    torch.testing.assert_close(g, expected, rtol=1e-2, atol=1e-6)


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


def test_permuted_applies_agrs_factors_in_another_order():
    torch.manual_seed(0)
    model = Net()
    before, after = one_step_grads(model, permuted_optimizer(model))
    for g, out in zip(before, after):
        assert (g != 0).all()
        applied = (out / g).reshape(-1).sort().values
        agr_factors = (1 - g.abs() / g.abs().sum()).reshape(-1).sort().values
        torch.testing.assert_close(applied, agr_factors, rtol=1e-5, atol=1e-7)
        if g.numel() >= 20:  # ...but not in AGR's order (identity: a chance of 1/20!)
            assert not torch.allclose(out, agr_reference(g))


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
    with pytest.raises(ValueError, match="momentum applies to SGD only"):
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
