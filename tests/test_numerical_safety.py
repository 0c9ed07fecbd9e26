"""Numerical safety at the exact edges of the integer overflow checks (issue #10 item 5).

For every DFNT ring and input dtype, and for the direct conv's int32 accumulator: the
largest case the check accepts is bit-exact against Python big integers, and each case
the check refuses is shown, with Python big integers, to exceed the range the result
must fit (the ring's exact range (p-1)/2 or the output / accumulator dtype), i.e. it
would indeed have wrapped; where the kernels can be called unchecked they do wrap.

Two refusals are conservative by design, and the tests say so rather than pretend:
the 2^48+1 ring refuses |output| = 2^47 although (p-1)/2 = 2^47 is still recovered
exactly (output_limit is 2^47 - 1), and the direct conv refuses acc='i32' for int16
operands even when one product (at most 2^30) cannot overflow.
"""
from __future__ import annotations

import numpy as np
import pytest

from edgecc import _native
from edgecc.errors import InputError
from edgecc.kernels import dfnt, direct
from edgecc.kernels.direct import ConvArgumentError

BEST = "avx512" if _native.best_isa() == "avx512" else "scalar"
X_MAX_ABS = {np.int8: 128, np.int16: 32768}
CASES = [(ring, dt) for ring in ("F5", "2^48+1", "F6") for dt in (np.int8, np.int16)]


def _bigint_conv1x1(x: np.ndarray, w: np.ndarray) -> list:
    """y[n][o][i] = sum_c x[n, c, i] * w[o, c] in Python integers (no wrap possible)."""
    xs = x.reshape(x.shape[0], x.shape[1], -1)
    wf = w.reshape(w.shape[0], -1)
    return [[[sum(int(xs[n, c, i]) * int(wf[o, c]) for c in range(wf.shape[1])) for i in range(xs.shape[2])]
             for o in range(wf.shape[0])] for n in range(xs.shape[0])]


