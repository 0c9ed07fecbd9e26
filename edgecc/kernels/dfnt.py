"""Exact integer convolution with the diminished-1 Fermat number transform (DFNT,
thesis ch.2).

    conv = DfntConv2d(w, padding="same", input_dtype=np.int8)   # weights transformed once
    y = conv(x)                                                   # int8 NCHW -> exact int32

Rings Z/(2^b + 1): "F5" (b = 32, INT8 data, int32 output), "2^48+1" (b = 48, INT16
data on IFMA52, int64 output) and "F6" (b = 64, int64 output). The result is exact
when every |output| <= 2^(b-1) - 1; before running, the bound of eq 2.11
generalized, max|x| * max over output channels of sum|w|, is computed from the
actual weights and the input dtype's range. If it is too large for the chosen ring
the constructor raises InputError (on_overflow="raise") or the layer runs the
direct integer kernel instead (on_overflow="direct"). Never a silent wrong number.

Pipeline (native): overlap-save tiles of n x n (n a power of two, 8..64); each
input tile and channel is transformed once (2-D FNT, twiddles are rotations), the
pointwise stage is one modular GEMM per frequency bin with delayed reduction
(IFMA52; gemm="muludq" selects the vpmuludq kernel on F5), then one inverse
transform per output tile and channel. Roots of unity are powers of 2 up to length
2b and use sqrt(2) = 2^(b/4) (2^(b/2) - 1) beyond, so 2^48+1 reaches n = 64.

Stride s > 1 runs as a stride-1 DFNT convolution of the s*s polyphase components
(s*s times the input channels, ceil(k/s) kernels): the same sums, regrouped.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..errors import InputError

MODULI = {"F5": 32, "2^48+1": 48, "F6": 64}
_AUTO_ORDER = ("F5", "2^48+1", "F6")  # cheapest first
_INPUT_MAX_ABS = {np.dtype(np.int8): 128, np.dtype(np.int16): 32768}


def _native():
    from .. import _native as nat
    return nat


def output_limit(modulus: str) -> int:
    """Largest |output| the ring recovers exactly (and its output dtype holds)."""
    return (1 << (MODULI[_modulus_name(modulus)] - 1)) - 1


def _modulus_name(modulus) -> str:
    if modulus in MODULI:
        return modulus
    aliases = {"f5": "F5", "f6": "F6", "2^32+1": "F5", "2^64+1": "F6", "f48": "2^48+1", 32: "F5", 48: "2^48+1",
               64: "F6"}
    key = modulus.lower() if isinstance(modulus, str) else modulus
    if key in aliases:
        return aliases[key]
    raise InputError(f"dfnt: unknown modulus {modulus!r}; use 'auto', 'F5', '2^48+1' or 'F6'")


def _input_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise InputError(f"dfnt: input_dtype must be int8 or int16, got {dtype!r}") from None
    if dt not in _INPUT_MAX_ABS:
        raise InputError(f"dfnt: input_dtype must be int8 or int16, got {dt}")
    return dt


def overflow_bound(w, input_dtype) -> int:
    """max|x| * max_o sum|w[o]| (eq 2.11 generalized) as an exact Python int."""
    w = np.asarray(w)
    if w.ndim < 1 or w.size == 0:
        raise InputError(f"dfnt: weights must be a non-empty array, got shape {w.shape}")
    flat = w.reshape(w.shape[0], -1)
    max_abs = int(np.max(np.abs(flat.astype(object)))) if w.dtype.itemsize >= 8 else int(np.max(np.abs(flat.astype(np.int64))))
    if max_abs * flat.shape[1] < (1 << 62):
        row_sums = np.abs(flat.astype(np.int64)).sum(axis=1)
        worst = int(row_sums.max())
    else:  # sums might not fit int64
        worst = max(sum(abs(int(v)) for v in row) for row in flat)
    return _INPUT_MAX_ABS[_input_dtype(input_dtype)] * worst


def _pair(value, name):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value), int(value)
    try:
        a, b = value
        return int(a), int(b)
    except (TypeError, ValueError):
        raise InputError(f"dfnt: {name} must be an int or a pair of ints, got {value!r}") from None


def _resolve_pads(padding, h, w, kh, kw, sh, sw):
    """-> (top, left, bottom, right) for 'same' | 'valid' | int | (h, w) | 4-tuple."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":  # output ceil(size / stride); the odd pixel goes bottom/right
            th = max((-(-h // sh) - 1) * sh + kh - h, 0)
            tw = max((-(-w // sw) - 1) * sw + kw - w, 0)
            return (th // 2, tw // 2, th - th // 2, tw - tw // 2)
        raise InputError(f"dfnt: padding must be 'same', 'valid', an int or a tuple, got {padding!r}")
    if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
        pads = (int(padding),) * 4
    else:
        try:
            pads = tuple(int(p) for p in padding)
        except (TypeError, ValueError):
            raise InputError(f"dfnt: padding must be 'same', 'valid', an int or a tuple, got {padding!r}") from None
        if len(pads) == 2:
            pads = pads * 2
        if len(pads) != 4:
            raise InputError(f"dfnt: padding tuple must have 2 or 4 values, got {padding!r}")
    if min(pads) < 0:
        raise InputError(f"dfnt: padding must be non-negative, got {padding!r}")
    return pads


def polyphase_weights(w: np.ndarray, sh: int, sw: int) -> np.ndarray:
    """[O, C, kh, kw] -> [O, sh*sw*C, ceil(kh/sh), ceil(kw/sw)]; channel (a*sw + b)*C + c
    holds w[:, c, a::sh, b::sw]."""
    o, c, kh, kw = w.shape
    qh, qw = -(-kh // sh), -(-kw // sw)
    out = np.zeros((o, sh * sw * c, qh, qw), dtype=w.dtype)
    for a in range(sh):
        for b in range(sw):
            part = w[:, :, a::sh, b::sw]
            ph = (a * sw + b) * c
            out[:, ph:ph + c, :part.shape[2], :part.shape[3]] = part
    return out


def polyphase_input(xp: np.ndarray, sh: int, sw: int, hq: int, wq: int) -> np.ndarray:
    """Padded input [N, C, H, W] -> [N, sh*sw*C, hq, wq] with x_ab[i, j] = xp[sh*i + a, sw*j + b]
    (zero beyond the input)."""
    n, c = xp.shape[:2]
    out = np.zeros((n, sh * sw * c, hq, wq), dtype=xp.dtype)
    for a in range(sh):
        for b in range(sw):
            part = xp[:, :, a::sh, b::sw][:, :, :hq, :wq]
            ph = (a * sw + b) * c
            out[:, ph:ph + c, :part.shape[2], :part.shape[3]] = part
    return out


def choose_transform_size(kh: int, kw: int, modulus: str, out_hw=None, in_channels: int = 64,
                          out_channels: int = 64, batch: int = 1, max_weight_bytes: int = 1 << 31) -> int:
    """Transform size n (a power of two, kernel <= n <= the ring's limit).

    Without out_hw: the smallest n >= 2k, at least 16. With out_hw (the output
    height, width): the n minimizing a cost model in units of one modular MAC,
    calibrated on this project's kernels: pointwise MACs (x4 on F6), transforms
    (3.5 per element, radix-2 level and channel; x1.6 on F6, x1.5 for n >= 64) and
    streaming the transformed weights once per call (0.7 per byte, whatever the
    batch). Sizes whose transformed weights exceed max_weight_bytes are skipped."""
    bits = MODULI[_modulus_name(modulus)]
    limbs = 2 if bits == 64 else 1
    max_n = _max_length(bits)
    k = max(kh, kw)
    sizes = [n for n in (8, 16, 32, 64, 128) if k <= n <= max_n]
    fitting = [n for n in sizes if n * n * in_channels * out_channels * 8 * limbs <= max_weight_bytes]
    sizes = fitting or sizes[:1]
    if not sizes:
        raise InputError(f"dfnt: kernel {kh}x{kw} does not fit the largest transform ({max_n}) of modulus {modulus}")
    if out_hw is None:
        return next((n for n in sizes if n >= max(2 * k, 16)), sizes[-1])
    oh, ow = out_hw
    mac = 4.0 if limbs == 2 else 1.0

    def cost(n):
        tiles = batch * -(-oh // (n - kh + 1)) * -(-ow // (n - kw + 1))
        pointwise = tiles * n * n * in_channels * out_channels * mac
        per_level = 3.5 * (1.6 if limbs == 2 else 1.0) * (1.5 if n >= 64 else 1.0)  # n = 64 spills L1
        transforms = tiles * n * n * math.log2(n) * (in_channels + out_channels) * per_level
        weights = n * n * in_channels * out_channels * 8 * limbs * 0.7
        return pointwise + transforms + weights
    return min(sizes, key=cost)


def _max_length(bits: int) -> int:
    """Largest convolution tile: the ring's longest transform (4b with sqrt(2)),
    at most 64 (transformed weights grow as n^2)."""
    return min((4 * bits) & -(4 * bits), 64)


class DfntConv2d:
    """A 2-D integer convolution (cross-correlation, NCHW x OIHW) with its weights
    transformed once. Call it (or .run) on int8/int16 inputs of `input_dtype`.

    padding: 'same' | 'valid' | int | (h, w) | (top, left, bottom, right).
    modulus: 'auto' (cheapest safe ring: F5, then 2^48+1, then F6) or a ring name.
    on_overflow: 'raise' (InputError) or 'direct' (run the exact direct kernel).
    transform_size: n of the n x n tiles (power of two), default from the kernel
    size, or from input_hw (the input height, width) and batch when given.
    """

    def __init__(self, weight, *, padding="same", stride=1, modulus="auto", input_dtype=np.int8,
                 on_overflow="raise", transform_size=None, input_hw=None, batch=1, threads=0, isa="", gemm=""):
        w = np.asarray(weight)
        if w.ndim != 4 or min(w.shape) < 1:
            raise InputError(f"dfnt: weights must be 4-D OIHW with no empty dimension, got shape {w.shape}")
        if not np.issubdtype(w.dtype, np.integer):
            raise InputError(f"dfnt: weights must be integers, got {w.dtype} (shape {w.shape})")
        if on_overflow not in ("raise", "direct"):
            raise InputError(f"dfnt: on_overflow must be 'raise' or 'direct', got {on_overflow!r}")
        if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 0:
            raise InputError(f"dfnt: threads must be an int >= 0, got {threads!r}")
        self.weight = w
        self.input_dtype = _input_dtype(input_dtype)
        self.stride = _pair(stride, "stride")
        if min(self.stride) < 1:
            raise InputError(f"dfnt: stride must be >= 1, got {stride!r}")
        self.padding = padding
        _resolve_pads(padding, 1, 1, 1, 1, 1, 1)  # validate the form now
        self.threads = int(threads)
        self.isa = isa
        self.bound = overflow_bound(w, self.input_dtype)

        if modulus == "auto":
            safe = [m for m in _AUTO_ORDER if self.bound <= output_limit(m)]
            chosen = safe[0] if safe else None
        else:
            name = _modulus_name(modulus)
            chosen = name if self.bound <= output_limit(name) else None
        self.fallback = chosen is None
        if self.fallback:
            wanted = "any ring (F6 is the largest)" if modulus == "auto" else _modulus_name(modulus)
            msg = (f"dfnt: weights {w.shape} with {self.input_dtype} inputs can reach |output| = {self.bound}, "
                   f"beyond the exact range of {wanted}"
                   + ("" if modulus == "auto" else f" (|output| <= {output_limit(_modulus_name(modulus))})")
                   + "; the modular result would wrap")
            if on_overflow == "raise":
                raise InputError(msg + " (pass on_overflow='direct' to use the direct kernel)")
            if np.abs(w.astype(np.int64)).max() > 32767 or self.bound > (1 << 63) - 1:
                raise InputError(msg + ", and the direct fallback needs int16 weights and an int64-sized bound")
            self.modulus, self.plan = None, None
            self.output_dtype = np.dtype(np.int32) if self.bound <= (1 << 31) - 1 else np.dtype(np.int64)
            return
        self.modulus = chosen
        sh, sw = self.stride
        wp = polyphase_weights(w, sh, sw) if (sh, sw) != (1, 1) else w
        self._kernel = wp.shape[2:]
        if transform_size is None:
            out_hw = None
            if input_hw is not None:
                h, wd = _pair(input_hw, "input_hw")
                pt, pl, pb, pr = _resolve_pads(padding, h, wd, w.shape[2], w.shape[3], sh, sw)
                out_hw = ((h + pt + pb - w.shape[2]) // sh + 1, (wd + pl + pr - w.shape[3]) // sw + 1)
            transform_size = choose_transform_size(*self._kernel, chosen, out_hw, wp.shape[1], wp.shape[0], batch)
        try:
            self.plan = _native().dfnt_prepare_conv(np.ascontiguousarray(wp, dtype=np.int64), MODULI[chosen],
                                                    int(transform_size), isa, gemm, self.threads)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        self.output_dtype = np.dtype(np.int32) if chosen == "F5" else np.dtype(np.int64)

    @property
    def transform_size(self):
        return None if self.plan is None else self.plan.transform_size

    def __call__(self, x):
        return self.run(x)

    def run(self, x) -> np.ndarray:
        x = np.asarray(x)
        o, c, kh, kw = self.weight.shape
        if x.ndim != 4 or x.shape[1] != c:
            raise InputError(f"dfnt: input must be NCHW with {c} channels (weights {self.weight.shape}), "
                             f"got shape {x.shape}")
        if x.dtype != self.input_dtype:
            raise InputError(f"dfnt: input dtype {x.dtype} does not match the layer's input_dtype "
                             f"{self.input_dtype} (the overflow bound was computed for it)")
        n, _, h, wd = x.shape
        sh, sw = self.stride
        pads = _resolve_pads(self.padding, h, wd, kh, kw, sh, sw)
        pt, pl, pb, pr = pads
        oh, ow = (h + pt + pb - kh) // sh + 1, (wd + pl + pr - kw) // sw + 1
        if h + pt + pb < kh or wd + pl + pr < kw:
            raise InputError(f"dfnt: padded input {h + pt + pb}x{wd + pl + pr} (x shape {x.shape}) is smaller "
                             f"than the kernel {kh}x{kw}")
        if self.plan is None:
            from .direct import conv2d_int
            wi = self.weight.astype(np.int16 if self.input_dtype == np.int16 or np.abs(self.weight).max() > 127
                                    else np.int8)
            xi = x.astype(np.int16) if wi.dtype == np.int16 else x
            y = conv2d_int(xi, wi, stride=self.stride, padding=pads, acc="i64" if self.output_dtype == np.int64
                           else "auto", threads=self.threads, isa=self.isa)
            return y.astype(self.output_dtype, copy=False)
        try:
            if (sh, sw) == (1, 1):
                return _native().dfnt_run_conv(self.plan, np.ascontiguousarray(x), pads, self.threads)
            # stride s: the s*s polyphase components, a stride-1 'valid' convolution
            xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
            qh, qw = self._kernel
            xq = polyphase_input(xp, sh, sw, oh + qh - 1, ow + qw - 1)
            return _native().dfnt_run_conv(self.plan, xq, (0, 0, 0, 0), self.threads)
        except ValueError as exc:
            raise InputError(str(exc)) from None


def last_stage_times() -> dict:
    """Seconds the last native DFNT call on this thread spent in each stage:
    pad (input copy), forward transforms, pointwise GEMMs, inverse transforms."""
    return dict(_native().dfnt_last_stage_times())


def dfnt_conv2d(x, w, *, padding="same", stride=1, modulus="auto", on_overflow="raise", threads=0, isa="",
                transform_size=None, gemm=""):
    """One-shot DFNT convolution (transforms the weights, then runs). For repeated
    calls build a DfntConv2d once."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise InputError(f"dfnt: input must be 4-D NCHW, got shape {x.shape}")
    conv = DfntConv2d(w, padding=padding, stride=stride, modulus=modulus, input_dtype=x.dtype,
                      on_overflow=on_overflow, transform_size=transform_size, input_hw=x.shape[2:],
                      batch=x.shape[0], threads=threads, isa=isa, gemm=gemm)
    return conv.run(x)


# ---- ring arithmetic and transforms on Python ints (tests, tools) ----
def _split(words, bits, what):
    lo = np.empty(len(words), dtype=np.uint64)
    hi = np.empty(len(words), dtype=np.uint8)
    for i, v in enumerate(words):
        v = int(v)
        if v < 0 or v > (1 << bits):
            raise InputError(f"dfnt: {what}[{i}] = {v} is not in [0, 2^{bits}]")
        lo[i] = v & ((1 << 64) - 1)
        hi[i] = v >> 64
    return lo, hi


def _join(lo, hi):
    return [int(a) + (int(b) << 64) for a, b in zip(lo, hi)]


def ring_op(op: str, x, y=None, *, bits: int, shift: int = 0, isa: str = "") -> list[int]:
    """Element-wise diminished-1 op modulo 2^bits+1 in the native kernels.
    op: add, sub, neg, shl (x * 2^shift), mul on d-1 words; to_d1 (nb residue -> word),
    from_d1 (word -> nb residue). Words and residues are ints in [0, 2^bits]."""
    x = list(x)
    xl, xh = _split(x, bits, "x")
    if y is None:
        yl, yh = xl, xh
    else:
        y = list(y)
        if len(y) != len(x):
            raise InputError(f"dfnt: x and y differ in length ({len(x)} vs {len(y)})")
        yl, yh = _split(y, bits, "y")
    try:
        zl, zh = _native().dfnt_ring_op(bits, op, xl, xh, yl, yh, shift, isa)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return _join(zl, zh)


def fnt(x, *, bits: int, dims: int = 1, inverse: bool = False, isa: str = "") -> list:
    """Native forward/inverse FNT of nb residues (nested lists of ints, natural order):
    a list of sequences (dims=1) or of square matrices (dims=2)."""
    arr = np.asarray(x, dtype=object)
    length = arr.shape[-1]
    flat = [int(v) for v in arr.reshape(-1)]
    lo, hi = _split(flat, bits, "x")
    try:
        ol, oh = _native().dfnt_fnt(bits, lo, hi, length, dims, inverse, isa)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return np.array(_join(ol, oh), dtype=object).reshape(arr.shape).tolist()
