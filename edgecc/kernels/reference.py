"""Numpy reference implementations of every IR op: the oracle other backends are
checked against. Written for clarity and exactness, not speed: float convolutions
and matrix products accumulate in float64, integer ones in int64.

Each function takes the node's input arrays and its canonical attributes (see
edgecc/compiler/ir/ops.py) and returns a list of output arrays.
"""
from __future__ import annotations

import math

import numpy as np

from ..compiler.ir.ops import conv_out_size

IMPLS = {}


def impl(*names):
    def deco(fn):
        for n in names:
            IMPLS[n] = fn
        return fn
    return deco


def _acc_dtype(dt):
    return np.float64 if np.issubdtype(dt, np.floating) else np.int64


def _windows(xp, kh, kw, sh, sw, dh, dw, oh, ow):
    """[N, C, kh, kw, oh, ow] view-copies of the (already padded) input."""
    n, c = xp.shape[:2]
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=xp.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh,
                                  j * dw: j * dw + sw * (ow - 1) + 1: sw]
    return cols


def conv2d(x, w, bias=None, *, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), groups=1,
           out_dtype=None):
    """Grouped 2-D convolution (cross-correlation), NCHW / OIHW."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    pt, pl, pb, pr = pads
    (sh, sw), (dh, dw), g = strides, dilations, groups
    oh = conv_out_size(h, kh, sh, pt, pb, dh)
    ow = conv_out_size(wd, kw, sw, pl, pr, dw)
    acc = _acc_dtype(x.dtype)
    xp = np.pad(x.astype(acc), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    cols = _windows(xp, kh, kw, sh, sw, dh, dw, oh, ow).reshape(n, g, cg * kh * kw, oh * ow)
    wm = w.astype(acc).reshape(g, o // g, cg * kh * kw)
    y = np.matmul(wm[None], cols).reshape(n, o, oh, ow)
    if bias is not None:
        y = y + bias.astype(acc).reshape(1, o, 1, 1)
    if out_dtype is None:
        out_dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else \
            (np.int32 if x.dtype.itemsize == 1 else np.int64)
    return y.astype(out_dtype)


@impl("conv2d")
def _conv2d(ins, a):
    return [conv2d(*ins, strides=a["strides"], pads=a["pads"], dilations=a["dilations"],
                   groups=a["groups"])]


@impl("batch_norm")
def _bn(ins, a):
    x, scale, bias, mean, var = ins
    shp = (1, -1) + (1,) * (x.ndim - 2)
    inv = (scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + a["eps"])).reshape(shp)
    y = (x - mean.reshape(shp)) * inv + bias.reshape(shp)
    return [y.astype(x.dtype)]


def _unary(fn):
    return lambda ins, a: [np.asarray(fn(ins[0], a)).astype(ins[0].dtype)]


IMPLS["relu"] = _unary(lambda x, a: np.maximum(x, 0))
IMPLS["sigmoid"] = _unary(lambda x, a: 1.0 / (1.0 + np.exp(-x.astype(np.float64))))
IMPLS["tanh"] = _unary(lambda x, a: np.tanh(x))
IMPLS["sign"] = _unary(lambda x, a: np.sign(x))
IMPLS["identity"] = _unary(lambda x, a: x.copy())
IMPLS["hardswish"] = _unary(lambda x, a: x * np.clip(x + 3.0, 0.0, 6.0) / 6.0)
IMPLS["clip"] = _unary(lambda x, a: np.clip(x, -np.inf if a["min"] is None else a["min"],
                                            np.inf if a["max"] is None else a["max"]))
IMPLS["leaky_relu"] = _unary(lambda x, a: np.where(x >= 0, x, x * a["alpha"]))
IMPLS["hardsigmoid"] = _unary(lambda x, a: np.clip(a["alpha"] * x + a["beta"], 0.0, 1.0))


@impl("prelu")
def _prelu(ins, a):
    x, s = ins
    return [np.where(x >= 0, x, x * s).astype(x.dtype)]


def _pool_input(x, a, fill, dil=(1, 1)):
    """Pad x with `fill` for explicit pads plus the extra bottom/right rows ceil_mode needs."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw) = a["kernel"], a["strides"]
    pt, pl, pb, pr = a["pads"]
    oh = conv_out_size(h, kh, sh, pt, pb, dil[0], a["ceil_mode"])
    ow = conv_out_size(w, kw, sw, pl, pr, dil[1], a["ceil_mode"])
    extra_h = max(0, (oh - 1) * sh + dil[0] * (kh - 1) + 1 - (h + pt + pb))
    extra_w = max(0, (ow - 1) * sw + dil[1] * (kw - 1) + 1 - (w + pl + pr))
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb + extra_h), (pl, pr + extra_w)), constant_values=fill)
    return xp, oh, ow, extra_h, extra_w


