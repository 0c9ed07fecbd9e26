"""Operators of the IR: their inputs, attributes (with defaults) and shape/dtype rules.

Multiple-binary layers (PA, ABC-Net, sign nets) are `binary_conv2d` / `binary_linear`:
    y[o] = sum_{i<M, j<P} phi[o,i,j] * conv(W_i, A_j)[o] + bias[o]
with weight bases W_i = wb[i] and activation bases A_j computed from x by per-input-
channel thresholds t[c, 0] < t[c, 1] < ... :
    act_basis "01":  A_j = [t_j <= x < t_{j+1}] (last: x >= t_{P-1}); below t_0 in no plane
    act_basis "pm1": A_j = +1 if x >= t_j else -1
    weight_basis "01": wb in {0,1};  "pm1": wb in {-1,+1}
Padded taps contribute 0 in every basis (zero padding of the real-valued input is
excluded from the dot product, never counted as a -1).

Attributes are canonical and fully explicit after `infer_node_types` (defaults filled
in, tuples normalized), so later stages never re-derive them. Layout is NCHW.
Spatial padding is (top, left, bottom, right). `pad.pads` follows ONNX: all begins,
then all ends, one pair per dimension.

| op | inputs | attributes |
|---|---|---|
| conv2d | x[N,C,H,W], w[O,C/g,kh,kw], bias[O]? | strides, pads, dilations, groups |
| batch_norm | x, scale[C], bias[C], mean[C], var[C] | eps |
| relu, sigmoid, tanh, sign, hardswish, identity | x | - |
| clip | x | min, max (None = unbounded); relu6 and hardtanh import as clip |
| leaky_relu | x | alpha |
| prelu | x, slope (broadcastable to x) | - |
| hardsigmoid | x | alpha, beta: max(0, min(1, alpha*x+beta)) |
| max_pool2d | x | kernel, strides, pads, dilations, ceil_mode |
| avg_pool2d | x | kernel, strides, pads, ceil_mode, count_include_pad |
| global_avg_pool | x | - (output [N,C,1,1]) |
| adaptive_avg_pool2d | x | output_size (oh, ow), PyTorch bin rule |
| add, sub, mul, div | a, b (numpy broadcasting) | - |
| select | x, y, a, b (numpy broadcasting) | cmp (lt, le, gt, ge, eq, ne): where(x cmp y, a, b); a comparison feeding Where/torch.where imports as one select |
| concat | x0..xk | axis |
| split | x | axis, sizes (one output per size) |
| slice | x | starts, ends, axes, steps (clamped, explicit per axis) |
| flatten | x | axis |
| reshape | x | shape (static, no -1 or 0) |
| transpose | x | perm |
| channel_shuffle | x | groups |
| pad | x | pads, mode (constant, reflect, edge), value |
| gemm | a, b, c? | alpha, beta, trans_a, trans_b (ONNX Gemm) |
| matmul | a, b | - (numpy matmul) |
| softmax | x | axis |
| binary_conv2d | x[N,C,H,W] f32, wb[M,O,C/g,kh,kw] i8, phi[O,M,P] f32, t[C,P] f32, bias[O]? | strides, pads, dilations, groups, weight_basis, act_basis |
| binary_linear | x[N,K] f32, wb[M,O,K] i8, phi[O,M,P] f32, t[K,P] f32, bias[O]? | weight_basis, act_basis |
| resize | x[N,C,H,W] | mode (nearest, linear), size (oh, ow), scale (sh, sw) or None = size/input, coord_mode, nearest_mode |
| indexed_conv2d | x[N,C,H,W], w[O,K,kh,kw], bias[O]? | ranges (per output group: its input-channel ranges ((start, end), ...), K channels in all), strides, pads, dilations |
| aw_conv2d | x[N,C1,H,W], w[C2,C1,kh,kw], a[N,C2,kh,kw] | strides, pads, dilations: y[n] = conv(x[n], w * (1 + a[n] broadcast over C1)) |
| qconv2d | x[N,C,H,W] f32, w[O,C/g,kh,kw] i8/i16, scale[O] f32, bias[O] f32 | strides, pads, dilations, groups, x_scale, relu (see below) |

Integer convolution `qconv2d` (int8 / int16 schemes), every step exact and ordered:
    q   = clip(rint(x * (float32(1) / float32(x_scale))), -qmax, qmax)   float32, half to even; NaN -> 0
    acc = conv(q, w) in integers (no overflow: checked where it is compiled)
    y   = float32(float64(acc) * float64(scale[o]) + float64(bias[o]))     then max(y, 0) if relu
qmax = 127 for i8 weights, 32767 for i16; scale[o] = x_scale * w_scale[o] (per-channel
symmetric weights), bias carries the folded batch norm.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ...errors import ShapeError
from .dtypes import DType
from .graph import TensorType

InferFn = Callable[[list[TensorType], dict[str, Any]], list[TensorType]]


@dataclass(frozen=True)
class OpDef:
    name: str
    min_inputs: int
    max_inputs: int | None  # None: variadic
    attrs: dict[str, Any]   # attribute -> default (REQUIRED marks a mandatory one)
    infer: InferFn


REQUIRED = object()
OPS: dict[str, OpDef] = {}


def register_op(name: str, min_inputs: int, max_inputs: int | None, **attrs):
    def deco(fn: InferFn) -> InferFn:
        OPS[name] = OpDef(name, min_inputs, max_inputs, attrs, fn)
        return fn
    return deco


def infer_node_types(op: str, in_types: list[TensorType], attrs: dict[str, Any],
                     node_name: str = "?") -> tuple[list[TensorType], dict[str, Any]]:
    """Check a node's inputs and attributes; return (output types, canonical attrs)."""
    d = OPS.get(op)
    where = f"node {node_name!r} (op {op})"
    if d is None:
        raise ShapeError(f"{where}: unknown op {op!r}")
    n = len(in_types)
    if n < d.min_inputs or (d.max_inputs is not None and n > d.max_inputs):
        want = f"{d.min_inputs}" if d.max_inputs == d.min_inputs else \
            f"{d.min_inputs}..{d.max_inputs if d.max_inputs is not None else 'n'}"
        raise ShapeError(f"{where}: takes {want} inputs, got {n}")
    unknown = set(attrs) - set(d.attrs)
    if unknown:
        raise ShapeError(f"{where}: unknown attribute(s) {sorted(unknown)}")
    full = {}
    for k, default in d.attrs.items():
        if k in attrs:
            full[k] = attrs[k]
        elif default is REQUIRED:
            raise ShapeError(f"{where}: missing required attribute {k!r}")
        else:
            full[k] = default
    try:
        outs = d.infer(list(in_types), full)
    except ShapeError as e:
        raise ShapeError(f"{where}: {e}") from None
    except (ValueError, TypeError, IndexError) as e:
        raise ShapeError(f"{where}: {e}") from None
    return outs, full


