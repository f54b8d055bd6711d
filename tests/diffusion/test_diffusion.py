"""``agr_suite.diffusion.unet``, ``agr_suite.diffusion.process`` and
``agr_suite.engine.ema``: the UNets, the noising, DDIM, grids and the EMA.

References are computed here, not taken from the code under test: abar_t from the linear betas in
float64, the paper UNet's parameter count written out layer by layer from the authors' UNet
(w86763777/pytorch-ddpm ``model.py``, which the authors' ``main_ddpm.py`` imports), and the
EMA's step written out in float32 (bit for bit) and its closed form.
"""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from agr_suite.core.config import preset
from agr_suite.diffusion.process import Diffusion, save_grid, to_uint8
from agr_suite.diffusion.unet import build_unet
from agr_suite.engine.ema import EMA, EMAState

T = 1000


def reference_alphas_cumprod(T: int = T, beta_start: float = 1e-4, beta_end: float = 0.02):
    """abar_t = prod_{s <= t} (1 - beta_s), beta linear from beta_start to beta_end (float64)."""
    betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


ABAR = reference_alphas_cumprod()


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread for this module: its tensors are small, and on a shared 2-core machine
    spinning OpenMP workers made the training test ~6x slower with two (30 s instead of 5 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------
# UNets
# --------------------------------------------------------------------------------------------


def ddpm_unet_parameters(ch=128, mult=(1, 2, 2, 2), attn=(1,), blocks=2, cin=3) -> int:
    """Trainable parameters of w86763777/pytorch-ddpm's UNet (the authors' model), written out.

    Its frozen 1000 x 128 sinusoidal embedding table is left out (requires_grad=False; diffusers
    computes the embedding on the fly)."""

    def conv(i, o, k):
        return i * o * k * k + o

    def gn(c):
        return 2 * c

    def lin(i, o):
        return i * o + o

    tdim = 4 * ch

    def res(i, o):
        return (
            gn(i)
            + conv(i, o, 3)
            + lin(tdim, o)
            + gn(o)
            + conv(o, o, 3)
            + (conv(i, o, 1) if i != o else 0)
        )

    def att(c):
        return gn(c) + 4 * conv(c, c, 1)  # q, k, v, proj: 1x1 convs

    total = lin(ch, tdim) + lin(tdim, tdim) + conv(cin, ch, 3)  # time MLP, head
    skips, now = [ch], ch
    for i, m in enumerate(mult):
        for _ in range(blocks):
            total += res(now, ch * m) + (att(ch * m) if i in attn else 0)
            now = ch * m
            skips.append(now)
        if i != len(mult) - 1:
            total += conv(now, now, 3)  # DownSample
            skips.append(now)
    total += res(now, now) + att(now) + res(now, now)  # middle
    for i, m in reversed(list(enumerate(mult))):
        for _ in range(blocks + 1):
            total += res(skips.pop() + now, ch * m) + (att(ch * m) if i in attn else 0)
            now = ch * m
        if i != 0:
            total += conv(now, now, 3)  # UpSample
    return total + gn(now) + conv(now, cin, 3)  # tail


def attention_resolutions(model: nn.Module, image_size: int, in_chans: int) -> dict[str, int]:
    """Run a forward pass (on the model's device: on "meta", shapes only, no compute) and record
    the spatial size each attention module sees."""
    seen: dict[str, int] = {}
    hooks = []
    for name, module in model.named_modules():
        if type(module).__name__ == "Attention":
            hook = module.register_forward_hook(
                lambda mod, args, out, name=name: seen.__setitem__(name, args[0].shape[-1])
            )
            hooks.append(hook)
    device = next(model.parameters()).device
    with torch.no_grad():
        x = torch.randn(2, in_chans, image_size, image_size, device=device)
        out = model(x, torch.tensor([3, 999], device=device)).sample
    for hook in hooks:
        hook.remove()
    assert out.shape == (2, in_chans, image_size, image_size)
    return seen


def unet(name: str, *, image_size: int, in_chans: int, **settings):
    """The UNet of configs/model/<name>.yaml with ``settings`` changed, as a run builds it."""
    return build_unet(preset("model", name, **settings), image_size=image_size, in_chans=in_chans)


def test_unet_errors():
    with pytest.raises(TypeError, match="unknown option"):
        build_unet(preset("model", "ddpm_small"), image_size=16, in_chans=1, attn_levels=(1,))
    with pytest.raises(ValueError, match="out of range"):
        unet("ddpm_small", image_size=16, in_chans=1, attention_levels=[2])
    with pytest.raises(ValueError, match="divisible"):
        unet("ddpm", image_size=36, in_chans=3)


def test_ddpm_unet_structure_and_size():
    """The paper's UNet, built on the meta device: attention exactly at 16x16 (down: 2 blocks,
    up: 3 blocks) and in the 4x4 middle, one head each, dropout 0.1, and the DDPM paper's
    35.7M parameters, equal to the authors' UNet's trainable count written out."""
    with torch.device("meta"):
        model = unet("ddpm", image_size=32, in_chans=3)
    assert list(model.config.block_out_channels) == [128, 256, 256, 256]
    assert model.config.layers_per_block == 2
    seen = attention_resolutions(model, 32, 3)
    assert seen == {
        "down_blocks.1.attentions.0": 16,
        "down_blocks.1.attentions.1": 16,
        "up_blocks.2.attentions.0": 16,
        "up_blocks.2.attentions.1": 16,
        "up_blocks.2.attentions.2": 16,
        "mid_block.attentions.0": 4,
    }
    heads = {m.heads for m in model.modules() if type(m).__name__ == "Attention"}
    assert heads == {1}
    dropouts = {m.p for m in model.modules() if isinstance(m, nn.Dropout)}
    assert 0.1 in dropouts and dropouts <= {0.0, 0.1}  # 0.0: diffusers' attention out-dropout

    count = sum(p.numel() for p in model.parameters())
    print(f"ddpm UNet parameters: {count:,}")
    assert count == ddpm_unet_parameters() == 35_746_307
    assert abs(count - 35.7e6) < 0.05e6  # "35.7M" (Ho et al. 2020, Appendix B)


def test_ddpm_unet_forward_once_on_cpu():
    """One real forward at 32x32 (batch 1): shape, finite, and the DDPM init's near-zero output
    (output conv with gain 1e-5)."""
    model = unet("ddpm", image_size=32, in_chans=3).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 32), torch.tensor([500])).sample
    assert out.shape == (1, 3, 32, 32)
    assert torch.isfinite(out).all()
    assert out.abs().max() < 1e-2


