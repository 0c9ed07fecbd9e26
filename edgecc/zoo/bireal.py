"""Bi-Real ResNet-18/34 (Liu et al. 2018; thesis Fig 4.1c): every binary 3x3 conv has its own
real-valued shortcut, x_{i} = BN(BConv(sign(x_{i-1}))) + shortcut(x_{i-1}).

Full precision (thesis ch.4-5 convention): first conv, final FC and the downsample shortcut
(AvgPool + 1x1 conv + BN). Binary: every 3x3 conv (sign activations, mean|W| * sign(W) weights).
"""
from torch import nn

from .binary import AvgPoolProjection, SignConvBN

# number of binary 3x3 convs per stage (two per basic block of ResNet-18/34)
STAGE_CONVS = {18: (4, 4, 4, 4), 34: (6, 8, 12, 6)}


def binary_stem(stem, width):
    """Full-precision stem; no ReLU (sign activations follow)."""
    if stem == "imagenet":
        return nn.Sequential(nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(width),
                             nn.MaxPool2d(3, stride=2, padding=1))
    if stem == "cifar":
        return nn.Sequential(nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(width))
    raise ValueError(f"unknown stem {stem!r}: expected 'imagenet' or 'cifar'")


class BiRealUnit(nn.Module):
    """One binary conv with its own shortcut."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.body = SignConvBN(cin, cout, stride)
        self.shortcut = AvgPoolProjection(cin, cout, stride) if (stride != 1 or cin != cout) else nn.Identity()

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


class BiRealResNet(nn.Module):
    def __init__(self, depth=18, num_classes=1000, stem="imagenet", width=64):
        super().__init__()
        if depth not in STAGE_CONVS:
            raise ValueError(f"unsupported Bi-Real depth {depth}: expected one of {sorted(STAGE_CONVS)}")
        self.stem = binary_stem(stem, width)
        units, cin = [], width
        for s, n in enumerate(STAGE_CONVS[depth]):
            cout = width * 2 ** s
            for i in range(n):
                units.append(BiRealUnit(cin, cout, 2 if (s > 0 and i == 0) else 1))
                cin = cout
        self.units = nn.Sequential(*units)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.units(self.stem(x))).flatten(1))


def bireal_resnet18(**kw):
    return BiRealResNet(18, **kw)


def bireal_resnet34(**kw):
    return BiRealResNet(34, **kw)
