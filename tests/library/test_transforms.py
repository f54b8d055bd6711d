"""AGR's neighbours as gradient transforms: gradient centralization (GC), adaptive gradient
clipping (AGC) and a user's own callable, behind the same ``attach``/``build_optimizer`` path.

The expected values come from references written out from the papers' definitions
(``reference.gc_reference``, ``reference.agc_reference``, in float64 loops), from the GC
authors' published one-liner (``x.add_(-x.mean(dim=1.., keepdim=True))``, Yonghongwei/
Gradient-Centralization, algorithm-GC/algorithm/Centralization.py), from timm's
``adaptive_clip_grad`` (timm.utils.agc), and from plain torch optimizers fed gradients the
test transformed itself.
"""

from __future__ import annotations

import copy
import io
import warnings

import pytest
import torch
import torch.nn.functional as F
from reference import agc_reference, agr_reference, gc_reference
from timm.utils.agc import adaptive_clip_grad
from torch import nn

import agr
from agr.transforms import AGC, GC

SHAPES = [(), (7,), (5, 3), (4, 3, 3, 3), (2, 3, 4)]
HP = {"lr": 1e-2, "weight_decay": 0.05}


def tensors(shapes, seed=0, dtype=torch.float64, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(s, generator=gen, dtype=torch.float64).to(dtype) for s in shapes]


class Net(nn.Module):
    """Conv, norm, MLP and a learnable scalar: 4-D, 2-D, 1-D and 0-D parameters."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.norm = nn.LayerNorm(64)
        self.fc1 = nn.Linear(64, 16)
        self.fc2 = nn.Linear(16, 3)
        self.temperature = nn.Parameter(torch.tensor(1.5))

    def forward(self, x):
        x = torch.relu(self.conv(x)).flatten(1)
        return self.fc2(torch.tanh(self.fc1(self.norm(x)))) / self.temperature


class MLP(nn.Module):
    """Only 2-D and 1-D parameters: GC's conv-only form changes none of them."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x.flatten(1)[:, :6])))


def batch(step):
    gen = torch.Generator().manual_seed(100 + step)
    return torch.randn(8, 2, 6, 6, generator=gen), torch.randint(0, 3, (8,), generator=gen)


def backward(model, step):
    x, y = batch(step)
    F.cross_entropy(model(x), y).backward()


def train(model, opt, steps, transform=None):
    """Steps of ``opt``; ``transform(grad, param)`` (reference runs) rewrites each gradient."""
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        backward(model, step)
        if transform is not None:
            with torch.no_grad():
                for p in model.parameters():
                    p.grad.copy_(transform(p.grad, p))
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def twins(cls=Net, n=2):
    torch.manual_seed(0)
    first = cls()
    return [first] + [copy.deepcopy(first) for _ in range(n - 1)]


# --------------------------------------------------------------------------- the operators


@pytest.mark.parametrize("conv_only", [False, True])
@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float64, 1e-13), (torch.float32, 1e-5)])
def test_gc_matches_the_formula(conv_only, dtype, rtol):
    grads = tensors(SHAPES, dtype=dtype)
    expected = [gc_reference(g, conv_only) for g in grads]
    GC(conv_only).transform_(grads, grads, step=1, want_stats=False)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=rtol, atol=rtol)
    centred = [g for g in grads if g.dim() > (3 if conv_only else 1)]
    assert centred and all(g.reshape(g.shape[0], -1).sum(1).abs().max() < 1e-4 for g in centred)


