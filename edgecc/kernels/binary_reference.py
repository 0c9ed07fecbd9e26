"""Pure numpy reference of the binary engine's semantics (edgecc.kernels.binary).

Written independently of the C++ kernels: planes are plain boolean arrays, the
convolution is an integer convolution of the decoded values (0/1 or -1/+1) with zero
padding, the epilogue is float64 arithmetic.

Semantics (shared with the native engine):
- Activation planes: with thresholds t[0] < ... < t[P-1] (per channel), plane j of x is
  t[j] <= x < t[j+1] (the last plane is open above). x lands in at most one plane;
  below t[0] (or NaN) in none. A +-1 tensor is one plane with bit 1 = +1 (x >= t[0]).
- Weight planes from PA endpoints u_1 < ... < u_M (M even): piece k = number of
  endpoints <= w, in 0..M; piece M/2 is the zero piece; planes are the other pieces in
  order (thesis eq 3.16, same rule as edgecc.compiler.quant.pa).
- counts[n, i, j, o, y, x] = conv(T_i, V_j) over the valid (non-padded) taps of the
  decoded planes: b for {0,1}, 2b-1 for +-1. Padded taps contribute 0, i.e. a float
  convolution with zero padding of the decoded tensors.
- Epilogue: y = scale[o] * sum_ij phi[o, i, j] * counts[i, j] + bias[o]; y += residual;
  y = activation(y); optionally y -> planes through per-channel thresholds.
"""
from __future__ import annotations

import numpy as np

LANES = 16


def as_thresholds(t, channels: int) -> np.ndarray:
    """(P,) per layer or (P, C) per channel -> float64 [P, C]."""
    t = np.asarray(t, dtype=np.float64)
    if t.ndim == 0:
        t = t.reshape(1)
    if t.ndim == 1:
        t = np.repeat(t[:, None], channels, axis=1)
    return t


def activation_planes(x: np.ndarray, thresholds, layout: str = "NCHW") -> np.ndarray:
    """x [N,C,H,W] (or NHWC) -> bool planes [N, P, C, H, W]."""
    x = np.asarray(x)
    if layout == "NHWC":
        x = x.transpose(0, 3, 1, 2)
    t = as_thresholds(thresholds, x.shape[1]).astype(x.dtype if x.dtype.kind == "f" else np.float64)
    if x.dtype.kind != "f":
        x = x.astype(np.float64) if np.abs(x).max(initial=0) < 2**52 else x
    ge = [x >= t[j][None, :, None, None] for j in range(t.shape[0])]
    planes = [ge[j] & ~ge[j + 1] if j + 1 < len(ge) else ge[j] for j in range(len(ge))]
    return np.stack(planes, axis=1)


