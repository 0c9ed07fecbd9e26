"""Direct 2-D convolution baselines (native): fp32 and exact integer.

NCHW activations, OIHW weights, NCHW output. Geometry: stride and dilation are an
int or (h, w); padding is an int, (h, w) or (top, left, bottom, right); groups
divides both channel counts (groups == C with one input channel per group is
depthwise). threads=0 uses the OpenMP default; isa="" picks the best ISA (or the
EDGECC_ISA environment variable), "avx512" / "avx2" / "scalar" force one.

Integer results are exact: int8 x int8 sums in int32 when C/groups*KH*KW <=
131071 (|sum| <= K * 128 * 128 < 2^31), otherwise in int64; int16 x int16 always
in int64.

DirectConv2d packs a layer's weights once (what a compiled model uses);
conv2d_f32 / conv2d_int pack them on every call; conv2d_f32_naive /
conv2d_int_naive are the textbook seven-loop baselines.
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import _native
from ..errors import InputError

QS8_MAX_REDUCTION_I32 = 131071  # K * 128 * 128 <= 2^31 - 1
ISAS = ("", "avx512", "avx2", "scalar")


class ConvArgumentError(InputError, ValueError):
    """A convolution argument is invalid; caught as InputError or ValueError."""


def _int(value, name: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ConvArgumentError(f"conv2d: {name} must be an integer, got {value!r}")
    if value < minimum:
        raise ConvArgumentError(f"conv2d: {name} must be >= {minimum}, got {value}")
    return int(value)


def _ints(value, name: str, sizes: tuple[int, ...], minimum: int) -> tuple[int, ...]:
    """An int or a tuple of one of `sizes` lengths -> tuple of the longest size."""
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        return (_int(value, name, minimum),) * sizes[-1]
    try:
        items = tuple(value)
    except TypeError:
        raise ConvArgumentError(f"conv2d: {name} must be an int or a tuple of {' or '.join(map(str, sizes))} ints, "
                                f"got {value!r}") from None
    if len(items) not in sizes:
        raise ConvArgumentError(f"conv2d: {name} must have {' or '.join(map(str, sizes))} values, got {value!r}")
    items = tuple(_int(v, name, minimum) for v in items)
    return items * 2 if len(items) * 2 == sizes[-1] else items


def _geometry(stride, padding, dilation, groups):
    stride = _ints(stride, "stride", (2,), 1)
    dilation = _ints(dilation, "dilation", (2,), 1)
    padding = _ints(padding, "padding", (2, 4), 0)  # (h, w) -> (top, left, bottom, right)
    return stride, padding, dilation, _int(groups, "groups", 1)


def _array(a, name: str) -> np.ndarray:
    """x or w as a 4-D numpy array (NCHW / OIHW)."""
    if not isinstance(a, np.ndarray):
        try:
            a = np.asarray(a)
        except Exception as exc:  # noqa: BLE001 - report what could not be converted
            raise ConvArgumentError(f"conv2d: {name} is not array-like ({type(a).__name__})") from exc
    if a.ndim != 4:
        raise ConvArgumentError(f"conv2d: {name} must be 4-D {'NCHW' if name == 'x' else 'OIHW'}, got shape {a.shape}")
    return a


def _check_shapes(x_shape, w_shape, stride, padding, dilation, groups) -> None:
    n, c, h, wd = x_shape
    o, cg, kh, kw = w_shape
    if min(x_shape) < 1:
        raise ConvArgumentError(f"conv2d: x has an empty dimension, shape {x_shape}")
    if min(w_shape) < 1:
        raise ConvArgumentError(f"conv2d: w has an empty dimension, shape {w_shape}")
    if c % groups:
        raise ConvArgumentError(f"conv2d: input channels {c} (x shape {x_shape}) not divisible by groups={groups}")
    if o % groups:
        raise ConvArgumentError(f"conv2d: output channels {o} (w shape {w_shape}) not divisible by groups={groups}")
    if cg * groups != c:
        raise ConvArgumentError(f"conv2d: w shape {w_shape} expects {cg * groups} input channels with "
                                f"groups={groups}, x shape {x_shape} has {c}")
    for axis, size, k, d, p0, p1 in (("height", h, kh, dilation[0], padding[0], padding[2]),
                                     ("width", wd, kw, dilation[1], padding[1], padding[3])):
        if size + p0 + p1 < d * (k - 1) + 1:
            raise ConvArgumentError(f"conv2d: padded input {axis} {size + p0 + p1} (x shape {x_shape}) is smaller "
                                    f"than the dilated kernel {axis} {d * (k - 1) + 1} (w shape {w_shape})")


def _check_common(threads, isa) -> int:
    threads = _int(threads, "threads", 0)
    if isa not in ISAS:
        raise ConvArgumentError(f"conv2d: isa must be one of {ISAS}, got {isa!r}")
    return threads


def _f32_bias(bias, out_channels: int, fn_name: str):
    """None, or the bias as a contiguous float32 array of shape (out_channels,)."""
    if bias is None:
        return None
    bias = np.asarray(bias)
    if bias.dtype != np.float32 or bias.shape != (out_channels,):
        raise ConvArgumentError(f"{fn_name}: bias must be float32 of shape ({out_channels},), "
                                f"got {bias.dtype} {bias.shape}")
    return np.ascontiguousarray(bias)


def _native_call(fn, *args):
    try:
        return fn(*args)
    except ValueError as exc:  # native validation (also: ISA not supported on this CPU)
        raise ConvArgumentError(str(exc)) from None


class DirectConv2d:
    """A convolution layer with its weights packed once for the chosen ISA.

    `w` (OIHW) decides the kind: float32 -> fp32 (optional float32 bias);
    int8 -> exact int32 results (int64 when acc='i64' or the reduction is too
    long for int32); int16 -> exact int64 results. Call it with NCHW inputs of
    any batch and spatial size: `layer(x, threads=0)`.
    """

    def __init__(self, w, bias=None, *, stride=1, padding=0, dilation=1, groups=1, acc="auto", isa=""):
        w = _array(w, "w")
        self.stride, self.padding, self.dilation, self.groups = _geometry(stride, padding, dilation, groups)
        _check_common(0, isa)
        if min(w.shape) < 1:
            raise ConvArgumentError(f"conv2d: w has an empty dimension, shape {w.shape}")
        if w.shape[0] % self.groups:
            raise ConvArgumentError(f"conv2d: output channels {w.shape[0]} (w shape {w.shape}) not divisible by "
                                    f"groups={self.groups}")
        if w.dtype == np.float32:
            if acc != "auto":
                raise ConvArgumentError(f"conv2d: acc={acc!r} is for integer weights; float32 accumulates in float32")
            bias = _f32_bias(bias, w.shape[0], "conv2d_f32")
            plan_type, self.in_dtype, self.out_dtype = _native.DirectConv2dF32, np.float32, np.float32
        elif w.dtype in (np.int8, np.int16):
            if bias is not None:
                raise ConvArgumentError("conv2d_int: bias is not supported for integer convolution (add it to the "
                                        "int32/int64 result)")
            acc = _accumulator("conv2d_int", w.dtype, w.shape, acc)
            if w.dtype == np.int8 and acc == "i32":
                plan_type, self.in_dtype, self.out_dtype = _native.DirectConv2dQs8, np.int8, np.int32
            else:  # int64 accumulation: int16 holds int8 exactly
                w = w.astype(np.int16)
                plan_type, self.in_dtype, self.out_dtype = _native.DirectConv2dQs16, np.int16, np.int64
        else:
            raise ConvArgumentError(f"conv2d: w must be float32, int8 or int16, got {w.dtype} (shape {w.shape})")
        self.in_dtype, self.out_dtype = np.dtype(self.in_dtype), np.dtype(self.out_dtype)
        self.weight_shape = w.shape
        self._plan = _native_call(plan_type, np.ascontiguousarray(w), bias, self.stride, self.padding,
                                  self.dilation, self.groups, isa)

    @property
    def kernel_name(self) -> str:
        return self._plan.kernel_name

    @property
    def isa(self) -> str:
        return self._plan.isa

    def __call__(self, x, *, threads=0) -> np.ndarray:
        x = _array(x, "x")
        threads = _check_common(threads, "")
        if x.dtype != self.in_dtype:
            # int8 inputs of an int64-accumulating layer widen exactly; nothing else converts.
            if not (self.in_dtype == np.int16 and x.dtype == np.int8):
                raise ConvArgumentError(f"conv2d: x must be {self.in_dtype} for {self.weight_shape[0]}-channel "
                                        f"{self.kernel_name}, got {x.dtype} (shape {x.shape})")
            x = x.astype(np.int16)
        _check_shapes(x.shape, self.weight_shape, self.stride, self.padding, self.dilation, self.groups)
        return _native_call(self._plan.run, np.ascontiguousarray(x), threads)


def conv2d_f32(x, w, bias=None, *, stride=1, padding=0, dilation=1, groups=1, threads=0, isa=""):
    """fp32 direct convolution; returns a float32 NCHW array (packs w on each call;
    use DirectConv2d to pack once)."""
    x, w = _array(x, "x"), _array(w, "w")
    for name, a in (("x", x), ("w", w)):
        if a.dtype != np.float32:
            raise ConvArgumentError(f"conv2d_f32: {name} must be float32, got {a.dtype} (shape {a.shape})")
    _check_shapes(x.shape, w.shape, *_geometry(stride, padding, dilation, groups))
    layer = DirectConv2d(w, bias, stride=stride, padding=padding, dilation=dilation, groups=groups, isa=isa)
    return layer(x, threads=threads)


def conv2d_f32_naive(x, w, bias=None, *, stride=1, padding=0, dilation=1, groups=1, threads=0):
    """The textbook seven-loop fp32 convolution (baseline)."""
    x, w = _array(x, "x"), _array(w, "w")
    for name, a in (("x", x), ("w", w)):
        if a.dtype != np.float32:
            raise ConvArgumentError(f"conv2d_f32_naive: {name} must be float32, got {a.dtype} (shape {a.shape})")
    stride, padding, dilation, groups = _geometry(stride, padding, dilation, groups)
    _check_shapes(x.shape, w.shape, stride, padding, dilation, groups)
    threads = _check_common(threads, "")
    bias = _f32_bias(bias, w.shape[0], "conv2d_f32_naive")
    return _native_call(_native.naive_conv2d_f32, np.ascontiguousarray(x), np.ascontiguousarray(w), bias,
                        stride, padding, dilation, groups, threads)


def _accumulator(fn_name, dtype, w_shape, acc) -> str:
    """'i32' or 'i64' for int8 / int16 weights of shape w_shape and the requested acc."""
    if acc not in ("auto", "i32", "i64"):
        raise ConvArgumentError(f"{fn_name}: acc must be 'auto', 'i32' or 'i64', got {acc!r}")
    k = w_shape[1] * w_shape[2] * w_shape[3]
    if dtype == np.int16:
        if acc == "i32":
            raise ConvArgumentError(f"{fn_name}: int16 operands need int64 accumulation (acc='i64' or 'auto'); "
                                    f"int32 can overflow (w {tuple(w_shape)})")
        return "i64"
    if acc == "auto":
        return "i32" if k <= QS8_MAX_REDUCTION_I32 else "i64"
    if acc == "i32" and k > QS8_MAX_REDUCTION_I32:
        raise ConvArgumentError(f"{fn_name}: reduction length C/groups*KH*KW = {k} (w shape {tuple(w_shape)}) "
                                f"exceeds {QS8_MAX_REDUCTION_I32}, so int32 accumulation could overflow; use acc='i64'")
    return acc


def _int_operands(fn_name, x, w, stride, padding, dilation, groups, acc):
    """Checks integer operands; returns (x, w, geometry, accumulator 'i32'|'i64')."""
    x, w = _array(x, "x"), _array(w, "w")
    for name, a in (("x", x), ("w", w)):
        if a.dtype not in (np.int8, np.int16):
            raise ConvArgumentError(f"{fn_name}: {name} must be int8 or int16, got {a.dtype} (shape {a.shape})")
    stride, padding, dilation, groups = _geometry(stride, padding, dilation, groups)
    _check_shapes(x.shape, w.shape, stride, padding, dilation, groups)
    if x.dtype != w.dtype:  # mixed int8 / int16: int16 holds both exactly
        x, w = x.astype(np.int16), w.astype(np.int16)
    acc = _accumulator(fn_name, x.dtype, w.shape, acc)
    return np.ascontiguousarray(x), np.ascontiguousarray(w), (stride, padding, dilation, groups), acc


def conv2d_int(x, w, *, stride=1, padding=0, dilation=1, groups=1, acc="auto", threads=0, isa=""):
    """Exact integer direct convolution of int8 / int16 operands (packs w on each
    call; use DirectConv2d to pack once).

    Returns int32 (int8 with acc 'i32', or 'auto' when the reduction is short
    enough) or int64 (int16 operands, or acc='i64')."""
    x, w, geometry, acc = _int_operands("conv2d_int", x, w, stride, padding, dilation, groups, acc)
    stride, padding, dilation, groups = geometry
    layer = DirectConv2d(w, stride=stride, padding=padding, dilation=dilation, groups=groups, acc=acc, isa=isa)
    return layer(x, threads=threads)


def conv2d_int_naive(x, w, *, stride=1, padding=0, dilation=1, groups=1, acc="auto", threads=0):
    """The textbook seven-loop integer convolution (the DFNT thesis baseline)."""
    x, w, geometry, acc = _int_operands("conv2d_int_naive", x, w, stride, padding, dilation, groups, acc)
    threads = _check_common(threads, "")
    if x.dtype == np.int16:
        return _native_call(_native.naive_conv2d_qs16_i64, x, w, *geometry, threads)
    fn = _native.naive_conv2d_qs8_i32 if acc == "i32" else _native.naive_conv2d_qs8_i64
    return _native_call(fn, x, w, *geometry, threads)


def kernel_name(dtype: str, x_shape, w_shape, *, stride=1, padding=0, dilation=1, groups=1, isa="") -> str:
    """Name of the native kernel conv2d_f32 ('f32') / conv2d_int ('qs8', 'qs16') runs."""
    stride, padding, dilation, groups = _geometry(stride, padding, dilation, groups)
    _check_common(0, isa)
    return _native_call(_native.direct_conv2d_kernel_name, dtype, tuple(x_shape), tuple(w_shape),
                        stride, padding, dilation, groups, isa)
