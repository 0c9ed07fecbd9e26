"""Rolling pointwise convolution, RPW-gX-oY (3DRF paper, Fig 5 and its prose; the paper's
listing is not used).

Each of the C_out 1x1 filters reads a window of width = C_in / g consecutive input channels;
filter f's window starts where filter f-1's window started plus (width - overlap), with
overlap = int(o * width) channels shared by adjacent filters, and wraps around modulo C_in:
    channels(f) = [(f * step + t) mod C_in for t in range(width)],  step = width - overlap.
Computed as a channel gather (C_out * width channels) followed by a 1x1 grouped conv with
C_out groups. The index table is stored explicitly (`index`, shape (C_out, width)).
"""
import torch
from torch import nn
import torch.nn.functional as F


class RollingPointwiseConv2d(nn.Module):
    def __init__(self, in_channels, out_channels, groups, overlap, bias=False):
        super().__init__()
        if groups < 1 or in_channels % groups:
            raise ValueError(f"RPW: C_in={in_channels} is not divisible by g={groups}")
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"RPW: overlap ratio must be in [0, 1), got {overlap}")
        width = in_channels // groups
        step = width - int(overlap * width)
        self.in_channels, self.out_channels, self.width = in_channels, out_channels, width
        index = [[(f * step + t) % in_channels for t in range(width)] for f in range(out_channels)]
        self.register_buffer("index", torch.tensor(index, dtype=torch.long), persistent=False)
        self.weight = nn.Parameter(torch.empty(out_channels, width, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)

    def forward(self, x):
        gathered = x.index_select(1, self.index.flatten())
        return F.conv2d(gathered, self.weight, self.bias, 1, 0, 1, self.out_channels)

    def dense_weight(self):
        """The equivalent dense (C_out, C_in, 1, 1) weight (zeros outside each window)."""
        w = torch.zeros(self.out_channels, self.in_channels, 1, 1, dtype=self.weight.dtype)
        rows = torch.arange(self.out_channels).unsqueeze(1).expand_as(self.index)
        # index_put_ with accumulate: a window wider than C_in would repeat channels
        w[:, :, 0, 0].index_put_((rows, self.index), self.weight.detach()[:, :, 0, 0], accumulate=True)
        return w
