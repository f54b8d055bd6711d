"""Optimizer-level tests for agr: build_optimizer, attach and their state.

Every expected value here comes from an independent reference, never from agr itself:
plain ``torch.optim.AdamW`` / ``timm.optim.Adan`` / ``torch.optim.SGD`` fed gradients that
the test transforms with the AGR formula written out below, and an Adan written from the
paper (Xie et al. 2022, arXiv 2208.06677, Algorithm 1).
"""

import copy
import io
import math

import pytest
import torch
import torch.nn.functional as F
from reference import agr_reference as agr_formula
from timm.optim import Adan
from torch import nn

import agr

NAMES = ["adamw", "adamw_agr", "adan", "adan_agr"]
SCOPES = ["weights", "all"]
ADAMW_FLAGS = {"fused": {"fused": True}, "foreach": {"foreach": True}, "loop": {"foreach": False}}
ADAN_FLAGS = {"foreach": {"foreach": True}, "loop": {"foreach": False}}
ADAMW_HP = {"lr": 1e-2, "weight_decay": 0.05, "betas": (0.9, 0.99), "eps": 1e-8}
ADAN_HP = {"lr": 1e-2, "weight_decay": 0.05, "betas": (0.98, 0.92, 0.99), "eps": 1e-8}
ADAN_NAME_SCOPES = [("adan", None), ("adan_agr", "weights"), ("adan_agr", "all")]


# --------------------------------------------------------------------------------------------
# the AGR formula (written out in tests/reference.py) applied on chosen steps
# --------------------------------------------------------------------------------------------


def agr_on(scope, steps=None):
    """A gradient transform for `train`: the formula on the steps in `steps` (all when None)."""

    def transform(k, g):
        if steps is not None and k not in steps:
            return g.clone()
        return agr_formula(g, scope)

    return transform


# --------------------------------------------------------------------------------------------
# model, data and a training loop that records params and (post-step) grads
# --------------------------------------------------------------------------------------------


