"""Piecewise Approximation (PA) of weights and activations (thesis ch.3, eq 3.6-3.19).

Weights (per tensor, eq 3.6-3.9): M endpoints u = c * std(W) (table below), M nonzero
pieces and a zero piece [u_{M/2}, u_{M/2+1}); alpha_i = mean of the weights in piece i,
recomputed from W at every forward (not trainable). Backward is the piecewise-linear
surrogate of eq 3.8: on [s_{k-1}, s_k) (s = midpoints of u, eq 3.9) the slope is
lambda_W times the forward jump at u_k.

Activations (eq 3.10-3.14): N trainable increasing endpoints v and trainable betas;
a < v_1 -> 0 (so every negative value maps to 0 while v_1 > 0), v_j <= a < v_{j+1} -> beta_j,
a >= v_N -> beta_N. Backward eq 3.11 with t_j = midpoints of v, t_0 = 2 v_1 - t_1 (the
thesis prints "2 v_0 - s_1", a typo: this mirrors t_1 around v_1) and t_N = v_N + lambda_Delta.

Boundary rule used everywhere (forward and planes): every piece is closed on the left
and open on the right, i.e. the piece index of x is the number of endpoints <= x.

Inference decomposition (eq 3.15-3.19), exposed by `PAConv2d.pa_params()`:
W_bar = sum_i alpha_i T_i, A_bar = sum_j beta_j V_j with one-hot planes T_i, V_j in {0,1},
so conv(W_bar, A_bar) = sum_ij alpha_i beta_j conv(T_i, V_j). Zero padding is exact:
a padded 0 is below v_1, i.e. in no activation plane.

Deviation from the thesis, on purpose: eq 3.14 prints dC/dv_i = +lambda_A (beta_i -
beta_{i-1}) sum(g). Raising v_i moves inputs near v_i from beta_i down to beta_{i-1}, so
the derivative of the forward is negative; we use -lambda_A (beta_i - beta_{i-1}) sum(g)
(the printed sign would make gradient descent move v the wrong way).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import InputError

# Weight endpoints in units of std(W). M = 8 is Table 3.1. For M = 2, 4, 6 (our
# generalization) these are the Lloyd-Max thresholds of N(0, 1) with a forced zero
# level, rounded to 0.05 (0.612; 0.382 1.244; 0.280 0.874 1.611).
WEIGHT_ENDPOINTS_STD = {
    2: (-0.6, 0.6),
    4: (-1.25, -0.4, 0.4, 1.25),
    6: (-1.6, -0.85, -0.3, 0.3, 0.85, 1.6),
    8: (-1.5, -1.0, -0.5, -0.25, 0.25, 0.5, 1.0, 1.5),
}


def _check_m(m: int) -> int:
    if m not in WEIGHT_ENDPOINTS_STD:
        raise InputError(f"PA weight bases M={m} not supported; choose one of {sorted(WEIGHT_ENDPOINTS_STD)}")
    return m


def _check_n(n: int) -> int:
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"PA activation bases N={n} must be a positive integer")
    return int(n)


# ---- weights ---------------------------------------------------------------------

def weight_endpoints(w: torch.Tensor, m: int) -> torch.Tensor:
    """u_1..u_M (eq 3.6): the table times the population std of the whole tensor."""
    c = torch.tensor(WEIGHT_ENDPOINTS_STD[_check_m(m)], dtype=w.dtype, device=w.device)
    return c * w.detach().std(unbiased=False)


def weight_piece_index(w: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Number of endpoints <= w, in 0..M; M/2 is the zero piece."""
    return torch.bucketize(w.detach(), u, right=True)


