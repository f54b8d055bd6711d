"""``agr_suite.classification.models``: shapes, gradients, parameter counts, stems and errors
of the model builders.

Expected parameter counts are written out below from the architectures' definitions (conv, BN,
LayerNorm and Linear sizes), not computed from ``agr_suite.classification.models``' code;
ResNet-18 for CIFAR-100 has the known count 11,220,132 (kuangliu/pytorch-cifar's ResNet18
with a 100-way head).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from agr_suite.classification.models import MODELS, build_model
from agr_suite.engine.task_parts import count_parameters

# (num_classes, image_size, in_chans): CIFAR-100, TinyImageNet, the embedded 1-channel digits.
SETTINGS = [(100, 32, 3), (200, 64, 3), (10, 32, 1)]
STOCHASTIC_DEPTH = {"vit", "convnext"}


def test_model_names():
    assert MODELS == ("resnet18", "resnet34", "resnet50", "vgg11", "vgg16", "vit", "convnext")


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward(name):
    """CIFAR-100 setting: logits shape, and a finite, nonzero gradient on every parameter."""
    # Stochastic depth off so that no residual branch is dropped for the whole (tiny) batch,
    # which would leave its parameters a zero gradient by chance; it holds no parameters.
    options = {"drop_path_rate": 0.0} if name in STOCHASTIC_DEPTH else {}
    model = build_model(name, num_classes=100, image_size=32, **options).train()
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 100)
    logits.logsumexp(dim=1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("num_classes,image_size,in_chans", SETTINGS[1:])
@pytest.mark.parametrize("name", MODELS)
def test_other_settings_shapes(name, num_classes, image_size, in_chans):
    """TinyImageNet (200 classes, 64px) and 1-channel digits: a forward pass gives the logits."""
    model = build_model(name, num_classes=num_classes, image_size=image_size, in_chans=in_chans)
    with torch.no_grad():
        logits = model.train()(torch.randn(2, in_chans, image_size, image_size))
    assert logits.shape == (2, num_classes)
    assert torch.isfinite(logits).all()


# --------------------------------------------------------------------------------------------
# Parameter counts, written out
# --------------------------------------------------------------------------------------------


def conv(cin: int, cout: int, k: int, bias: bool) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def bn(c: int) -> int:  # BatchNorm / LayerNorm: weight and bias
    return 2 * c


def linear(cin: int, cout: int) -> int:
    return cin * cout + cout


def resnet_expected(blocks: list[int], bottleneck: bool, num_classes: int, in_chans: int) -> int:
    total = conv(in_chans, 64, 3, False) + bn(64)  # stem
    cin = 64
    for planes, n, stride in zip((64, 128, 256, 512), blocks, (1, 2, 2, 2)):
        for i in range(n):
            s = stride if i == 0 else 1
            if bottleneck:
                cout = 4 * planes
                total += conv(cin, planes, 1, False) + bn(planes)
                total += conv(planes, planes, 3, False) + bn(planes)
                total += conv(planes, cout, 1, False) + bn(cout)
            else:
                cout = planes
                total += conv(cin, planes, 3, False) + bn(planes)
                total += conv(planes, planes, 3, False) + bn(planes)
            if s != 1 or cin != cout:  # projection shortcut
                total += conv(cin, cout, 1, False) + bn(cout)
            cin = cout
    return total + linear(cin, num_classes)


# Conv (in, out) channels of VGG configs A and D (Simonyan & Zisserman 2015, Table 1), RGB input.
VGG11_CONVS = [(3, 64), (64, 128), (128, 256), (256, 256)] + [(256, 512)] + [(512, 512)] * 3
VGG16_CONVS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256)]
VGG16_CONVS += [(256, 512)] + [(512, 512)] * 5


def vgg_expected(convs: list[tuple[int, int]], num_classes: int) -> int:
    return sum(conv(i, o, 3, True) + bn(o) for i, o in convs) + linear(512, num_classes)


def vit_expected(num_classes, image_size, patch, dim=384, depth=12, in_chans=3, mlp=4) -> int:
    tokens = (image_size // patch) ** 2 + 1  # patches + class token
    block = bn(dim) + linear(dim, 3 * dim) + linear(dim, dim)  # LN, qkv, proj
    block += bn(dim) + linear(dim, mlp * dim) + linear(mlp * dim, dim)  # LN, MLP
    embed = conv(in_chans, dim, patch, True) + dim + tokens * dim  # patches, cls, positions
    return embed + depth * block + bn(dim) + linear(dim, num_classes)


def convnext_expected(num_classes, patch, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)) -> int:
    total = conv(3, dims[0], patch, True) + bn(dims[0])  # stem: patchify conv + LN
    for i, (n, d) in enumerate(zip(depths, dims)):
        if i > 0:  # downsample: LN + 2x2/2 conv
            total += bn(dims[i - 1]) + conv(dims[i - 1], d, 2, True)
        # depthwise 7x7, LN, pointwise MLP 4x, layer-scale gamma
        total += n * (49 * d + d + bn(d) + linear(d, 4 * d) + linear(4 * d, d) + d)
    return total + bn(dims[-1]) + linear(dims[-1], num_classes)  # head: LN + Linear


def test_known_resnet18_cifar100_count():
    assert count_parameters(build_model("resnet18", num_classes=100, image_size=32)) == 11_220_132
    assert resnet_expected([2, 2, 2, 2], False, 100, 3) == 11_220_132  # the formula agrees


@pytest.mark.parametrize(
    "name,expected",
    [
        ("resnet18", lambda c, s: resnet_expected([2, 2, 2, 2], False, c, 3)),
        ("resnet34", lambda c, s: resnet_expected([3, 4, 6, 3], False, c, 3)),
        ("resnet50", lambda c, s: resnet_expected([3, 4, 6, 3], True, c, 3)),
        ("vgg11", lambda c, s: vgg_expected(VGG11_CONVS, c)),
        ("vgg16", lambda c, s: vgg_expected(VGG16_CONVS, c)),
        ("vit", lambda c, s: vit_expected(c, s, s // 8)),
        ("convnext", lambda c, s: convnext_expected(c, s // 32)),
    ],
)
@pytest.mark.parametrize("num_classes,image_size", [(100, 32), (200, 64)])
def test_parameter_counts(name, expected, num_classes, image_size):
    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = build_model(name, num_classes=num_classes, image_size=image_size)
    assert count_parameters(model) == expected(num_classes, image_size)


def test_known_counts_written_out():
    # The formulas above, evaluated: kuangliu/pytorch-cifar's ResNet50 / VGG11 for 10 classes.
    assert resnet_expected([3, 4, 6, 3], True, 10, 3) == 23_520_842
    assert vgg_expected(VGG11_CONVS, 10) == 9_231_114
    assert resnet_expected([3, 4, 6, 3], True, 100, 3) == 23_705_252
    assert vgg_expected(VGG11_CONVS, 100) == 9_277_284


def test_vgg_base_width_scales_every_conv():
    # VGG-11 at base width 16 on 1-channel input: every conv a quarter as wide (16..128).
    convs = [(1, 16), (16, 32), (32, 64), (64, 64), (64, 128)] + [(128, 128)] * 3
    want = sum(conv(i, o, 3, True) + bn(o) for i, o in convs) + linear(128, 10)
    model = build_model("vgg11", num_classes=10, image_size=32, in_chans=1, base_width=16)
    assert count_parameters(model) == want
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="base_width"):
        build_model("vgg11", num_classes=10, image_size=32, base_width=0)


def test_vgg_head_options():
    model = build_model("vgg11", num_classes=10, image_size=32, hidden_dim=256, dropout=0.5)
    kinds = [type(m) for m in model.classifier]
    assert kinds == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    base = vgg_expected(VGG11_CONVS, 10) - linear(512, 10)
    assert count_parameters(model) == base + linear(512, 256) + linear(256, 10)


# --------------------------------------------------------------------------------------------
# Stems and resolutions
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnet_stem(name):
    model = build_model(name, num_classes=10, image_size=32)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.kernel_size == (3, 3) and first.stride == (1, 1) and first.out_channels == 64
    with torch.no_grad():
        assert model.stem(torch.randn(1, 3, 32, 32)).shape == (1, 64, 32, 32)


def test_resnet_zero_init_residual():
    model = build_model("resnet18", num_classes=10, image_size=32, zero_init_residual=True)
    assert all(
        (block.bn2.weight == 0).all() for layer in (model.layer1, model.layer4) for block in layer
    )
    assert (model.stem[1].weight == 1).all()


@pytest.mark.parametrize("image_size,patch", [(32, 4), (64, 8)])
def test_vit_patch_size(image_size, patch):
    with torch.device("meta"):
        model = build_model("vit", num_classes=10, image_size=image_size)
    assert model.patch_embed.patch_size == (patch, patch)
    assert model.patch_embed.grid_size == (8, 8)
    with torch.device("meta"):
        model = build_model("vit", num_classes=10, image_size=image_size, patch_size=2)
    assert model.patch_embed.patch_size == (2, 2)


@pytest.mark.parametrize("image_size,stride", [(32, 1), (64, 2)])
def test_convnext_stem_and_stage_resolutions(image_size, stride):
    model = build_model("convnext", num_classes=10, image_size=image_size, depths=(1, 1, 1, 1))
    stem = model.stem[0]
    assert stem.kernel_size == (stride, stride) and stem.stride == (stride, stride)
    sizes = []
    for stage in model.stages:
        stage.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1]))
    with torch.no_grad():
        model(torch.randn(1, 3, image_size, image_size))
    assert sizes == [32, 16, 8, 4]


def test_default_options_reach_timm():
    with torch.device("meta"):
        vit = build_model("vit", num_classes=10, image_size=32)
        cnx = build_model("convnext", num_classes=10, image_size=32)
    assert len(vit.blocks) == 12 and vit.embed_dim == 384 and vit.blocks[0].attn.num_heads == 6
    assert vit.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)
    assert vit.cls_token is not None and vit.global_pool == "token"
    assert [len(s.blocks) for s in cnx.stages] == [3, 3, 9, 3]
    assert cnx.stages[-1].blocks[-1].drop_path.drop_prob == pytest.approx(0.1)


# --------------------------------------------------------------------------------------------
# Errors and count_parameters
# --------------------------------------------------------------------------------------------


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError) as err:
        build_model("resnet101", num_classes=10, image_size=32)
    assert all(name in str(err.value) for name in MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_unknown_option_is_named(name):
    with pytest.raises(TypeError, match="no_such_option"):
        build_model(name, num_classes=10, image_size=32, no_such_option=1)


@pytest.mark.parametrize("name,option", [("vit", "img_size"), ("convnext", "output_stride")])
def test_reserved_timm_option(name, option):
    with pytest.raises(TypeError, match=option):
        build_model(name, num_classes=10, image_size=32, **{option: 8})


def test_timm_passthrough_option():
    with torch.device("meta"):
        model = build_model("vit", num_classes=10, image_size=32, depth=2, qkv_bias=False)
    assert model.blocks[0].attn.qkv.bias is None


def test_bad_sizes():
    with pytest.raises(ValueError, match="num_classes"):
        build_model("resnet18", num_classes=0, image_size=32)
    with pytest.raises(ValueError, match="divisible"):
        build_model("vit", num_classes=10, image_size=32, patch_size=5)
    with pytest.raises(ValueError, match="image_size"):
        build_model("vgg11", num_classes=10, image_size=16)


def test_count_parameters_unique_and_trainable():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.Linear(4, 2))
    assert count_parameters(model) == 20 + 10
    model[3].weight.requires_grad_(False)
    assert count_parameters(model) == 20 + 2
    assert count_parameters(model, trainable_only=False) == 30
