"""AGR's effect on the optimizer's update (agr.update_change), against two independent
optimizers, and proof that measuring it leaves the training path bit for bit unchanged."""

import copy

import pytest
import torch
from helpers import tiny_run
from omegaconf import OmegaConf
from reference import agr_reference
from timm.optim import Adan
from torch import nn

import agr
from agr.update_change import ShadowStep, parameter_kinds
from agr_suite.config import compose as compose_run_config
from agr_suite.engine import train, trainer
from agr_suite.engine.loggers import NullLogger
from agr_suite.tasks import build_task


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


@pytest.mark.parametrize(
    ("name", "plain_cls", "hp"),
    [
        ("adamw_agr", torch.optim.AdamW, {"lr": 1e-2, "weight_decay": 0.1}),
        ("adan_agr", Adan, {"lr": 1e-2, "weight_decay": 0.02}),
    ],
)
def test_shadow_step_change_matches_two_independent_optimizers(name, plain_cls, hp):
    torch.manual_seed(0)
    model = Small()
    reference = [copy.deepcopy(model), copy.deepcopy(model)]  # plain and formula-AGR
    opt = agr.build_optimizer(name, model, **hp)
    refs = [plain_cls(m.parameters(), **hp) for m in reference]
    for step in range(4):  # a few steps so the moments are not at their initial values
        grads_for(model, step)
        for m in reference:
            grads_for(m, step)
        # both references follow the AGR trajectory (formula gradients) until the last step,
        # where reference 0 takes the plain step and reference 1 the AGR step
        before = [[p.detach().clone() for p in m.parameters()] for m in reference]
        if step < 3:
            for m, o in zip(reference, refs):
                with torch.no_grad():
                    for p in m.parameters():
                        p.grad.copy_(agr_reference(p.grad))
                o.step()
            opt.step()
            continue
        shadow = ShadowStep(opt, agr.handle_of(opt))
        shadow.run()
        opt.step()
        changes = shadow.changes()
        with torch.no_grad():  # reference 0: plain grads; reference 1: AGR'd grads
            for p in reference[1].parameters():
                p.grad.copy_(agr_reference(p.grad))
        for o in refs:
            o.step()
        for p, plain0, agr0, plain_p, agr_p in zip(
            model.parameters(), *before, reference[0].parameters(), reference[1].parameters()
        ):
            u, u_agr = plain_p.detach() - plain0, agr_p.detach() - agr0
            want = float((u_agr - u).double().norm() / u.double().norm())
            assert changes[p] == pytest.approx(want, rel=1e-4, abs=1e-9)
            assert torch.allclose(p.detach(), agr_p.detach(), rtol=0, atol=1e-7)


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


def test_agr_effect_script_prints_a_row_per_tensor(tmp_path, capsys):
    import importlib.util

    from agr_suite.table_spec import ROOT

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
        "optimizer=adamw",  # a baseline run: the script measures AGR on its state anyway
    ]
    cfg = compose_run_config(overrides)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    train(cfg, run_dir, build_task)
    assert script.main([str(run_dir)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0] == "| parameter | kind | size | removed L1 fraction | update change |"
    assert rows[1].startswith("| stem.0.weight | conv_linear | 36 |")
    saved = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    assert len(rows) - 1 == len(saved["optimizer"]["state"])  # one row per trained tensor
    assert all(float(row.split(" | ")[-1].rstrip(" |")) > 0 for row in rows[1:])
    assert script.main([str(tmp_path / "nowhere")]) == 2
