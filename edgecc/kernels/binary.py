"""Binary convolution engine: bit-packing, AND/popcount convolution, fused epilogue.

Runs Piecewise-Approximation layers (W = sum_i alpha_i T_i, A = sum_j beta_j V_j,
conv(W, A) = sum_ij phi_ij conv(T_i, V_j)) and +-1 networks (sign activations and
weights, e.g. Bi-Real) on the C++ kernels of edgecc._native. numpy in, numpy out.

Semantics (edgecc.kernels.binary_reference implements the same in plain numpy):

- Activations -> planes. Thresholds t[0] < ... < t[P-1], per layer (shape (P,)) or per
  channel (shape (P, C)): plane j of x is t[j] <= x < t[j+1], the last plane open above.
  Every element lands in at most one plane; below t[0] (and NaN) in none. Thresholds are
  cast to the input's float type; integer inputs compare exactly (x >= t <=> x >= ceil t).
  `signed=True` packs a +-1 tensor: one plane, bit 1 = +1 = (x >= t[0], default 0).
- Layout: channel-packed NHWC, uint64 words [N, H, W, P, ceil(C/64)], channel c at bit
  c % 64 of word c // 64, zero-filled to a multiple of 64 channels.
- Weights -> planes at compile time: {0,1} planes [M, O, C/g, kh, kw]; or float weights
  with M PA endpoints (piece k = number of endpoints <= w; piece M/2 is the zero piece,
  the others are the M planes in order); or `signed=True`: +-1 planes, bit = (w >= 0).
- Padding is zero: for {0,1} planes a padded tap has no bit set; for +-1 a padded tap
  contributes 0, i.e. it is excluded from the dot product, which equals a float
  convolution of the +-1 tensors with zero padding (torch.nn.functional.conv2d).
- counts[n, i, j, o, y, x] = conv(T_i, V_j) of the decoded values (b or 2b-1).
- Epilogue: y = scale[o] * sum_ij phi[(o,) i, j] * counts[i, j] + bias[o];
  y += residual; y = activation(y) (none, relu, prelu); output float32 (NCHW or NHWC),
  or planes of y through per-channel `out_thresholds` (the next layer's input), so
  binary layers chain without a float round trip.
- ISA: "avx512" (VPOPCNTDQ), "avx2" (nibble-table popcount), "scalar" (portable C++),
  None = EDGECC_ISA or the best the CPU has. Every path gives identical integer counts.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import _native
from ..errors import InputError, ShapeError
from . import binary_reference as ref

LANES = 16
MAX_PLANES = 16
ACTIVATIONS = ("none", "relu", "prelu")
ISAS = (None, "", "auto", "avx512", "avx2", "scalar")


@dataclass(frozen=True)
class PackedActivations:
    """Bit-planes of an activation tensor: words uint64 [N, H, W, P, ceil(C/64)]."""
    words: np.ndarray
    channels: int
    signed: bool = False

    @property
    def planes(self) -> int:
        return int(self.words.shape[3])

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """Logical (N, C, H, W)."""
        n, h, w = self.words.shape[:3]
        return (int(n), self.channels, int(h), int(w))

    def unpack(self) -> np.ndarray:
        """bool planes [N, P, C, H, W]."""
        return ref.unpack_activation_words(self.words, self.channels)


@dataclass(frozen=True)
class PackedWeights:
    """Bit-planes of a weight tensor, kernel layout uint32
    [groups, chunks, M, kh*kw, ceil(C_g/32), 16]: chunk c lane l = output channel 16c+l."""
    words: np.ndarray
    out_channels: int
    in_channels_per_group: int
    kernel: tuple[int, int]
    groups: int = 1
    signed: bool = False
    planes_bool: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def planes(self) -> int:
        return int(self.words.shape[2])

    @property
    def in_channels(self) -> int:
        return self.in_channels_per_group * self.groups


def _isa(isa) -> str:
    if isa not in ISAS:
        raise InputError(f"isa={isa!r}: expected one of avx512, avx2, scalar or None (auto)")
    return "" if isa in (None, "auto") else isa


def _threads(threads) -> int:
    if threads is None:
        return int(_native.omp_max_threads())
    if not isinstance(threads, (int, np.integer)) or threads < 1:
        raise InputError(f"threads={threads!r}: expected a positive integer")
    return int(threads)


def _native_call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ValueError as e:  # native argument checks (std::invalid_argument)
        raise InputError(str(e)) from None


def _aligned_copy(a: np.ndarray, align: int = 64) -> np.ndarray:
    """A C-contiguous copy of `a` whose data starts on an `align`-byte boundary."""
    buf = np.empty(a.nbytes + align, dtype=np.uint8)
    off = (-buf.ctypes.data) % align
    out = buf[off:off + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def _check_thresholds(t: np.ndarray, what: str) -> None:
    if t.shape[0] < 1 or t.shape[0] > MAX_PLANES:
        raise InputError(f"{what}: {t.shape[0]} planes, expected 1..{MAX_PLANES}")
    if np.isnan(t).any():
        raise InputError(f"{what}: thresholds contain NaN")
    if t.shape[0] > 1 and not (np.diff(t, axis=0) > 0).all():
        bad = np.argwhere(~(np.diff(t, axis=0) > 0))[0]
        raise InputError(f"{what}: thresholds must increase strictly along the planes axis; "
                         f"planes {bad[0]} and {bad[0] + 1} of channel {bad[1]} are "
                         f"{t[bad[0], bad[1]]} and {t[bad[0] + 1, bad[1]]}")


def _thresholds(thresholds, channels: int, signed: bool, what: str) -> np.ndarray:
    """(P,) per layer or (P, C) per channel -> float64 [P, C], validated."""
    if thresholds is None:
        if not signed:
            raise InputError(f"{what}: thresholds are required for {{0,1}} planes "
                             "(signed=True packs the sign, threshold 0)")
        thresholds = np.zeros(1)
    t = np.asarray(thresholds, dtype=np.float64)
    if t.ndim == 0:
        t = t.reshape(1)
    if t.ndim == 1:
        t = np.repeat(t[:, None], channels, axis=1)
    if t.ndim != 2 or t.shape[1] != channels:
        raise InputError(f"{what}: thresholds of shape {np.shape(thresholds)} do not fit {channels} "
                         "channels; expected (P,) per layer or (P, C) per channel")
    _check_thresholds(t, what)
    if signed and t.shape[0] != 1:
        raise InputError(f"{what}: a +-1 (signed) tensor has exactly one plane, got {t.shape[0]} thresholds")
    return t


class ActivationPacker:
    """Packs activations of `channels` channels into planes: thresholds validated once,
    then each call is one native pass (the form a compiled model calls per layer).
    See pack_activations for the arguments."""

    def __init__(self, thresholds, channels: int, *, signed: bool = False, layout: str = "NCHW",
                 isa: str | None = None, threads: int | None = None):
        if layout not in ("NCHW", "NHWC"):
            raise InputError(f"layout={layout!r}: expected 'NCHW' or 'NHWC'")
        if not isinstance(channels, (int, np.integer)) or channels < 1:
            raise ShapeError(f"pack_activations: {channels!r} channels, expected a positive integer")
        self.channels, self.signed, self.layout = int(channels), bool(signed), layout
        self.thresholds = _thresholds(thresholds, self.channels, self.signed, "pack_activations")
        self.threads, self.isa = _threads(threads), _isa(isa)
        self._by_dtype = {}

    def _prepare(self, dtype: np.dtype):
        """(native function, input dtype, thresholds, extra args) for inputs of `dtype`."""
        t, kind = self.thresholds, dtype.kind
        if kind == "f":
            if dtype == np.float64:
                return _native.binary_pack_f64, np.float64, t, ()
            t32 = np.ascontiguousarray(t, dtype=np.float32)
            if t.shape[0] > 1 and not (np.diff(t32, axis=0) > 0).all():
                raise InputError("pack_activations: thresholds are no longer strictly increasing "
                                 "once cast to float32")
            return _native.binary_pack_f32, np.float32, t32, (self.isa,)
        if kind in "iub":
            # x >= t  <=>  x >= ceil(t) for integers; clip to the int64 range.
            ti = np.clip(np.ceil(t), -2.0**63, 2.0**63 - 1024).astype(np.int64)
            if dtype.itemsize <= 2 or dtype in (np.int32, np.bool_):
                return _native.binary_pack_i32, np.int32, ti, ()
            return _native.binary_pack_i64, np.int64, ti, ()
        raise InputError(f"pack_activations: unsupported dtype {dtype}")

    def __call__(self, x: np.ndarray) -> PackedActivations:
        x = np.asarray(x)
        layout = self.layout
        if x.ndim == 2:
            x, layout = x[:, :, None, None], "NCHW"
        if x.ndim != 4:
            raise ShapeError(f"pack_activations: x has shape {x.shape}, expected 4-D {layout} or 2-D [N, C]")
        channels = x.shape[1] if layout == "NCHW" else x.shape[3]
        if channels != self.channels:
            raise ShapeError(f"pack_activations: x has {channels} channels ({layout} shape {x.shape}), "
                             f"the thresholds are for {self.channels}")
        prep = self._by_dtype.get(x.dtype)
        if prep is None:
            prep = self._by_dtype[x.dtype] = self._prepare(x.dtype)
        fn, cast, t, extra = prep
        if x.dtype.kind == "u" and x.dtype.itemsize == 8 and x.size and x.max() > np.iinfo(np.int64).max:
            raise InputError("pack_activations: uint64 values above 2**63-1 are not supported")
        try:
            words = fn(x.astype(cast, copy=False), t, layout == "NCHW", self.threads, *extra)
        except ValueError as e:
            raise InputError(str(e)) from None
        return PackedActivations(words, self.channels, self.signed)


def pack_activations(x: np.ndarray, thresholds=None, *, signed: bool = False, layout: str = "NCHW",
                     isa: str | None = None, threads: int | None = None) -> PackedActivations:
    """Float or integer activations [N, C, H, W] (layout="NHWC": [N, H, W, C]; 2-D [N, C]
    for a fully-connected layer) -> PackedActivations with one plane per threshold.
    thresholds: (P,) per layer or (P, C) per channel, strictly increasing along P;
    signed=True: one plane, bit 1 = +1 = (x >= threshold, default 0)."""
    x = np.asarray(x)
    if layout not in ("NCHW", "NHWC"):
        raise InputError(f"layout={layout!r}: expected 'NCHW' or 'NHWC'")
    if x.ndim not in (2, 4):
        raise ShapeError(f"pack_activations: x has shape {x.shape}, expected 4-D {layout} or 2-D [N, C]")
    channels = x.shape[1] if x.ndim == 2 or layout == "NCHW" else x.shape[3]
    if channels < 1:
        raise ShapeError(f"pack_activations: x has shape {x.shape}: no channels")
    return ActivationPacker(thresholds, channels, signed=signed, layout=layout, isa=isa, threads=threads)(x)


def _as_weight_planes(w, endpoints, signed: bool) -> np.ndarray:
    """-> bool [M, O, C_g, kh, kw]."""
    w = np.asarray(w)
    if endpoints is not None:
        if signed:
            raise InputError("pack_weights: endpoints (PA pieces) and signed=True exclude each other")
        u = np.asarray(endpoints, dtype=np.float64).reshape(-1)
        if u.size < 2 or u.size % 2 or u.size > MAX_PLANES:
            raise InputError(f"pack_weights: {u.size} PA endpoints, expected an even number in 2..{MAX_PLANES}")
        if np.isnan(u).any() or not (np.diff(u) > 0).all():
            raise InputError(f"pack_weights: PA endpoints must increase strictly, got {u.tolist()}")
        if w.ndim not in (2, 4):
            raise ShapeError(f"pack_weights: float weights of shape {w.shape}, expected [O, C/g, kh, kw] or [O, C]")
        planes = ref.weight_planes_from_endpoints(w, u)
    else:
        if w.ndim in (2, 4):
            w = w[None]
        if w.ndim not in (3, 5):
            raise ShapeError(f"pack_weights: weights of shape {w.shape}, expected [M,] O, C/g, kh, kw "
                             "(or [M,] O, C for a fully-connected layer)")
        if signed:
            if w.dtype.kind == "f" and np.isnan(w).any():
                raise InputError("pack_weights: weights contain NaN")
            planes = w >= 0
        else:
            if not np.isin(w, (0, 1)).all():
                raise InputError("pack_weights: {0,1} planes must hold only 0 and 1 "
                                 "(pass endpoints= for float weights, signed=True for +-1)")
            planes = w.astype(bool)
    if planes.ndim == 3:
        planes = planes[..., None, None]
    return planes


def pack_weights(w, endpoints=None, *, signed: bool = False, groups: int = 1) -> PackedWeights:
    """Weights -> PackedWeights (compile time).

    w: {0,1} planes [M, O, C/g, kh, kw] or [O, C/g, kh, kw] (M = 1); with `endpoints`, float
    weights [O, C/g, kh, kw] split into PA pieces; with signed=True, +-1 (or any real)
    weights [M,] O, C/g, kh, kw with bit = (w >= 0). 2-D / 3-D shapes [M,] O, C are a
    fully-connected layer (1x1 kernel)."""
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise InputError(f"pack_weights: groups={groups!r}, expected a positive integer")
    planes = _as_weight_planes(w, endpoints, signed)
    m, o, cg, kh, kw = planes.shape
    if not 1 <= m <= MAX_PLANES:
        raise InputError(f"pack_weights: M={m} weight planes, expected 1..{MAX_PLANES}")
    if o < 1 or cg < 1 or kh < 1 or kw < 1:
        raise ShapeError(f"pack_weights: empty weight planes of shape {planes.shape}")
    if o % groups:
        raise ShapeError(f"pack_weights: {o} output channels are not divisible by groups={groups}")
    og = o // groups
    words = np.stack([ref.pack_weight_planes(planes[:, g * og:(g + 1) * og]) for g in range(groups)])
    return PackedWeights(_aligned_copy(words), int(o), int(cg), (int(kh), int(kw)), int(groups),
                         bool(signed), planes)


def _pair(v, what: str) -> tuple[int, int]:
    t = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(t) != 2 or not all(isinstance(a, (int, np.integer)) and a >= 1 for a in t):
        raise InputError(f"{what}={v!r}: expected a positive int or a pair of them")
    return int(t[0]), int(t[1])


def _padding(v) -> tuple[int, int, int, int]:
    """int, (ph, pw) or (top, left, bottom, right) -> (top, left, bottom, right)."""
    t = (v,) * 4 if isinstance(v, (int, np.integer)) else tuple(v)
    if len(t) == 2:
        t = (t[0], t[1], t[0], t[1])
    if len(t) != 4 or not all(isinstance(a, (int, np.integer)) and a >= 0 for a in t):
        raise InputError(f"padding={v!r}: expected a non-negative int, (ph, pw) or (top, left, bottom, right)")
    return tuple(int(a) for a in t)


def _per_channel(v, cout: int, what: str) -> np.ndarray | None:
    if v is None:
        return None
    a = np.asarray(v, dtype=np.float32)
    if a.ndim == 0:
        a = np.full(cout, a, dtype=np.float32)
    if a.shape != (cout,):
        raise InputError(f"{what} has shape {np.shape(v)}, expected a scalar or ({cout},)")
    return np.ascontiguousarray(a)


def _regroup(words: np.ndarray, channels: int, groups: int) -> tuple[np.ndarray, int]:
    """Activations whose groups do not start on a 32-bit word: give each group its own
    whole words, [N, H, W, P, groups * ceil(C_g / 32)] uint32."""
    planes = ref.unpack_activation_words(words, channels)  # [N, P, C, H, W]
    n, p, c, h, w = planes.shape
    cg = c // groups
    kw32 = -(-cg // 32)
    bits = np.zeros((n, h, w, p, groups, kw32 * 32), dtype=np.uint8)
    bits[..., :cg] = planes.transpose(0, 3, 4, 1, 2).reshape(n, h, w, p, groups, cg)
    out = np.packbits(bits, axis=-1, bitorder="little").view("<u4").reshape(n, h, w, p, groups * kw32)
    return np.ascontiguousarray(out), kw32


class BinaryConv2d:
    """One binary convolution layer with its epilogue, validated and prepared once (the
    form a compiler calls per layer); calling it runs the native kernels.

    phi: (M, P) per layer or (C_out, M, P) per output channel (default: all ones);
    scale, bias: scalar or (C_out,) (folded batch norm); activation: None, 'relu',
    'prelu' (with prelu_slope); out_thresholds: (Q,) or (Q, C_out) -> the call returns
    PackedActivations (out_signed: a +-1 tensor, Q = 1); else float32 in `layout`."""

    def __init__(self, weights: PackedWeights, in_planes: int, *, in_signed: bool = False,
                 stride=1, padding=0, dilation=1, phi=None, scale=None, bias=None,
                 activation: str | None = None, prelu_slope=None, out_thresholds=None,
                 out_signed: bool = False, layout: str = "NCHW", isa: str | None = None,
                 threads: int | None = None):
        if not isinstance(weights, PackedWeights):
            raise InputError("weights must be PackedWeights (use pack_weights)")
        if not isinstance(in_planes, (int, np.integer)) or not 1 <= in_planes <= MAX_PLANES:
            raise InputError(f"in_planes={in_planes!r}: expected 1..{MAX_PLANES}")
        if in_signed and in_planes != 1:
            raise InputError("a +-1 (signed) input has exactly one plane")
        if layout not in ("NCHW", "NHWC"):
            raise InputError(f"layout={layout!r}: expected 'NCHW' or 'NHWC'")
        act = "none" if activation is None else activation
        if act not in ACTIVATIONS:
            raise InputError(f"activation={activation!r}: expected None, 'relu' or 'prelu'")
        self.weights, self.in_planes, self.in_signed = weights, int(in_planes), bool(in_signed)
        self._plans = {}
        self.stride = _pair(stride, "stride")
        self.padding = _padding(padding)
        self.dilation = _pair(dilation, "dilation")
        self.layout, self.activation = layout, act
        self.isa, self.threads = _isa(isa), _threads(threads)
        m, p, cout = weights.planes, self.in_planes, weights.out_channels
        phi = np.ones((m, p)) if phi is None else np.asarray(phi, dtype=np.float64)
        if phi.shape == (m, p):
            phi = np.broadcast_to(phi, (cout, m, p))
        if phi.shape != (cout, m, p):
            raise InputError(f"phi has shape {np.shape(phi)}, expected ({m}, {p}) or ({cout}, {m}, {p}) "
                             f"for M={m} weight planes and P={p} activation planes")
        sc = _per_channel(scale, cout, "scale")
        if sc is not None:
            phi = phi * sc.astype(np.float64)[:, None, None]
        self.phi = np.ascontiguousarray(phi, dtype=np.float32)
        self.bias = _per_channel(bias, cout, "bias")
        self.prelu_slope = _per_channel(prelu_slope, cout, "prelu_slope")
        if act == "prelu" and self.prelu_slope is None:
            raise InputError("activation='prelu' needs prelu_slope")
        self.out_signed = bool(out_signed)
        if out_thresholds is None:
            if out_signed:
                out_thresholds = 0.0
            self.out_thresholds = None
        if out_thresholds is not None:
            t = _thresholds(out_thresholds, cout, self.out_signed, "out_thresholds").astype(np.float32)
            if t.shape[0] > 1 and not (np.diff(t, axis=0) > 0).all():
                raise InputError("out_thresholds: not strictly increasing once cast to float32")
            self.out_thresholds = np.ascontiguousarray(t)

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        kh, kw = self.weights.kernel
        top, left, bottom, right = self.padding
        oh = (h + top + bottom - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        ow = (w + left + right - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        return oh, ow

    def _prepare(self, x: PackedActivations, mode: str, with_residual: bool):
        """Checks an input kind once; returns what each call of that kind needs."""
        wt = self.weights
        n, c, h, w = x.shape
        if c != wt.in_channels:
            raise ShapeError(f"binary conv: input has {c} channels, weights expect "
                             f"{wt.in_channels_per_group} x {wt.groups} groups = {wt.in_channels}")
        if x.planes != self.in_planes:
            raise ShapeError(f"binary conv: input has {x.planes} planes, the layer was built for "
                             f"{self.in_planes} (phi is (M, {self.in_planes}))")
        if x.signed != self.in_signed:
            raise InputError(f"binary conv: input signed={x.signed}, layer in_signed={self.in_signed}")
        oh, ow = self.output_size(h, w)
        if oh < 1 or ow < 1:
            raise ShapeError(f"binary conv: kernel {wt.kernel} with dilation {self.dilation} and padding "
                             f"{self.padding} does not fit input {h}x{w}")
        cg = wt.in_channels_per_group
        regroup = not (wt.groups == 1 or cg % 32 == 0)
        x_words = wt.groups * -(-cg // 32) if regroup else 2 * x.words.shape[-1]
        group_words = -(-cg // 32) if regroup else cg // 32
        kh, kw = wt.kernel
        head = (n, h, w, x.planes, x_words, group_words, x.signed, wt.words, wt.groups, cg,
                wt.out_channels // wt.groups, wt.planes, kh, kw, wt.signed, self.stride[0], self.stride[1],
                self.padding[0], self.padding[1], self.dilation[0], self.dilation[1], oh, ow, mode,
                None if mode == "counts" else self.phi, None if mode == "counts" else self.bias)
        out_thresholds = self.out_thresholds if mode == "planes" else None
        try:  # per-layer tables (phi, thresholds, +-1 terms), built once per input size
            tables = _native.binary_conv2d_tables(*head, self.prelu_slope, out_thresholds)
        except ValueError as e:
            raise InputError(str(e)) from None
        tail = (self.activation, self.prelu_slope, self.layout == "NCHW", out_thresholds, self.threads,
                self.isa, tables)
        res_shape = None
        if with_residual:
            if mode == "counts":
                raise InputError("binary conv: counts take no residual")
            res_shape = (n, wt.out_channels, oh, ow) if self.layout == "NCHW" else (n, oh, ow, wt.out_channels)
        return regroup, head, tail, res_shape

    def _run(self, x: PackedActivations, mode: str, residual=None):
        if not isinstance(x, PackedActivations):
            raise InputError("x must be PackedActivations (use pack_activations)")
        key = (x.words.shape, x.channels, x.signed, mode, residual is not None)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._prepare(x, mode, residual is not None)
        regroup, head, tail, res_shape = plan
        if regroup:
            xw, _ = _regroup(x.words, x.channels, self.weights.groups)
        else:
            xw = x.words if x.words.flags.c_contiguous else np.ascontiguousarray(x.words)
            xw = xw.view(np.uint32)
        if residual is not None and residual.shape != res_shape:
            raise ShapeError(f"residual has shape {residual.shape}, expected {res_shape} ({self.layout})")
        try:
            out, _ = _native.binary_conv2d(xw, *head, residual, *tail)
        except ValueError as e:  # native argument checks (std::invalid_argument)
            raise InputError(str(e)) from None
        return out

    def __call__(self, x: PackedActivations, residual: np.ndarray | None = None):
        if residual is not None:
            residual = np.asarray(residual)
        if self.out_thresholds is not None:
            words = self._run(x, "planes", residual)
            return PackedActivations(words, self.weights.out_channels, self.out_signed)
        return self._run(x, "float", residual)

    def counts(self, x: PackedActivations) -> np.ndarray:
        """int32 [N, M*P, C_out, OH, OW]: index i*P + j = conv(T_i, V_j) (decoded values)."""
        c = self._run(x, "counts")
        n, m, p = c.shape[:3]
        return c.reshape(n, m * p, *c.shape[3:])


def binary_conv2d(x: PackedActivations, w: PackedWeights, *, stride=1, padding=0, dilation=1,
                  phi=None, scale=None, bias=None, residual=None, activation=None,
                  prelu_slope=None, out_thresholds=None, out_signed: bool = False,
                  layout: str = "NCHW", isa: str | None = None, threads: int | None = None):
    """Binary convolution with fused epilogue (see BinaryConv2d and the module doc).
    Returns float32 [N, C_out, OH, OW] (layout NHWC: [N, OH, OW, C_out]) or, with
    out_thresholds / out_signed, PackedActivations for the next binary layer."""
    if not isinstance(x, PackedActivations):
        raise InputError("x must be PackedActivations (use pack_activations)")
    layer = BinaryConv2d(w, x.planes, in_signed=x.signed, stride=stride, padding=padding,
                         dilation=dilation, phi=phi, scale=scale, bias=bias, activation=activation,
                         prelu_slope=prelu_slope, out_thresholds=out_thresholds, out_signed=out_signed,
                         layout=layout, isa=isa, threads=threads)
    return layer(x, residual)


def binary_conv2d_counts(x: PackedActivations, w: PackedWeights, *, stride=1, padding=0, dilation=1,
                         isa: str | None = None, threads: int | None = None) -> np.ndarray:
    """Raw integer results int32 [N, M*P, C_out, OH, OW], index i*P + j = conv(T_i, V_j) of
    the decoded planes (AND+popcount counts for {0,1}; +-1 dot products for signed)."""
    if not isinstance(x, PackedActivations):
        raise InputError("x must be PackedActivations (use pack_activations)")
    layer = BinaryConv2d(w, x.planes, in_signed=x.signed, stride=stride, padding=padding,
                         dilation=dilation, isa=isa, threads=threads)
    return layer.counts(x)


def binary_linear(x: PackedActivations, w: PackedWeights, *, phi=None, scale=None, bias=None,
                  residual=None, activation=None, prelu_slope=None, out_thresholds=None,
                  out_signed: bool = False, isa: str | None = None, threads: int | None = None):
    """Binary fully-connected layer: x packed from [N, C] (pack_activations of a 2-D array),
    w packed from [M,] O, C. Returns float32 [N, O] or PackedActivations of [N, O, 1, 1]."""
    if not isinstance(x, PackedActivations):
        raise InputError("x must be PackedActivations (use pack_activations)")
    if x.shape[2:] != (1, 1) or w.kernel != (1, 1):
        raise ShapeError(f"binary_linear: input {x.shape} and kernel {w.kernel} must be [N, C, 1, 1] and 1x1")
    if residual is not None:
        residual = np.asarray(residual, dtype=np.float32)
        residual = residual.reshape(*residual.shape, 1, 1) if residual.ndim == 2 else residual
    out = binary_conv2d(x, w, phi=phi, scale=scale, bias=bias, residual=residual, activation=activation,
                        prelu_slope=prelu_slope, out_thresholds=out_thresholds, out_signed=out_signed,
                        isa=isa, threads=threads)
    return out if isinstance(out, PackedActivations) else out.reshape(out.shape[0], out.shape[1])


def selected_isa(isa: str | None = None) -> str:
    """The ISA path a call with this `isa` argument runs on."""
    return _native_call(_native.selected_isa, _isa(isa))
