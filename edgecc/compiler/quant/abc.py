"""ABC-Net baseline: linear combinations of +-1 bases (thesis eq 3.5; Lin et al. 2017).

Weights (per tensor): D_i = sign(W - mean(W) + u_i std(W)), u_i spread evenly over
[-1, 1] (u = 0 for M = 1), sign(0) = +1; the coefficients eps_i solve the least-squares
fit W ~ sum_i eps_i D_i at every forward (the optimum of eq 3.5 for these bases).
Backward: straight-through (dW_bar/dW = 1), as the thesis states for eq 3.5.

Activations: A_bar = sum_j beta_j H_j with H_j = +1 if a >= theta_j else -1 (ABC-Net's
H_v(x) = sign(clip(x + v, 0, 1) - 0.5) with theta = 0.5 - v); theta and beta trainable,
initialized from calibration data (quantiles, then least squares). Backward: STE of
2 clip(x + v, 0, 1) - 1, i.e. slope 2 on [theta_j - 0.5, theta_j + 0.5).

Inference decomposition: conv(W_bar, A_bar) = sum_ij eps_i beta_j conv(D_i, H_j) with
D, H in {-1,+1} (XNOR + popcount kernels) and zero padding (a pad is 0, not +-1).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import InputError


def _sign(x: torch.Tensor) -> torch.Tensor:
    """+1 for x >= 0, -1 otherwise (eq 3.1)."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