def _fail(msg: str):
    raise ShapeError(msg)


def _pair(v, name) -> tuple[int, int]:
    t = (v, v) if isinstance(v, (int, np.integer)) else tuple(int(x) for x in v)
    if len(t) != 2:
        _fail(f"{name} must have 2 values, got {v}")
    return t


def _quad(v, name) -> tuple[int, int, int, int]:
    if isinstance(v, (int, np.integer)):
        return (int(v),) * 4
    t = tuple(int(x) for x in v)
    if len(t) == 2:
        return (t[0], t[1], t[0], t[1])
    if len(t) != 4:
        _fail(f"{name} must have 1, 2 or 4 values, got {v}")
    return t


def _same(t: TensorType) -> list[TensorType]:
    return [TensorType(t.shape, t.dtype)]


def _need_rank(t: TensorType, r: int, what: str = "input"):
    if t.rank != r:
        _fail(f"{what} must have rank {r}, got shape {list(t.shape)}")


def conv_out_size(size: int, k: int, stride: int, pad_lo: int, pad_hi: int, dil: int,
                  ceil_mode: bool = False) -> int:
    if k < 1 or stride < 1 or dil < 1:  # e.g. a stride 0 from a corrupt model: no division by 0
        _fail(f"kernel {k}, stride {stride} and dilation {dil} must all be >= 1")
    eff = dil * (k - 1) + 1
    span = size + pad_lo + pad_hi - eff
    if span < 0:
        _fail(f"window of effective size {eff} does not fit input size {size} "
              f"with padding ({pad_lo},{pad_hi})")
    if ceil_mode:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + pad_lo:  # last window must start inside input/left pad
            out -= 1
        return out
    return span // stride + 1


