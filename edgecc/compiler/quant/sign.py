"""Single sign binarization with a scale (XNOR-Net / Bi-Real style baseline, eq 3.1-3.2).

Weights: W_bar = alpha_o * sign(W) with alpha_o = mean |W| over output channel o
(XNOR-Net); backward straight-through, clipped to |W| <= 1.
Activations: H = sign(a - b_c) in {-1,+1} (sign(0) = +1) with a trainable per-channel
threshold b_c (initialized to the channel mean on calibration data), so the sign stays
informative when the input is a ReLU output (sign(relu(x) - b) = sign(x - b) for b > 0).
Backward: "ste" = 1 on |a - b| <= 1, or "bireal" = Bi-Real's approx-sign 2 - 2|a - b|
on |a - b| < 1.

Inference decomposition: conv(W_bar, H) = alpha_o * conv(sign(W), H), one XNOR conv per
layer, zero padding (a pad is 0, not +-1).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import InputError

BACKWARDS = ("ste", "bireal")


def _sign(x):
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


class SignActFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, threshold, backward_kind: str):
        x = a - threshold
        ctx.save_for_backward(x)
        ctx.kind = backward_kind
        return _sign(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        if ctx.kind == "ste":
            dx = g * (x.abs() <= 1).to(g.dtype)
        else:
            dx = g * (2.0 - 2.0 * x.abs()).clamp(min=0)
        # threshold has shape [C, 1, 1] (conv) or [C] (linear): sum over the rest
        dims = [0] + list(range(2, x.dim()))
        return dx, -dx.sum(dim=dims).reshape(-1, *([1] * (x.dim() - 2))), None


class SignActQuant(nn.Module):
    def __init__(self, channels: int, spatial: bool, backward: str = "bireal"):
        super().__init__()
        if backward not in BACKWARDS:
            raise InputError(f"sign activation backward {backward!r} not one of {BACKWARDS}")
        self.backward_kind = backward
        self.threshold = nn.Parameter(torch.zeros(channels, 1, 1) if spatial else torch.zeros(channels))
        self.observing = False
        self._sum = None
        self._count = 0

    def forward(self, a):
        if a.shape[1] != self.threshold.shape[0]:
            raise InputError(f"sign activation expects {self.threshold.shape[0]} channels, got shape {tuple(a.shape)}")
        if self.observing:
            dims = [0] + list(range(2, a.dim()))
            s = a.detach().sum(dim=dims)
            self._sum = s if self._sum is None else self._sum + s
            self._count += a.numel() // a.shape[1]
            return a
        return SignActFn.apply(a, self.threshold, self.backward_kind)

    @torch.no_grad()
    def init_from_observed(self):
        if self._sum is None:
            raise InputError("sign activation calibration saw no data")
        self.threshold.copy_((self._sum / self._count).reshape(self.threshold.shape))
        self._sum, self._count = None, 0

    def bases(self, a):
        return _sign(a.detach() - self.threshold.detach()).to(torch.int8)


def sign_weight(w: torch.Tensor) -> torch.Tensor:
    """alpha_o * sign(W), STE (clipped) backward."""
    alpha = w.detach().abs().reshape(w.shape[0], -1).mean(1).reshape(-1, *([1] * (w.dim() - 1)))
    w_bar = alpha * _sign(w.detach())
    clipped = w * (w.detach().abs() <= 1).to(w.dtype)
    return clipped + (w_bar - clipped).detach()


class SignConv2d(nn.Conv2d):
    def __init__(self, *args, act_backward: str = "bireal", **kw):
        super().__init__(*args, **kw)
        if self.padding_mode != "zeros":
            raise InputError(f"SignConv2d supports zero padding only, got {self.padding_mode!r}")
        self.aq = SignActQuant(self.in_channels, spatial=True, backward=act_backward)

    @classmethod
    def from_float(cls, conv: nn.Conv2d, act_backward: str = "bireal") -> "SignConv2d":
        q = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                bias=conv.bias is not None, padding_mode=conv.padding_mode, act_backward=act_backward)
        q.load_state_dict(conv.state_dict(), strict=False)
        return q.to(conv.weight.device)

    def forward(self, x):
        if self.aq.observing:
            return self._conv_forward(self.aq(x), self.weight, self.bias)
        return self._conv_forward(self.aq(x), sign_weight(self.weight), self.bias)

    @torch.no_grad()
    def sign_params(self) -> dict:
        """forward(x) == bias + alphas[o] * conv(weight_signs, sign(x - act_thresholds[c]))."""
        w = self.weight.detach()
        return {"weight_signs": _sign(w).to(torch.int8).cpu().numpy(),
                "alphas": w.abs().reshape(w.shape[0], -1).mean(1).cpu().numpy(),
                "act_thresholds": self.aq.threshold.detach().reshape(-1).cpu().numpy().copy(),
                "bias": None if self.bias is None else self.bias.detach().cpu().numpy().copy(),
                "stride": tuple(self.stride), "padding": tuple(self.padding),
                "dilation": tuple(self.dilation), "groups": self.groups}


class SignLinear(nn.Linear):
    def __init__(self, in_features, out_features, bias=True, act_backward: str = "bireal"):
        super().__init__(in_features, out_features, bias=bias)
        self.aq = SignActQuant(in_features, spatial=False, backward=act_backward)

    @classmethod
    def from_float(cls, lin: nn.Linear, act_backward: str = "bireal") -> "SignLinear":
        q = cls(lin.in_features, lin.out_features, bias=lin.bias is not None, act_backward=act_backward)
        q.load_state_dict(lin.state_dict(), strict=False)
        return q.to(lin.weight.device)

    def forward(self, x):
        if self.aq.observing:
            return F.linear(self.aq(x), self.weight, self.bias)
        return F.linear(self.aq(x), sign_weight(self.weight), self.bias)

    @torch.no_grad()
    def sign_params(self) -> dict:
        w = self.weight.detach()
        return {"weight_signs": _sign(w).to(torch.int8).cpu().numpy(),
                "alphas": w.abs().mean(1).cpu().numpy(),
                "act_thresholds": self.aq.threshold.detach().cpu().numpy().copy(),
                "bias": None if self.bias is None else self.bias.detach().cpu().numpy().copy()}
