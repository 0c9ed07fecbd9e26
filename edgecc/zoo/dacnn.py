"""Deep Anchored CNNs (DACNN paper, eq 1-6): one conv weight shared by many layers, each layer
with its own BN.

The shared weight is ONE nn.Conv2d (one nn.Parameter) owned by its section and applied
several times; per-layer BNs are separate modules. Sections are separated by 2x2 max pools
(3 pools -> 4 sections); the network ends with global average pooling and one FC.

- plain:  conv 3->128 (+BN+ReLU), then depth-2 applications of one shared 128x128 3x3 conv
          (each + own BN + ReLU), FC. depth counts the convs and the FC (DACNN-3 = conv,
          one shared layer, FC). depth >= 18: residual blocks of two shared convs
          (x + BN(conv(ReLU(BN(conv(x)))))), as the paper applies residual learning
          above 17 layers.
- mixed:  channels 3 -> 64 -> 128 -> 256 -> 512, one shared 3x3 weight per section and an
          unshared transition 3x3 conv (C -> 2C) at the start of sections 2-4.
          mixed14: the VGG-16 template (13 convs + FC), convs per section (2, 2, 3, 6).
          mixed18: the ResNet-18 template, two basic blocks per section; the first block of
          sections 2-4 has the transition as its first conv (stride 2) and a 1x1 conv + BN
          projection shortcut ("one more 1x1 conv if residual learning is adopted").
- regulators: an unshared 1x1 conv + BN + ReLU appended after every residual block (Fig 3).
"""
from torch import nn
import torch.nn.functional as F


class SharedConvBNReLU(nn.Module):
    """ReLU(BN_l(conv_shared(x))): applies a conv owned elsewhere with this layer's own BN."""

    def __init__(self, shared_conv, relu=True):
        super().__init__()
        # stored in a plain list so the shared conv is not registered again under this module
        self._shared = [shared_conv]
        self.bn = nn.BatchNorm2d(shared_conv.out_channels)
        self.relu = relu

    def forward(self, x):
        y = self.bn(self._shared[0](x))
        return F.relu(y) if self.relu else y


def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin, cout, stride=1, kernel_size=3):
        super().__init__(nn.Conv2d(cin, cout, kernel_size, stride, kernel_size // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


class Regulator(ConvBNReLU):
    def __init__(self, channels):
        super().__init__(channels, channels, kernel_size=1)


class SharedResidualBlock(nn.Module):
    """x + BN2(W(ReLU(BN1(W(x))))), then ReLU; W shared. With `transition`, the first conv is
    an unshared stride-2 C->2C conv and the shortcut a 1x1 conv + BN projection."""

    def __init__(self, shared_conv, transition_from=None, regulator=False):
        super().__init__()
        c = shared_conv.out_channels
        if transition_from is None:
            self.first = SharedConvBNReLU(shared_conv)
            self.shortcut = nn.Identity()
        else:
            self.first = ConvBNReLU(transition_from, c, stride=2)
            self.shortcut = nn.Sequential(nn.Conv2d(transition_from, c, 1, 2, bias=False), nn.BatchNorm2d(c))
        self.second = SharedConvBNReLU(shared_conv, relu=False)
        self.regulator = Regulator(c) if regulator else nn.Identity()

    def forward(self, x):
        return self.regulator(F.relu(self.shortcut(x) + self.second(self.first(x))))


class Section(nn.Module):
    """Owns (registers) the shared conv its layers use, or None when an earlier section owns it."""

    def __init__(self, shared_conv, layers):
        super().__init__()
        self.shared = shared_conv
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


class DACNN(nn.Module):
    def __init__(self, stem, sections, width, num_classes, pool_between_sections=True):
        super().__init__()
        self.stem = stem
        self.sections = nn.ModuleList(sections)
        self.pool_between = pool_between_sections
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        x = self.stem(x)
        for i, section in enumerate(self.sections):
            if i > 0 and self.pool_between:
                x = F.max_pool2d(x, 2)
            x = section(x)
        return self.fc(self.pool(x).flatten(1))


def split_even(n, parts=4):
    """n layers over `parts` sections, earlier sections get the remainder."""
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def dacnn_plain(depth=14, channels=128, num_classes=100, regulators=False):
    if depth < 3:
        raise ValueError(f"DACNN depth must be >= 3 (conv, shared conv, FC), got {depth}")
    shared = conv3x3(channels, channels)
    stem = ConvBNReLU(3, channels)
    shared_layers = depth - 2
    if depth >= 18:
        if shared_layers % 2:
            raise ValueError(f"residual DACNN-{depth}: depth-2 must be even (two shared convs per block)")
        per_section = split_even(shared_layers // 2)
        make = lambda: SharedResidualBlock(shared, regulator=regulators)
    else:
        if regulators:
            raise ValueError("DACNN regulators attach to residual blocks: use depth >= 18")
        per_section = split_even(shared_layers)
        make = lambda: SharedConvBNReLU(shared)
    # the one shared conv is registered by the first section only; the others just apply it
    sections = [Section(shared if i == 0 else None, [make() for _ in range(n)])
                for i, n in enumerate(per_section) if n > 0]
    return DACNN(stem, sections, channels, num_classes)


MIXED_CHANNELS = (64, 128, 256, 512)


def dacnn_mixed14(num_classes=100):
    """VGG-16 template: 13 convs (per section 2, 2, 3, 6) + FC."""
    sections = []
    for s, (c, n) in enumerate(zip(MIXED_CHANNELS, (2, 2, 3, 6))):
        shared = conv3x3(c, c)
        layers = [] if s == 0 else [ConvBNReLU(c // 2, c)]
        # section 1's first conv is the 3->64 stem
        layers += [SharedConvBNReLU(shared) for _ in range(n - 1)]
        sections.append(Section(shared, layers))
    return DACNN(ConvBNReLU(3, 64), sections, 512, num_classes)


def dacnn_mixed18(num_classes=100, regulators=False):
    """ResNet-18 template: 3x3 stem, two basic blocks per section, FC. Downsampling by the
    stride-2 transition conv (as ResNet), so no pooling between sections."""
    sections = []
    for s, c in enumerate(MIXED_CHANNELS):
        shared = conv3x3(c, c)
        first = SharedResidualBlock(shared, None if s == 0 else c // 2, regulators)
        sections.append(Section(shared, [first, SharedResidualBlock(shared, regulator=regulators)]))
    return DACNN(ConvBNReLU(3, 64), sections, 512, num_classes, pool_between_sections=False)