def weight_planes_from_endpoints(w: np.ndarray, endpoints) -> np.ndarray:
    """Float weights [...] and M increasing endpoints -> bool planes [M, ...]."""
    u = np.asarray(endpoints, dtype=np.float64)
    m = u.size
    piece = np.searchsorted(u, np.asarray(w, dtype=np.float64), side="right")
    kept = [k for k in range(m + 1) if k != m // 2]
    return np.stack([piece == k for k in kept], axis=0)


def pack_activation_planes(planes: np.ndarray) -> np.ndarray:
    """bool [N, P, C, H, W] -> uint64 words [N, H, W, P, ceil(C/64)] (channel c at bit
    c % 64 of word c // 64)."""
    n, p, c, h, w = planes.shape
    c64 = (c + 63) // 64
    bits = np.zeros((n, h, w, p, c64 * 64), dtype=np.uint8)
    bits[..., :c] = planes.transpose(0, 3, 4, 1, 2)
    packed = np.packbits(bits, axis=-1, bitorder="little")  # bytes, little-endian bit order
    return packed.view("<u8").reshape(n, h, w, p, c64)


def unpack_activation_words(words: np.ndarray, channels: int) -> np.ndarray:
    """uint64 [N, H, W, P, C64] -> bool planes [N, P, C, H, W]."""
    n, h, w, p, c64 = words.shape
    bits = np.unpackbits(np.ascontiguousarray(words).astype("<u8").view(np.uint8).reshape(n, h, w, p, c64 * 8),
                         axis=-1, bitorder="little")
    return bits[..., :channels].astype(bool).transpose(0, 3, 4, 1, 2)


def pack_weight_planes(planes: np.ndarray) -> np.ndarray:
    """bool [M, O, I_g, kh, kw] for one group -> uint32 [chunks, M, kh*kw, k_words, 16]:
    chunk c lane l = output channel 16c + l, channel i at bit i % 32 of word i // 32."""
    m, o, ig, kh, kw = planes.shape
    chunks, kwords = -(-o // LANES), -(-ig // 32)
    bits = np.zeros((chunks * LANES, m, kh * kw, kwords * 32), dtype=np.uint8)
    bits[:o, :, :, :ig] = planes.transpose(1, 0, 3, 4, 2).reshape(o, m, kh * kw, ig)
    words = np.packbits(bits, axis=-1, bitorder="little").view("<u4")  # [O', M, taps, kwords]
    words = words.reshape(chunks, LANES, m, kh * kw, kwords)
    return np.ascontiguousarray(words.transpose(0, 2, 3, 4, 1))


def _decode(planes: np.ndarray, signed: bool) -> np.ndarray:
    v = planes.astype(np.int64)
    return 2 * v - 1 if signed else v


def conv_counts(x_planes: np.ndarray, w_planes: np.ndarray, *, x_signed: bool = False,
                w_signed: bool = False, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1),
                groups: int = 1) -> np.ndarray:
    """x_planes bool [N, P, C, H, W], w_planes bool [M, O, C/g, kh, kw] ->
    int64 [N, M, P, O, OH, OW]: integer convolution of the decoded values, zero padding."""
    n, p, c, h, w = x_planes.shape
    m, o, cg, kh, kw = w_planes.shape
    sh, sw = stride
    top, left, bottom, right = padding
    dh, dw = dilation
    xv = _decode(x_planes, x_signed)
    xv = np.pad(xv, ((0, 0), (0, 0), (0, 0), (top, bottom), (left, right)))  # padded taps = 0
    wv = _decode(w_planes, w_signed)
    oh = (h + top + bottom - dh * (kh - 1) - 1) // sh + 1
    ow = (w + left + right - dw * (kw - 1) - 1) // sw + 1
    og = o // groups
    out = np.zeros((n, m, p, o, oh, ow), dtype=np.int64)
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dh, kx * dw
            patch = xv[:, :, :, y0:y0 + sh * (oh - 1) + 1:sh, x0:x0 + sw * (ow - 1) + 1:sw]  # [N,P,C,OH,OW]
            for g in range(groups):
                xs = patch[:, :, g * cg:(g + 1) * cg]
                ws = wv[:, g * og:(g + 1) * og, :, ky, kx]  # [M, og, cg]
                out[:, :, :, g * og:(g + 1) * og] += np.einsum("npchw,moc->nmpohw", xs, ws)
    return out


def epilogue(counts: np.ndarray, phi, scale=None, bias=None, residual=None,
             activation: str | None = None, prelu_slope=None) -> np.ndarray:
    """counts [N, M, P, O, OH, OW] -> float64 [N, O, OH, OW]."""
    n, m, p, o = counts.shape[:4]
    phi = np.asarray(phi, dtype=np.float64)
    if phi.ndim == 2:
        phi = np.broadcast_to(phi, (o, m, p))
    y = np.einsum("nmpohw,omp->nohw", counts.astype(np.float64), phi)
    if scale is not None:
        y = y * np.broadcast_to(np.asarray(scale, dtype=np.float64), (o,))[None, :, None, None]
    if bias is not None:
        y = y + np.broadcast_to(np.asarray(bias, dtype=np.float64), (o,))[None, :, None, None]
    if residual is not None:
        y = y + residual
    if activation == "relu":
        y = np.maximum(y, 0.0)
    elif activation == "prelu":
        a = np.broadcast_to(np.asarray(prelu_slope, dtype=np.float64), (o,))[None, :, None, None]
        y = np.where(y >= 0, y, a * y)
    return y


def conv2d(x_planes, w_planes, *, x_signed=False, w_signed=False, stride=(1, 1),
           padding=(0, 0, 0, 0), dilation=(1, 1), groups=1, phi=None, scale=None, bias=None,
           residual=None, activation=None, prelu_slope=None) -> np.ndarray:
    """Float output [N, O, OH, OW] of the whole layer (float64)."""
    counts = conv_counts(x_planes, w_planes, x_signed=x_signed, w_signed=w_signed, stride=stride,
                         padding=padding, dilation=dilation, groups=groups)
    if phi is None:
        phi = np.ones(counts.shape[1:3])
    return epilogue(counts, phi, scale, bias, residual, activation, prelu_slope)