def weight_alphas(w: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """alpha_1..alpha_M (eq 3.7): mean of the weights in each nonzero piece.

    An empty piece (only in degenerate tensors) gets the middle of its interval, the
    outer intervals being closed at u_1 - std/2 and u_M + std/2; it affects only the
    backward slopes, never the forward."""
    m = u.numel()
    w = w.detach().reshape(-1)
    idx = weight_piece_index(w, u)
    sums = torch.zeros(m + 1, dtype=w.dtype, device=w.device).index_add_(0, idx, w)
    counts = torch.bincount(idx, minlength=m + 1).to(w.dtype)
    half = 0.5 * w.std(unbiased=False)
    edges = torch.cat([(u[0] - half).reshape(1), u, (u[-1] + half).reshape(1)])
    mids = 0.5 * (edges[:-1] + edges[1:])
    means = torch.where(counts > 0, sums / counts.clamp(min=1), mids)
    return torch.cat([means[: m // 2], means[m // 2 + 1:]])


def weight_levels(alphas: torch.Tensor) -> torch.Tensor:
    """The M+1 forward values per piece index: alphas with 0 inserted in the middle."""
    m = alphas.numel()
    zero = torch.zeros(1, dtype=alphas.dtype, device=alphas.device)
    return torch.cat([alphas[: m // 2], zero, alphas[m // 2:]])


class PAWeightFn(torch.autograd.Function):
    """Forward eq 3.6, backward eq 3.8 (u, alphas are constants w.r.t. W)."""

    @staticmethod
    def forward(ctx, w, u, alphas, lambda_w: float):
        q = weight_levels(alphas)
        ctx.save_for_backward(w, u, q)
        ctx.lambda_w = lambda_w
        return q[weight_piece_index(w, u)]

    @staticmethod
    def backward(ctx, g):
        w, u, q = ctx.saved_tensors
        s = 0.5 * (u[:-1] + u[1:])                    # eq 3.9
        interval = torch.bucketize(w, s, right=True)  # 0..M-1; interval k holds u_{k+1}
        slopes = ctx.lambda_w * (q[1:] - q[:-1])      # jump at u_1..u_M
        return g * slopes[interval], None, None, None


class PAWeightQuant(nn.Module):
    """Per-tensor PA weight approximation with M nonzero pieces."""

    def __init__(self, m: int, lambda_w: float = 1.0):
        super().__init__()
        self.m = _check_m(m)
        self.lambda_w = float(lambda_w)

    def params(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = weight_endpoints(w, self.m)
        return u, weight_alphas(w, u)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        u, alphas = self.params(w)
        return PAWeightFn.apply(w, u, alphas, self.lambda_w)

    def planes(self, w: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(T, alphas): T[i] in {0,1} with W_bar = sum_i alphas[i] T[i] (eq 3.15-3.16)."""
        u, alphas = self.params(w)
        idx = weight_piece_index(w, u)
        piece = torch.arange(self.m + 1, device=w.device)
        piece = torch.cat([piece[: self.m // 2], piece[self.m // 2 + 1:]])  # skip zero piece
        t = (idx.unsqueeze(0) == piece.view(-1, *([1] * w.dim()))).to(torch.uint8)
        return t.cpu().numpy(), alphas.detach().cpu().numpy()

    def extra_repr(self):
        return f"M={self.m}, lambda_w={self.lambda_w}"


# ---- activations -------------------------------------------------------------------

def act_backward_endpoints(v: torch.Tensor, lambda_delta: float) -> torch.Tensor:
    """t_0..t_N of eq 3.12 (t_0 mirrors t_1 around v_1)."""
    t_last = (v[-1] + lambda_delta).reshape(1)
    inner = 0.5 * (v[:-1] + v[1:])
    t_1 = inner[:1] if inner.numel() else t_last
    t_0 = 2.0 * v[:1] - t_1
    return torch.cat([t_0, inner, t_last])


class PAActFn(torch.autograd.Function):
    """Forward eq 3.10; backward eq 3.11 (input), 3.13 (beta), 3.14 (v, sign fixed)."""

    @staticmethod
    def forward(ctx, a, v, beta, lambda_a: float, lambda_delta: float):
        a = a.contiguous()
        k = torch.bucketize(a, v, right=True)           # 0..N, 0 = below v_1
        levels = torch.cat([beta.new_zeros(1), beta])
        ctx.save_for_backward(a, v, beta, k)
        ctx.lambdas = (lambda_a, lambda_delta)
        return levels[k]

    @staticmethod
    def backward(ctx, g):
        a, v, beta, k = ctx.saved_tensors
        lambda_a, lambda_delta = ctx.lambdas
        n = v.numel()
        t = act_backward_endpoints(v, lambda_delta)
        r = torch.bucketize(a, t, right=True)           # 0..N+1; r in 1..N: [t_{r-1}, t_r)
        jumps = lambda_a * (beta - torch.cat([beta.new_zeros(1), beta[:-1]]))
        slopes = torch.cat([beta.new_zeros(1), jumps, beta.new_zeros(1)])
        grad_a = g * slopes[r]
        gf = g.reshape(-1)
        grad_beta = g.new_zeros(n + 1).index_add_(0, k.reshape(-1), gf)[1:]
        sum_near_v = g.new_zeros(n + 2).index_add_(0, r.reshape(-1), gf)[1:n + 1]
        grad_v = -jumps * sum_near_v
        return grad_a, grad_v, grad_beta, None, None


def lloyd_zero_levels(samples: torch.Tensor, n: int, iters: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """MSE-optimal (v, beta) for a quantizer with a fixed 0 level plus n levels
    (1-D Lloyd iteration), the data-driven init of the activation approximation."""
    x = samples.detach().reshape(-1).double()
    pos = x[x > 0]
    if pos.numel() < n:
        raise InputError(f"PA activation calibration: need at least {n} positive samples, got {pos.numel()}")
    qs = torch.linspace(0.5 / n, 1 - 0.5 / n, n, dtype=x.dtype)
    beta = torch.quantile(pos[: 1 << 20], qs)
    for _ in range(iters):
        levels = torch.cat([x.new_zeros(1), beta])
        v = 0.5 * (levels[:-1] + levels[1:])
        k = torch.bucketize(x, v, right=True)
        sums = x.new_zeros(n + 1).index_add_(0, k, x)
        counts = torch.bincount(k, minlength=n + 1).to(x.dtype)
        beta = torch.where(counts[1:] > 0, sums[1:] / counts[1:].clamp(min=1), beta)
        beta = torch.cummax(beta, 0).values   # keep levels increasing
    levels = torch.cat([x.new_zeros(1), beta])
    v = 0.5 * (levels[:-1] + levels[1:])
    return v.float(), beta.float()


class PAActQuant(nn.Module):
    """Per-tensor PA activation approximation with N trainable endpoints and betas.

    Modes: normal (quantize) and `observing` (identity, records samples for
    `init_from_observed`, used by calibration)."""

    MIN_GAP = 1e-3   # kept between consecutive endpoints and below v_1 by `constrain_`

    def __init__(self, n: int, lambda_a: float = 1.0, lambda_delta: float = 0.5):
        super().__init__()
        self.n = _check_n(n)
        self.lambda_a = float(lambda_a)
        self.lambda_delta = float(lambda_delta)
        # placeholder init (overwritten by calibration): levels 1..N, thresholds between
        self.beta = nn.Parameter(torch.arange(1, self.n + 1, dtype=torch.float32) * 0.5)
        self.v = nn.Parameter(torch.arange(self.n, dtype=torch.float32) * 0.5 + 0.25)
        self.observing = False
        self._seen: list[torch.Tensor] = []

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        if self.observing:
            flat = a.detach().reshape(-1)
            self._seen.append(flat[torch.randperm(flat.numel())[:20000]].cpu())
            return a
        return PAActFn.apply(a, self.v, self.beta, self.lambda_a, self.lambda_delta)

    @torch.no_grad()
    def init_from_observed(self):
        if not self._seen:
            raise InputError("PA activation calibration saw no data (did the calibration forward reach this layer?)")
        v, beta = lloyd_zero_levels(torch.cat(self._seen), self.n)
        self._seen.clear()
        self.v.copy_(v)
        self.beta.copy_(beta)
        self.constrain_()

    @torch.no_grad()
    def constrain_(self):
        """Keep MIN_GAP <= v_1 < v_2 < ... (call after each optimizer step)."""
        v = self.v.clamp(min=self.MIN_GAP)
        for j in range(1, self.n):
            v[j] = torch.maximum(v[j], v[j - 1] + self.MIN_GAP)
        self.v.copy_(v)

    def check_sorted(self):
        v = self.v.detach()
        if self.n > 1 and not bool((v[1:] > v[:-1]).all()):
            raise InputError(f"PA activation endpoints must increase, got {v.tolist()} (call constrain_())")

    def planes(self, a: torch.Tensor) -> torch.Tensor:
        """V (N, *a.shape) in {0,1}: V_j = [v_j <= a < v_{j+1}], V_N = [a >= v_N]."""
        self.check_sorted()
        k = torch.bucketize(a.detach(), self.v.detach(), right=True)
        ids = torch.arange(1, self.n + 1, device=a.device).view(-1, *([1] * a.dim()))
        return (k.unsqueeze(0) == ids).to(torch.uint8)

    def extra_repr(self):
        return f"N={self.n}, lambda_a={self.lambda_a}, lambda_delta={self.lambda_delta}"


# ---- layers ------------------------------------------------------------------------

class PAConv2d(nn.Conv2d):
    """Conv2d whose input is PA-approximated with N bases and weight with M bases."""

    def __init__(self, *args, m: int = 4, n: int = 5, lambda_w: float = 1.0,
                 lambda_a: float = 1.0, lambda_delta: float = 0.5, **kw):
        super().__init__(*args, **kw)
        if self.padding_mode != "zeros":
            raise InputError(f"PAConv2d supports zero padding only, got padding_mode={self.padding_mode!r}")
        self.wq = PAWeightQuant(m, lambda_w)
        self.aq = PAActQuant(n, lambda_a, lambda_delta)

    @classmethod
    def from_float(cls, conv: nn.Conv2d, m: int, n: int, **kw) -> "PAConv2d":
        q = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                bias=conv.bias is not None, padding_mode=conv.padding_mode, m=m, n=n, **kw)
        q.load_state_dict(conv.state_dict(), strict=False)
        return q.to(conv.weight.device)

    def forward(self, x):
        if self.aq.observing:    # calibration sees the float network
            return self._conv_forward(self.aq(x), self.weight, self.bias)
        return self._conv_forward(self.aq(x), self.wq(self.weight), self.bias)

    @torch.no_grad()
    def pa_params(self) -> dict:
        """Inference decomposition: forward(x) == bias + sum_ij alphas[i] betas[j] *
        conv(T[i], V_j(x)) with V_j(x) = [v[j] <= x < v[j+1]] (last: x >= v[N-1]) and
        this layer's stride/padding/dilation/groups (zero padding)."""
        self.aq.check_sorted()
        t, alphas = self.wq.planes(self.weight)
        return {
            "weight_planes": t, "alphas": alphas,
            "act_endpoints": self.aq.v.detach().cpu().numpy().copy(),
            "betas": self.aq.beta.detach().cpu().numpy().copy(),
            "bias": None if self.bias is None else self.bias.detach().cpu().numpy().copy(),
            "stride": tuple(self.stride), "padding": tuple(self.padding),
            "dilation": tuple(self.dilation), "groups": self.groups,
        }


class PALinear(nn.Linear):
    """Linear layer with PA-approximated input (N bases) and weight (M bases)."""

    def __init__(self, in_features, out_features, bias=True, m: int = 4, n: int = 5,
                 lambda_w: float = 1.0, lambda_a: float = 1.0, lambda_delta: float = 0.5):
        super().__init__(in_features, out_features, bias=bias)
        self.wq = PAWeightQuant(m, lambda_w)
        self.aq = PAActQuant(n, lambda_a, lambda_delta)

    @classmethod
    def from_float(cls, lin: nn.Linear, m: int, n: int, **kw) -> "PALinear":
        q = cls(lin.in_features, lin.out_features, bias=lin.bias is not None, m=m, n=n, **kw)
        q.load_state_dict(lin.state_dict(), strict=False)
        return q.to(lin.weight.device)

    def forward(self, x):
        if self.aq.observing:    # calibration sees the float network
            return F.linear(self.aq(x), self.weight, self.bias)
        return F.linear(self.aq(x), self.wq(self.weight), self.bias)

    @torch.no_grad()
    def pa_params(self) -> dict:
        """forward(x) == bias + sum_ij alphas[i] betas[j] * V_j(x) @ T[i].T."""
        self.aq.check_sorted()
        t, alphas = self.wq.planes(self.weight)
        return {
            "weight_planes": t, "alphas": alphas,
            "act_endpoints": self.aq.v.detach().cpu().numpy().copy(),
            "betas": self.aq.beta.detach().cpu().numpy().copy(),
            "bias": None if self.bias is None else self.bias.detach().cpu().numpy().copy(),
        }