def test_ddpm_small_structure():
    model = unet("ddpm_small", image_size=16, in_chans=1)
    assert list(model.config.block_out_channels) == [32, 64]
    seen = attention_resolutions(unet("ddpm_small", image_size=16, in_chans=1), 16, 1)
    assert set(seen.values()) == {8} and len(seen) == 1 + 2 + 1  # down, up, middle at 8x8
    none = unet("ddpm_small", image_size=16, in_chans=1, attention_levels=(), layers_per_block=2)
    assert attention_resolutions(none, 16, 1) == {"mid_block.attentions.0": 8}
    plain = unet("ddpm_small", image_size=16, in_chans=1, attention_levels=(), mid_attention=False)
    assert attention_resolutions(plain, 16, 1) == {}
    print(f"ddpm_small parameters: {sum(p.numel() for p in model.parameters()):,}")


def digits_16() -> torch.Tensor:
    """sklearn's real 8x8 digits, bilinearly upsampled to 16x16 and scaled to [-1, 1]."""
    from sklearn.datasets import load_digits

    images = torch.from_numpy(load_digits().images).float().div(16.0).unsqueeze(1)
    images = F.interpolate(images, size=(16, 16), mode="bilinear", align_corners=False)
    return images.mul(2.0).sub(1.0).clamp(-1.0, 1.0)