def _int_acc(dt: DType) -> DType:
    return {DType.i8: DType.i32, DType.u8: DType.i32, DType.i16: DType.i64,
            DType.i32: DType.i64, DType.i64: DType.i64}.get(dt, dt)


# ---- convolution / normalization ------------------------------------------------
@register_op("conv2d", 2, 3, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), groups=1)
def _conv2d(ts, a):
    x, w = ts[0], ts[1]
    _need_rank(x, 4, "x")
    _need_rank(w, 4, "weight")
    a["strides"], a["dilations"] = _pair(a["strides"], "strides"), _pair(a["dilations"], "dilations")
    a["pads"], g = _quad(a["pads"], "pads"), int(a["groups"])
    a["groups"] = g
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    if g < 1 or c % g or o % g:
        _fail(f"groups={g} must divide input channels {c} and output channels {o}")
    if cg * g != c:
        _fail(f"weight {list(w.shape)} expects {cg * g} input channels (groups={g}), "
              f"x has {c} (shape {list(x.shape)})")
    if len(ts) == 3 and ts[2].shape != (o,):
        _fail(f"bias shape {list(ts[2].shape)} != [{o}]")
    if min(a["strides"]) < 1 or min(a["dilations"]) < 1 or min(a["pads"]) < 0:
        _fail(f"invalid strides {a['strides']} / dilations {a['dilations']} / pads {a['pads']}")
    pt, pl, pb, pr = a["pads"]
    oh = conv_out_size(h, kh, a["strides"][0], pt, pb, a["dilations"][0])
    ow = conv_out_size(wd, kw, a["strides"][1], pl, pr, a["dilations"][1])
    if x.dtype.is_float != w.dtype.is_float:
        _fail(f"x dtype {x.dtype} and weight dtype {w.dtype} mix float and integer")
    return [TensorType((n, o, oh, ow), _int_acc(x.dtype))]


@register_op("batch_norm", 5, 5, eps=1e-5)
def _batch_norm(ts, a):
    x = ts[0]
    if x.rank < 2:
        _fail(f"x must have rank >= 2, got {list(x.shape)}")
    for t, nm in zip(ts[1:], ("scale", "bias", "mean", "var")):
        if t.shape != (x.shape[1],):
            _fail(f"{nm} shape {list(t.shape)} != [{x.shape[1]}]")
    a["eps"] = float(a["eps"])
    return _same(x)


# ---- elementwise unary ----------------------------------------------------------
for _name in ("relu", "sigmoid", "tanh", "sign", "hardswish", "identity"):
    register_op(_name, 1, 1)(lambda ts, a: _same(ts[0]))


@register_op("clip", 1, 1, min=None, max=None)
def _clip(ts, a):
    a["min"] = None if a["min"] is None else float(a["min"])
    a["max"] = None if a["max"] is None else float(a["max"])
    if a["min"] is not None and a["max"] is not None and a["min"] > a["max"]:
        _fail(f"min {a['min']} > max {a['max']}")
    return _same(ts[0])


@register_op("leaky_relu", 1, 1, alpha=0.01)
def _leaky(ts, a):
    a["alpha"] = float(a["alpha"])
    return _same(ts[0])


@register_op("hardsigmoid", 1, 1, alpha=0.2, beta=0.5)
def _hsig(ts, a):
    a["alpha"], a["beta"] = float(a["alpha"]), float(a["beta"])
    return _same(ts[0])


