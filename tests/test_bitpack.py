"""Bit-packing of activations and weights against the numpy reference."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from edgecc import _native
from edgecc.errors import InputError, ShapeError
from edgecc.kernels import binary as B
from edgecc.kernels import binary_reference as R

ISAS = [isa for isa in ("scalar", "avx2", "avx512") if isa == "scalar" or _native.best_isa() in
        (("avx2", "avx512") if isa == "avx2" else ("avx512",))]


def _thresholds(rng, planes, channels):
    t = np.sort(rng.standard_normal((planes, channels)), axis=0)
    t[1:] += 0.01 * np.arange(1, planes)[:, None]  # strictly increasing after float32 rounding
    return t.astype(np.float32)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 140), h=st.integers(1, 6), w=st.integers(1, 19),
       planes=st.integers(1, 5), seed=st.integers(0, 2**31))
def test_float32_planes_match_reference(isa, layout, n, c, h, w, planes, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    t = _thresholds(rng, planes, c)
    x.flat[::7] = t[rng.integers(0, planes), 0] if c == 1 else x.flat[::7]  # values on a threshold
    x.flat[::11] = np.nan
    xin = x if layout == "NCHW" else x.transpose(0, 2, 3, 1).copy()
    packed = B.pack_activations(xin, t, layout=layout, isa=isa, threads=2)
    expect = R.pack_activation_planes(R.activation_planes(x, t))
    assert packed.words.dtype == np.uint64 and packed.words.shape == (n, h, w, planes, (c + 63) // 64)
    np.testing.assert_array_equal(packed.words, expect)
    np.testing.assert_array_equal(packed.unpack(), R.activation_planes(x, t))


def test_planes_are_one_hot_closed_left():
    x = np.array([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0, np.nan], dtype=np.float32).reshape(1, 8, 1, 1)
    t = np.array([-1.0, 0.0, 1.0])  # per layer
    planes = B.pack_activations(x, t).unpack()[0, :, :, 0, 0]  # [P, C]
    expect = np.array([
        # -2  -1  -.5  0  .5  1   3  nan
        [0, 1, 1, 0, 0, 0, 0, 0],  # [-1, 0)
        [0, 0, 0, 1, 1, 0, 0, 0],  # [0, 1)
        [0, 0, 0, 0, 0, 1, 1, 0],  # [1, inf)
    ], dtype=bool)
    np.testing.assert_array_equal(planes, expect)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.int64, np.bool_])
def test_integer_inputs_compare_exactly(dtype):
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype) if dtype is not np.bool_ else None
    lo, hi = (0, 2) if info is None else (max(info.min, -300), min(info.max, 300))
    x = rng.integers(lo, hi, size=(2, 70, 3, 4)).astype(dtype)
    t = np.array([[-3.5, 0.0, 2.25, 7.0]] * 70).T + rng.integers(-2, 3, size=(1, 70))
    got = B.pack_activations(x, t)
    expect = R.pack_activation_planes(R.activation_planes(x.astype(np.int64), t))
    np.testing.assert_array_equal(got.words, expect)


def test_float64_input_uses_float64_thresholds():
    x = np.full((1, 3, 1, 1), 0.1, dtype=np.float64)
    got = B.pack_activations(x, [0.1]).unpack()
    assert got.all()  # 0.1 >= 0.1 in float64
    x32 = x.astype(np.float32)
    np.testing.assert_array_equal(B.pack_activations(x32, [0.1]).unpack(),
                                  R.activation_planes(x32, [0.1]))


@pytest.mark.parametrize("isa", ISAS)
def test_sign_packing(isa):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 65, 5, 3)).astype(np.float32)
    x[0, 0, 0, 0] = 0.0
    packed = B.pack_activations(x, signed=True, isa=isa)
    assert packed.signed and packed.planes == 1
    np.testing.assert_array_equal(packed.unpack()[:, 0], x >= 0)


def test_two_dimensional_input_for_linear_layers():
    x = np.arange(-5, 5, dtype=np.float32).reshape(2, 5)
    packed = B.pack_activations(x, [0.0])
    assert packed.shape == (2, 5, 1, 1)
    np.testing.assert_array_equal(packed.unpack()[:, 0, :, 0, 0], x >= 0)


@pytest.mark.parametrize("bad, err, match", [
    (np.array([1.0, 0.5]), InputError, "increase strictly"),
    (np.array([0.0, np.nan]), InputError, "NaN"),
    (np.zeros((2, 3)), InputError, "do not fit|increase"),
    (np.arange(17.0), InputError, "1..16"),
    (np.array([1.0, 1.0 + 1e-9]), InputError, "float32"),
])
def test_bad_thresholds(bad, err, match):
    x = np.zeros((1, 4, 2, 2), dtype=np.float32)
    with pytest.raises(err, match=match):
        B.pack_activations(x, bad)


def test_bad_inputs():
    x = np.zeros((1, 4, 2, 2), dtype=np.float32)
    with pytest.raises(InputError, match="exactly one plane"):
        B.pack_activations(x, [0.0, 1.0], signed=True)
    with pytest.raises(InputError, match="thresholds are required"):
        B.pack_activations(x)
    with pytest.raises(InputError, match="layout"):
        B.pack_activations(x, [0.0], layout="CHWN")
    with pytest.raises(ShapeError, match="4-D"):
        B.pack_activations(np.zeros((2, 3, 4)), [0.0])
    with pytest.raises(InputError, match="dtype"):
        B.pack_activations(np.zeros((1, 2, 1, 1), dtype=np.complex64), [0.0])
    with pytest.raises(InputError, match="isa"):
        B.pack_activations(x, [0.0], isa="neon")
    with pytest.raises(InputError, match="threads"):
        B.pack_activations(x, [0.0], threads=0)


# ---- weights ----------------------------------------------------------------------

def _planes_by_loop(w, u):
    """PA pieces the slow way: piece = number of endpoints <= w, zero piece M/2 skipped."""
    m = len(u)
    out = np.zeros((m,) + w.shape, dtype=bool)
    for idx, v in np.ndenumerate(w):
        k = sum(1 for e in u if e <= v)
        if k != m // 2:
            out[(k if k < m // 2 else k - 1,) + idx] = True
    return out


@pytest.mark.parametrize("m", [2, 4, 8])
def test_weight_planes_from_endpoints(m):
    rng = np.random.default_rng(m)
    w = rng.standard_normal((5, 3, 3, 3))
    u = np.sort(rng.standard_normal(m)) * 0.8
    w.flat[:m] = u  # weights exactly on an endpoint
    packed = B.pack_weights(w, u)
    expect = _planes_by_loop(w, u)
    np.testing.assert_array_equal(packed.planes_bool, expect)
    assert packed.planes == m and packed.planes_bool.sum(axis=0).max() <= 1


@pytest.mark.parametrize("o, cg, k, groups", [(37, 70, 3, 1), (16, 32, 1, 2), (9, 5, 2, 3)])
def test_weight_words_layout(o, cg, k, groups):
    rng = np.random.default_rng(o)
    planes = rng.random((2, o - o % groups, cg, k, k)) < 0.5
    packed = B.pack_weights(planes.astype(np.uint8), groups=groups)
    og = planes.shape[1] // groups
    chunks, kwords = -(-og // 16), -(-cg // 32)
    assert packed.words.shape == (groups, chunks, 2, k * k, kwords, 16)
    assert packed.words.ctypes.data % 64 == 0
    # Decode bit (g, oc, i, c, tap) the slow way.
    for _ in range(50):
        g, m = rng.integers(groups), rng.integers(2)
        oc, c, tap = rng.integers(og), rng.integers(cg), rng.integers(k * k)
        word = packed.words[g, oc // 16, m, tap, c // 32, oc % 16]
        assert bool(word >> (c % 32) & 1) == planes[m, g * og + oc, c, tap // k, tap % k]
    # Padding lanes and bits are zero.
    total = sum(int(v).bit_count() for v in packed.words.ravel())
    assert total == planes.sum()


def test_bad_weights():
    with pytest.raises(InputError, match="only 0 and 1"):
        B.pack_weights(np.full((2, 2, 1, 1), 2))
    with pytest.raises(InputError, match="even number"):
        B.pack_weights(np.zeros((2, 2, 1, 1)), [0.1, 0.2, 0.3])
    with pytest.raises(InputError, match="increase strictly"):
        B.pack_weights(np.zeros((2, 2, 1, 1)), [0.2, 0.1])
    with pytest.raises(ShapeError, match="divisible by groups"):
        B.pack_weights(np.zeros((3, 2, 1, 1)), groups=2)
    with pytest.raises(InputError, match="M=17"):
        B.pack_weights(np.zeros((17, 2, 2, 1, 1)))
    with pytest.raises(InputError, match="NaN"):
        B.pack_weights(np.full((2, 2, 1, 1), np.nan), signed=True)
    with pytest.raises(ShapeError):
        B.pack_weights(np.zeros((2, 2, 2, 2, 2, 2)))