@pytest.mark.slow  # make test-slow; kept out of make test's time budget
def test_ddpm_small_trains_on_digits():
    """30 Adam steps on one fixed batch with fixed (t, noise): the loss falls."""
    images = digits_16()[:16]
    assert images.shape == (16, 1, 16, 16) and images.min() >= -1 and images.max() <= 1
    model = unet("ddpm_small", image_size=16, in_chans=1).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    diffusion = Diffusion()
    losses = []
    for _ in range(30):
        loss = diffusion.loss(model, images, torch.Generator().manual_seed(0))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    print("ddpm_small losses:", [round(v, 3) for v in losses[::5]], round(losses[-1], 3))
    assert all(math.isfinite(v) for v in losses)
    assert 0.5 < losses[0] < 1.5  # ~E[eps^2] = 1 for a near-zero initial prediction
    assert sum(losses[-5:]) / 5 < 0.6 * losses[0]


# --------------------------------------------------------------------------------------------
# Noising and the training target
# --------------------------------------------------------------------------------------------


class Recorder(nn.Module):
    """Returns a fixed tensor and records its inputs."""

    def __init__(self, output: torch.Tensor):
        super().__init__()
        self.output = output
        self.inputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x, t):
        self.inputs.append((x.clone(), t.clone()))
        return self.output


@pytest.mark.parametrize("t", [0, 1, 250, 999])
def test_add_noise_and_target(t):
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, and the loss is the MSE against eps."""
    diffusion = Diffusion()
    x0 = torch.rand(3, 2, 4, 4) * 2 - 1
    eps = torch.randn_like(x0)
    pred = torch.randn_like(x0)
    model = Recorder(pred)
    timesteps = torch.full((3,), t)
    loss = diffusion.loss(model, x0, timesteps=timesteps, noise=eps)
    x_t, seen_t = model.inputs[0]
    expected = ABAR[t].sqrt() * x0.double() + (1 - ABAR[t]).sqrt() * eps.double()
    # diffusers keeps abar in float32: sqrt(1 - abar_0) = 0.01 carries a ~3e-4 relative error
    torch.testing.assert_close(x_t.double(), expected, rtol=0, atol=2e-5)
    assert torch.equal(seen_t, timesteps)
    torch.testing.assert_close(loss, ((pred - eps) ** 2).mean())
    torch.testing.assert_close(diffusion.alphas_cumprod.double(), ABAR, rtol=2e-5, atol=0)


def test_loss_draws_t_uniformly_and_reproducibly():
    diffusion = Diffusion()
    model = Recorder(torch.zeros(4096, 1, 1, 1))
    x0 = torch.zeros(4096, 1, 1, 1)
    loss_a = diffusion.loss(model, x0, torch.Generator().manual_seed(1))
    loss_b = diffusion.loss(model, x0, torch.Generator().manual_seed(1))
    (xa, ta), (xb, tb) = model.inputs
    assert torch.equal(ta, tb) and torch.equal(xa, xb) and loss_a == loss_b
    assert ta.dtype == torch.long and ta.min() >= 0 and ta.max() <= T - 1
    assert ta.min() < 20 and ta.max() > T - 20 and abs(ta.float().mean() - (T - 1) / 2) < 25
    # x0 = 0: x_t is the scaled noise, so x_t / sqrt(1 - abar_t) ~ N(0, 1), and the loss is its MSE
    noise = xa / (1 - ABAR[ta]).sqrt().view(-1, 1, 1, 1).float()
    assert abs(noise.std() - 1) < 0.05
    torch.testing.assert_close(loss_a, noise.square().mean(), rtol=1e-4, atol=1e-5)


def test_loss_gradients():
    model = unet("ddpm_small", image_size=16, in_chans=1, layers_per_block=1)
    loss = Diffusion().loss(model, torch.rand(2, 1, 16, 16) * 2 - 1)
    assert loss.dim() == 0
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


# --------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------


class Oracle(nn.Module):
    """Predicts the exact noise of a known x0: eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t),
    with the reference abar; counts calls and records timesteps and inputs."""

    def __init__(self, x0: torch.Tensor):
        super().__init__()
        self.x0 = x0.double()
        self.calls = 0
        self.timesteps: list[int] = []
        self.first_input: torch.Tensor | None = None

    def forward(self, x, t):
        if self.first_input is None:
            self.first_input = x.clone()
        self.calls += 1
        assert (t == t[0]).all() and t.dtype == torch.long and t.shape == (x.shape[0],)
        self.timesteps.append(int(t[0]))
        abar = ABAR[t].view(-1, 1, 1, 1)
        return ((x.double() - abar.sqrt() * self.x0) / (1 - abar).sqrt()).float()


def test_ddim_with_oracle_recovers_x0():
    """DDIM (eta = 0) with an exact noise prediction returns x0 up to float error, in 100 model
    calls at t = 990, 980, ..., 0 (Song et al.'s CIFAR-10 timesteps)."""
    x0 = torch.rand(4, 3, 8, 8) * 1.8 - 0.9
    oracle = Oracle(x0)
    out = Diffusion().sample(
        oracle, 4, image_size=8, channels=3, generator=torch.Generator().manual_seed(0)
    )
    assert out.shape == (4, 3, 8, 8) and out.dtype == torch.float32
    assert oracle.calls == 100
    assert oracle.timesteps == list(range(990, -1, -10))
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-4)