@register_op("prelu", 2, 2)
def _prelu(ts, a):
    x, s = ts
    if np.broadcast_shapes(x.shape, s.shape) != x.shape:
        _fail(f"slope shape {list(s.shape)} does not broadcast to x {list(x.shape)}")
    return _same(x)


# ---- pooling --------------------------------------------------------------------
def _pool_common(ts, a, with_dilation):
    x = ts[0]
    _need_rank(x, 4, "x")
    a["kernel"] = _pair(a["kernel"], "kernel")
    a["strides"] = _pair(a["strides"] if a["strides"] is not None else a["kernel"], "strides")
    a["pads"] = _quad(a["pads"], "pads")
    a["ceil_mode"] = bool(a["ceil_mode"])
    dil = (1, 1)
    if with_dilation:
        a["dilations"] = dil = _pair(a["dilations"], "dilations")
    kh, kw = a["kernel"]
    pt, pl, pb, pr = a["pads"]
    if pt >= kh * dil[0] or pb >= kh * dil[0] or pl >= kw * dil[1] or pr >= kw * dil[1]:
        _fail(f"pads {a['pads']} must be smaller than the kernel {a['kernel']}")
    n, c, h, w = x.shape
    oh = conv_out_size(h, kh, a["strides"][0], pt, pb, dil[0], a["ceil_mode"])
    ow = conv_out_size(w, kw, a["strides"][1], pl, pr, dil[1], a["ceil_mode"])
    return [TensorType((n, c, oh, ow), x.dtype)]


@register_op("max_pool2d", 1, 1, kernel=REQUIRED, strides=None, pads=(0, 0, 0, 0),
             dilations=(1, 1), ceil_mode=False)
def _maxpool(ts, a):
    return _pool_common(ts, a, True)


@register_op("avg_pool2d", 1, 1, kernel=REQUIRED, strides=None, pads=(0, 0, 0, 0),
             ceil_mode=False, count_include_pad=False)
def _avgpool(ts, a):
    a["count_include_pad"] = bool(a["count_include_pad"])
    return _pool_common(ts, a, False)


@register_op("global_avg_pool", 1, 1)
def _gap(ts, a):
    x = ts[0]
    if x.rank < 3:
        _fail(f"x must have rank >= 3, got {list(x.shape)}")
    return [TensorType(x.shape[:2] + (1,) * (x.rank - 2), x.dtype)]


@register_op("adaptive_avg_pool2d", 1, 1, output_size=REQUIRED)
def _aap(ts, a):
    x = ts[0]
    _need_rank(x, 4, "x")
    a["output_size"] = _pair(a["output_size"], "output_size")
    if min(a["output_size"]) < 1:
        _fail(f"output_size {a['output_size']} must be positive")
    return [TensorType(x.shape[:2] + a["output_size"], x.dtype)]


# ---- elementwise binary ---------------------------------------------------------
def _broadcast(ts, a):
    x, y = ts
    if x.dtype != y.dtype:
        _fail(f"dtype mismatch {x.dtype} vs {y.dtype}")
    try:
        shape = np.broadcast_shapes(x.shape, y.shape)
    except ValueError:
        _fail(f"shapes {list(x.shape)} and {list(y.shape)} do not broadcast")
    return [TensorType(shape, x.dtype)]


for _name in ("add", "sub", "mul", "div"):
    register_op(_name, 2, 2)(_broadcast)


SELECT_CMPS = ("lt", "le", "gt", "ge", "eq", "ne")


@register_op("select", 4, 4, cmp=REQUIRED)
def _select(ts, a):
    """where(x cmp y, a, b): the comparison and the choice in one node, so no boolean
    tensor exists between them (sign binarization, torch.where / ONNX Where)."""
    x, y, p, q = ts
    if a["cmp"] not in SELECT_CMPS:
        _fail(f"cmp {a['cmp']!r} is not one of {', '.join(SELECT_CMPS)}")
    if x.dtype != y.dtype or p.dtype != q.dtype:
        _fail(f"dtype mismatch: compares {x.dtype} with {y.dtype}, chooses {p.dtype} or {q.dtype}")
    try:
        shape = np.broadcast_shapes(x.shape, y.shape, p.shape, q.shape)
    except ValueError:
        _fail(f"shapes {[list(t.shape) for t in ts]} do not broadcast")
    return [TensorType(shape, p.dtype)]