@impl("max_pool2d")
def _maxpool(ins, a):
    x = ins[0]
    fill = -np.inf if np.issubdtype(x.dtype, np.floating) else np.iinfo(x.dtype).min
    xp, oh, ow, _, _ = _pool_input(x, a, fill, a["dilations"])
    (kh, kw), (sh, sw), (dh, dw) = a["kernel"], a["strides"], a["dilations"]
    cols = _windows(xp, kh, kw, sh, sw, dh, dw, oh, ow)
    return [cols.max(axis=(2, 3))]


@impl("avg_pool2d")
def _avgpool(ins, a):
    x = ins[0]
    n, c, h, w = x.shape
    (kh, kw), (sh, sw) = a["kernel"], a["strides"]
    pt, pl, pb, pr = a["pads"]
    xp, oh, ow, eh, ew = _pool_input(x.astype(np.float64), a, 0.0)
    total = _windows(xp, kh, kw, sh, sw, 1, 1, oh, ow).sum(axis=(2, 3))
    # Divisor: window positions inside the input (or inside input + explicit pads when
    # count_include_pad), never the extra positions ceil_mode adds.
    mask = np.zeros((1, 1) + xp.shape[2:])
    if a["count_include_pad"]:
        mask[..., : h + pt + pb, : w + pl + pr] = 1
    else:
        mask[..., pt: pt + h, pl: pl + w] = 1
    count = _windows(mask, kh, kw, sh, sw, 1, 1, oh, ow).sum(axis=(2, 3))
    return [(total / count).astype(x.dtype)]


@impl("global_avg_pool")
def _gap(ins, a):
    x = ins[0]
    axes = tuple(range(2, x.ndim))
    return [x.astype(np.float64).mean(axis=axes, keepdims=True).astype(x.dtype)]


@impl("adaptive_avg_pool2d")
def _aap(ins, a):
    x = ins[0]
    n, c, h, w = x.shape
    oh, ow = a["output_size"]
    y = np.empty((n, c, oh, ow), dtype=np.float64)
    for i in range(oh):
        h0, h1 = (i * h) // oh, -(-((i + 1) * h) // oh)
        for j in range(ow):
            w0, w1 = (j * w) // ow, -(-((j + 1) * w) // ow)
            y[:, :, i, j] = x[:, :, h0:h1, w0:w1].astype(np.float64).mean(axis=(2, 3))
    return [y.astype(x.dtype)]


IMPLS["add"] = lambda ins, a: [np.add(ins[0], ins[1])]
IMPLS["sub"] = lambda ins, a: [np.subtract(ins[0], ins[1])]
IMPLS["mul"] = lambda ins, a: [np.multiply(ins[0], ins[1])]


@impl("div")
def _div(ins, a):
    x, y = ins
    if np.issubdtype(x.dtype, np.integer):  # ONNX integer Div truncates toward zero
        if np.any(y == 0):
            raise ZeroDivisionError("integer division by zero")
        q = np.abs(x) // np.abs(y) * np.sign(x) * np.sign(y)
        return [q.astype(x.dtype)]
    return [np.divide(x, y)]


_COMPARE = {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
            "eq": np.equal, "ne": np.not_equal}


@impl("select")
def _select(ins, a):
    x, y, p, q = ins
    out = np.where(_COMPARE[a["cmp"]](x, y), p, q)
    shape = np.broadcast_shapes(x.shape, y.shape, p.shape, q.shape)
    return [np.ascontiguousarray(np.broadcast_to(out, shape)).astype(p.dtype)]


IMPLS["concat"] = lambda ins, a: [np.concatenate(ins, axis=a["axis"])]


@impl("split")
def _split(ins, a):
    idx = np.cumsum(a["sizes"])[:-1]
    return [p.copy() for p in np.split(ins[0], idx, axis=a["axis"])]


@impl("slice")
def _slice(ins, a):
    x = ins[0]
    sl = [slice(None)] * x.ndim
    for s, e, ax, st in zip(a["starts"], a["ends"], a["axes"], a["steps"]):
        sl[ax] = slice(s, e if e >= 0 else None, st)
    return [x[tuple(sl)].copy()]


@impl("flatten")
def _flatten(ins, a):
    x = ins[0]
    ax = a["axis"]
    return [x.reshape(math.prod(x.shape[:ax]), math.prod(x.shape[ax:]))]


IMPLS["reshape"] = lambda ins, a: [ins[0].reshape(a["shape"])]
IMPLS["transpose"] = lambda ins, a: [np.ascontiguousarray(ins[0].transpose(a["perm"]))]


