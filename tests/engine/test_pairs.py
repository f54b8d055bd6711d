"""The two arms of a comparison differ by AGR (or its neighbour GC or AGC) and nothing else.

With the transform switched to a no-op, ``adamw_agr`` (``adamw_gc``, ``adamw_agc``) must
follow ``adamw`` and ``adan_agr`` must follow ``adan`` bit for bit: the same optimizer kernel
on the same device, so any difference a table shows comes from the transform, not from
another implementation's rounding. The transform is made a no-op two ways: scope ``weights``
on a model whose every parameter is 1-D (no tensor is in scope), and ``agr_until_step=0`` on
a model with 2-D and 4-D weights (it never runs). With it on, the arms must differ (so the
comparison is not vacuous).
"""

import copy

import pytest
import torch
from helpers import tiny_run
from torch import nn

import agr

DEVICES = ["cpu", "cuda"]  # cuda: skipped without a GPU; scripts/gpu_check.sh runs it
HP = {
    "adamw": {"lr": 3e-2, "weight_decay": 0.05, "betas": (0.9, 0.99), "eps": 1e-8},
    "adan": {"lr": 3e-2, "weight_decay": 0.05, "betas": (0.98, 0.92, 0.99), "eps": 1e-8},
    "sgd": {"lr": 3e-2, "weight_decay": 0.05, "momentum": 0.9},
}
FAMILIES = list(HP)
TRANSFORMS = ("agr", "gc", "agc")
STEPS = 100


class Vectors(nn.Module):
    """Only 1-D parameters: a scale, a shift and a norm's weight and bias."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, 24))
        self.shift = nn.Parameter(torch.linspace(-0.2, 0.2, 24))
        self.norm = nn.LayerNorm(24)

    def forward(self, x):
        return self.norm(torch.tanh(x * self.scale + self.shift))


class Mixed(nn.Module):
    """Conv (4-D), linear (2-D) and 1-D parameters."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 3, 5)
        self.fc = nn.Linear(60, 24)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x[:, None, :])).flatten(1)[:, :60])


def trajectory(model, name, device, **agr_args):
    """Parameters after STEPS steps of `name` on a fixed regression problem."""
    model = copy.deepcopy(model).to(device)
    family, transform = agr.optim.split_name(name)
    extra = {"agc_skip_final_linear": False} if transform == "agc" else {}
    opt = agr.build_optimizer(name, model, **HP[family], **agr_args, **extra)
    gen = torch.Generator().manual_seed(7)
    for _ in range(STEPS):
        x = torch.randn(16, 24, generator=gen).to(device)
        y = torch.randn(16, 24, generator=gen).to(device)
        opt.zero_grad(set_to_none=True)
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
    return [p.detach().cpu() for p in model.parameters()]


def device_or_skip(device):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("noop", ["weights-scope-on-vectors", "until-step-0"])
@pytest.mark.parametrize("transform", TRANSFORMS)
def test_pair_is_bitwise_identical_when_agr_is_a_noop(device, family, noop, transform):
    device_or_skip(device)
    torch.manual_seed(0)
    if noop == "weights-scope-on-vectors":
        model, agr_args = Vectors(), {"agr_scope": "weights"}
    else:
        model, agr_args = Mixed(), {"agr_until_step": 0}
    base = trajectory(model, family, device)
    with_agr = trajectory(model, f"{family}_{transform}", device, **agr_args)
    start = [p.detach() for p in model.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(base, start)), "nothing trained"
    for a, b in zip(base, with_agr):
        assert torch.equal(a, b), f"max |diff| {(a - b).abs().max().item():.3g}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("transform", TRANSFORMS)
def test_pair_differs_when_agr_acts(device, family, transform):
    device_or_skip(device)
    torch.manual_seed(0)
    model = Mixed()
    base = trajectory(model, family, device)
    with_agr = trajectory(model, f"{family}_{transform}", device)  # the default scope: all
    assert any(not torch.equal(a, b) for a, b in zip(base, with_agr))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("transform", TRANSFORMS)
def test_agr_arm_runs_the_baselines_optimizer(family, transform):
    """Same class and the same step flags (fused/foreach) in both arms."""
    model = Mixed()
    base = agr.build_optimizer(family, model)
    with_agr = agr.build_optimizer(f"{family}_{transform}", model)
    assert type(base) is type(with_agr)
    flags = ("fused", "foreach")
    assert [base.defaults.get(k) for k in flags] == [with_agr.defaults.get(k) for k in flags]
    assert agr.handle_of(base) is None and agr.handle_of(with_agr).scope == "all"


@pytest.mark.parametrize(
    ("family", "transform"),
    [
        *((family, "agr") for family in FAMILIES),
        ("adamw", "gc"),
        ("adamw", "agc"),
        *(
            pytest.param(f, t, marks=pytest.mark.slow)
            for f in ("adan", "sgd")
            for t in ("gc", "agc")
        ),
    ],
)
def test_engine_runs_of_a_pair_are_bitwise_identical_with_agr_a_noop(tmp_path, family, transform):
    """Through the whole engine (data order, schedule, diagnostics on the logging steps):
    `<family>_<transform>` suspended from step 0 ends on exactly the weights and metrics of
    `<family>`."""
    ends = {}
    arm = f"{family}_{transform}"
    for name, extra in ((family, []), (arm, ["optimizer.agr_until_epoch=0"])):
        overrides = [f"optimizer={name}", "trainer.log_every=1", "scheduler=cosine", *extra]
        results, weights = tiny_run(tmp_path / name, overrides)
        assert results["status"] == "completed"
        ends[name] = (results["metrics"], weights)
    (metrics, weights), (agr_metrics, agr_weights) = ends[family], ends[arm]
    assert metrics == agr_metrics
    assert weights.keys() == agr_weights.keys()
    assert all(torch.equal(weights[k], agr_weights[k]) for k in weights)