# ---- shape manipulation ---------------------------------------------------------
def _axis(axis, rank) -> int:
    axis = int(axis)
    if not -rank <= axis < rank:
        _fail(f"axis {axis} out of range for rank {rank}")
    return axis % rank


@register_op("concat", 1, None, axis=REQUIRED)
def _concat(ts, a):
    r = ts[0].rank
    a["axis"] = ax = _axis(a["axis"], r)
    for t in ts[1:]:
        if t.rank != r or t.dtype != ts[0].dtype or \
                any(t.shape[i] != ts[0].shape[i] for i in range(r) if i != ax):
            _fail(f"cannot concat {[str(t) for t in ts]} on axis {ax}")
    shape = list(ts[0].shape)
    shape[ax] = sum(t.shape[ax] for t in ts)
    return [TensorType(shape, ts[0].dtype)]


@register_op("split", 1, 1, axis=REQUIRED, sizes=REQUIRED)
def _split(ts, a):
    x = ts[0]
    a["axis"] = ax = _axis(a["axis"], x.rank)
    a["sizes"] = sizes = tuple(int(s) for s in a["sizes"])
    if sum(sizes) != x.shape[ax] or min(sizes) < 0:
        _fail(f"split sizes {list(sizes)} do not sum to dim {x.shape[ax]} of axis {ax}")
    outs = []
    for s in sizes:
        shape = list(x.shape)
        shape[ax] = s
        outs.append(TensorType(shape, x.dtype))
    return outs


@register_op("slice", 1, 1, starts=REQUIRED, ends=REQUIRED, axes=None, steps=None)
def _slice(ts, a):
    x = ts[0]
    starts, ends = list(a["starts"]), list(a["ends"])
    axes = list(range(len(starts))) if a["axes"] is None else [_axis(v, x.rank) for v in a["axes"]]
    steps = [1] * len(starts) if a["steps"] is None else [int(s) for s in a["steps"]]
    if not len(starts) == len(ends) == len(axes) == len(steps) or len(set(axes)) != len(axes):
        _fail("starts, ends, axes and steps must have equal length and distinct axes")
    shape = list(x.shape)
    norm_s, norm_e = [], []
    for s, e, ax, st in zip(starts, ends, axes, steps):
        if st == 0:
            _fail("slice step must not be 0")
        dim = x.shape[ax]
        s, e, st2 = slice(int(s), int(e), st).indices(dim)  # clamps like ONNX/numpy
        shape[ax] = len(range(s, e, st2))
        if e < 0:  # a negative step running through index 0: keep "before the start"
            e = -(dim + 1)
        norm_s.append(s)
        norm_e.append(e)
    a["starts"], a["ends"], a["axes"], a["steps"] = tuple(norm_s), tuple(norm_e), tuple(axes), tuple(steps)
    return [TensorType(shape, x.dtype)]


@register_op("flatten", 1, 1, axis=1)
def _flatten(ts, a):
    x = ts[0]
    ax = int(a["axis"])
    ax = ax + x.rank if ax < 0 else ax
    if not 0 <= ax <= x.rank:
        _fail(f"flatten axis {a['axis']} out of range for rank {x.rank}")
    a["axis"] = ax
    return [TensorType((math.prod(x.shape[:ax]), math.prod(x.shape[ax:])), x.dtype)]


@register_op("reshape", 1, 1, shape=REQUIRED)
def _reshape(ts, a):
    x = ts[0]
    shape = tuple(int(d) for d in a["shape"])
    if any(d < 0 for d in shape) or math.prod(shape) != x.numel:
        _fail(f"cannot reshape {list(x.shape)} ({x.numel} elements) to {list(shape)}")
    a["shape"] = shape
    return [TensorType(shape, x.dtype)]


