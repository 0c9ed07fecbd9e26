"""AW-convolution and AW-ResNet50 (thesis ch.7, eq 7.4-7.8, defaults r_C1 = C1, r = 16).

    O  = Conv(I, K) + AW-Conv(I, A * K)                                  (eq 7.6, AK = K + A*K)
    A  = Expand_C1(Sigmoid(BN(PW2(ReLU(BN(PW1(AvgPool(I))))))))          (eq 7.7-7.8)
AvgPool is an adaptive average pool to the kernel size h x w, PW1: C1 -> C2/r and
PW2: C2/r -> C2 are 1x1 convs without bias. With r_C1 = C1, PW2's output (N, C2, h, w) is
broadcast over the C1 axis (Expand_C1), so every sample n gets its own weights
K * (1 + A[n]) of shape (C2, C1, h, w).

The per-sample weighted conv is computed exactly as ONE grouped conv over the batch: the
batch is folded into the channel axis (1, N*C1, H, W) and convolved with the stacked
per-sample weights (N*C2, C1, h, w) using groups = N. This is equal to Conv(I, K) +
Conv(I, A[n]*K) per sample (linearity of convolution in the weights).
Extra parameters per AW conv (eq 7.9 with r_C1 = C1): C1*C2/r + C2^2/r + 2*C2/r + 2*C2.
"""
from torch import nn
import torch.nn.functional as F

from .resnet import Bottleneck, ResNet, STAGE_BLOCKS


class AWConv2d(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=None, reduction=16):
        super().__init__()
        if out_channels < reduction or out_channels % reduction:
            raise ValueError(f"AW-conv: C2={out_channels} must be a positive multiple of r={reduction}")
        self.kernel_size, self.stride = kernel_size, stride
        self.padding = kernel_size // 2 if padding is None else padding
        self.weight = nn.Parameter(nn.Conv2d(in_channels, out_channels, kernel_size, bias=False).weight.detach())
        squeeze = out_channels // reduction
        self.pool = nn.AdaptiveAvgPool2d(kernel_size)
        self.pw1 = nn.Conv2d(in_channels, squeeze, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(squeeze)
        self.pw2 = nn.Conv2d(squeeze, out_channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def attention(self, x):
        """A_2 of eq 7.7: (N, C2, h, w); Expand_C1 is the broadcast in forward."""
        a = F.relu(self.bn1(self.pw1(self.pool(x))))
        return self.bn2(self.pw2(a)).sigmoid()

    def forward(self, x):
        n, c1, h, w = x.shape
        c2 = self.weight.shape[0]
        a = self.attention(x)                                              # (N, C2, kh, kw)
        weights = self.weight.unsqueeze(0) * (1.0 + a.unsqueeze(2))        # (N, C2, C1, kh, kw)
        out = F.conv2d(x.reshape(1, n * c1, h, w), weights.reshape(n * c2, c1, self.kernel_size, self.kernel_size),
                       None, self.stride, self.padding, 1, n)
        return out.reshape(n, c2, out.shape[2], out.shape[3])


def aw_resnet50(num_classes=1000, stem="imagenet", variant="v1", reduction=16):
    """ResNet-50 with every bottleneck's 3x3 conv an AW-conv (thesis: 25.72M parameters, 3.87 GMACs)."""
    planes = (64, 128, 256, 512)

    def make_block(cin, s, stride):
        def middle(c_in, c_out, st):
            return AWConv2d(c_in, c_out, 3, stride=st, reduction=reduction)

        return Bottleneck(cin, planes[s], stride, variant, middle_conv=middle), planes[s] * 4

    return ResNet(STAGE_BLOCKS[50], make_block, num_classes, stem)
