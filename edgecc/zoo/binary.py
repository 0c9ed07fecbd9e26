"""Sign activations and scaled sign weights for the binary zoo models (thesis eq 4.1-4.2).

Both are written so that the forward value is exactly the binary one while the
backward pass sees a surrogate: `out = surrogate + (binary - surrogate).detach()`.
This keeps the models exportable with torch.export (no custom autograd Function).
"""
import torch
from torch import nn
import torch.nn.functional as F


def sign(x):
    """sign with sign(0) = +1, so every value maps to exactly one of {-1, +1}."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


class BinaryActivation(nn.Module):
    """Forward sign(x); backward the Bi-Real approx-sign derivative (eq 4.2):
    2 + 2x on [-1, 0), 2 - 2x on [0, 1), 0 elsewhere."""

    def forward(self, x):
        # piecewise polynomial whose derivative is eq 4.2
        clipped = x.clamp(-1.0, 1.0)
        approx = torch.where(clipped < 0, 2 * clipped + clipped * clipped, 2 * clipped - clipped * clipped)
        return approx + (sign(x) - approx).detach()


def binarize_weight(w):
    """s * sign(W) with s = mean|W| per output channel (eq 4.1); straight-through gradient."""
    scale = w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)
    binary = scale * sign(w)
    return w + (binary - w).detach()


class BinaryConv2d(nn.Conv2d):
    """Conv2d whose weight is binarized to mean|W| * sign(W) in the forward pass.
    It does not binarize its input: put a BinaryActivation in front (Bi-Real order)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=False)

    def forward(self, x):
        return F.conv2d(x, binarize_weight(self.weight), None, self.stride, self.padding, self.dilation, self.groups)


class SignConvBN(nn.Module):
    """BN(BConv(sign(x))): the binary 3x3 conv unit shared by Bi-Real, NASB and UA."""

    def __init__(self, in_channels, out_channels, stride=1, kernel_size=3, dilation=1):
        super().__init__()
        self.act = BinaryActivation()
        pad = dilation * (kernel_size // 2)
        self.conv = BinaryConv2d(in_channels, out_channels, kernel_size, stride=stride, padding=pad, dilation=dilation)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x):
        return self.bn(self.conv(self.act(x)))


class AvgPoolProjection(nn.Module):
    """Bi-Real downsample shortcut, full precision: AvgPool(stride) -> 1x1 conv -> BN.
    The pool comes first so the 1x1 conv runs at the lower resolution (this is what
    makes the thesis' FLOP counts come out, Table 5.4)."""

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.pool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x):
        return self.bn(self.conv(self.pool(x)))