@register_op("transpose", 1, 1, perm=REQUIRED)
def _transpose(ts, a):
    x = ts[0]
    perm = tuple(int(p) for p in a["perm"])
    if sorted(perm) != list(range(x.rank)):
        _fail(f"perm {list(perm)} is not a permutation of rank {x.rank}")
    a["perm"] = perm
    return [TensorType(tuple(x.shape[p] for p in perm), x.dtype)]


@register_op("channel_shuffle", 1, 1, groups=REQUIRED)
def _shuffle(ts, a):
    x = ts[0]
    a["groups"] = g = int(a["groups"])
    if x.rank < 2 or g < 1 or x.shape[1] % g:
        _fail(f"groups={g} must divide channels of {list(x.shape)}")
    return _same(x)


@register_op("pad", 1, 1, pads=REQUIRED, mode="constant", value=0.0)
def _pad(ts, a):
    x = ts[0]
    pads = tuple(int(p) for p in a["pads"])
    if len(pads) != 2 * x.rank:
        _fail(f"pads has {len(pads)} values, need {2 * x.rank} for rank {x.rank}")
    if a["mode"] not in ("constant", "reflect", "edge"):
        _fail(f"pad mode {a['mode']!r} not in constant, reflect, edge")
    shape = [d + pads[i] + pads[i + x.rank] for i, d in enumerate(x.shape)]
    if min(shape) < 0:
        _fail(f"pads {list(pads)} give negative size for {list(x.shape)}")
    a["pads"], a["value"] = pads, float(a["value"])
    return [TensorType(shape, x.dtype)]


# ---- dense ----------------------------------------------------------------------
@register_op("gemm", 2, 3, alpha=1.0, beta=1.0, trans_a=False, trans_b=False)
def _gemm(ts, a):
    A, B = ts[0], ts[1]
    _need_rank(A, 2, "A")
    _need_rank(B, 2, "B")
    a["alpha"], a["beta"] = float(a["alpha"]), float(a["beta"])
    a["trans_a"], a["trans_b"] = bool(a["trans_a"]), bool(a["trans_b"])
    m, k = A.shape[::-1] if a["trans_a"] else A.shape
    k2, n = B.shape[::-1] if a["trans_b"] else B.shape
    if k != k2:
        _fail(f"inner dims differ: A {list(A.shape)} (trans_a={a['trans_a']}) "
              f"B {list(B.shape)} (trans_b={a['trans_b']})")
    if len(ts) == 3 and np.broadcast_shapes(ts[2].shape, (m, n)) != (m, n):
        _fail(f"C {list(ts[2].shape)} does not broadcast to [{m},{n}]")
    return [TensorType((m, n), A.dtype)]


@register_op("matmul", 2, 2)
def _matmul(ts, a):
    A, B = ts
    if A.rank < 1 or B.rank < 1:
        _fail("matmul inputs must have rank >= 1")
    a_s = A.shape if A.rank > 1 else (1,) + A.shape   # numpy promotes 1-D operands
    b_s = B.shape if B.rank > 1 else B.shape + (1,)
    if a_s[-1] != b_s[-2]:
        _fail(f"matmul shapes {list(A.shape)} @ {list(B.shape)} do not match")
    try:
        batch = np.broadcast_shapes(a_s[:-2], b_s[:-2])
    except ValueError:
        _fail(f"matmul batch dims of {list(A.shape)} and {list(B.shape)} do not broadcast")
    shape = batch + ((a_s[-2],) if A.rank > 1 else ()) + ((b_s[-1],) if B.rank > 1 else ())
    return [TensorType(shape, A.dtype)]


@register_op("softmax", 1, 1, axis=-1)
def _softmax(ts, a):
    a["axis"] = _axis(a["axis"], ts[0].rank)
    return _same(ts[0])


@register_op("resize", 1, 1, mode="nearest", size=REQUIRED, scale=None, coord_mode="half_pixel",
             nearest_mode="round_prefer_floor")
