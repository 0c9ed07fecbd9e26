"""UA-ResNet, the unified residual + fractal binary ResNet (thesis ch.5, eq 5.1-5.2, Fig 5.4).

Block with c columns (2^c - 1 binary 3x3 convs, longest path 2^(c-1) convs):
    F_1(I)     = Conv(I) + I                              (eq 5.1, Conv = BN(BConv(sign(I))))
    F_{C+1}(I) = JOIN( F_C(F_C(I)), Conv(I) + I )          (eq 5.2, JOIN = element-wise mean)
As in FractalNet, joins that meet at the same point are merged into one join: the last join
of the inner F_C and the outer join are one mean over all columns arriving there
(mean(a, b, c), not mean(mean(a, b), c)). The parameter count does not depend on this.

Network (reconstructed from Tables 5.4/5.5; these give exactly the tables' storage and FLOPs):
full-precision stem (ImageNet 7x7/2 + max pool, or CIFAR 3x3/1) with `width` channels,
4 stages at width, 2w, 4w, 8w of `blocks` fractal blocks each, all block convs C->C stride 1;
between stages a full-precision transition AvgPool(2) -> 1x1 conv (C->2C) -> BN; then global
average pool and FC. Depth = 1 + 2^(c-1) * sum(blocks) + 3 + 1.
"""
from torch import nn

from .binary import AvgPoolProjection, SignConvBN
from .bireal import binary_stem


class ResidualConv(nn.Module):
    """F_1: one binary conv with its own identity shortcut."""

    def __init__(self, channels):
        super().__init__()
        self.body = SignConvBN(channels, channels)

    def forward(self, x):
        return self.body(x) + x


class FractalBlock(nn.Module):
    def __init__(self, columns, channels):
        super().__init__()
        if columns < 1:
            raise ValueError(f"a fractal block needs at least one column, got {columns}")
        self.columns = columns
        self.shallow = ResidualConv(channels)
        if columns > 1:
            self.first = FractalBlock(columns - 1, channels)
            self.second = FractalBlock(columns - 1, channels)

    def column_outputs(self, x):
        """The outputs of all columns before the block's final join."""
        if self.columns == 1:
            return [self.shallow(x)]
        deep = self.second.column_outputs(self.first(x))
        return deep + [self.shallow(x)]

    def forward(self, x):
        cols = self.column_outputs(x)
        out = cols[0]
        for c in cols[1:]:
            out = out + c
        return out * (1.0 / len(cols))


class UAResNet(nn.Module):
    def __init__(self, columns, blocks, width, num_classes=1000, stem="imagenet"):
        super().__init__()
        if len(blocks) != 4:
            raise ValueError(f"UA-ResNet needs 4 stages, got blocks={blocks}")
        self.stem = binary_stem(stem, width)
        layers, c = [], width
        for s, n in enumerate(blocks):
            if s > 0:
                layers.append(AvgPoolProjection(c, 2 * c, 2))
                c *= 2
            layers.extend(FractalBlock(columns, c) for _ in range(n))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        self.depth = 1 + 2 ** (columns - 1) * sum(blocks) + 3 + 1

    def forward(self, x):
        return self.fc(self.pool(self.features(self.stem(x))).flatten(1))


# depth -> (columns, blocks per stage); ResNet-18-like and ResNet-34-like layouts
LAYOUTS = {21: (3, (1, 1, 1, 1)), 37: (4, (1, 1, 1, 1)), 69: (5, (1, 1, 1, 1)),
           41: (3, (2, 2, 3, 2)), 77: (4, (2, 2, 3, 2)), 149: (5, (2, 2, 3, 2))}
# base widths of Table 5.4 (ImageNet) and Table 5.5 (CIFAR-100)
WIDTHS = {"imagenet": {21: 53, 37: 41, 69: 31, 41: 48, 77: 35},
          "cifar": {21: 50, 37: 36, 69: 26, 41: 45, 77: 32, 149: 22}}


def ua_resnet(depth, dataset="imagenet", width=None, num_classes=None):
    """UA-ResNet<depth>(<width>) of Tables 5.4/5.5; dataset picks stem, default width and classes."""
    if depth not in LAYOUTS:
        raise ValueError(f"unsupported UA-ResNet depth {depth}: expected one of {sorted(LAYOUTS)}")
    if dataset not in WIDTHS:
        raise ValueError(f"unknown dataset {dataset!r}: expected 'imagenet' or 'cifar'")
    if width is None:
        if depth not in WIDTHS[dataset]:
            raise ValueError(f"UA-ResNet{depth} has no {dataset} width in the thesis tables; pass width=")
        width = WIDTHS[dataset][depth]
    columns, blocks = LAYOUTS[depth]
    num_classes = num_classes or (1000 if dataset == "imagenet" else 100)
    return UAResNet(columns, blocks, width, num_classes, stem=dataset)