def _weights(total: int, sign: int) -> np.ndarray:
    """One output channel whose |weights| sum to `total`, split over 3 taps."""
    parts = [total // 3, total // 3, total - 2 * (total // 3)]
    return np.array([sign * p for p in parts], np.int64).reshape(1, 3, 1, 1)


def _ring_range(ring: str) -> int:
    """The largest |v| the ring Z/(2^b + 1) recovers from its signed residue: (p - 1) / 2."""
    return ((1 << dfnt.MODULI[ring]) + 1 - 1) // 2


def _dtype_max(ring: str) -> int:
    return int(np.iinfo(np.int32 if ring == "F5" else np.int64).max)


@pytest.mark.parametrize("ring,dtype", CASES)
def test_dfnt_largest_accepted_case_is_exact(ring, dtype):
    xmax = X_MAX_ABS[dtype]
    s = dfnt.output_limit(ring) // xmax                     # largest sum|w| the check accepts
    w = np.concatenate([_weights(s, -1), _weights(s, +1)])   # outputs +bound and -bound
    conv = dfnt.DfntConv2d(w, padding="valid", modulus=ring, input_dtype=dtype, isa=BEST)
    assert conv.modulus == ring and not conv.fallback and conv.bound == s * xmax <= dfnt.output_limit(ring)
    info = np.iinfo(dtype)
    rng = np.random.default_rng(0)
    x = rng.integers(info.min, int(info.max) + 1, size=(2, 3, 3, 3)).astype(dtype)
    x[0] = info.min                                          # the worst case: |y| = bound exactly
    x[1, :, 0, 0] = info.max
    y = conv(x)
    true = _bigint_conv1x1(x, w)
    assert y.tolist() == [[[row[i * 3:(i + 1) * 3] for i in range(3)] for row in img] for img in true]
    assert max(abs(v) for img in true for row in img for v in row) == conv.bound


@pytest.mark.parametrize("ring,dtype", CASES)
def test_dfnt_refused_cases_would_wrap(ring, dtype):
    xmax = X_MAX_ABS[dtype]
    s = dfnt.output_limit(ring) // xmax
    # The smallest refused sum|w| whose worst case leaves the exact range: one past the
    # accepted maximum, except on 2^48+1 where that lands exactly on (p-1)/2 (see below).
    over = s + 1
    while over * xmax <= min(_ring_range(ring), _dtype_max(ring)):
        over += 1
    w = _weights(over, -1)
    with pytest.raises(InputError, match="would wrap"):
        dfnt.DfntConv2d(w, padding="valid", modulus=ring, input_dtype=dtype)
    x = np.full((1, 3, 2, 2), np.iinfo(dtype).min, dtype)          # -xmax * -w: +over * xmax
    true = _bigint_conv1x1(x, w)[0][0][0]
    assert true == over * xmax > dfnt.output_limit(ring)
    assert true > min(_ring_range(ring), _dtype_max(ring))           # beyond what the result can hold
    # Unchecked (the native plan skips the Python check): the result is indeed wrong.
    plan = _native.dfnt_prepare_conv(w, dfnt.MODULI[ring], 8, BEST, "", 1)
    wrapped = _native.dfnt_run_conv(plan, x, (0, 0, 0, 0), 1)
    assert (wrapped.astype(object) != true).all()


def test_dfnt_48_bit_boundary_is_conservative():
    """2^48+1 refuses sum|w| * 32768 = 2^47, which the ring still recovers: (p-1)/2 = 2^47.
    Safe (it never accepts a wrap) but one value stricter than necessary."""
    s = dfnt.output_limit("2^48+1") // 32768 + 1
    w = _weights(s, -1)
    with pytest.raises(InputError, match="would wrap"):
        dfnt.DfntConv2d(w, padding="valid", modulus="2^48+1", input_dtype=np.int16)
    x = np.full((1, 3, 1, 1), -32768, np.int16)
    true = _bigint_conv1x1(x, w)[0][0][0]
    assert true == 2 ** 47 == _ring_range("2^48+1")
    assert dfnt.output_limit("2^48+1") == 2 ** 47 - 1


def test_dfnt_any_ring_refusal_exceeds_every_ring():
    w = _weights(dfnt.output_limit("F6") // 32768 + 1, -1)
    with pytest.raises(InputError, match="any ring"):
        dfnt.DfntConv2d(w, padding="valid", input_dtype=np.int16)
    x = np.full((1, 3, 1, 1), -32768, np.int16)
    true = _bigint_conv1x1(x, w)[0][0][0]
    assert all(true > min(_ring_range(r), _dtype_max(r)) for r in dfnt.MODULI)


def test_direct_int8_i32_refusal_would_wrap():
    """acc='i32' is refused from K = 131072 on: the worst sum K * (-128) * (-128) = 2^31
    exceeds int32; the int64 path returns the Python-integer value."""
    k = direct.QS8_MAX_REDUCTION_I32 + 1
    x = np.full((1, k, 1, 1), -128, np.int8)
    w = np.full((1, k, 1, 1), -128, np.int8)
    with pytest.raises(ConvArgumentError, match="int32 accumulation could overflow"):
        direct.conv2d_int(x, w, acc="i32")
    true = sum(int(a) * int(b) for a, b in zip(x.ravel().tolist(), w.ravel().tolist()))
    assert true == 2 ** 31 > np.iinfo(np.int32).max
    y = direct.conv2d_int(x, w)
    assert y.dtype == np.int64 and int(y[0, 0, 0, 0]) == true
    # The accepted maximum K = 131071 holds in int32 with room: K * 2^14 = 2^31 - 2^14.
    assert direct.QS8_MAX_REDUCTION_I32 * 128 * 128 <= np.iinfo(np.int32).max


def test_direct_int16_i32_refusal():
    """int16 operands always accumulate in int64: acc='i32' is refused. From K = 2 the
    worst sum 2 * (-32768)^2 = 2^31 would wrap int32; K = 1 (2^30) is refused by policy."""
    for k in (1, 2, 3):
        x = np.full((1, k, 1, 1), -32768, np.int16)
        w = np.full((1, k, 1, 1), -32768, np.int16)
        with pytest.raises(ConvArgumentError, match="int64 accumulation"):
            direct.conv2d_int(x, w, acc="i32")
        true = k * 32768 * 32768
        assert (true > np.iinfo(np.int32).max) == (k >= 2)
        y = direct.conv2d_int(x, w)
        assert y.dtype == np.int64 and int(y[0, 0, 0, 0]) == true
    # int64 accumulation cannot wrap for any reduction that fits in memory:
    # it would take K >= 2^33 products of 2^30 (a 16 GiB int16 weight row).
    assert (2 ** 33 - 1) * 2 ** 30 <= np.iinfo(np.int64).max < 2 ** 33 * 2 ** 30