def _resize(ts, a):
    x = ts[0]
    _need_rank(x, 4, "x")
    a["size"] = _pair(a["size"], "size")
    if a["scale"] is not None:  # ONNX maps coordinates with the given scale, not size/input
        a["scale"] = tuple(float(s) for s in a["scale"])
        if len(a["scale"]) != 2 or min(a["scale"]) <= 0:
            _fail(f"scale {a['scale']} must be two positive numbers")
    if a["mode"] not in ("nearest", "linear"):
        _fail(f"resize mode {a['mode']!r} not in nearest, linear")
    modes = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric")
    if a["coord_mode"] not in modes:
        _fail(f"coord_mode {a['coord_mode']!r} not in {modes}")
    nmodes = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
    if a["nearest_mode"] not in nmodes:
        _fail(f"nearest_mode {a['nearest_mode']!r} not in {nmodes}")
    if min(a["size"]) < 1:
        _fail(f"output size {a['size']} must be positive")
    return [TensorType(x.shape[:2] + a["size"], x.dtype)]


# ---- multiple-binary layers -------------------------------------------------------
def _binary_common(ts, a, x_channels):
    wb, phi, t = ts[1], ts[2], ts[3]
    for k in ("weight_basis", "act_basis"):
        if a[k] not in ("01", "pm1"):
            _fail(f"{k} {a[k]!r} must be '01' or 'pm1'")
    if wb.dtype != DType.i8 or phi.dtype != DType.f32 or t.dtype != DType.f32:
        _fail(f"weight bases must be i8 (got {wb.dtype}), phi and thresholds f32 "
              f"(got {phi.dtype}, {t.dtype})")
    m, o = wb.shape[0], wb.shape[1]
    if t.rank != 2 or t.shape[0] != x_channels or t.shape[1] < 1:
        _fail(f"thresholds shape {list(t.shape)} must be [{x_channels}, P>=1]")
    p = t.shape[1]
    if phi.shape != (o, m, p):
        _fail(f"phi shape {list(phi.shape)} must be [O={o}, M={m}, P={p}]")
    if len(ts) == 5 and ts[4].shape != (o,):
        _fail(f"bias shape {list(ts[4].shape)} != [{o}]")
    return o


@register_op("binary_conv2d", 4, 5, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1),
             groups=1, weight_basis="01", act_basis="01")
def _binary_conv2d(ts, a):
    x, wb = ts[0], ts[1]
    _need_rank(x, 4, "x")
    _need_rank(wb, 5, "weight bases")
    if not x.dtype.is_float:
        _fail(f"x must be float, got {x.dtype}")
    o = _binary_common(ts, a, x.shape[1])
    # Shape rule of the equivalent float conv with one weight basis.
    (conv_t,) = _conv2d([x, TensorType(wb.shape[1:], DType.f32)], a)
    return [TensorType(conv_t.shape[:1] + (o,) + conv_t.shape[2:], DType.f32)]


@register_op("binary_linear", 4, 5, weight_basis="01", act_basis="01")
def _binary_linear(ts, a):
    x, wb = ts[0], ts[1]
    _need_rank(x, 2, "x")
    _need_rank(wb, 3, "weight bases")
    if wb.shape[2] != x.shape[1]:
        _fail(f"weight bases {list(wb.shape)} expect {wb.shape[2]} inputs, x is {list(x.shape)}")
    o = _binary_common(ts, a, x.shape[1])
    return [TensorType((x.shape[0], o), DType.f32)]


# ---- connectivity-restricted and attention-weighted convolutions -------------------
def _geometry(a):
    a["strides"], a["dilations"] = _pair(a["strides"], "strides"), _pair(a["dilations"], "dilations")
    a["pads"] = _quad(a["pads"], "pads")
    if min(a["strides"]) < 1 or min(a["dilations"]) < 1 or min(a["pads"]) < 0:
        _fail(f"invalid strides {a['strides']} / dilations {a['dilations']} / pads {a['pads']}")


