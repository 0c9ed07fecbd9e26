"""MobileNet v1 (Howard et al. 2017) for the 3DRF analysis, optionally with rolling pointwise
convs (the 3DRF paper's DW + RPW block) instead of the dense pointwise convs.

stem="imagenet": first conv stride 2 (224x224 -> 7x7). stem="cifar": first conv stride 1.
"""
from torch import nn

from .rpw import RollingPointwiseConv2d

# (output channels, stride of the depthwise conv) of the 13 depthwise-separable blocks
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
          (512, 1), (1024, 2), (1024, 1))


def conv_bn_relu(conv, channels):
    return [conv, nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]


class MobileNetV1(nn.Module):
    def __init__(self, num_classes=1000, stem="imagenet", width_mult=1.0, rpw=None):
        """rpw=(g, overlap) replaces every pointwise conv with RPW-g<g>-o<overlap>."""
        super().__init__()
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"unknown stem {stem!r}: expected 'imagenet' or 'cifar'")
        c = int(32 * width_mult)
        layers = conv_bn_relu(nn.Conv2d(3, c, 3, 2 if stem == "imagenet" else 1, 1, bias=False), c)
        for out, stride in BLOCKS:
            out = int(out * width_mult)
            layers += conv_bn_relu(nn.Conv2d(c, c, 3, stride, 1, groups=c, bias=False), c)
            pw = nn.Conv2d(c, out, 1, bias=False) if rpw is None else RollingPointwiseConv2d(c, out, *rpw)
            layers += conv_bn_relu(pw, out)
            c = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def mobilenet_v1(**kw):
    return MobileNetV1(**kw)