def test_ddim_authors_variant():
    """The AGR authors' DDIMSampler: t = 991, ..., 1, and the last step lands on abar_0, so
    the oracle's output is sqrt(abar_0) x0 + sqrt(1 - abar_0) e with e the x_T's noise part."""
    x0 = torch.rand(2, 1, 4, 4) * 2 - 1
    oracle = Oracle(x0)
    out = Diffusion(ddim="authors").sample(oracle, 2, image_size=4, channels=1, steps=100)
    assert oracle.timesteps == list(range(991, 0, -10))
    with pytest.raises(ValueError, match="reach t = 1000"):
        Diffusion(ddim="authors").sample(oracle, 1, image_size=4, channels=1, steps=1000)
    x_T = oracle.first_input.double()
    e = (x_T - ABAR[991].sqrt() * x0.double()) / (1 - ABAR[991]).sqrt()
    expected = ABAR[0].sqrt() * x0.double() + (1 - ABAR[0]).sqrt() * e
    torch.testing.assert_close(out.double(), expected.clamp(-1, 1), rtol=0, atol=1e-4)


def test_sampling_shape_range_determinism_and_batches():
    model = unet("ddpm_small", image_size=16, in_chans=1, layers_per_block=1).train()
    diffusion = Diffusion()

    def run(seed, steps=4, **kw):
        return diffusion.sample(
            model,
            3,
            image_size=16,
            channels=1,
            steps=steps,
            generator=torch.Generator().manual_seed(seed),
            **kw,
        )

    a = run(0, batch_size=2)
    assert a.shape == (3, 1, 16, 16) and a.dtype == torch.float32
    assert a.min() >= -1 and a.max() <= 1
    assert model.training  # mode restored
    assert torch.equal(a, run(0, batch_size=2))
    assert not torch.equal(a, run(1, batch_size=2))
    stochastic = run(0, batch_size=3, eta=1.0)
    assert torch.equal(stochastic, run(0, batch_size=3, eta=1.0))
    assert not torch.equal(stochastic, run(0, batch_size=3))
    with pytest.raises(ValueError):
        run(0, steps=0)


def test_batches_are_independent_of_each_other():
    """With an oracle per image index, splitting into batches of 2 changes nothing but x_T."""
    x0 = torch.rand(1, 1, 4, 4) * 2 - 1
    oracle = Oracle(x0)  # broadcasts over the batch
    out = Diffusion().sample(oracle, 5, image_size=4, channels=1, steps=10, batch_size=2)
    assert oracle.calls == 3 * 10
    torch.testing.assert_close(out, x0.expand(5, -1, -1, -1), rtol=0, atol=1e-4)


