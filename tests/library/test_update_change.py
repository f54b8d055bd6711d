"""AGR's effect on the optimizer's update (agr.update_change), measured in float64 on a twin:
against independent float64 optimizers and a hand-written AdamW, where float32 cannot see the
update, and proof that measuring it leaves the training path bit for bit unchanged."""

import copy
import math

import pytest
import torch
from helpers import tiny_run
from omegaconf import OmegaConf
from reference import agr_reference
from timm.optim import Adan
from torch import nn

import agr
from agr import update_change
from agr.update_change import measure, parameter_kinds
from agr_suite.core.config import compose as compose_run_config
from agr_suite.engine import train, trainer
from agr_suite.engine.loggers import NullLogger
from agr_suite.registry import build_task


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 6)
        self.fc = nn.Linear(6, 6)
        self.norm = nn.LayerNorm(6)
        self.head = nn.Linear(6, 3, bias=False)

    def forward(self, ids):
        return self.head(self.norm(torch.tanh(self.fc(self.embed(ids))))).mean(1)


def test_parameter_kinds():
    assert parameter_kinds(Small()) == {
        "embed.weight": "embedding",
        "fc.weight": "conv_linear",
        "fc.bias": "bias",
        "norm.weight": "norm",
        "norm.bias": "bias",
        "head.weight": "conv_linear",
    }


def test_parameter_kinds_of_a_vit_put_its_position_embedding_and_token_with_embeddings():
    """timm's ViT holds pos_embed (1, N, D) and cls_token (1, 1, D) itself; the patch
    embedding is a conv."""
    from agr_suite.classification.models import build_model

    kinds = parameter_kinds(
        build_model(
            "vit", num_classes=10, image_size=8, patch_size=4, embed_dim=16, depth=1, num_heads=2
        )
    )
    assert kinds["pos_embed"] == "embedding" and kinds["cls_token"] == "embedding"
    assert kinds["patch_embed.proj.weight"] == "conv_linear"
    assert kinds["head.weight"] == "conv_linear" and kinds["head.bias"] == "bias"
    assert {k for k, v in kinds.items() if v == "norm"} >= {"norm.weight", "blocks.0.norm1.weight"}


def grads_for(model, seed):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 20, (8, 5), generator=gen)
    model.zero_grad()
    (model(ids) ** 2).sum().backward()


CASES = [
    ("adamw_agr", torch.optim.AdamW, {"lr": 1e-2, "weight_decay": 0.1}),  # fused on CPU
    ("sgd_agr", torch.optim.SGD, {"lr": 1e-2, "momentum": 0.9, "weight_decay": 1e-3}),
    ("adan_agr", Adan, {"lr": 1e-2, "weight_decay": 0.02}),  # keeps its step in the group
]


@pytest.mark.parametrize(("name", "plain_cls", "hp"), CASES)
def test_change_matches_two_independent_float64_optimizers(name, plain_cls, hp):
    """The measured change against two float64 optimizers that followed the run from the
    start (fed the run's gradients, AGR'd by the formula) and take the last step with the raw
    and with the AGR'd gradient. They differ from the run's float32 state by rounding only."""
    torch.manual_seed(0)
    model = Small()
    reference = [copy.deepcopy(model).double(), copy.deepcopy(model).double()]
    opt = agr.build_optimizer(name, model, **hp)
    refs = [plain_cls(m.parameters(), **hp) for m in reference]
    for step in range(4):  # a few steps so the moments are not at their initial values
        grads_for(model, step)
        grads = [p.grad.double() for p in model.parameters()]
        before = [[p.detach().clone() for p in m.parameters()] for m in reference]
        for index, (m, o) in enumerate(zip(reference, refs)):
            for p, g in zip(m.parameters(), grads):  # the last step: plain (0) and AGR'd (1)
                p.grad = g.clone() if step == 3 and index == 0 else agr_reference(g)
            o.step()
        if step < 3:
            opt.step()
    changes = measure(opt, agr.handle_of(opt))
    assert set(changes) == set(model.parameters())
    for p, plain0, agr0, plain_p, agr_p in zip(
        model.parameters(), *before, reference[0].parameters(), reference[1].parameters()
    ):
        u, u_agr = plain_p.detach() - plain0, agr_p.detach() - agr0
        want = float((u_agr - u).norm() / u.norm())
        assert changes[p] == pytest.approx(want, rel=1e-4)