class Net(nn.Module):
    """Conv + norm + MLP: 4-D and 2-D weights, 1-D biases and 1-D norm params."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.norm = nn.LayerNorm(64)
        self.fc1 = nn.Linear(64, 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        x = torch.relu(self.conv(x)).flatten(1)
        return self.fc2(torch.tanh(self.fc1(self.norm(x))))


def make_data(dtype=torch.float32):
    gen = torch.Generator().manual_seed(1234)
    x = torch.randn(8, 2, 6, 6, generator=gen, dtype=dtype)
    y = torch.randint(0, 3, (8,), generator=gen)
    return x, y


def make_models(n=2, dtype=torch.float32):
    """`n` models with identical initial weights."""
    first = Net().to(dtype)
    return [first] + [copy.deepcopy(first) for _ in range(n - 1)]


def loss_of(model, data):
    x, y = data
    return F.cross_entropy(model(x), y)


def snapshot(model):
    """Params after a step, and the gradients as the step left them."""
    return (
        [p.detach().clone() for p in model.parameters()],
        [p.grad.detach().clone() for p in model.parameters()],
    )


def train(model, opt, data, steps, transform=None):
    """Run optimizer steps `steps` (an iterable of 1-based step numbers), one snapshot per step.

    `transform(k, grad)` (reference runs only) rewrites every gradient before step k.
    """
    record = []
    for k in steps:
        opt.zero_grad(set_to_none=True)
        loss_of(model, data).backward()
        if transform is not None:
            with torch.no_grad():
                for p in model.parameters():
                    p.grad.copy_(transform(k, p.grad))
        opt.step()
        record.append(snapshot(model))
    return record


def assert_same_run(got, want, atol, names):
    """Params and gradients equal, step by step, within `atol` (rtol 0)."""
    assert len(got) == len(want)
    for k, (got_step, want_step) in enumerate(zip(got, want), start=1):
        for kind, got_ts, want_ts in zip(("param", "grad"), got_step, want_step):
            for name, a, b in zip(names, got_ts, want_ts):
                where = f"step {k} {kind} {name}"
                torch.testing.assert_close(
                    a, b, atol=atol, rtol=0, msg=lambda m, where=where: f"{where}: {m}"
                )


def param_names(model):
    return [n for n, _ in model.named_parameters()]


def steps(a, b):
    return range(a, b + 1)


@pytest.fixture
def data():
    return make_data()


# --------------------------------------------------------------------------------------------
# 1-2. AdamW with and without AGR vs plain torch.optim.AdamW
# --------------------------------------------------------------------------------------------


def test_model_has_both_kinds_of_params():
    shapes = [p.ndim for p in Net().parameters()]
    assert any(d >= 2 for d in shapes) and any(d == 1 for d in shapes)


@pytest.mark.parametrize("impl", ["fused", "foreach", "loop"])
def test_adamw_matches_torch(impl, data):
    model, ref_model = make_models()
    opt = agr.build_optimizer("adamw", model, impl=impl, **ADAMW_HP)
    assert isinstance(opt, torch.optim.AdamW)
    assert agr.handle_of(opt) is None
    group = opt.param_groups[0]
    if impl == "fused":
        assert group["fused"] is True
    else:
        assert group["foreach"] is (impl == "foreach") and not group["fused"]
    ref = torch.optim.AdamW(ref_model.parameters(), **ADAMW_HP, **ADAMW_FLAGS[impl])
    got = train(model, opt, data, steps(1, 25))
    want = train(ref_model, ref, data, steps(1, 25))
    assert_same_run(got, want, atol=1e-6, names=param_names(model))


def test_adamw_auto_impl_matches_torch(data):
    model, ref_model = make_models()
    opt = agr.build_optimizer("adamw", model, impl="auto", **ADAMW_HP)
    assert isinstance(opt, torch.optim.AdamW)
    ref = torch.optim.AdamW(ref_model.parameters(), **ADAMW_HP, foreach=False)
    # whichever kernel "auto" picks, it is AdamW: equal up to kernel rounding
    assert_same_run(
        train(model, opt, data, steps(1, 25)),
        train(ref_model, ref, data, steps(1, 25)),
        atol=1e-5,
        names=param_names(model),
    )


@pytest.mark.parametrize(
    ("dtype", "atol"),
    [pytest.param(torch.float32, 1e-6, id="f32"), pytest.param(torch.float64, 1e-9, id="f64")],
)
@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("impl", ["fused", "foreach", "loop"])
def test_adamw_agr_matches_formula(impl, scope, dtype, atol):
    data = make_data(dtype)
    model, ref_model = make_models(dtype=dtype)
    opt = agr.build_optimizer("adamw_agr", model, impl=impl, agr_scope=scope, **ADAMW_HP)
    assert isinstance(opt, torch.optim.AdamW)
    handle = agr.handle_of(opt)
    assert handle is not None and handle.enabled
    ref = torch.optim.AdamW(ref_model.parameters(), **ADAMW_HP, **ADAMW_FLAGS[impl])
    got = train(model, opt, data, steps(1, 25))
    # grads are compared too: AGR rewrites p.grad in place, so after the step it holds AGR(g)
    want = train(ref_model, ref, data, steps(1, 25), transform=agr_on(scope))
    assert_same_run(got, want, atol=atol, names=param_names(model))
    assert handle.steps == 25


def test_build_optimizer_accepts_param_iterables(data):
    model_a, model_b = make_models()
    opt_a = agr.build_optimizer("adamw_agr", model_a, impl="loop", **ADAMW_HP)
    opt_b = agr.build_optimizer("adamw_agr", model_b.parameters(), impl="loop", **ADAMW_HP)
    assert_same_run(
        train(model_a, opt_a, data, steps(1, 5)),
        train(model_b, opt_b, data, steps(1, 5)),
        atol=0,
        names=param_names(model_a),
    )


# --------------------------------------------------------------------------------------------
# 3. Adan with and without AGR vs timm.optim.Adan
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("no_prox", [False, True])
@pytest.mark.parametrize("impl", ["foreach", "loop"])
@pytest.mark.parametrize(("name", "scope"), ADAN_NAME_SCOPES)
def test_adan_matches_timm(name, scope, impl, no_prox, data):
    model, ref_model = make_models()
    extra = {} if scope is None else {"agr_scope": scope}
    opt = agr.build_optimizer(name, model, impl=impl, no_prox=no_prox, **ADAN_HP, **extra)
    assert isinstance(opt, Adan)
    assert opt.param_groups[0]["foreach"] is (impl == "foreach")
    assert opt.param_groups[0]["no_prox"] is no_prox
    assert (agr.handle_of(opt) is None) == (scope is None)
    ref = Adan(ref_model.parameters(), no_prox=no_prox, **ADAN_HP, **ADAN_FLAGS[impl])
    got = train(model, opt, data, steps(1, 25))
    transform = None if scope is None else agr_on(scope)
    want = train(ref_model, ref, data, steps(1, 25), transform=transform)
    assert_same_run(got, want, atol=1e-6, names=param_names(model))


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("impl", ["foreach", "loop"])
def test_adan_agr_stores_regularized_previous_gradient(impl, scope, data):
    model = Net()
    opt = agr.build_optimizer("adan_agr", model, impl=impl, agr_scope=scope, **ADAN_HP)
    for _ in range(3):
        opt.zero_grad(set_to_none=True)
        loss_of(model, data).backward()
        raw = [p.grad.detach().clone() for p in model.parameters()]
        opt.step()
        for (name, p), g in zip(model.named_parameters(), raw):
            stored = opt.state[p]["neg_pre_grad"]
            torch.testing.assert_close(stored, -agr_formula(g, scope), atol=1e-7, rtol=0, msg=name)
            if scope == "all" or p.ndim >= 2:  # AGR changed it: the raw gradient must not be kept
                assert not torch.allclose(stored, -g, atol=1e-7, rtol=0), name


# --------------------------------------------------------------------------------------------
# 4. Adan from the paper vs timm's Adan (and agr's adan / adan_agr), in float64
# --------------------------------------------------------------------------------------------


class PaperAdan:
    """Adan, Algorithm 1 of Xie et al. 2022 (arXiv 2208.06677), straight from the equations.

    The paper writes the moments with small betas (b_paper = 1 - b_code):
        m_k = (1 - b1) m_{k-1} + b1 g_k                                    (Alg. 1, m update)
        v_k = (1 - b2) v_{k-1} + b2 (g_k - g_{k-1})                        (Alg. 1, v update)
        n_k = (1 - b3) n_{k-1} + b3 [g_k + (1 - b2)(g_k - g_{k-1})]^2      (Alg. 1, n update)
        eta_k = eta / (sqrt(n_k) + eps)
        theta_{k+1} = (1 + lambda eta)^{-1} [theta_k - eta_k o (m_k + (1 - b2) v_k)]  (prox. step)
    Here in the official code's convention (sail-sg/Adan, timm), betas (0.98, 0.92, 0.99):
    zero-initialised m, v, n with Adam-style bias corrections, g_0 := g_1 (first difference 0),
    and no_prox=True replacing the proximal step by AdamW-style decay applied before the update.
    Nothing here is done in place on the moments; parameters get their new value with copy_.
    """

    def __init__(self, params, lr, betas, eps, weight_decay, no_prox):
        self.params = list(params)
        self.lr, self.betas, self.eps, self.wd, self.no_prox = lr, betas, eps, weight_decay, no_prox
        self.k = 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.n = [torch.zeros_like(p) for p in self.params]
        self.prev = [None] * len(self.params)

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        b1, b2, b3 = self.betas
        lr, wd, eps = self.lr, self.wd, self.eps
        self.k += 1
        k = self.k
        bc1, bc2, bc3 = 1 - b1**k, 1 - b2**k, 1 - b3**k
        for i, p in enumerate(self.params):
            g = p.grad.detach().clone()
            g_prev = g if self.prev[i] is None else self.prev[i]  # g_0 := g_1
            diff = g - g_prev  # g_k - g_{k-1}
            self.m[i] = b1 * self.m[i] + (1 - b1) * g  # m_k
            self.v[i] = b2 * self.v[i] + (1 - b2) * diff  # v_k
            self.n[i] = b3 * self.n[i] + (1 - b3) * (g + b2 * diff) ** 2  # n_k
            # m_k + (1 - b2_paper) v_k, each bias-corrected
            direction = self.m[i] / bc1 + b2 * self.v[i] / bc2
            denom = torch.sqrt(self.n[i] / bc3) + eps  # eta_k = lr / denom
            theta = p.detach().clone()
            if self.no_prox:
                theta = theta * (1 - lr * wd)  # decoupled decay first
                theta = theta - lr * direction / denom
            else:
                theta = theta - lr * direction / denom
                theta = theta / (1 + lr * wd)  # proximal step (1 + lambda eta)^{-1}
            p.copy_(theta)
            self.prev[i] = g


PAPER_HP = {"lr": 2e-2, "weight_decay": 0.1, "betas": (0.98, 0.92, 0.99), "eps": 1e-8}


@pytest.mark.parametrize("no_prox", [False, True])
@pytest.mark.parametrize("impl", ["foreach", "loop"])
def test_timm_adan_matches_paper(impl, no_prox):
    data = make_data(torch.float64)
    model, ref_model = make_models(dtype=torch.float64)
    timm_opt = Adan(model.parameters(), no_prox=no_prox, **PAPER_HP, **ADAN_FLAGS[impl])
    paper = PaperAdan(ref_model.parameters(), no_prox=no_prox, **PAPER_HP)
    assert_same_run(
        train(model, timm_opt, data, steps(1, 30)),
        train(ref_model, paper, data, steps(1, 30)),
        atol=1e-9,
        names=param_names(model),
    )


@pytest.mark.parametrize("no_prox", [False, True])
@pytest.mark.parametrize(("name", "scope"), ADAN_NAME_SCOPES)
def test_agr_adan_matches_paper(name, scope, no_prox):
    data = make_data(torch.float64)
    model, ref_model = make_models(dtype=torch.float64)
    extra = {} if scope is None else {"agr_scope": scope}
    opt = agr.build_optimizer(name, model, impl="loop", no_prox=no_prox, **PAPER_HP, **extra)
    paper = PaperAdan(ref_model.parameters(), no_prox=no_prox, **PAPER_HP)
    transform = None if scope is None else agr_on(scope)
    assert_same_run(
        train(model, opt, data, steps(1, 30)),
        train(ref_model, paper, data, steps(1, 30), transform=transform),
        atol=1e-9,
        names=param_names(model),
    )


# --------------------------------------------------------------------------------------------
# 5. state_dict round trip in lock-step (the timm tests/test_optim.py pattern)
# --------------------------------------------------------------------------------------------


def _plain_reference(name, impl, params):
    if name.startswith("adan"):
        return Adan(params, **ADAN_HP, **ADAN_FLAGS[impl])
    return torch.optim.AdamW(params, **ADAMW_HP, **ADAMW_FLAGS[impl])


ROUND_TRIP_CASES = [(n, "foreach") for n in NAMES] + [("adamw", "fused"), ("adamw_agr", "fused")]


@pytest.mark.parametrize(("name", "impl"), ROUND_TRIP_CASES)
def test_state_dict_round_trip_lock_step(name, impl, data):
    hp = dict(ADAN_HP if name.startswith("adan") else ADAMW_HP, impl=impl)
    if name.endswith("_agr"):
        hp["agr_until_step"] = 15
    model_a, ref_model = make_models()
    opt_a = agr.build_optimizer(name, model_a, **hp)
    train(model_a, opt_a, data, steps(1, 10))

    model_b = Net()  # a different init, overwritten below
    model_b.load_state_dict(model_a.state_dict())
    opt_b = agr.build_optimizer(name, model_b, **hp)
    saved = copy.deepcopy(opt_a.state_dict())
    buf = io.BytesIO()  # it must also survive a checkpoint file (torch.load's weights_only default)
    torch.save(saved, buf)
    buf.seek(0)
    opt_b.load_state_dict(torch.load(buf))

    if name.endswith("_agr"):
        assert "agr" in saved
        assert agr.handle_of(opt_b).steps == 10
    else:
        assert agr.handle_of(opt_b) is None

    run_a = train(model_a, opt_a, data, steps(11, 20))
    run_b = train(model_b, opt_b, data, steps(11, 20))
    assert_same_run(run_b, run_a, atol=0, names=param_names(model_a))

    # and both equal a plain optimizer that applies the formula only on steps 1..15
    ref = _plain_reference(name, impl, ref_model.parameters())
    transform = agr_on("all", steps=range(1, 16)) if name.endswith("_agr") else None
    want = train(ref_model, ref, data, steps(1, 20), transform=transform)
    assert_same_run(run_b, want[10:], atol=1e-6, names=param_names(model_a))
    if name.endswith("_agr"):
        assert agr.handle_of(opt_a).steps == agr.handle_of(opt_b).steps == 20


# --------------------------------------------------------------------------------------------
# 6. until_step, remove(), enabled
# --------------------------------------------------------------------------------------------


UNTIL_CASES = [("build_optimizer", "foreach"), ("build_optimizer", "fused"), ("attach", "loop")]


@pytest.mark.parametrize(("via", "impl"), UNTIL_CASES)
def test_until_step(via, impl, data):
    model, ref_model = make_models()
    if via == "build_optimizer":
        opt = agr.build_optimizer("adamw_agr", model, impl=impl, agr_until_step=3, **ADAMW_HP)
        handle = agr.handle_of(opt)
    else:
        opt = torch.optim.AdamW(model.parameters(), **ADAMW_HP, **ADAMW_FLAGS[impl])
        handle = agr.attach(opt, until_step=3)
        assert agr.handle_of(opt) is handle
    ref = torch.optim.AdamW(ref_model.parameters(), **ADAMW_HP, **ADAMW_FLAGS[impl])
    got = train(model, opt, data, steps(1, 8))
    # steps 1-3 AGR'd, 4-8 plain AdamW from that state (and p.grad left raw)
    want = train(ref_model, ref, data, steps(1, 8), transform=agr_on("all", steps=range(1, 4)))
    assert_same_run(got, want, atol=1e-6, names=param_names(model))
    assert handle.steps == 8


def test_remove_restores_plain_behaviour(data):
    model, ref_model = make_models()
    opt = torch.optim.AdamW(model.parameters(), foreach=False, **ADAMW_HP)
    handle = agr.attach(opt, scope="all")
    ref = torch.optim.AdamW(ref_model.parameters(), foreach=False, **ADAMW_HP)
    got = train(model, opt, data, steps(1, 3))
    handle.remove()
    got += train(model, opt, data, steps(4, 8))
    want = train(ref_model, ref, data, steps(1, 8), transform=agr_on("all", steps=range(1, 4)))
    assert_same_run(got, want, atol=1e-6, names=param_names(model))


def test_enabled_false_is_a_no_op(data):
    model, ref_model = make_models()
    opt = torch.optim.AdamW(model.parameters(), foreach=False, **ADAMW_HP)
    handle = agr.attach(opt, scope="all")
    ref = torch.optim.AdamW(ref_model.parameters(), foreach=False, **ADAMW_HP)
    handle.enabled = False
    got = train(model, opt, data, steps(1, 2))
    handle.enabled = True
    got += train(model, opt, data, steps(3, 4))
    handle.enabled = False
    got += train(model, opt, data, steps(5, 6))
    want = train(ref_model, ref, data, steps(1, 6), transform=agr_on("all", steps={3, 4}))
    assert_same_run(got, want, atol=1e-6, names=param_names(model))


# --------------------------------------------------------------------------------------------
# 7. convergence
# --------------------------------------------------------------------------------------------


def rosenbrock(p):
    x, y = p.reshape(-1)
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


# lr tuned per optimizer on formula-transformed references: at 800 steps the final loss stays
# below 0.1 (from 12.5) for every impl and for lr changed by +-10%
ROSEN_HP = {
    "adamw": {"lr": 0.1},
    "adamw_agr": {"lr": 0.2, "betas": (0.9, 0.99)},
    "adan": {"lr": 0.05},
    "adan_agr": {"lr": 0.1},
}


@pytest.mark.parametrize(
    ("name", "layout"),
    [("adamw", "row"), ("adan", "row")]
    + [(n, layout) for n in ("adamw_agr", "adan_agr") for layout in ("row", "flat")],
)
def test_rosenbrock_converges(name, layout):
    # a (1, 2) weight-like tensor with scope "weights", or a flat 2-vector with scope "all"
    start = torch.tensor([-1.5, 2.0])
    p = nn.Parameter(start.reshape(1, 2) if layout == "row" else start.clone())
    extra = {"agr_scope": "weights" if layout == "row" else "all"} if name.endswith("_agr") else {}
    opt = agr.build_optimizer(name, [p], weight_decay=0.0, **ROSEN_HP[name], **extra)
    initial = rosenbrock(p).item()
    for _ in range(800):
        opt.zero_grad(set_to_none=True)
        rosenbrock(p).backward()
        opt.step()
    final = rosenbrock(p).item()
    assert math.isfinite(final) and final < 0.05 * initial, (initial, final)


@pytest.mark.parametrize("name", NAMES)
def test_linear_regression_converges(name):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(128, 8, generator=gen)
    y = x @ torch.randn(8, 1, generator=gen) + 0.5 + 0.01 * torch.randn(128, 1, generator=gen)
    model = nn.Linear(8, 1)
    # AGR on every tensor would freeze the one-element bias (alpha = 1, the warning's case),
    # and the data need its intercept of 0.5: AGR on the weight only, as the warning advises
    extra = {"agr_scope": "weights"} if name.endswith("_agr") else {}
    opt = agr.build_optimizer(name, model, lr=0.05, weight_decay=0.0, **extra)

    def mse():
        return F.mse_loss(model(x), y)

    initial = mse().item()
    for _ in range(200):
        opt.zero_grad(set_to_none=True)
        mse().backward()
        opt.step()
    final = mse().item()
    assert final < 0.02 * initial, (initial, final)


def test_agr_on_every_tensor_freezes_a_one_element_bias_exactly():
    """What the FrozenParameterWarning says: under AGR with scope 'all' the bias of a
    one-output Linear never moves, on every backend (the CPU kernel included: its
    reciprocal once left ~1e-7 of the gradient, which Adam turned into real updates)."""
    gen = torch.Generator().manual_seed(7)
    x, y = torch.randn(128, 8, generator=gen), torch.randn(128, 1, generator=gen) + 0.5
    for name in ("adamw_agr", "adan_agr"):
        model = nn.Linear(8, 1)
        start = model.bias.detach().clone()
        with pytest.warns(agr.FrozenParameterWarning, match="bias"):
            opt = agr.build_optimizer(name, model, lr=0.05, weight_decay=0.0)
        for _ in range(50):
            opt.zero_grad(set_to_none=True)
            F.mse_loss(model(x), y).backward()
            opt.step()
        assert torch.equal(model.bias.detach(), start), name


# --------------------------------------------------------------------------------------------
# 8. registry validation and param groups
# --------------------------------------------------------------------------------------------


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError) as err:
        agr.build_optimizer("sgdd", Net())
    for name in NAMES:
        assert name in str(err.value)


BAD_HPARAMS = {  # n: how many betas the optimizer takes
    "negative_lr": lambda n: {"lr": -1e-3},
    "negative_eps": lambda n: {"eps": -1.0},
    "unknown_impl": lambda n: {"impl": "cuda_graph"},
    "beta_is_one": lambda n: {"betas": (0.9,) * (n - 1) + (1.0,)},
    "negative_beta": lambda n: {"betas": (-0.1,) + (0.9,) * (n - 1)},
}


@pytest.mark.parametrize("bad", list(BAD_HPARAMS))
@pytest.mark.parametrize("name", NAMES)
def test_invalid_hparams_raise(name, bad):
    hparams = BAD_HPARAMS[bad](3 if name.startswith("adan") else 2)
    with pytest.raises(ValueError):
        agr.build_optimizer(name, Net(), **hparams)


@pytest.mark.parametrize("name", ["adamw_agr", "adan_agr"])
def test_invalid_agr_scope_raises(name):
    with pytest.raises(ValueError):
        agr.build_optimizer(name, Net(), agr_scope="bias")


@pytest.mark.parametrize("name", ["adan", "adan_agr"])
def test_adan_has_no_fused_impl(name):
    with pytest.raises(ValueError):
        agr.build_optimizer(name, Net(), impl="fused")


@pytest.mark.parametrize("name", ["adan", "adan_agr"])
def test_adan_defaults_follow_the_code_convention(name):
    opt = agr.build_optimizer(name, Net())
    assert isinstance(opt, Adan)
    assert tuple(opt.param_groups[0]["betas"]) == pytest.approx((0.98, 0.92, 0.99))
    assert opt.param_groups[0]["no_prox"] is False


@pytest.mark.parametrize("name", NAMES)
def test_decay_bias_and_norm(name):
    model = Net()
    no_decay = {id(model.conv.bias), id(model.norm.weight), id(model.norm.bias)}
    no_decay |= {id(model.fc1.bias), id(model.fc2.bias)}
    all_ids = {id(p) for p in model.parameters()}

    def decay_of(opt):
        seen = {}
        for group in opt.param_groups:
            for p in group["params"]:
                assert id(p) not in seen, "a parameter is in two groups"
                seen[id(p)] = group["weight_decay"]
        assert set(seen) == all_ids
        return seen

    wd = decay_of(agr.build_optimizer(name, model, weight_decay=0.1))  # default: True
    assert all(v == 0.1 for v in wd.values())
    wd = decay_of(agr.build_optimizer(name, model, weight_decay=0.1, decay_bias_and_norm=True))
    assert all(v == 0.1 for v in wd.values())
    wd = decay_of(agr.build_optimizer(name, model, weight_decay=0.1, decay_bias_and_norm=False))
    assert {i for i, v in wd.items() if v == 0} == no_decay
    assert all(wd[i] == 0.1 for i in all_ids - no_decay)


# --------------------------------------------------------------------------------------------
# 9. attach on SGD, and optimizer.step(closure)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", SCOPES)
def test_attach_to_sgd(scope, data):
    model, ref_model = make_models()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    handle = agr.attach(opt, scope=scope)
    ref = torch.optim.SGD(ref_model.parameters(), lr=0.1, momentum=0.9)
    got = train(model, opt, data, steps(1, 10))
    want = train(ref_model, ref, data, steps(1, 10), transform=agr_on(scope))
    assert_same_run(got, want, atol=1e-6, names=param_names(model))
    assert handle.steps == 10


def _closure_pair(kind, model, ref_model):
    if kind == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        agr.attach(opt)
        return opt, torch.optim.SGD(ref_model.parameters(), lr=0.1, momentum=0.9)
    if kind.startswith("adamw_agr"):
        impl = kind.split("-")[1]
        opt = agr.build_optimizer("adamw_agr", model, impl=impl, **ADAMW_HP)
        return opt, torch.optim.AdamW(ref_model.parameters(), **ADAMW_HP, **ADAMW_FLAGS[impl])
    opt = agr.build_optimizer("adan_agr", model, impl="foreach", **ADAN_HP)
    return opt, Adan(ref_model.parameters(), foreach=True, **ADAN_HP)


@pytest.mark.parametrize("kind", ["sgd", "adamw_agr-foreach", "adamw_agr-fused", "adan_agr"])
def test_step_with_closure(kind, data):
    model, ref_model = make_models()
    opt, ref = _closure_pair(kind, model, ref_model)
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad(set_to_none=True)
        loss = loss_of(model, data)
        loss.backward()
        return loss

    got = []
    for _ in range(6):
        expected_loss = loss_of(model, data).item()
        loss = opt.step(closure)
        assert loss is not None and loss.item() == pytest.approx(expected_loss, abs=1e-6)
        got.append(snapshot(model))
    assert len(calls) == 6, "the closure must run exactly once per step"
    assert agr.handle_of(opt).steps == 6
    want = train(ref_model, ref, data, steps(1, 6), transform=agr_on("all"))
    assert_same_run(got, want, atol=1e-6, names=param_names(model))


@pytest.mark.slow
def test_import_agr_loads_torch_alone_and_adan_loads_timm_when_asked():
    """The library's import pulls in no suite dependency (timm imports torchvision; wandb,
    Hydra, transformers and diffusers belong to the suite); Adan still builds."""
    import subprocess
    import sys

    code = (
        "import sys, torch, agr\n"
        "suite = ('timm', 'torchvision', 'wandb', 'hydra', 'transformers', 'diffusers', 'scipy')\n"
        "print(sorted(m for m in suite if m in sys.modules))\n"
        "agr.build_optimizer('adan_agr', torch.nn.Linear(2, 2))\n"
        "print('timm' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[:2] == ["[]", "True"]