def test_ddpm_ancestral_sampler_smoke():
    x0 = torch.rand(2, 1, 4, 4) * 2 - 1
    oracle = Oracle(x0)
    gen = torch.Generator().manual_seed(0)
    out = Diffusion().sample_ddpm(oracle, 2, image_size=4, channels=1, generator=gen)
    assert oracle.calls == T and oracle.timesteps == list(range(T - 1, -1, -1))
    assert out.shape == (2, 1, 4, 4) and out.min() >= -1 and out.max() <= 1
    # With the exact noise, the last steps' fixed-large noise (std sqrt(beta_t) ~ 1e-2) is all
    # that separates the result from x0.
    assert (out - x0).abs().max() < 0.1


def test_to_uint8():
    x = torch.tensor([-1.0, 1.0, 0.0, -2.0, 2.0, 0.999, -0.999, 0.5])
    out = to_uint8(x)
    assert out.dtype == torch.uint8
    assert out.tolist() == [0, 255, 128, 0, 255, 255, 0, 191]  # 127.5 -> 128 (half to even)
    images = to_uint8(torch.randn(4, 3, 5, 5) * 3)
    assert images.shape == (4, 3, 5, 5) and images.min() == 0 and images.max() == 255


@pytest.mark.parametrize("n,nrow,channels", [(10, 4, 1), (9, None, 3)])
def test_save_grid(tmp_path, n, nrow, channels):
    images = torch.rand(n, channels, 16, 16) * 2 - 1
    path = save_grid(images, tmp_path / "sub" / "grid.png", nrow=nrow)
    cols = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    with Image.open(path) as grid:
        assert grid.format == "PNG"
        assert grid.size == (cols * (16 + 2) + 2, rows * (16 + 2) + 2)  # 2-pixel padding
        # the first image's top-left pixel sits after the padding
        pixel = grid.convert("RGB").getpixel((2, 2))
    assert pixel[0] == int(to_uint8(images[0, 0, 0, 0]))


# --------------------------------------------------------------------------------------------
# EMA
# --------------------------------------------------------------------------------------------


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.norm = nn.BatchNorm1d(2)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.norm(self.linear(x)))


def reference_ema_step(ema: dict, params: dict, decay: float) -> None:
    """The EMA step, written out in float32: ``ema = decay * ema + (1 - decay) * param``, a
    multiply then an add with alpha (the roundings of the hand-written EMA the code replaced;
    a lerp would round differently)."""
    for name, value in ema.items():
        value.mul_(decay).add_(params[name].float(), alpha=1 - decay)


def _set_parameters(model: nn.Module, values: dict) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(values[name])


def test_ema_is_the_float32_formula_bit_for_bit_and_copies_buffers():
    decay, k = 0.9999, 50
    torch.manual_seed(0)
    model = Tiny()
    reference = {n: p.detach().float().clone() for n, p in model.named_parameters()}
    ema = EMA(model, decay=decay)
    assert ema.num_updates == 0  # no warm-up: the EMA starts at the initial weights
    for name, p in ema.module.named_parameters():
        assert torch.equal(p, reference[name]), name
    for step in range(k):
        values = {n: torch.randn_like(p) for n, p in model.named_parameters()}
        _set_parameters(model, values)
        model.norm.running_mean.fill_(float(step))
        ema.update_parameters(model)
        reference_ema_step(reference, values, decay)
    assert ema.num_updates == k
    for name, p in ema.module.named_parameters():
        assert p.dtype == torch.float32
        assert torch.equal(p, reference[name]), name
    # buffers are the model's latest, not averaged
    assert torch.equal(ema.module.norm.running_mean, torch.full((2,), float(k - 1)))


def test_ema_closed_form():
    """ema_k = d^k w_0 + (1 - d^k) w after k steps towards a constant w (float64 closed form)."""
    decay, k = 0.9, 7
    model = Tiny()
    init = {n: p.detach().double() for n, p in model.named_parameters()}
    ema = EMA(model, decay=decay)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.5)
    for _ in range(k):
        ema.update_parameters(model)
    for name, value in ema.module.named_parameters():
        expected = decay**k * init[name] + (1 - decay**k) * 0.5
        torch.testing.assert_close(value.double(), expected, rtol=0, atol=1e-6)