@pytest.mark.parametrize("conv_only", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gc_is_the_authors_one_liner_bit_for_bit(conv_only, dtype):
    grads = tensors(SHAPES, seed=1, dtype=dtype)
    expected = [g.clone() for g in grads]
    for x in expected:  # the authors' centralized_gradient, written out from its definition
        if x.dim() > (3 if conv_only else 1):
            x.add_(-x.mean(dim=tuple(range(1, x.dim())), keepdim=True))
    GC(conv_only).transform_(grads, grads, step=1, want_stats=False)
    assert all(torch.equal(got, want) for got, want in zip(grads, expected))


def test_gc_low_precision_in_float32_rounded_once():
    grads = tensors([(6, 5), (3, 2, 3, 3)], seed=2, dtype=torch.bfloat16)
    expected = [gc_reference(g.double()).to(torch.bfloat16) for g in grads]
    GC().transform_(grads, grads, step=1, want_stats=False)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got.float(), want.float(), rtol=8e-3, atol=1e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("clipping", [0.01, 0.1, 1.0])
def test_agc_matches_timm_bit_for_bit(dtype, clipping):
    weights = [nn.Parameter(w) for w in tensors(SHAPES, seed=3, dtype=dtype)]
    with torch.no_grad():
        weights[2][1].zero_()  # a unit with zero weights: eps floors its norm
    grads = tensors(SHAPES, seed=4, dtype=dtype, scale=0.05)
    for w, g in zip(weights, grads):
        w.grad = g.clone()
    adaptive_clip_grad(weights, clip_factor=clipping, eps=1e-3)
    AGC(clipping=clipping).transform_(grads, weights, step=1, want_stats=False)
    assert all(torch.equal(got, w.grad) for got, w in zip(grads, weights))


@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float64, 1e-13), (torch.float32, 1e-5)])
def test_agc_matches_the_formula_and_keeps_unclipped_units_exactly(dtype, rtol):
    weights = tensors(SHAPES, seed=5, dtype=dtype)
    weights[3][0].zero_()
    grads = tensors(SHAPES, seed=6, dtype=dtype, scale=0.03)
    before = [g.clone() for g in grads]
    expected = [agc_reference(g, w) for g, w in zip(grads, weights)]
    AGC().transform_(grads, weights, step=1, want_stats=False)
    clipped = kept = 0
    for got, want, raw in zip(grads, expected, before):
        torch.testing.assert_close(got, want, rtol=rtol, atol=0)
        units = zip(
            got.reshape(max(1, got.shape[0] if got.dim() > 1 else 1), -1),
            raw.reshape(max(1, raw.shape[0] if raw.dim() > 1 else 1), -1),
        )
        for unit, raw_unit in units:
            if torch.equal(unit, raw_unit):
                kept += 1
            else:
                clipped += 1
    assert clipped and kept  # both branches ran


@pytest.mark.parametrize("name", ["gc", "agc"])
def test_stats_report_the_l1_mass_of_the_change(name):
    """In float64, where a row mean's cancellation costs nothing (in float32 the mean GC
    subtracts, and so the mass it reports, carries float32's rounding)."""
    model = twins(n=1)[0].double()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    handle = agr.attach(opt, transform=name, names=model, exclude=["temperature"])
    x, y = batch(0)
    F.cross_entropy(model(x.double()), y).backward()
    raw = {n: p.grad.clone() for n, p in model.named_parameters()}
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.step()
    reference = gc_reference if name == "gc" else None
    stats = handle.last_stats
    assert "temperature" not in stats.per_param_l1
    total_l1 = total_change = 0.0
    for n, g in raw.items():
        if n == "temperature":
            continue
        want = reference(g.double()) if reference else agc_reference(g.double(), weights[n])
        change = float((g.double() - want).abs().sum())
        assert stats.per_param_l1[n] == pytest.approx(float(g.double().abs().sum()), rel=1e-6)
        # (fc1 follows a LayerNorm, whose outputs have zero mean: its rows' means are 0 up to
        # rounding, so GC changes it by rounding only; hence a tolerance relative to sum|g|)
        l1 = float(g.double().abs().sum())
        assert stats.per_param_removed[n] == pytest.approx(change, rel=1e-9, abs=1e-13 * l1)
        total_l1 += float(g.double().abs().sum())
        total_change += change
    assert stats.removed_fraction == pytest.approx(total_change / total_l1, rel=1e-9)
    assert 0 < stats.removed_fraction < 1


# --------------------------------------------------------------------------- the arms


def reference_transform(name, model, **options):
    """The transform written out, for the reference loop (gradient, parameter) -> gradient."""
    skip = {id(p) for p in model.fc2.parameters()} if options.get("skip_final") else set()
    if name == "gc":
        return lambda g, p: gc_reference(g, options.get("conv_only", False))
    if name == "agc":
        return lambda g, p: g.clone() if id(p) in skip else agc_reference(g, p.detach())
    return lambda g, p: agr_reference(g)


@pytest.mark.parametrize("family", ["adamw", "sgd", "adan"])
@pytest.mark.parametrize("name", ["gc", "agc"])
def test_an_arm_is_its_base_optimizer_on_transformed_gradients(family, name):
    model, ref = twins()
    options = {"agc_skip_final_linear": True} if name == "agc" else {}
    opt = agr.build_optimizer(f"{family}_{name}", model, **HP, **options)
    ref_opt = agr.build_optimizer(family, ref, **HP)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", agr.FrozenParameterWarning)
        transform = reference_transform(name, ref, skip_final=True)
    got = train(model, opt, 4)
    want = train(ref, ref_opt, 4, transform)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    plain = twins(n=1)[0]
    bare = train(plain, agr.build_optimizer(family, plain, **HP), 4)
    assert max((a - b).abs().max().item() for a, b in zip(got, bare)) > 1e-6  # it did something


