"""Random-weight PyTorch models for the frontend and equivalence tests: the real
layer structure of well-known CNNs (the trained zoo lives in edgecc/zoo/).

Batch-norm running statistics and affine parameters are randomized so BN is not a
no-op. Every builder returns (eval-mode module, example input tuple).
"""
from __future__ import annotations

import torch
import torch.nn as nn


def randomize_batch_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(c, generator=g) * 0.2)
    return model.eval()


def conv_bn(cin, cout, k, stride=1, groups=1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


# ---- ResNet-18 ------------------------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:  # 1x1 stride-2 projection shortcut
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet18(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths, cin = (64, 128, 256, 512), 64
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(cin, w, stride), BasicBlock(w, w, 1)))
            cin = w
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18():
    torch.manual_seed(18)
    return randomize_batch_norms(ResNet18(), 18), (torch.randn(1, 3, 224, 224),)


# ---- MobileNetV2 ----------------------------------------------------------------
class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else [*conv_bn(cin, hidden, 1), nn.ReLU6(inplace=True)]
        layers += [*conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6(inplace=True),
                   *conv_bn(hidden, cout, 1)]  # linear bottleneck: no activation
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    # (expansion t, channels c, repeats n, first stride s), as in the paper
    SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, num_classes=1000):
        super().__init__()
        layers, cin = [*conv_bn(3, 32, 3, 2), nn.ReLU6(inplace=True)], 32
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers += [*conv_bn(cin, 1280, 1), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v2():
    """Full width (1.0) and the full 224x224 input."""
    torch.manual_seed(2)
    return randomize_batch_norms(MobileNetV2(), 2), (torch.randn(1, 3, 224, 224),)


# ---- DenseNet-style blocks --------------------------------------------------------
class DenseLayer(nn.Module):
    def __init__(self, cin, growth):
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, 4 * growth, 1, bias=False),
                                  nn.BatchNorm2d(4 * growth), nn.ReLU(),
                                  nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False))

    def forward(self, x):
        return torch.cat([x, self.body(x)], 1)  # every layer sees all earlier features


class DenseNetTiny(nn.Module):
    def __init__(self, growth=8, layers=4, num_classes=10):
        super().__init__()
        c = 2 * growth
        blocks = [nn.Conv2d(3, c, 3, padding=1, bias=False)]
        for b in range(2):
            for _ in range(layers):
                blocks.append(DenseLayer(c, growth))
                c += growth
            if b == 0:  # transition: compress channels, halve resolution
                blocks += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2)]
                c //= 2
        blocks += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*blocks)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


def densenet_tiny():
    torch.manual_seed(121)
    return randomize_batch_norms(DenseNetTiny(), 121), (torch.randn(2, 3, 64, 64),)


# ---- one conv weight used by several layers -------------------------------------
class SharedConvNet(nn.Module):
    """One nn.Conv2d applied three times, each use followed by its own batch norm."""

    def __init__(self, c=16, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(3, c, 3, 2), nn.ReLU())
        self.shared = nn.Conv2d(c, c, 3, padding=1, bias=True)
        self.bns = nn.ModuleList(nn.BatchNorm2d(c) for _ in range(3))
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        x = self.stem(x)
        for bn in self.bns:
            x = torch.relu(bn(self.shared(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def shared_conv_net():
    torch.manual_seed(3)
    return randomize_batch_norms(SharedConvNet(), 3), (torch.randn(1, 3, 32, 32),)


MODELS = {"resnet18": resnet18, "mobilenet_v2": mobilenet_v2, "densenet_tiny": densenet_tiny,
          "shared_conv": shared_conv_net}
