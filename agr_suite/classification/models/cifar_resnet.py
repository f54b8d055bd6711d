"""ResNet-18/34/50 for small (CIFAR 32x32, TinyImageNet 64x64) inputs.

The ImageNet networks of He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016,
arXiv 1512.03385, Table 1: BasicBlock [2,2,2,2] / [3,4,6,3], Bottleneck [3,4,6,3] with expansion 4,
stages of 64/128/256/512 channels), with the 7x7 stride-2 stem and the max-pool replaced by one
3x3 stride-1 conv (64 channels) + BN + ReLU: the CIFAR variant of kuangliu/pytorch-cifar
(models/resnet.py), used by most optimizer papers' CIFAR tables. Stage strides are 1,2,2,2, so a
32x32 input ends at 4x4 and a 64x64 input at 8x8; the global average pool makes both work.
Projection shortcuts (1x1 conv + BN, option B of the paper) wherever shape changes; in the
Bottleneck the stride sits on the 3x3 conv (as in torchvision and kuangliu). With 100 classes
ResNet-18 has 11,220,132 parameters.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["BasicBlock", "Bottleneck", "CifarResNet", "resnet18", "resnet34", "resnet50"]


def _conv_bn(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1) -> list[nn.Module]:
    conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding=kernel_size // 2, bias=False)
    return [conv, nn.BatchNorm2d(out_ch)]


def _shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    return nn.Sequential(*_conv_bn(in_ch, out_ch, 1, stride))


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(in_ch, planes, 3, stride)
        self.conv2, self.bn2 = _conv_bn(planes, planes, 3)
        self.shortcut = _shortcut(in_ch, planes, stride)
        self.relu = nn.ReLU(inplace=True)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4 (ResNet-50)."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1, self.bn1 = _conv_bn(in_ch, planes, 1)
        self.conv2, self.bn2 = _conv_bn(planes, planes, 3, stride)
        self.conv3, self.bn3 = _conv_bn(planes, out_ch, 1)
        self.shortcut = _shortcut(in_ch, out_ch, stride)
        self.relu = nn.ReLU(inplace=True)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """Stem (3x3/1 conv, BN, ReLU; no max-pool), four stages, global average pool, linear head."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        num_blocks: tuple[int, int, int, int],
        *,
        num_classes: int,
        in_chans: int = 3,
        base_width: int = 64,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(in_chans, base_width, 3), nn.ReLU(inplace=True))
        stages: list[nn.Module] = []
        in_ch = base_width
        for i, (n, stride) in enumerate(zip(num_blocks, (1, 2, 2, 2))):
            planes = base_width * 2**i
            blocks = []
            for s in [stride] + [1] * (n - 1):
                blocks.append(block(in_ch, planes, s))
                in_ch = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = in_ch
        self.fc = nn.Linear(in_ch, num_classes)

        # torchvision's initialisation: He-normal (fan_out) convs, BN weight 1 / bias 0;
        # the Linear head keeps PyTorch's default.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            # Goyal et al. 2017 (arXiv 1706.02677): each residual branch starts as zero.
            for m in self.modules():
                if isinstance(m, BasicBlock | Bottleneck):
                    nn.init.zeros_(m.last_bn().weight)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.pool(x).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.forward_features(x))


def _build(block, num_blocks, num_classes, in_chans, base_width, zero_init_residual) -> CifarResNet:
    return CifarResNet(
        block,
        num_blocks,
        num_classes=num_classes,
        in_chans=in_chans,
        base_width=base_width,
        zero_init_residual=zero_init_residual,
    )


def resnet18(
    *,
    num_classes: int,
    image_size: int,
    in_chans: int = 3,
    base_width: int = 64,
    zero_init_residual: bool = False,
) -> CifarResNet:
    """CIFAR ResNet-18. ``base_width``: stage-1 channels (stages use 1x, 2x, 4x, 8x).
    ``image_size`` is unused (global pooling), accepted for a uniform signature."""
    return _build(BasicBlock, (2, 2, 2, 2), num_classes, in_chans, base_width, zero_init_residual)


def resnet34(
    *,
    num_classes: int,
    image_size: int,
    in_chans: int = 3,
    base_width: int = 64,
    zero_init_residual: bool = False,
) -> CifarResNet:
    """CIFAR ResNet-34; options as :func:`resnet18`."""
    return _build(BasicBlock, (3, 4, 6, 3), num_classes, in_chans, base_width, zero_init_residual)


def resnet50(
    *,
    num_classes: int,
    image_size: int,
    in_chans: int = 3,
    base_width: int = 64,
    zero_init_residual: bool = False,
) -> CifarResNet:
    """CIFAR ResNet-50 (Bottleneck, output 8x ``base_width`` x 4 = 2048 features)."""
    return _build(Bottleneck, (3, 4, 6, 3), num_classes, in_chans, base_width, zero_init_residual)