def test_agc_skips_the_final_linear_layer_as_the_paper_does():
    model = twins(n=1)[0]
    opt = agr.build_optimizer("sgd_agc", model, lr=1e-9)
    assert set(agr.optim.final_linear_names(model)) == {"fc2.weight", "fc2.bias"}
    backward(model, 0)
    raw = {n: p.grad.clone() for n, p in model.named_parameters()}
    opt.step()
    grads = dict(model.named_parameters())
    assert torch.equal(grads["fc2.weight"].grad, raw["fc2.weight"])
    assert torch.equal(grads["fc2.bias"].grad, raw["fc2.bias"])
    assert not torch.equal(grads["fc1.weight"].grad, raw["fc1.weight"])


def test_agc_refuses_to_guess_the_final_layer_from_bare_parameters():
    model = twins(n=1)[0]
    with pytest.raises(agr.optim.OptionError, match="agc_skip_final_linear") as caught:
        agr.build_optimizer("adamw_agc", model.parameters())
    assert caught.value.key == "agc_skip_final_linear"
    agr.build_optimizer("adamw_agc", model.parameters(), agc_skip_final_linear=False)


@pytest.mark.parametrize("impl", ["fused", "foreach", "loop"])
@pytest.mark.parametrize(
    ("name", "options"),
    [("adamw_gc", {"gc_conv_only": True}), ("adamw_agc", {"agc_clipping": 1e6})],
)
def test_a_transform_that_changes_nothing_gives_its_base_optimizer_bit_for_bit(impl, name, options):
    model, ref = twins(MLP)
    got = train(model, agr.build_optimizer(name, model, **HP, impl=impl, **options), 5)
    want = train(ref, agr.build_optimizer("adamw", ref, **HP, impl=impl), 5)
    assert all(torch.equal(a, b) for a, b in zip(got, want))


@pytest.mark.parametrize("family", ["sgd", "adan"])
def test_no_op_transforms_on_sgd_and_adan_are_bit_identical(family):
    for name, options in (("gc", {"gc_conv_only": True}), ("agc", {"agc_clipping": 1e6})):
        model, ref = twins(MLP)
        got = train(model, agr.build_optimizer(f"{family}_{name}", model, **HP, **options), 3)
        want = train(ref, agr.build_optimizer(family, ref, **HP), 3)
        assert all(torch.equal(a, b) for a, b in zip(got, want)), name


@pytest.mark.parametrize(
    ("name", "options"), [("adamw_gc", {}), ("adamw_agc", {"agc_clipping": 0.05})]
)
def test_state_dict_round_trip_continues_in_lock_step(name, options):
    model, resumed_model = twins()
    opt = agr.build_optimizer(name, model, **HP, **options)
    train(model, opt, 3)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    assert saved["opt"]["agr"]["transform"] == name.split("_")[1]
    resumed_model.load_state_dict(saved["model"])
    resumed = agr.build_optimizer(name, resumed_model, **HP)  # default options ...
    resumed.load_state_dict(saved["opt"])  # ... replaced by the checkpoint's
    assert agr.handle_of(resumed).transform == agr.handle_of(opt).transform
    assert agr.handle_of(resumed).steps == 3
    for step in range(3, 6):
        for m, o in ((model, opt), (resumed_model, resumed)):
            o.zero_grad(set_to_none=True)
            backward(m, step)
            o.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), resumed_model.parameters()))


def test_a_checkpoint_of_another_transform_is_refused():
    model = twins(n=1)[0]
    gc = agr.build_optimizer("adamw_gc", model, **HP)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", agr.FrozenParameterWarning)
        agr_opt = agr.build_optimizer("adamw_agr", model, **HP)
    with pytest.raises(ValueError, match="saved with the gradient transform 'gc'"):
        agr_opt.load_state_dict(gc.state_dict())


def test_an_agr_checkpoint_from_before_the_transforms_loads():
    model = twins(n=1)[0]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", agr.FrozenParameterWarning)
        handle = agr.attach(opt)
    state = opt.state_dict()
    state["agr"] = {"steps": 7, "enabled": True, "scope": "all", "until_step": None,
                    "strength": 10.0, "permuted": False, "seed": 0}  # fmt: skip
    opt.load_state_dict(state)
    assert handle.steps == 7 and handle.variant.strength == 10.0


# --------------------------------------------------------------------------- degenerate cases


def sgd_steps(model, opt, steps=3):
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        backward(model, step)
        opt.step()


def test_agr_warns_once_naming_a_scalar_parameter_that_would_never_move():
    model = twins(n=1)[0]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.warns(agr.FrozenParameterWarning) as caught:
        agr.attach(opt, names=model)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "temperature" in message and "scope='weights'" in message
    assert "grad_transform" in message
    assert caught[0].filename == __file__  # it points at the user's line
    start = model.temperature.item()
    sgd_steps(model, opt)
    assert model.temperature.item() == start  # what the warning says: it never moves