def abc_weight_bases(w: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(D [M, *w.shape] in {-1,+1}, eps [M]) for the tensor w."""
    if m < 1:
        raise InputError(f"ABC weight bases M={m} must be >= 1")
    w = w.detach()
    u = torch.linspace(-1.0, 1.0, m, dtype=w.dtype, device=w.device) if m > 1 else w.new_zeros(1)
    centered = w - w.mean()
    d = _sign(centered.unsqueeze(0) + (u * w.std(unbiased=False)).view(-1, *([1] * w.dim())))
    a = d.reshape(m, -1).T.double()
    eps = torch.linalg.lstsq(a, w.reshape(-1, 1).double(), driver="gelsd").solution.reshape(-1)
    return d, eps.to(w.dtype)


class ABCWeightQuant(nn.Module):
    def __init__(self, m: int):
        super().__init__()
        if m < 1:
            raise InputError(f"ABC weight bases M={m} must be >= 1")
        self.m = int(m)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        d, eps = abc_weight_bases(w, self.m)
        w_bar = torch.tensordot(eps, d, dims=1)
        return w + (w_bar - w).detach()     # straight-through estimator

    def extra_repr(self):
        return f"M={self.m}"


class ABCActFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, theta, beta):
        shape = (-1,) + (1,) * a.dim()
        h = _sign(a.unsqueeze(0) - theta.view(shape))        # [N, *a.shape]
        ctx.save_for_backward(a, theta, beta, h)
        return torch.tensordot(beta, h, dims=1)

    @staticmethod
    def backward(ctx, g):
        a, theta, beta, h = ctx.saved_tensors
        shape = (-1,) + (1,) * a.dim()
        window = ((a.unsqueeze(0) - theta.view(shape)).abs() < 0.5).to(g.dtype) * 2.0
        dh = g.unsqueeze(0) * window                         # dC/da through each base
        grad_a = torch.tensordot(beta, dh, dims=1)
        grad_theta = -(beta * dh.reshape(beta.numel(), -1).sum(1))
        grad_beta = (g.unsqueeze(0) * h).reshape(beta.numel(), -1).sum(1)
        return grad_a, grad_theta, grad_beta


class ABCActQuant(nn.Module):
    """N shifted +-1 activation bases with trainable thresholds and betas."""

    def __init__(self, n: int):
        super().__init__()
        if n < 1:
            raise InputError(f"ABC activation bases N={n} must be >= 1")
        self.n = int(n)
        self.theta = nn.Parameter(torch.linspace(0.25, 1.5, self.n))
        self.beta = nn.Parameter(torch.full((self.n,), 0.5))
        self.observing = False
        self._seen: list[torch.Tensor] = []

    def forward(self, a):
        if self.observing:
            flat = a.detach().reshape(-1)
            self._seen.append(flat[torch.randperm(flat.numel())[:20000]].cpu())
            return a
        return ABCActFn.apply(a, self.theta, self.beta)

    @torch.no_grad()
    def init_from_observed(self):
        if not self._seen:
            raise InputError("ABC activation calibration saw no data")
        x = torch.cat(self._seen).double()
        self._seen.clear()
        # thresholds at evenly spaced quantiles of the nonzero part (ReLU inputs are mostly 0)
        pos = x[x > 0] if int((x > 0).sum()) >= self.n else x
        theta = torch.quantile(pos[: 1 << 20], torch.linspace(0, 1, self.n + 2, dtype=x.dtype)[1:-1])
        h = _sign(x.unsqueeze(0) - theta.view(-1, 1))
        beta = torch.linalg.lstsq(h.T, x.reshape(-1, 1), driver="gelsd").solution.reshape(-1)
        self.theta.copy_(theta.float())
        self.beta.copy_(beta.float())

    def bases(self, a: torch.Tensor) -> torch.Tensor:
        """H (N, *a.shape) in {-1,+1} as int8."""
        shape = (-1,) + (1,) * a.dim()
        return _sign(a.detach().unsqueeze(0) - self.theta.detach().view(shape)).to(torch.int8)

    def extra_repr(self):
        return f"N={self.n}"


def _decomposition(w: torch.Tensor, wq: ABCWeightQuant, aq: ABCActQuant) -> dict:
    d, eps = abc_weight_bases(w, wq.m)
    return {"weight_bases": d.to(torch.int8).cpu().numpy(), "alphas": eps.cpu().numpy(),
            "act_thresholds": aq.theta.detach().cpu().numpy().copy(),
            "betas": aq.beta.detach().cpu().numpy().copy()}


class ABCConv2d(nn.Conv2d):
    """Conv2d with ABC-Net input (N +-1 bases) and weight (M +-1 bases)."""

    def __init__(self, *args, m: int = 5, n: int = 5, **kw):
        super().__init__(*args, **kw)
        if self.padding_mode != "zeros":
            raise InputError(f"ABCConv2d supports zero padding only, got {self.padding_mode!r}")
        self.wq = ABCWeightQuant(m)
        self.aq = ABCActQuant(n)

    @classmethod
    def from_float(cls, conv: nn.Conv2d, m: int, n: int) -> "ABCConv2d":
        q = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                bias=conv.bias is not None, padding_mode=conv.padding_mode, m=m, n=n)
        q.load_state_dict(conv.state_dict(), strict=False)
        return q.to(conv.weight.device)

    def forward(self, x):
        if self.aq.observing:
            return self._conv_forward(self.aq(x), self.weight, self.bias)
        return self._conv_forward(self.aq(x), self.wq(self.weight), self.bias)

    @torch.no_grad()
    def abc_params(self) -> dict:
        """forward(x) == bias + sum_ij alphas[i] betas[j] conv(D[i], H_j(x)),
        H_j(x) = +1 where x >= act_thresholds[j] else -1; zero padding."""
        p = _decomposition(self.weight, self.wq, self.aq)
        p.update(bias=None if self.bias is None else self.bias.detach().cpu().numpy().copy(),
                 stride=tuple(self.stride), padding=tuple(self.padding),
                 dilation=tuple(self.dilation), groups=self.groups)
        return p


class ABCLinear(nn.Linear):
    def __init__(self, in_features, out_features, bias=True, m: int = 5, n: int = 5):
        super().__init__(in_features, out_features, bias=bias)
        self.wq = ABCWeightQuant(m)
        self.aq = ABCActQuant(n)

    @classmethod
    def from_float(cls, lin: nn.Linear, m: int, n: int) -> "ABCLinear":
        q = cls(lin.in_features, lin.out_features, bias=lin.bias is not None, m=m, n=n)
        q.load_state_dict(lin.state_dict(), strict=False)
        return q.to(lin.weight.device)

    def forward(self, x):
        if self.aq.observing:
            return F.linear(self.aq(x), self.weight, self.bias)
        return F.linear(self.aq(x), self.wq(self.weight), self.bias)

    @torch.no_grad()
    def abc_params(self) -> dict:
        p = _decomposition(self.weight, self.wq, self.aq)
        p["bias"] = None if self.bias is None else self.bias.detach().cpu().numpy().copy()
        return p
