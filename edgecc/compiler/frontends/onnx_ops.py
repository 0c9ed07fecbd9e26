"""ONNX operator converters: one function per ONNX op, emitting IR nodes.

Each converter reads an `OnnxNode` and calls the importer context (`ctx`, see
onnx.py) to look up inputs and to emit IR nodes or bind constant results. Shape
parameters (Reshape's shape, Slice's starts, Resize's scales, ...) must be constants
at import time; `Converter.const_inputs` lists those input positions so the importer
can report a dynamic one before converting anything.

Ops marked `folds` are evaluated with numpy when all their inputs are constants
(shape subgraphs: Shape -> Gather -> Unsqueeze -> Concat -> Reshape); ops marked
`fold_only` exist only for that purpose.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ...errors import ShapeError, UnsupportedOpsError


@dataclass
class OnnxNode:
    """One ONNX node with decoded attributes and the op version in effect."""
    name: str
    op: str
    inputs: list[str]    # "" marks an omitted optional input
    outputs: list[str]
    attrs: dict[str, Any]
    version: int         # since_version of the op schema the model's opset selects
    opset: int = 0       # the model's opset for the node's domain
    domain: str = ""

    def input(self, i: int) -> str:
        return self.inputs[i] if i < len(self.inputs) else ""

    def output(self, i: int) -> str:
        return self.outputs[i] if i < len(self.outputs) else ""

    def where(self) -> str:
        return f"node {self.name!r} (op {self.op})"

    def fail(self, msg: str):
        raise ShapeError(f"{self.where()}: {msg}")

    def unsupported(self, reason: str):
        raise UnsupportedOpsError([(self.op, f"ai.onnx opset {self.opset}: {reason}", [self.name])])


def decode_attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, onnx.TensorProto):
            v = numpy_helper.to_array(v)
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [s.decode("utf-8", "replace") for s in v]
        out[a.name] = v
    return out


@dataclass(frozen=True)
class Converter:
    convert: Callable[[Any, OnnxNode], None]
    min_version: int = 1
    const_inputs: tuple[int, ...] = ()     # input positions that must be constant
    check: Callable[[OnnxNode, Callable[[str], int | None]], str | None] | None = None
    folds: bool = False                    # all inputs constant -> outputs constant
    fold_only: bool = False                # supported only when all inputs are constant
    shape_only: bool = False               # output depends only on the input's (static) shape


CONVERTERS: dict[str, Converter] = {}


def converter(*ops: str, **kw):
    def deco(fn):
        for op in ops:
            CONVERTERS[op] = Converter(fn, **kw)
        return fn
    return deco


# ---- helpers --------------------------------------------------------------------
def _ints(v) -> list[int]:
    return [int(x) for x in np.asarray(v).reshape(-1)]


def _norm_axis(n: OnnxNode, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        n.fail(f"axis {axis} out of range for rank {rank}")
    return axis % rank


def _rank_is(rank_of, name: str, want: int) -> bool:
    r = rank_of(name)
    return r is None or r == want


def _same_pads(auto_pad, in_hw, kernel, strides, dilations):
    """Explicit (top, left, bottom, right) pads for auto_pad SAME_UPPER/SAME_LOWER:
    output size ceil(in / stride); SAME_UPPER puts the odd extra pad at the end."""
    lo, hi = [], []
    for size, k, s, d in zip(in_hw, kernel, strides, dilations):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small = total // 2
        lo.append(small if auto_pad == "SAME_UPPER" else total - small)
        hi.append(total - small if auto_pad == "SAME_UPPER" else small)
    return tuple(lo + hi)


def _window_attrs(n: OnnxNode, in_hw, kernel):
    """strides, dilations and explicit pads of a Conv/MaxPool/AveragePool node."""
    strides = tuple(_ints(n.attrs.get("strides", [1, 1])))
    dilations = tuple(_ints(n.attrs.get("dilations", [1, 1])))
    auto_pad = n.attrs.get("auto_pad", "NOTSET") or "NOTSET"
    if auto_pad == "NOTSET":
        pads = tuple(_ints(n.attrs.get("pads", [0, 0, 0, 0])))
    elif auto_pad == "VALID":
        pads = (0, 0, 0, 0)
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = _same_pads(auto_pad, in_hw, kernel, strides, dilations)
    else:
        n.fail(f"auto_pad {auto_pad!r} not in NOTSET, VALID, SAME_UPPER, SAME_LOWER")
    if len(strides) != 2 or len(dilations) != 2 or len(pads) != 4:
        n.fail(f"expected 2 strides, 2 dilations and 4 pads, got {strides}, {dilations}, {pads}")
    return strides, dilations, pads


def _check_2d_window(n: OnnxNode, rank_of) -> str | None:
    k = n.attrs.get("kernel_shape")
    if k is not None and len(k) != 2:
        return f"{len(k)}-D windows (only 2-D, NCHW, is in the IR)"
    if not _rank_is(rank_of, n.input(0), 4):
        return f"input rank {rank_of(n.input(0))} (only 2-D, NCHW, is in the IR)"
    return None


# ---- convolution / normalization ------------------------------------------------
def _check_conv(n, rank_of):
    return _check_2d_window(n, rank_of)


@converter("Conv", check=_check_conv)
def _conv(ctx, n):
    x, w = ctx.value(n.input(0)), ctx.value(n.input(1))
    if w.type.rank != 4 or x.type.rank != 4:
        n.fail(f"only 2-D convolution: x {list(x.shape)}, weight {list(w.shape)}")
    kernel = tuple(w.shape[2:])
    if "kernel_shape" in n.attrs and tuple(_ints(n.attrs["kernel_shape"])) != kernel:
        n.fail(f"kernel_shape {n.attrs['kernel_shape']} != weight shape {list(w.shape)}")
    strides, dilations, pads = _window_attrs(n, x.shape[2:], kernel)
    ins = [x, w] + ([ctx.value(n.input(2))] if n.input(2) else [])
    ctx.emit(n, "conv2d", ins, dict(strides=strides, pads=pads, dilations=dilations,
                                    groups=int(n.attrs.get("group", 1))))


def _check_bn(n, rank_of):
    if n.attrs.get("training_mode", 0):
        return "training_mode=1 (batch statistics; only inference is supported)"
    if any(n.outputs[1:]):
        return "running mean/var outputs requested (training mode)"
    if n.attrs.get("spatial", 1) != 1:
        return "spatial=0 (per-element statistics)"
    if n.attrs.get("is_test", 1) == 0 and n.version < 7:
        return "is_test=0 (training mode)"
    return None


@converter("BatchNormalization", min_version=6, check=_check_bn)
def _bn(ctx, n):
    ins = [ctx.value(n.input(i)) for i in range(5)]
    ctx.emit(n, "batch_norm", ins, dict(eps=float(n.attrs.get("epsilon", 1e-5))))


# ---- elementwise unary ----------------------------------------------------------
_UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Sign": "sign",
          "HardSwish": "hardswish"}


@converter(*_UNARY, min_version=6)
def _unary(ctx, n):
    ctx.emit(n, _UNARY[n.op], [ctx.value(n.input(0))], {})


@converter("LeakyRelu", min_version=6)
def _leaky(ctx, n):
    ctx.emit(n, "leaky_relu", [ctx.value(n.input(0))],
             dict(alpha=float(n.attrs.get("alpha", 0.01))))


@converter("HardSigmoid", min_version=6)
def _hsig(ctx, n):
    ctx.emit(n, "hardsigmoid", [ctx.value(n.input(0))],
             dict(alpha=float(n.attrs.get("alpha", 0.2)), beta=float(n.attrs.get("beta", 0.5))))


@converter("PRelu", min_version=7)
def _prelu(ctx, n):
    ctx.emit(n, "prelu", [ctx.value(n.input(0)), ctx.value(n.input(1))], {})


@converter("Clip", min_version=6, const_inputs=(1, 2))
def _clip(ctx, n):
    if n.version < 11:  # bounds are attributes before opset 11
        lo, hi = n.attrs.get("min"), n.attrs.get("max")
    else:
        lo = ctx.const(n.input(1)).item() if n.input(1) else None
        hi = ctx.const(n.input(2)).item() if n.input(2) else None
    if lo is not None and hi is not None and lo > hi:
        lo = hi  # ONNX: min > max sets every element to max
    ctx.emit(n, "clip", [ctx.value(n.input(0))],
             dict(min=None if lo is None else float(lo), max=None if hi is None else float(hi)))


@converter("Identity", folds=True)
def _identity(ctx, n):
    if ctx.is_const(n.input(0)):
        ctx.bind_const(n.output(0), ctx.const(n.input(0)))
    else:
        ctx.bind(n.output(0), ctx.value(n.input(0)))  # no node needed: alias the value


@converter("Dropout", min_version=7, const_inputs=(2,), folds=True)
def _dropout(ctx, n):
    if n.version < 7 or n.attrs.get("is_test", 1) == 0:
        n.unsupported("training mode")
    if n.input(2) and bool(ctx.const(n.input(2)).item()):
        n.unsupported("training_mode=True (random masking)")
    x = n.input(0)
    if ctx.is_const(x):
        ctx.bind_const(n.output(0), ctx.const(x))
    else:
        ctx.bind(n.output(0), ctx.value(x))
    if n.output(1):  # inference: the mask keeps every element
        mask_dtype = np.bool_ if n.version >= 10 else ctx.dtype(x)
        ctx.bind_const(n.output(1), np.ones(ctx.shape(x), dtype=mask_dtype))


# ---- pooling --------------------------------------------------------------------
def _check_pool(n, rank_of):
    why = _check_2d_window(n, rank_of)
    if why:
        return why
    if n.op == "MaxPool" and n.output(1):
        return "Indices output (argmax) requested"
    if n.op == "AveragePool" and any(d != 1 for d in n.attrs.get("dilations", [1, 1])):
        return f"dilations {n.attrs['dilations']} (avg_pool2d has no dilation)"
    return None


@converter("MaxPool", "AveragePool", check=_check_pool)
def _pool(ctx, n):
    x = ctx.value(n.input(0))
    if x.type.rank != 4:
        n.fail(f"only 2-D pooling: x {list(x.shape)}")
    kernel = tuple(_ints(n.attrs["kernel_shape"]))
    strides, dilations, pads = _window_attrs(n, x.shape[2:], kernel)
    attrs = dict(kernel=kernel, strides=strides, pads=pads,
                 ceil_mode=bool(n.attrs.get("ceil_mode", 0)))
    if n.op == "MaxPool":
        ctx.emit(n, "max_pool2d", [x], dict(attrs, dilations=dilations))
    else:
        ctx.emit(n, "avg_pool2d", [x],
                 dict(attrs, count_include_pad=bool(n.attrs.get("count_include_pad", 0))))


@converter("GlobalAveragePool")
def _gap(ctx, n):
    ctx.emit(n, "global_avg_pool", [ctx.value(n.input(0))], {})


# ---- elementwise binary ---------------------------------------------------------
def _div_trunc(a, b):
    if np.issubdtype(a.dtype, np.integer):  # ONNX integer Div truncates toward zero
        if np.any(b == 0):
            raise ZeroDivisionError("integer division by zero")
        return (np.abs(a) // np.abs(b) * np.sign(a) * np.sign(b)).astype(a.dtype)
    return np.divide(a, b)


_BINARY = {"Add": ("add", np.add), "Sub": ("sub", np.subtract), "Mul": ("mul", np.multiply),
           "Div": ("div", _div_trunc)}


@converter(*_BINARY, min_version=7, folds=True)
def _binary(ctx, n):
    ir_op, fn = _BINARY[n.op]
    a, b = n.input(0), n.input(1)
    if ctx.is_const(a) and ctx.is_const(b):
        x, y = ctx.const(a), ctx.const(b)
        if x.dtype != y.dtype:
            n.fail(f"dtype mismatch {x.dtype} vs {y.dtype}")
        ctx.bind_const(n.output(0), np.asarray(fn(x, y)).astype(x.dtype))
    else:
        ctx.emit(n, ir_op, [ctx.value(a), ctx.value(b)], {})


@converter("Sum", min_version=6)
def _sum(ctx, n):
    vals = [ctx.value(i) for i in n.inputs]
    if len(vals) == 1:
        ctx.emit(n, "identity", vals, {})
        return
    acc = vals[0]
    for i, v in enumerate(vals[1:], start=1):  # a chain of adds, the last one named as ONNX
        last = i == len(vals) - 1
        acc = ctx.emit(n, "add", [acc, v], {}, out=None if last else f"{n.name}/add{i}")


# ---- shape manipulation ---------------------------------------------------------
@converter("Concat", min_version=4, folds=True)
def _concat(ctx, n):
    names = [i for i in n.inputs if i]
    if "axis" not in n.attrs:
        n.fail("missing attribute 'axis'")
    if all(ctx.is_const(i) for i in names):
        arrs = [ctx.const(i) for i in names]
        ax = _norm_axis(n, int(n.attrs["axis"]), arrs[0].ndim)
        ctx.bind_const(n.output(0), np.concatenate(arrs, axis=ax))
    else:
        ctx.emit(n, "concat", [ctx.value(i) for i in names], dict(axis=int(n.attrs["axis"])))


@converter("Split", min_version=2, const_inputs=(1,))
def _split(ctx, n):
    x = ctx.value(n.input(0))
    ax = _norm_axis(n, int(n.attrs.get("axis", 0)), x.type.rank)
    dim, k = x.shape[ax], len(n.outputs)
    if n.version >= 13 and n.input(1):
        sizes = _ints(ctx.const(n.input(1)))
    elif n.version < 13 and "split" in n.attrs:
        sizes = _ints(n.attrs["split"])
    elif "num_outputs" in n.attrs:  # opset 18: equal chunks, the last one smaller
        k = int(n.attrs["num_outputs"])
        chunk = -(-dim // k)
        sizes = [min(chunk, dim - i * chunk) for i in range(k)]
    else:
        if dim % k:
            n.fail(f"cannot split dim {dim} of axis {ax} into {k} equal parts")
        sizes = [dim // k] * k
    if len(sizes) != len(n.outputs):
        n.fail(f"{len(sizes)} split sizes for {len(n.outputs)} outputs")
    ctx.emit(n, "split", [x], dict(axis=ax, sizes=tuple(sizes)), out=list(n.outputs))


def _onnx_slice_bounds(n, dim, s, e, st):
    """ONNX Slice clamping (differs from Python's for negative steps)."""
    s = s + dim if s < 0 else s
    e = e + dim if e < 0 else e
    if st > 0:
        return min(max(s, 0), dim), min(max(e, 0), dim)
    return min(max(s, 0), dim - 1), min(max(e, -1), dim - 1)


@converter("Slice", const_inputs=(1, 2, 3, 4), folds=True)
def _slice(ctx, n):
    xn = n.input(0)
    shape = ctx.shape(xn)
    if n.version < 10:
        starts, ends = _ints(n.attrs["starts"]), _ints(n.attrs["ends"])
        axes = _ints(n.attrs["axes"]) if "axes" in n.attrs else list(range(len(starts)))
        steps = [1] * len(starts)
    else:
        starts, ends = _ints(ctx.const(n.input(1))), _ints(ctx.const(n.input(2)))
        axes = _ints(ctx.const(n.input(3))) if n.input(3) else list(range(len(starts)))
        steps = _ints(ctx.const(n.input(4))) if n.input(4) else [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        n.fail(f"starts {starts}, ends {ends}, axes {axes}, steps {steps} differ in length")
    axes = [_norm_axis(n, a, len(shape)) for a in axes]
    if any(st == 0 for st in steps):
        n.fail("slice step must not be 0")
    bounds = [_onnx_slice_bounds(n, shape[a], s, e, st)
              for s, e, a, st in zip(starts, ends, axes, steps)]
    if ctx.is_const(xn):
        sl = [slice(None)] * len(shape)
        for (s, e), a, st in zip(bounds, axes, steps):
            sl[a] = slice(s, e if e >= 0 else None, st)
        ctx.bind_const(n.output(0), ctx.const(xn)[tuple(sl)].copy())
        return
    # ends = -1 after clamping means "through index 0" (negative step); in Python slice
    # terms that is any end below -dim
    ctx.emit(n, "slice", [ctx.value(xn)],
             dict(starts=[b[0] for b in bounds],
                  ends=[b[1] if b[1] >= 0 else -(shape[a] + 1) for b, a in zip(bounds, axes)],
                  axes=axes,
                  steps=steps))


def _reshape_to(ctx, n, shape):
    """Emit a reshape of input 0 to `shape` (or fold it when input 0 is constant)."""
    xn = n.input(0)
    shape = tuple(int(d) for d in shape)
    if ctx.is_const(xn):
        ctx.bind_const(n.output(0), ctx.const(xn).reshape(shape))
    else:
        ctx.emit(n, "reshape", [ctx.value(xn)], dict(shape=shape))


@converter("Reshape", min_version=5, const_inputs=(1,), folds=True)
def _reshape(ctx, n):
    src = ctx.shape(n.input(0))
    spec = _ints(ctx.const(n.input(1)))
    allowzero = bool(n.attrs.get("allowzero", 0))
    out = []
    for i, d in enumerate(spec):
        if d == 0 and not allowzero:  # 0 copies the input dim
            if i >= len(src):
                n.fail(f"shape {spec} copies dim {i} of input {list(src)} that does not exist")
            d = src[i]
        out.append(d)
    if out.count(-1) > 1 or any(d < -1 for d in out):
        n.fail(f"invalid target shape {spec}")
    total = math.prod(src)
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        if known == 0 or total % known:
            n.fail(f"cannot reshape {list(src)} to {spec}")
        out[out.index(-1)] = total // known
    if math.prod(out) != total:
        n.fail(f"cannot reshape {list(src)} ({total} elements) to {spec}")
    _reshape_to(ctx, n, out)


@converter("Flatten", folds=True)
def _flatten(ctx, n):
    src = ctx.shape(n.input(0))
    ax = int(n.attrs.get("axis", 1))
    ax = ax + len(src) if ax < 0 else ax
    if not 0 <= ax <= len(src):
        n.fail(f"axis {n.attrs.get('axis')} out of range for rank {len(src)}")
    if ctx.is_const(n.input(0)):
        _reshape_to(ctx, n, (math.prod(src[:ax]), math.prod(src[ax:])))
    else:
        ctx.emit(n, "flatten", [ctx.value(n.input(0))], dict(axis=ax))


def _axes(ctx, n) -> list[int] | None:
    if n.version >= 13:
        return _ints(ctx.const(n.input(1))) if n.input(1) else None
    return _ints(n.attrs["axes"]) if "axes" in n.attrs else None


@converter("Squeeze", const_inputs=(1,), folds=True)
def _squeeze(ctx, n):
    src = ctx.shape(n.input(0))
    axes = _axes(ctx, n)
    if axes is None:
        drop = {i for i, d in enumerate(src) if d == 1}
    else:
        drop = {_norm_axis(n, a, len(src)) for a in axes}
        bad = [a for a in drop if src[a] != 1]
        if bad:
            n.fail(f"cannot squeeze axes {sorted(bad)} of shape {list(src)} (size != 1)")
    _reshape_to(ctx, n, [d for i, d in enumerate(src) if i not in drop])


@converter("Unsqueeze", const_inputs=(1,), folds=True)
def _unsqueeze(ctx, n):
    src = ctx.shape(n.input(0))
    axes = _axes(ctx, n)
    if axes is None:
        n.fail("missing axes")
    rank = len(src) + len(axes)
    norm = sorted(_norm_axis(n, a, rank) for a in axes)
    if len(set(norm)) != len(norm):
        n.fail(f"repeated axes {axes}")
    out, it = [], iter(src)
    for i in range(rank):
        out.append(1 if i in norm else next(it))
    _reshape_to(ctx, n, out)


@converter("Transpose", folds=True)
def _transpose(ctx, n):
    rank = len(ctx.shape(n.input(0)))
    perm = _ints(n.attrs["perm"]) if "perm" in n.attrs else list(range(rank))[::-1]
    if ctx.is_const(n.input(0)):
        if sorted(perm) != list(range(rank)):
            n.fail(f"perm {perm} is not a permutation of rank {rank}")
        ctx.bind_const(n.output(0), ctx.const(n.input(0)).transpose(perm))
    else:
        ctx.emit(n, "transpose", [ctx.value(n.input(0))], dict(perm=perm))


def _check_pad(n, rank_of):
    mode = n.attrs.get("mode", "constant")
    if mode not in ("constant", "reflect", "edge"):
        return f"mode {mode!r} (the IR pads constant, reflect, edge)"
    return None


@converter("Pad", min_version=2, const_inputs=(1, 2, 3), check=_check_pad)
def _pad(ctx, n):
    x = ctx.value(n.input(0))
    rank = x.type.rank
    if n.version < 11:
        pads, value = _ints(n.attrs["pads"]), float(n.attrs.get("value", 0.0))
    else:
        pads = _ints(ctx.const(n.input(1)))
        value = ctx.const(n.input(2)).item() if n.input(2) else 0.0
        if n.input(3):  # opset 18: pads for the listed axes only
            axes = [_norm_axis(n, a, rank) for a in _ints(ctx.const(n.input(3)))]
            if len(pads) != 2 * len(axes):
                n.fail(f"pads {pads} need 2 values per axis in {axes}")
            full = [0] * (2 * rank)
            for i, a in enumerate(axes):
                full[a], full[a + rank] = pads[i], pads[i + len(axes)]
            pads = full
    ctx.emit(n, "pad", [x], dict(pads=pads, mode=n.attrs.get("mode", "constant"),
                                 value=float(value)))


# ---- dense ----------------------------------------------------------------------
@converter("Gemm", min_version=6)
def _gemm(ctx, n):
    ins = [ctx.value(n.input(0)), ctx.value(n.input(1))]
    if n.input(2):
        ins.append(ctx.value(n.input(2)))
    ctx.emit(n, "gemm", ins, dict(alpha=float(n.attrs.get("alpha", 1.0)),
                                  beta=float(n.attrs.get("beta", 1.0)),
                                  trans_a=bool(n.attrs.get("transA", 0)),
                                  trans_b=bool(n.attrs.get("transB", 0))))


@converter("MatMul")
def _matmul(ctx, n):
    ctx.emit(n, "matmul", [ctx.value(n.input(0)), ctx.value(n.input(1))], {})


@converter("Softmax")
def _softmax(ctx, n):
    x = ctx.value(n.input(0))
    rank = x.type.rank
    if n.version >= 13:
        ctx.emit(n, "softmax", [x], dict(axis=int(n.attrs.get("axis", -1))))
        return
    # Before opset 13 Softmax works on x coerced to 2-D [prod(:axis), prod(axis:)].
    ax = int(n.attrs.get("axis", 1))
    ax = ax + rank if ax < 0 else ax
    if not 0 <= ax < max(rank, 1):
        n.fail(f"axis {n.attrs.get('axis')} out of range for rank {rank}")
    if math.prod(x.shape[ax + 1:]) == 1:  # same as a softmax along `ax`
        ctx.emit(n, "softmax", [x], dict(axis=ax))
        return
    flat = ctx.emit(n, "flatten", [x], dict(axis=ax), out=f"{n.name}/flatten")
    sm = ctx.emit(n, "softmax", [flat], dict(axis=1), out=f"{n.name}/softmax")
    ctx.emit(n, "reshape", [sm], dict(shape=x.shape))


# ---- resize ---------------------------------------------------------------------
_COORD_MODES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric")


def _check_resize(n, rank_of):
    mode = n.attrs.get("mode", "nearest")
    if mode not in ("nearest", "linear", "bilinear"):
        return f"mode {mode!r} (the IR resizes nearest and linear)"
    cm = n.attrs.get("coordinate_transformation_mode", "half_pixel")
    if n.op == "Resize" and n.version >= 11 and cm not in _COORD_MODES:
        return f"coordinate_transformation_mode {cm!r} (IR: {', '.join(_COORD_MODES)})"
    if n.attrs.get("antialias", 0):
        return "antialias=1"
    if not _rank_is(rank_of, n.input(0), 4):
        return f"input rank {rank_of(n.input(0))} (the IR resizes 4-D NCHW)"
    return None


@converter("Resize", min_version=10, const_inputs=(1, 2, 3), check=_check_resize)
@converter("Upsample", min_version=7, const_inputs=(1,), check=_check_resize)
def _resize(ctx, n):
    x = ctx.value(n.input(0))
    if x.type.rank != 4:
        n.fail(f"only 4-D NCHW resize: x {list(x.shape)}")
    in_hw = x.shape[2:]
    if n.op == "Upsample" and n.version < 9:
        scales, sizes = list(n.attrs["scales"]), None
    elif n.op == "Upsample" or n.version == 10:
        scales, sizes = _ints_or_floats(ctx.const(n.input(1))), None
    else:
        scales = _ints_or_floats(ctx.const(n.input(2))) if n.input(2) else []
        sizes = _ints(ctx.const(n.input(3))) if n.input(3) else None
        scales = scales or None
    axes = _ints(n.attrs["axes"]) if "axes" in n.attrs else None
    scales, sizes = _spatial_params(n, x.shape, scales, sizes, axes)
    policy = n.attrs.get("keep_aspect_ratio_policy", "stretch")
    if sizes is not None and policy != "stretch":
        pick = min if policy == "not_larger" else max
        s = pick(o / i for o, i in zip(sizes, in_hw))
        sizes = tuple(int(math.floor(s * i + 0.5)) for i in in_hw)
        scales = (s, s)
    if sizes is None:
        sizes = tuple(int(math.floor(i * s)) for i, s in zip(in_hw, scales))
    mode = "linear" if n.attrs.get("mode", "nearest") in ("linear", "bilinear") else "nearest"
    if n.op == "Upsample" or n.version == 10:
        # Old Upsample/Resize: asymmetric mapping; nearest truncates (rounds up when
        # downsampling, as ONNX Runtime does).
        coord = "asymmetric"
        up = all(s >= 1 for s in scales)
        if not up and any(s > 1 for s in scales):
            n.unsupported(f"nearest up- and downsampling at once (scales {scales})")
        nearest = "floor" if up else "ceil"
    else:
        coord = n.attrs.get("coordinate_transformation_mode", "half_pixel")
        nearest = n.attrs.get("nearest_mode", "round_prefer_floor")
    ctx.emit(n, "resize", [x], dict(mode=mode, size=sizes, scale=scales, coord_mode=coord,
                                    nearest_mode=nearest))


def _ints_or_floats(a: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(a).reshape(-1)]


def _spatial_params(n, shape, scales, sizes, axes):
    """(scales, sizes) for H, W only; N and C must stay unchanged."""
    rank = len(shape)
    axes = list(range(rank)) if axes is None else [_norm_axis(n, a, rank) for a in axes]
    given = scales if sizes is None else sizes
    if given is None or len(given) != len(axes):
        n.fail(f"need one scale or size per axis {axes}, got scales={scales} sizes={sizes}")
    full = dict(zip(axes, given))
    for a in (0, 1):
        keep = 1.0 if sizes is None else shape[a]
        if a in full and full[a] != keep:
            n.unsupported(f"resizing axis {a} (only H and W of NCHW)")
    hw = tuple(full.get(a, 1.0 if sizes is None else shape[a]) for a in (2, 3))
    if sizes is None:
        if min(hw) <= 0:
            n.fail(f"scales {scales} must be positive")
        return tuple(float(s) for s in hw), None
    return None, tuple(int(s) for s in hw)


# ---- constants and shape subgraphs (evaluated at import time) --------------------
_CONSTANT_KINDS = ("value", "value_float", "value_floats", "value_int", "value_ints")


def _check_constant(n, rank_of):
    if not any(k in n.attrs for k in _CONSTANT_KINDS):
        return f"constant kind {sorted(n.attrs)} (sparse and string constants are not tensors " \
               "of an IR dtype)"
    return None


@converter("Constant", folds=True, check=_check_constant)
def _constant(ctx, n):
    a = n.attrs
    if "value" in a:
        arr = a["value"]
    elif "value_float" in a:
        arr = np.array(a["value_float"], dtype=np.float32)
    elif "value_floats" in a:
        arr = np.array(a["value_floats"], dtype=np.float32)
    elif "value_int" in a:
        arr = np.array(a["value_int"], dtype=np.int64)
    else:
        arr = np.array(a["value_ints"], dtype=np.int64)
    ctx.bind_const(n.output(0), np.asarray(arr))


@converter("Shape", shape_only=True)
def _shape(ctx, n):
    shape = ctx.shape(n.input(0))
    start, end = int(n.attrs.get("start", 0)), n.attrs.get("end")
    ctx.bind_const(n.output(0), np.array(shape[slice(start, None if end is None else int(end))],
                                         dtype=np.int64))


@converter("Size", shape_only=True)
def _size(ctx, n):
    ctx.bind_const(n.output(0), np.array(math.prod(ctx.shape(n.input(0))), dtype=np.int64))


def _fold(fn):
    """A fold-only converter from a function of the constant input arrays."""
    def convert(ctx, n):
        ins = [ctx.const(i) if i else None for i in n.inputs]
        try:
            out = fn(n, *ins)
        except (ValueError, IndexError, TypeError, ZeroDivisionError) as e:
            n.fail(f"cannot evaluate on constant inputs: {e}")
        ctx.bind_const(n.output(0), np.asarray(out))
    return convert


def _gather(n, data, idx):
    ax = _norm_axis(n, int(n.attrs.get("axis", 0)), data.ndim)
    dim = data.shape[ax]
    if np.any((idx < -dim) | (idx >= dim)):
        n.fail(f"indices {idx.tolist()} out of range for dim {dim}")
    return np.take(data, np.where(idx < 0, idx + dim, idx), axis=ax)


def _cast(n, x):
    return x.astype(helper.tensor_dtype_to_np_dtype(int(n.attrs["to"])))


def _constant_of_shape(n, shape):
    v = n.attrs.get("value")
    v = np.zeros(1, np.float32) if v is None else np.asarray(v).reshape(-1)
    return np.full(_ints(shape), v[0], dtype=v.dtype)


_FOLD_ONLY = {
    "Gather": _gather,
    "Cast": _cast,
    "ConstantOfShape": _constant_of_shape,
    "Range": lambda n, s, e, d: np.arange(s, e, d, dtype=s.dtype),
    "Equal": lambda n, a, b: np.equal(a, b),
    "Where": lambda n, c, a, b: np.where(c, a, b),
    "Floor": lambda n, x: np.floor(x),
    "Ceil": lambda n, x: np.ceil(x),
}
for _op, _fn in _FOLD_ONLY.items():
    CONVERTERS[_op] = Converter(_fold(_fn), folds=True, fold_only=True)


# Comparisons / Where / Gather on run-time values (sign binarization, channel gathers);
# imported last: it wraps the fold-only Gather above.
from . import onnx_ops_compare  # noqa: E402,F401