@pytest.mark.parametrize("way_out", ["scope", "group", "exclude"])
def test_each_way_out_of_the_warning_lets_the_scalar_learn(way_out):
    model, ref = twins()
    scalar = [model.temperature]
    rest = [p for n, p in model.named_parameters() if n != "temperature"]
    groups = [{"params": rest}, {"params": scalar, "grad_transform": False}]
    opt = torch.optim.SGD(groups if way_out == "group" else model.parameters(), lr=0.1)
    kwargs = {"scope": "weights"} if way_out == "scope" else {}
    if way_out == "exclude":
        kwargs["exclude"] = ["temperature"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", agr.FrozenParameterWarning)
        agr.attach(opt, names=model, **kwargs)
    start = model.temperature.item()
    sgd_steps(model, opt)
    assert model.temperature.item() != start
    # the others still get AGR: fc1's weight differs from a run without it
    sgd_steps(ref, torch.optim.SGD(ref.parameters(), lr=0.1))
    assert not torch.equal(model.fc1.weight, ref.fc1.weight)


def test_gc_warns_about_weights_whose_units_have_one_element():
    model = nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 2))
    with pytest.warns(agr.FrozenParameterWarning, match=r"0\.weight \(shape \(4, 1\)"):
        agr.attach(torch.optim.SGD(model.parameters(), lr=0.1), transform="gc", names=model)


def test_agc_warns_about_nothing():
    model = twins(n=1)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        agr.attach(torch.optim.SGD(model.parameters(), lr=0.1), transform="agc", names=model)


# --------------------------------------------------------------------------- your own transform


def test_a_callable_attaches_the_same_way():
    """The README's example: clip every element of every gradient to +-0.01."""

    def clip_elements(grad, param):
        grad.clamp_(-0.01, 0.01)

    model, ref = twins()
    opt = torch.optim.AdamW(model.parameters(), **HP)
    handle = agr.attach(opt, transform=clip_elements, names=model)
    got = train(model, opt, 3)
    want = train(
        ref, torch.optim.AdamW(ref.parameters(), **HP), 3, lambda g, p: g.clamp(-0.01, 0.01)
    )
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert 0 < handle.last_stats.removed_fraction < 1
    assert "clip_elements" in repr(handle)


def test_a_callable_may_return_the_new_gradient():
    model = twins(n=1)[0]
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    agr.attach(opt, transform=lambda g, p: torch.zeros_like(g))
    backward(model, 0)
    opt.step()
    assert all(not p.grad.any() for p in model.parameters())


def test_bad_transform_choices_name_the_problem():
    opt = torch.optim.SGD(MLP().parameters(), lr=0.1)
    with pytest.raises(
        ValueError, match="unknown gradient transform 'gcc'; choose one of agr, gc, agc"
    ):
        agr.attach(opt, transform="gcc")
    with pytest.raises(ValueError, match=r"\['strength'\] are AGR's options"):
        agr.attach(opt, transform="gc", strength=2.0)
    with pytest.raises(ValueError, match="AGC clipping must be a finite number > 0"):
        agr.attach(opt, transform="agc", clipping=0.0)
    with pytest.raises(ValueError, match="gradient transform 'gc'"):
        agr.attach(opt, transform="gc", clipping=0.1)
    with pytest.raises(ValueError, match="exclude: 'nope' is not a parameter name"):
        agr.attach(opt, transform="gc", exclude=["nope"])


@pytest.mark.parametrize(
    ("key", "value"),
    [("agc_clipping", 0.0), ("agc_eps", -1.0), ("gc_conv_only", "yes"),
     ("agc_skip_final_linear", 1)],
)  # fmt: skip
def test_check_options_refuses_bad_transform_options_for_every_arm(key, value):
    for name in ("adamw", "adamw_agr", "adamw_gc", "adamw_agc"):
        with pytest.raises(agr.optim.OptionError) as caught:
            agr.check_options(name, **{key: value})
        assert caught.value.key == key


# --------------------------------------------------------------------------- the functional path


def test_regularize_takes_any_transform():
    grads = tensors(SHAPES, seed=7)
    weights = tensors(SHAPES, seed=8)
    gc, agc = [g.clone() for g in grads], [0.05 * g for g in grads]
    want_gc = [gc_reference(g) for g in gc]
    want_agc = [agc_reference(g, w) for g, w in zip(agc, weights)]
    agr.regularize_(gc, transform="gc")
    agr.regularize_(agc, transform="agc", params=weights)
    for got, want in zip(gc + agc, want_gc + want_agc):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)


def test_regularize_with_agc_needs_the_parameters():
    with pytest.raises(ValueError, match="give params="):
        agr.regularize_(tensors(SHAPES), transform="agc")
    with pytest.raises(ValueError, match="give params=.*5 gradients, 1 params"):
        agr.regularize_(tensors(SHAPES), transform="agc", params=tensors([(2,)]))
    with pytest.raises(ValueError, match="strength and backend are AGR's options"):
        agr.regularize_(tensors(SHAPES), transform="gc", strength=2.0)