@impl("channel_shuffle")
def _shuffle(ins, a):
    x = ins[0]
    n, c = x.shape[:2]
    g = a["groups"]
    y = x.reshape((n, g, c // g) + x.shape[2:]).swapaxes(1, 2)
    return [np.ascontiguousarray(y).reshape(x.shape)]


@impl("pad")
def _pad(ins, a):
    x = ins[0]
    r = x.ndim
    pads = a["pads"]
    # Negative pads crop (ONNX); apply the crop first, then pad the non-negative part.
    crop = tuple(slice(max(0, -pads[i]), x.shape[i] - max(0, -pads[i + r])) for i in range(r))
    x = x[crop]
    width = [(max(0, pads[i]), max(0, pads[i + r])) for i in range(r)]
    if a["mode"] == "constant":
        return [np.pad(x, width, mode="constant", constant_values=a["value"]).astype(x.dtype)]
    return [np.pad(x, width, mode=a["mode"])]


@impl("gemm")
def _gemm(ins, a):
    A, B = ins[0], ins[1]
    acc = _acc_dtype(A.dtype)
    A = A.T if a["trans_a"] else A
    B = B.T if a["trans_b"] else B
    y = a["alpha"] * (A.astype(acc) @ B.astype(acc))
    if len(ins) == 3:
        y = y + a["beta"] * ins[2].astype(acc)
    return [y.astype(ins[0].dtype)]


@impl("matmul")
def _matmul(ins, a):
    acc = _acc_dtype(ins[0].dtype)
    return [np.matmul(ins[0].astype(acc), ins[1].astype(acc)).astype(ins[0].dtype)]


@impl("softmax")
def _softmax(ins, a):
    x = ins[0].astype(np.float64)
    e = np.exp(x - x.max(axis=a["axis"], keepdims=True))
    return [(e / e.sum(axis=a["axis"], keepdims=True)).astype(ins[0].dtype)]


def _source_coords(out_size, in_size, scale, mode):
    o = np.arange(out_size, dtype=np.float64)
    if mode == "align_corners":
        return o * (in_size - 1) / (out_size - 1) if out_size > 1 else np.zeros(out_size)
    if mode == "asymmetric":
        return o / scale
    if mode == "pytorch_half_pixel" and out_size == 1:
        return np.zeros(1)
    return (o + 0.5) / scale - 0.5


def _nearest_index(coord, mode, in_size):
    if mode == "round_prefer_floor":
        i = np.ceil(coord - 0.5)
    elif mode == "round_prefer_ceil":
        i = np.floor(coord + 0.5)
    elif mode == "floor":
        i = np.floor(coord)
    else:
        i = np.ceil(coord)
    return np.clip(i, 0, in_size - 1).astype(np.int64)


@impl("resize")
def _resize(ins, a):
    x = ins[0]
    h, w = x.shape[2:]
    oh, ow = a["size"]
    sh, sw = a["scale"] if a["scale"] is not None else (oh / h, ow / w)
    ch = _source_coords(oh, h, sh, a["coord_mode"])
    cw = _source_coords(ow, w, sw, a["coord_mode"])
    if a["mode"] == "nearest":
        ih = _nearest_index(ch, a["nearest_mode"], h)
        iw = _nearest_index(cw, a["nearest_mode"], w)
        return [x[:, :, ih][:, :, :, iw]]

    def taps(c, size):
        c = np.clip(c, 0, size - 1)
        i0 = np.floor(c).astype(np.int64)
        i1 = np.minimum(i0 + 1, size - 1)
        return i0, i1, c - i0

    h0, h1, fh = taps(ch, h)
    w0, w1, fw = taps(cw, w)
    xf = x.astype(np.float64)
    top = xf[:, :, h0] * (1 - fh)[:, None] + xf[:, :, h1] * fh[:, None]
    y = top[:, :, :, w0] * (1 - fw) + top[:, :, :, w1] * fw
    return [y.astype(x.dtype)]


# ---- multiple-binary layers (binary_conv2d / binary_linear, see ops.py) ----------
def binary_activation_bases(x, t, act_basis):
    """x [N, C, ...] and thresholds t [C, P] -> int64 bases [P, N, C, ...]:
    "01": A_j = [t_j <= x < t_{j+1}] (last open above); "pm1": A_j = +1 if x >= t_j else -1."""
    shp = (1, -1) + (1,) * (x.ndim - 2)
    ge = [x >= t[:, j].astype(x.dtype).reshape(shp) for j in range(t.shape[1])]
    if act_basis == "pm1":
        return np.stack([2 * g.astype(np.int64) - 1 for g in ge])
    return np.stack([(g & ~ge[j + 1]) if j + 1 < len(ge) else g for j, g in enumerate(ge)]).astype(np.int64)


def binary_plane_counts(x, wb, t, a):
    """int64 [M, P, N, O, OH, OW]: conv(W_i, A_j) of the decoded bases, zero padding.
    The products are computed in float64, which is exact here: every term is 0 or +-1
    and every sum has fewer than 2**53 terms; then checked and returned as int64."""
    bases = binary_activation_bases(x, t, a["act_basis"])
    p, n = bases.shape[:2]
    m, o = wb.shape[:2]
    xs = bases.reshape(p * n, *bases.shape[2:]).astype(np.float64)     # planes on the batch axis
    g = a["groups"]
    # bases on the output axis, grouped as conv2d expects: channel (group, basis, o in group)
    ws = wb.astype(np.float64).reshape(m, g, o // g, *wb.shape[2:]).swapaxes(0, 1)
    ws = ws.reshape(m * o, *wb.shape[2:])
    y = conv2d(xs, ws, strides=a["strides"], pads=a["pads"], dilations=a["dilations"],
               groups=a["groups"], out_dtype=np.float64)
    counts = np.rint(y).astype(np.int64)
    assert np.array_equal(counts, y), "plane counts must be exact integers"
    # output channels are (group, basis, o in group): back to [M, P, N, O, ...]
    counts = counts.reshape(p, n, g, m, o // g, *counts.shape[2:])
    counts = np.moveaxis(counts, 3, 0).reshape(m, p, n, o, *counts.shape[5:])
    return counts


def _binary_combine(counts, phi, bias):
    """y = sum_ij phi[o, i, j] * counts[i, j] + bias, in float64, returned as float32."""
    m, p, n, o = counts.shape[:4]
    shp = (1, o) + (1,) * (counts.ndim - 4)
    y = np.zeros(counts.shape[2:], dtype=np.float64)
    for i in range(m):
        for j in range(p):
            y += phi[:, i, j].astype(np.float64).reshape(shp) * counts[i, j]
    if bias is not None:
        y += bias.astype(np.float64).reshape(shp)
    return y.astype(np.float32)


@impl("binary_conv2d")
def _binary_conv2d(ins, a):
    x, wb, phi, t = ins[:4]
    bias = ins[4] if len(ins) == 5 else None
    return [_binary_combine(binary_plane_counts(x, wb, t, a), phi, bias)]


@impl("binary_linear")
def _binary_linear(ins, a):
    x, wb, phi, t = ins[:4]
    bias = ins[4] if len(ins) == 5 else None
    geo = {"strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1), "groups": 1, **a}
    counts = binary_plane_counts(x[:, :, None, None], wb[..., None, None], t, geo)
    return [_binary_combine(counts[..., 0, 0], phi, bias)]


@impl("indexed_conv2d")
def _indexed_conv2d(ins, a):
    """Gather each output group's input-channel ranges, then one grouped conv."""
    x, w = ins[0], ins[1]
    bias = ins[2] if len(ins) == 3 else None
    idx = [c for group in a["ranges"] for s, e in group for c in range(s, e)]
    return [conv2d(x[:, idx], w, bias, strides=a["strides"], pads=a["pads"],
                   dilations=a["dilations"], groups=len(a["ranges"]))]


@impl("aw_conv2d")
def _aw_conv2d(ins, a):
    """One conv per sample with its own weights w * (1 + a[n]) (float64 weights)."""
    x, w, att = ins
    geo = {"strides": a["strides"], "pads": a["pads"], "dilations": a["dilations"]}
    ys = [conv2d(x[i:i + 1].astype(np.float64),
                 w.astype(np.float64) * (1.0 + att[i].astype(np.float64)[:, None]), **geo)
          for i in range(x.shape[0])]
    return [np.concatenate(ys).astype(x.dtype)]


def quantize_activation(x, x_scale, qmax):
    """The qconv2d input quantizer (ops.py): float32 multiply by the float32 reciprocal,
    round half to even, clip to +-qmax, NaN -> 0."""
    inv = np.float32(1) / np.float32(x_scale)
    q = np.rint(x.astype(np.float32) * inv)
    q = np.nan_to_num(q, nan=0.0, posinf=qmax, neginf=-qmax)
    return np.clip(q, -qmax, qmax).astype(np.int64)


@impl("qconv2d")
def _qconv2d(ins, a):
    x, w, scale, bias = ins
    qmax = 127 if w.dtype == np.int8 else 32767
    q = quantize_activation(x, a["x_scale"], qmax)
    acc = conv2d(q, w.astype(np.int64), strides=a["strides"], pads=a["pads"], dilations=a["dilations"],
                 groups=a["groups"], out_dtype=np.int64)
    o = w.shape[0]
    y = (acc.astype(np.float64) * scale.astype(np.float64).reshape(1, o, 1, 1)
         + bias.astype(np.float64).reshape(1, o, 1, 1)).astype(np.float32)
    return [np.maximum(y, np.float32(0)) if a["relu"] else y]
