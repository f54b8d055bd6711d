"""VGG-11/16 with batch norm for small (CIFAR 32x32, TinyImageNet 64x64) inputs.

Convolutional configurations A (VGG-11) and D (VGG-16) of Simonyan & Zisserman, "Very Deep
Convolutional Networks for Large-Scale Image Recognition" (ICLR 2015, arXiv 1409.1556, Table 1),
each conv 3x3/1 (with bias, as in the paper and torchvision's ``vgg*_bn``) + BatchNorm (Ioffe &
Szegedy 2015) + ReLU, five 2x2 max-pools. The three 4096-wide FC layers of the ImageNet model are
replaced, as in the CIFAR VGGs of kuangliu/pytorch-cifar (models/vgg.py), by a small head:

    AdaptiveAvgPool2d(1) -> flatten(512) -> [Linear(512, hidden_dim) -> ReLU]
                         -> [Dropout(dropout)] -> Linear(., num_classes)

with ``hidden_dim=0`` (no hidden layer) and ``dropout=0.0`` by default, i.e. exactly kuangliu's
``Linear(512, num_classes)``. After five pools a 32x32 input is already 1x1x512, so the pool is
the identity there; a 64x64 input is 2x2x512 and is averaged, so both sizes use the same head.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["CFGS", "CifarVGG", "vgg11", "vgg16"]

# Integers are conv output channels, "M" a 2x2/2 max-pool (paper, Table 1, columns A and D).
CFGS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        "M",
    ),
}


class CifarVGG(nn.Module):
    """``features`` (conv-BN-ReLU and max-pools), global average pool, small ``classifier``."""

    def __init__(
        self,
        cfg: tuple[int | str, ...],
        *,
        num_classes: int,
        in_chans: int = 3,
        base_width: int = 64,
        hidden_dim: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if base_width < 1:
            raise ValueError(f"VGG base_width must be >= 1, got {base_width}")
        layers: list[nn.Module] = []
        ch = in_chans
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                assert isinstance(v, int)
                width = v * base_width // 64
                layers += [
                    nn.Conv2d(ch, width, 3, padding=1),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                ch = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = ch
        head: list[nn.Module] = []
        if hidden_dim > 0:
            head += [nn.Linear(ch, hidden_dim), nn.ReLU(inplace=True)]
            ch = hidden_dim
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(ch, num_classes))
        self.classifier = nn.Sequential(*head)

        # torchvision's VGG initialisation for the convs and BN; Linear keeps PyTorch's default.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.pool(self.features(x)).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.forward_features(x))


def _check_size(image_size: int) -> None:
    if image_size < 32:
        raise ValueError(f"VGG needs image_size >= 32 (five 2x2 max-pools), got {image_size}")


def vgg11(
    *,
    num_classes: int,
    image_size: int,
    in_chans: int = 3,
    base_width: int = 64,
    hidden_dim: int = 0,
    dropout: float = 0.0,
) -> CifarVGG:
    """VGG-11-BN (config A). ``base_width``: the first conv's channels (64 in the paper; every
    layer scales by base_width / 64, as ResNet's ``base_width``). ``hidden_dim`` > 0 adds one
    hidden FC layer (+ReLU); ``dropout`` > 0 adds a Dropout before the final Linear."""
    _check_size(image_size)
    return CifarVGG(
        CFGS["vgg11"],
        num_classes=num_classes,
        in_chans=in_chans,
        base_width=base_width,
        hidden_dim=hidden_dim,
        dropout=dropout,
    )


def vgg16(
    *,
    num_classes: int,
    image_size: int,
    in_chans: int = 3,
    base_width: int = 64,
    hidden_dim: int = 0,
    dropout: float = 0.0,
) -> CifarVGG:
    """VGG-16-BN (config D); options as :func:`vgg11`."""
    _check_size(image_size)
    return CifarVGG(
        CFGS["vgg16"],
        num_classes=num_classes,
        in_chans=in_chans,
        base_width=base_width,
        hidden_dim=hidden_dim,
        dropout=dropout,
    )
