"""REAF convolution, REAF-ResNet50 and REAF+ MobileNetV2 (thesis ch.6; REAF paper eq 5-8).

REAF conv with configuration G_I-G_M-G_O: the C_in input channels form G_I contiguous groups
of A_in = C_in / G_I channels; the output channels form G_O = C(G_I, G_M) contiguous groups of
B_out = C_out / G_O channels. Output group l reads the concatenation (in increasing group
order) of the input groups in E_l, the l-th G_M-subset of {0..G_I-1} in
itertools.combinations order (lexicographic: (0,1,..), ...). The papers do not fix the order,
so the index sets are stored explicitly (`subsets`, `index`). Computed as a channel gather
followed by a grouped conv with G_O groups. G_M = 1 is a grouped conv with G_I groups,
G_M = G_I a dense conv.
"""
from itertools import combinations
from math import comb

import torch
from torch import nn
import torch.nn.functional as F

from .resnet import Bottleneck, ResNet, STAGE_BLOCKS


class ReafConv2d(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, g_i, g_m, stride=1, padding=None, bias=False):
        super().__init__()
        if not 1 <= g_m <= g_i:
            raise ValueError(f"REAF needs 1 <= G_M <= G_I, got G_I={g_i}, G_M={g_m}")
        g_o = comb(g_i, g_m)
        if in_channels % g_i:
            raise ValueError(f"REAF: C_in={in_channels} is not divisible by G_I={g_i}")
        if out_channels % g_o:
            raise ValueError(f"REAF: C_out={out_channels} is not divisible by G_O=C({g_i},{g_m})={g_o}")
        self.g_i, self.g_m, self.g_o = g_i, g_m, g_o
        self.stride, self.padding = stride, kernel_size // 2 if padding is None else padding
        a_in = in_channels // g_i
        self.subsets = tuple(combinations(range(g_i), g_m))
        index = [g * a_in + c for subset in self.subsets for g in subset for c in range(a_in)]
        self.register_buffer("index", torch.tensor(index, dtype=torch.long), persistent=False)
        self.weight = nn.Parameter(torch.empty(out_channels, g_m * a_in, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)

    def forward(self, x):
        gathered = x if self.g_o == 1 else x.index_select(1, self.index)
        return F.conv2d(gathered, self.weight, self.bias, self.stride, self.padding, 1, self.g_o)

    def extra_repr(self):
        return f"G_I={self.g_i}, G_M={self.g_m}, G_O={self.g_o}, weight={tuple(self.weight.shape)}"


def reaf_resnet50(width=88, out_width=70, g_i=8, g_m=4, num_classes=1000, stem="imagenet", variant="v1"):
    """ResNet-50 with the 3x3 of every bottleneck a REAF conv: C = width*2^s input channels,
    C' = out_width*2^s output channels (REAF paper Table 1/3/5). Defaults: (88/70, 8-4-70)."""

    def make_block(cin, s, stride):
        k = 2 ** s

        def middle(c_in, c_out, st):
            return ReafConv2d(c_in, c_out, 3, g_i, g_m, stride=st)

        return Bottleneck(cin, width * k, stride, variant, middle_conv=middle, mid_out=out_width * k,
                          out=256 * k), 256 * k

    return ResNet(STAGE_BLOCKS[50], make_block, num_classes, stem)


class ReafPlusProjection(nn.Module):
    """REAF+ (eq 8): the projection 1x1 conv split into g_o output groups, group l computing
    Conv(ReLU6_l(BN_l(O')), W_l) from the previous conv's pre-activation O'."""

    def __init__(self, in_channels, out_channels, g_o):
        super().__init__()
        if out_channels % g_o:
            raise ValueError(f"REAF+: C_out={out_channels} is not divisible by g_O={g_o}")
        self.branches = nn.ModuleList(
            nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU6(inplace=False),
                          nn.Conv2d(in_channels, out_channels // g_o, 1, bias=False))
            for _ in range(g_o))

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches], dim=1)


class InvertedResidual(nn.Module):
    """MobileNetV2 block; g_o > 0 applies REAF+ to its second pointwise conv."""

    def __init__(self, cin, cout, stride, expand, g_o=0):
        super().__init__()
        hidden = cin * expand
        layers = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)]
        if g_o:
            layers += [ReafPlusProjection(hidden, cout, g_o)]
        else:
            layers += [nn.BatchNorm2d(hidden), nn.ReLU6(), nn.Conv2d(hidden, cout, 1, bias=False)]
        layers += [nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.use_residual else self.conv(x)


# (expansion t, channels c, repeats n, stride s) of MobileNetV2 (Sandler et al. 2018, Table 2)
MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0); g_o = 2 gives REAF+ MobileNetV2 (REAF paper Table 7), 0 the plain one.
    stem="cifar" uses stride 1 in the first conv and the first stride-2 stage (32x32 inputs)."""

    def __init__(self, num_classes=1000, g_o=2, stem="imagenet", dropout=0.2):
        super().__init__()
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"unknown stem {stem!r}: expected 'imagenet' or 'cifar'")
        cifar = stem == "cifar"
        layers = [nn.Conv2d(3, 32, 3, 1 if cifar else 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6()]
        cin = 32
        for i, (t, c, n, s) in enumerate(MOBILENET_V2):
            if cifar and i == 1:
                s = 1
            for j in range(n):
                layers.append(InvertedResidual(cin, c, s if j == 0 else 1, t, g_o))
                cin = c
        layers += [nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def reaf_plus_mobilenet_v2(**kw):
    return MobileNetV2(**kw)


def mobilenet_v2(**kw):
    kw.setdefault("g_o", 0)
    return MobileNetV2(**kw)