def hand_adamw_update(weight, grad, exp_avg, exp_avg_sq, steps, lr, betas, eps, weight_decay):
    """AdamW's update written out in float64 (decoupled decay, bias-corrected moments), with
    no torch optimizer involved."""
    weight, grad, exp_avg, exp_avg_sq = (t.double() for t in (weight, grad, exp_avg, exp_avg_sq))
    beta1, beta2 = betas
    step = steps + 1
    exp_avg = beta1 * exp_avg + (1 - beta1) * grad
    exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
    correction1, correction2 = 1 - beta1**step, 1 - beta2**step
    denom = exp_avg_sq.sqrt() / math.sqrt(correction2) + eps
    return -lr * weight_decay * weight - lr / correction1 * exp_avg / denom


def test_change_is_exact_where_the_update_is_below_the_weights_ulp():
    """The end of a schedule: float32 weights in [0.5, 1), AdamW at lr 1e-9, so each update
    (~1e-9) is far below half the weights' float32 ulp (3e-8). The float64 measurement
    matches the hand-written float64 AdamW within 1e-6; the float32 difference p_after -
    p_start, the old measurement, is exactly 0 there (its change would read 0 / 0)."""
    gen = torch.Generator().manual_seed(0)
    # integer gradients whose sum |g| is a power of two: AGR is exact in float32, whatever route
    weight_grad = torch.tensor([1.0, -2, 3, 4, -5, 6, -7, -1, 2, -3, 4, 5, -6, 7, -4, 4])
    grads = [weight_grad.reshape(4, 4), torch.tensor([1.0, -2.0, 3.0, 2.0])]  # sums 64 and 8
    weights = [
        (0.5 + 0.5 * torch.rand(g.shape, generator=gen))
        * torch.randn(g.shape, generator=gen).sign()
        for g in grads
    ]
    states = [
        {
            "step": torch.tensor(10.0),
            "exp_avg": 0.5 * torch.randn(g.shape, generator=gen),
            "exp_avg_sq": 0.016 * (0.5 + torch.rand(g.shape, generator=gen)),
        }
        for g in grads
    ]
    hp = {"lr": 1e-9, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2}
    params = [nn.Parameter(w.clone()) for w in weights]
    opt = agr.build_optimizer("adamw_agr", params, **hp)  # fused, as the suite runs it on CPU
    for param, grad, state in zip(params, grads, states):
        param.grad = grad.clone()
        opt.state[param] = {k: v.clone() for k, v in state.items()}
    changes = measure(opt, agr.handle_of(opt))
    for param, weight, grad, state in zip(params, weights, grads, states):
        moments = (state["exp_avg"], state["exp_avg_sq"], 10)
        g64 = grad.double()
        u = hand_adamw_update(weight, g64, *moments, **hp)
        u_agr = hand_adamw_update(weight, g64 - g64.abs() / g64.abs().sum() * g64, *moments, **hp)
        assert u.abs().max() < 2e-9
        assert changes[param] == pytest.approx(float((u_agr - u).norm() / u.norm()), rel=1e-6)
    starts = [p.detach().clone() for p in params]
    opt.step()
    assert all(torch.equal(p.detach(), start) for p, start in zip(params, starts))


def snapshot(optimizer):
    """Everything a step reads or writes: parameters, gradients, state, groups, AGR's state."""
    handle = agr.handle_of(optimizer)
    return copy.deepcopy(
        (
            [[(p.detach(), p.grad) for p in g["params"]] for g in optimizer.param_groups],
            {i: dict(s) for i, s in enumerate(optimizer.state.values())},
            [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups],
            handle.state_dict(),
            handle.last_stats,
        )
    )


def same(a, b) -> bool:
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


@pytest.mark.parametrize(("name", "plain_cls", "hp"), CASES)
def test_measuring_touches_nothing_and_the_step_is_bit_for_bit_the_same(name, plain_cls, hp):
    torch.manual_seed(1)
    model = Small()
    twin_model = copy.deepcopy(model)
    opt = agr.build_optimizer(name, model, agr_permuted=True, **hp)  # the null: seeded order
    twin_opt = agr.build_optimizer(name, twin_model, agr_permuted=True, **hp)
    for step in range(3):
        grads_for(model, step)
        grads_for(twin_model, step)
        before = snapshot(opt)
        assert measure(opt, agr.handle_of(opt))
        assert same(snapshot(opt), before)
        opt.step()
        twin_opt.step()
        assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin_model.parameters()))
    assert same(snapshot(opt), snapshot(twin_opt))


class NeedsMore(torch.optim.SGD):
    """An optimizer whose constructor needs an argument the twin cannot know."""

    def __init__(self, params, special):
        super().__init__(params, lr=0.1)