def _out_hw(x, kh, kw, a):
    pt, pl, pb, pr = a["pads"]
    return (conv_out_size(x.shape[2], kh, a["strides"][0], pt, pb, a["dilations"][0]),
            conv_out_size(x.shape[3], kw, a["strides"][1], pl, pr, a["dilations"][1]))


@register_op("indexed_conv2d", 2, 3, ranges=REQUIRED, strides=(1, 1), pads=(0, 0, 0, 0),
             dilations=(1, 1))
def _indexed_conv2d(ts, a):
    """REAF / rolling pointwise / grouped conv: output group l (channels l*O/G ..) convolves
    the concatenation of x's channel ranges ranges[l] (in order) with its rows of w."""
    x, w = ts[0], ts[1]
    _need_rank(x, 4, "x")
    _need_rank(w, 4, "weight")
    _geometry(a)
    c, (o, k, kh, kw) = x.shape[1], w.shape
    ranges = tuple(tuple((int(s), int(e)) for s, e in group) for group in a["ranges"])
    if not ranges or o % len(ranges):
        _fail(f"{len(ranges)} output groups must divide output channels {o}")
    for l, group in enumerate(ranges):
        if any(not 0 <= s < e <= c for s, e in group):
            _fail(f"group {l} ranges {list(group)} must be non-empty and inside [0, {c})")
        if sum(e - s for s, e in group) != k:
            _fail(f"group {l} reads {sum(e - s for s, e in group)} channels, weight "
                  f"{list(w.shape)} expects {k}")
    a["ranges"] = ranges
    if len(ts) == 3 and ts[2].shape != (o,):
        _fail(f"bias shape {list(ts[2].shape)} != [{o}]")
    if not (x.dtype.is_float and w.dtype.is_float):
        _fail(f"x and weight must be float, got {x.dtype} and {w.dtype}")
    return [TensorType((x.shape[0], o) + _out_hw(x, kh, kw, a), x.dtype)]


@register_op("qconv2d", 4, 4, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), groups=1,
             x_scale=REQUIRED, relu=False)
def _qconv2d(ts, a):
    x, w, scale, bias = ts
    if not x.dtype.is_float:
        _fail(f"x must be float, got {x.dtype}")
    if w.dtype not in (DType.i8, DType.i16):
        _fail(f"weight must be i8 or i16, got {w.dtype}")
    xs = float(a["x_scale"])
    if not (math.isfinite(xs) and xs > 0):
        _fail(f"x_scale must be a positive finite number, got {a['x_scale']}")
    a["x_scale"], a["relu"] = float(np.float32(xs)), bool(a["relu"])
    (conv_t,) = _conv2d([x, TensorType(w.shape, DType.f32)], a)
    o = w.shape[0]
    for name, t in (("scale", scale), ("bias", bias)):
        if t.shape != (o,) or t.dtype != DType.f32:
            _fail(f"{name} must be f32 [{o}], got {t.dtype} {list(t.shape)}")
    return [TensorType(conv_t.shape, DType.f32)]


@register_op("aw_conv2d", 3, 3, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1))
def _aw_conv2d(ts, a):
    """AW-conv (thesis eq 7.6): per-sample weights w * (1 + a[n]), a broadcast over C1."""
    x, w, att = ts
    _need_rank(x, 4, "x")
    _need_rank(w, 4, "weight")
    _geometry(a)
    n, c1 = x.shape[:2]
    c2, wc1, kh, kw = w.shape
    if wc1 != c1:
        _fail(f"weight {list(w.shape)} expects {wc1} input channels, x is {list(x.shape)}")
    if att.shape != (n, c2, kh, kw):
        _fail(f"attention shape {list(att.shape)} != [{n}, {c2}, {kh}, {kw}]")
    if not (x.dtype.is_float and x.dtype == w.dtype == att.dtype):
        _fail(f"x, weight and attention must share one float dtype, got "
              f"{x.dtype}, {w.dtype}, {att.dtype}")
    return [TensorType((n, c2) + _out_hw(x, kh, kw, a), x.dtype)]