def test_ema_module_is_an_evaluation_copy_and_the_model_is_left_alone():
    model = Tiny().train()
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    ema.update_parameters(model)
    assert model.training and (model.linear.weight == 1.0).all()
    assert not ema.module.training  # dropout off, BatchNorm on its running statistics
    assert not any(p.requires_grad for p in ema.module.parameters())
    x = torch.randn(4, 3)
    assert torch.equal(ema.module(x), ema.module(x))


def test_ema_bf16_model_keeps_float32():
    model = Tiny().to(torch.bfloat16)
    reference = {n: p.detach().float().clone() for n, p in model.named_parameters()}
    ema = EMA(model, decay=0.9999)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update_parameters(model)
    reference_ema_step(reference, dict(model.named_parameters()), 0.9999)
    for name, p in ema.module.named_parameters():
        assert p.dtype == torch.float32
        assert torch.equal(p, reference[name]), name
    assert model.linear.weight.dtype == torch.bfloat16


def test_ema_rejects_another_model():
    ema = EMA(Tiny(), decay=0.9)
    with pytest.raises(ValueError, match="do not match"):
        ema.update_parameters(nn.Sequential(Tiny()))  # same shapes, other names
    with pytest.raises(ValueError, match="decay"):
        EMA(Tiny(), decay=1.5)


def test_ema_state_resumes_bit_for_bit_and_reads_the_old_checkpoint_layout():
    """A run stopped after 3 steps and resumed from its checkpoint ends where an uninterrupted
    run ends, bit for bit; the checkpoint keeps the replaced EMA's layout, and one written by
    hand in that layout loads the same."""
    decay = 0.99
    torch.manual_seed(0)
    model = Tiny()
    steps = [{n: torch.randn_like(p) for n, p in model.named_parameters()} for _ in range(6)]
    straight = EMAState(decay=decay)
    straight.setup(model, torch.device("cpu"))
    reference = {n: p.detach().clone() for n, p in model.named_parameters()}
    for values in steps[:3]:
        _set_parameters(model, values)
        straight.after_step(model)
        reference_ema_step(reference, values, decay)
    buffer = io.BytesIO()
    torch.save(straight.state_dict(), buffer)
    saved = straight.state_dict()["ema"]
    assert set(saved) == {"decay", "num_updates", "shadow", "buffers"}
    assert set(saved["shadow"]) == {n for n, _ in model.named_parameters()}
    assert set(saved["buffers"]) == {n for n, _ in model.named_buffers()}
    old_layout = {  # as the hand-written EMA wrote it: tensors by name
        "ema": {
            "decay": decay,
            "num_updates": 3,
            "shadow": {n: t.clone() for n, t in reference.items()},
            "buffers": {n: b.clone() for n, b in model.named_buffers()},
        }
    }

    resumed_models = []
    for checkpoint in (torch.load(io.BytesIO(buffer.getvalue())), old_layout):
        resumed_model = Tiny()
        resumed = EMAState(decay=0.5)  # decay and state come from the checkpoint
        resumed.setup(resumed_model, torch.device("cpu"))
        resumed.load_state_dict(checkpoint)
        assert resumed.ema.decay == decay and resumed.ema.num_updates == 3
        resumed_models.append((resumed_model, resumed))
    for values in steps[3:]:
        _set_parameters(model, values)
        straight.after_step(model)
        reference_ema_step(reference, values, decay)
        for resumed_model, resumed in resumed_models:
            _set_parameters(resumed_model, values)
            resumed.after_step(resumed_model)
    for ema_state in (straight, *(r for _, r in resumed_models)):
        assert ema_state.ema.num_updates == 6
        for name, p in ema_state.ema.module.named_parameters():
            assert torch.equal(p, reference[name]), name


def test_ema_state_rejects_another_models_checkpoint():
    state = EMAState(decay=0.9)
    state.setup(Tiny(), torch.device("cpu"))
    other = EMAState(decay=0.9)
    other.setup(nn.Sequential(Tiny()), torch.device("cpu"))
    with pytest.raises(ValueError, match="do not match"):
        state.load_state_dict(other.state_dict())