def test_an_optimizer_without_a_twin_is_skipped_with_one_warning(monkeypatch):
    monkeypatch.setattr(update_change, "_refused", set())
    model = Small()
    opt = NeedsMore(model.parameters(), special=1)
    handle = agr.attach(opt)
    grads_for(model, 0)
    with pytest.warns(RuntimeWarning, match="cannot build a float64 twin of NeedsMore") as seen:
        assert measure(opt, handle) == {}
        assert measure(opt, handle) == {}
    assert len(seen) == 1
    opt.step()  # training goes on
    assert handle.steps == 1


class RecordingLogger(NullLogger):
    def __init__(self):
        self.logged: list[dict] = []

    def log(self, metrics, step):
        self.logged.append(dict(metrics))


@pytest.mark.parametrize("family", ["adamw", "adan"])
def test_measuring_on_every_step_leaves_the_run_bit_for_bit_unchanged(
    tmp_path, monkeypatch, family
):
    ends, loggers = {}, {}
    for log_every in (1, 1000):
        loggers[log_every] = RecordingLogger()
        monkeypatch.setattr(trainer, "make_logger", lambda *a, _l=loggers[log_every]: _l)
        overrides = [f"optimizer={family}_agr", f"trainer.log_every={log_every}"]
        ends[log_every] = tiny_run(tmp_path / str(log_every), overrides)
    (measured, weights), (_, unmeasured_weights) = ends[1], ends[1000]
    assert all(torch.equal(weights[k], unmeasured_weights[k]) for k in weights)
    change = measured["agr"]["update_change"]
    assert set(change) == {"conv_linear", "norm", "bias"}
    assert change["conv_linear"]["steps"] == 6 and change["norm"]["tensors"] > 0
    assert all(0 < c["median"] <= c["max"] for c in change.values())
    assert ends[1000][0]["agr"]["update_change"] == {}  # no logging step: no measurement
    # the dose per kind: each logged step's removed fraction, averaged (AGR: below 1)
    by_kind = measured["agr"]["removed_fraction_by_kind"]
    logged = [m for m in loggers[1].logged if "agr/removed_fraction" in m]
    assert set(by_kind) == {"conv_linear", "norm", "bias"} and len(logged) == 6
    for kind, summary in by_kind.items():
        per_step = [m[f"agr/removed_fraction/{kind}"] for m in logged]
        assert summary == {"mean": pytest.approx(sum(per_step) / 6), "steps": 6}
        assert 0 < summary["mean"] < 1
    assert ends[1000][0]["agr"]["removed_fraction_by_kind"] == {}


def agr_effect_of(tmp_path, optimizer):
    """The agr_effect script (as a module) and a one-epoch digits run of ``optimizer``."""
    import importlib.util

    from agr_suite.report.spec import ROOT

    spec = importlib.util.spec_from_file_location("agr_effect", ROOT / "scripts" / "agr_effect.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    overrides = [
        "dataset=digits",
        "model=resnet18",
        "model.base_width=4",
        "trainer.devices=cpu",
        "trainer.num_workers=0",
        "trainer.epochs=1",
        "trainer.limit_batches=2",
        "trainer.batch_size=16",
        f"optimizer={optimizer}",
    ]
    cfg = compose_run_config(overrides)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    train(cfg, run_dir, build_task)
    return script, run_dir


def test_agr_effect_script_prints_a_row_per_tensor(tmp_path, capsys):
    # a baseline run: the script measures AGR on its state anyway
    script, run_dir = agr_effect_of(tmp_path, "adamw")
    assert script.main([str(run_dir)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0] == "| parameter | kind | size | removed L1 fraction | update change |"
    assert rows[1].startswith("| stem.0.weight | conv_linear | 36 |")
    saved = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    assert len(rows) - 1 == len(saved["optimizer"]["state"])  # one row per trained tensor
    assert all(float(row.split(" | ")[-1].rstrip(" |")) > 0 for row in rows[1:])
    assert script.main([str(tmp_path / "nowhere")]) == 2


def test_agr_effect_script_measures_a_gc_runs_own_transform(tmp_path, capsys):
    """GC changes conv weights and leaves 1-D tensors alone (AGR would change those too)."""
    script, run_dir = agr_effect_of(tmp_path, "adamw_gc")
    assert script.main([str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert next(line for line in out.splitlines() if line.startswith("# ")).endswith(", adamw_gc")
    rows = [line.strip("| ").split(" | ") for line in out.splitlines() if line.startswith("| ")]
    removed = {name: float(fraction) for name, kind, size, fraction, change in rows[1:]}
    assert removed["stem.1.bias"] == 0 and removed["stem.1.weight"] == 0
    assert removed["stem.0.weight"] > 0
