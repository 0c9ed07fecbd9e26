"""Direct convolution kernels against independent references: torch for fp32, an
int64 numpy im2col + einsum for the integer paths (bit-exact), every ISA path."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from edgecc import _native
from edgecc.compiler.codegen.int_kernel_choice import runnable
from edgecc.errors import InputError
from edgecc.kernels import direct


ISAS = [pytest.param(isa, marks=pytest.mark.skipif(not runnable(isa), reason=f"CPU lacks {isa}"))
        for isa in ("avx512", "avx2", "scalar")]
AVAILABLE = [isa for isa in ("avx512", "avx2", "scalar") if runnable(isa)]


# ---- references ---------------------------------------------------------------

def ref_int(x, w, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """Exact int64 convolution: im2col with numpy slicing, then einsum."""
    x = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (padding[0], padding[2]), (padding[1], padding[3])))
    n, c, hp, wp = x.shape
    o, cg, kh, kw = w.shape
    oh = (hp - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wp - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    cols = np.empty((n, c, kh, kw, oh, ow), np.int64)
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dilation[0], j * dilation[1]
            cols[:, :, i, j] = x[:, :, r0:r0 + stride[0] * (oh - 1) + 1:stride[0],
                                 c0:c0 + stride[1] * (ow - 1) + 1:stride[1]]
    cols = cols.reshape(n, groups, cg, kh, kw, oh, ow)
    wg = w.astype(np.int64).reshape(groups, o // groups, cg, kh, kw)
    return np.einsum("ngckhpq,gockh->ngopq", cols, wg).reshape(n, o, oh, ow)


def ref_f32(x, w, bias=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    xt = torch.nn.functional.pad(torch.from_numpy(x), (padding[1], padding[3], padding[0], padding[2]))
    b = None if bias is None else torch.from_numpy(bias)
    return torch.nn.functional.conv2d(xt, torch.from_numpy(w), b, stride=stride, dilation=dilation,
                                      groups=groups).numpy()


def assert_f32_close(y, ref, x, w):
    # Error grows with the reduction length and the size of the terms.
    k = w.shape[1] * w.shape[2] * w.shape[3]
    scale = max(1.0, float(np.abs(x).max()) * float(np.abs(w).max()) * k)
    np.testing.assert_allclose(y, ref, rtol=0, atol=2e-6 * scale)


# ---- random geometry ------------------------------------------------------------

@st.composite
def conv_cases(draw, max_og=20):
    groups = draw(st.integers(1, 3))
    cg = draw(st.integers(1, 5))
    og = draw(st.integers(1, max_og))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = tuple(draw(st.integers(0, 2)) for _ in range(4))
    # the padded input must hold at least one dilated kernel
    h = draw(st.integers(max(1, dilation[0] * (kh - 1) + 1 - padding[0] - padding[2]), 13))
    wd = draw(st.integers(max(1, dilation[1] * (kw - 1) + 1 - padding[1] - padding[3]), 21))
    n = draw(st.integers(1, 2))
    return dict(x_shape=(n, cg * groups, h, wd), w_shape=(og * groups, cg, kh, kw),
                geometry=dict(stride=stride, padding=padding, dilation=dilation, groups=groups))


def rand_int(rng, shape, dtype):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


# ---- fp32 -----------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(case=conv_cases(), isa=st.sampled_from(AVAILABLE), seed=st.integers(0, 2**31), with_bias=st.booleans())
def test_f32_matches_torch(case, isa, seed, with_bias):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(case["x_shape"], dtype=np.float32)
    w = rng.standard_normal(case["w_shape"], dtype=np.float32)
    bias = rng.standard_normal(case["w_shape"][0], dtype=np.float32) if with_bias else None
    y = direct.conv2d_f32(x, w, bias, isa=isa, **case["geometry"])
    assert y.dtype == np.float32
    assert_f32_close(y, ref_f32(x, w, bias, **case["geometry"]), x, w)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("multiplier,width", [(1, 17), (2, 17), (1, 70)])
def test_f32_depthwise(isa, multiplier, width):
    # width 70: full 4-vector blocks plus every tail length the row kernels handle
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 19, 15, width), dtype=np.float32)
    w = rng.standard_normal((19 * multiplier, 1, 3, 3), dtype=np.float32)
    bias = rng.standard_normal(19 * multiplier, dtype=np.float32)
    geometry = dict(stride=(2, 1), padding=(1, 0, 2, 1), dilation=(1, 2), groups=19)
    name = direct.kernel_name("f32", x.shape, w.shape, isa=isa, **geometry)
    assert ("dwconv" in name) == (isa != "scalar")
    y = direct.conv2d_f32(x, w, bias, isa=isa, **geometry)
    assert_f32_close(y, ref_f32(x, w, bias, **geometry), x, w)


@pytest.mark.parametrize("isa", ISAS)
def test_f32_resnet_like_layer(isa):
    # Full 2-block x 14-pixel tiles, many channel packs, odd output channel count.
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 64, 28, 28), dtype=np.float32)
    w = rng.standard_normal((72, 64, 3, 3), dtype=np.float32)
    bias = rng.standard_normal(72, dtype=np.float32)
    for stride in (1, 2):
        y = direct.conv2d_f32(x, w, bias, stride=stride, padding=1, isa=isa)
        assert_f32_close(y, ref_f32(x, w, bias, stride=(stride, stride), padding=(1, 1, 1, 1)), x, w)


def test_f32_naive_matches_torch():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 9, 10), dtype=np.float32)
    w = rng.standard_normal((4, 3, 3, 2), dtype=np.float32)
    bias = rng.standard_normal(4, dtype=np.float32)
    geometry = dict(stride=(2, 1), padding=(0, 1, 2, 0), dilation=(2, 1), groups=2)
    y = direct.conv2d_f32_naive(x, w, bias, **geometry)
    assert_f32_close(y, ref_f32(x, w, bias, **geometry), x, w)


# ---- integers -------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(case=conv_cases(max_og=36), isa=st.sampled_from(AVAILABLE), seed=st.integers(0, 2**31),
       dtype=st.sampled_from([np.int8, np.int16]), acc=st.sampled_from(["auto", "i64"]))
def test_int_bit_exact(case, isa, seed, dtype, acc):
    rng = np.random.default_rng(seed)
    x = rand_int(rng, case["x_shape"], dtype)
    w = rand_int(rng, case["w_shape"], dtype)
    y = direct.conv2d_int(x, w, acc=acc, isa=isa, **case["geometry"])
    expect_dtype = np.int32 if dtype == np.int8 and acc == "auto" else np.int64
    assert y.dtype == expect_dtype
    np.testing.assert_array_equal(y, ref_int(x, w, **case["geometry"]))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.int8, np.int16])
@pytest.mark.parametrize("layer", ["general", "depthwise"])
def test_int_extreme_values(isa, dtype, layer):
    """Every combination of the extreme values, everywhere: the u8 offset trick,
    the (-32768)^2 pmaddwd corner and the int16 split must all stay exact."""
    lo, hi = int(np.iinfo(dtype).min), int(np.iinfo(dtype).max)
    if layer == "general":
        x_shape, w_shape, groups = (2, 70, 9, 16), (34, 35, 3, 3), 2  # 315 steps: several int16 drains
    else:
        x_shape, w_shape, groups = (1, 21, 9, 62), (42, 1, 3, 3), 21
    geometry = dict(stride=1, padding=(2, 1, 0, 1), dilation=1, groups=groups)
    pad4 = (2, 1, 0, 1)
    for xv, wv in ((lo, lo), (hi, hi), (lo, hi), (hi, lo)):
        x = np.full(x_shape, xv, dtype)
        w = np.full(w_shape, wv, dtype)
        for acc in ("auto", "i64"):
            y = direct.conv2d_int(x, w, acc=acc, isa=isa, **geometry)
            np.testing.assert_array_equal(y, ref_int(x, w, padding=pad4, groups=groups))
    rng = np.random.default_rng(4)  # random mixes of the two extremes
    x = rng.choice(np.array([lo, hi], dtype), size=x_shape)
    w = rng.choice(np.array([lo, hi], dtype), size=w_shape)
    np.testing.assert_array_equal(direct.conv2d_int(x, w, isa=isa, **geometry),
                                  ref_int(x, w, padding=pad4, groups=groups))


@pytest.mark.parametrize("isa", ISAS)
def test_qs8_int32_at_the_reduction_bound(isa):
    # K = 131071: 131071 * (-128)^2 = 2^31 - 16384 is the largest int32 sum possible.
    k = direct.QS8_MAX_REDUCTION_I32
    x = np.full((1, k, 1, 2), -128, np.int8)
    w = np.full((3, k, 1, 1), -128, np.int8)
    w[1] = 127
    y = direct.conv2d_int(x, w, isa=isa)
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y, ref_int(x, w))
    assert int(y[0, 0, 0, 0]) == k * 128 * 128


def test_qs8_past_the_bound_uses_int64():
    k = direct.QS8_MAX_REDUCTION_I32 + 1
    x = np.full((1, k, 1, 1), -128, np.int8)
    w = np.full((1, k, 1, 1), -128, np.int8)
    y = direct.conv2d_int(x, w)
    assert y.dtype == np.int64 and int(y[0, 0, 0, 0]) == k * 128 * 128  # 2^31 exactly
    with pytest.raises(ValueError, match="131071"):
        direct.conv2d_int(x, w, acc="i32")
    with pytest.raises(ValueError, match="int64"):  # the native check, bypassing Python's
        _native.direct_conv2d_qs8(x, w, (1, 1), (0, 0, 0, 0), (1, 1), 1)
    with pytest.raises(ValueError, match="131071"):
        direct.conv2d_int_naive(x, w, acc="i32")
    np.testing.assert_array_equal(direct.conv2d_int_naive(x, w), y)


@pytest.mark.parametrize("isa", ISAS)
def test_int_resnet_like_layer(isa):
    rng = np.random.default_rng(5)
    for dtype in (np.int8, np.int16):
        x = rand_int(rng, (1, 64, 14, 14), dtype)
        w = rand_int(rng, (40, 64, 3, 3), dtype)
        for stride in (1, 2):
            y = direct.conv2d_int(x, w, stride=stride, padding=1, isa=isa)
            np.testing.assert_array_equal(y, ref_int(x, w, stride=(stride, stride), padding=(1, 1, 1, 1)))


@settings(max_examples=20, deadline=None)
@given(case=conv_cases(max_og=6), seed=st.integers(0, 2**31), dtype=st.sampled_from([np.int8, np.int16]),
       acc=st.sampled_from(["auto", "i64"]))
def test_int_naive_bit_exact(case, seed, dtype, acc):
    rng = np.random.default_rng(seed)
    x = rand_int(rng, case["x_shape"], dtype)
    w = rand_int(rng, case["w_shape"], dtype)
    y = direct.conv2d_int_naive(x, w, acc=acc, **case["geometry"])
    assert y.dtype == (np.int32 if dtype == np.int8 and acc == "auto" else np.int64)
    np.testing.assert_array_equal(y, ref_int(x, w, **case["geometry"]))


def test_mixed_int8_int16_operands():
    rng = np.random.default_rng(6)
    x = rand_int(rng, (1, 4, 6, 6), np.int8)
    w = rand_int(rng, (3, 4, 3, 3), np.int16)
    y = direct.conv2d_int(x, w, padding=1)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, ref_int(x, w, padding=(1, 1, 1, 1)))


# ---- threads, layouts ---------------------------------------------------------

@pytest.mark.parametrize("isa", ISAS)
def test_threads_and_noncontiguous_inputs(isa):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 9, 12, 10), dtype=np.float32)
    w = rng.standard_normal((6, 3, 3, 3), dtype=np.float32)
    xs = np.asfortranarray(x)
    ws = np.ascontiguousarray(w.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)  # non-contiguous view
    one = direct.conv2d_f32(x, w, groups=3, padding=1, threads=1, isa=isa)
    two = direct.conv2d_f32(xs, ws, groups=3, padding=1, threads=2, isa=isa)
    np.testing.assert_array_equal(one, two)
    xi = rand_int(rng, (2, 9, 12, 10), np.int8)
    wi = rand_int(rng, (6, 3, 3, 3), np.int8)
    strided = np.zeros((2, 9, 12, 20), np.int8)
    strided[..., ::2] = xi
    a = direct.conv2d_int(xi, wi, groups=3, stride=2, threads=1, isa=isa)
    b = direct.conv2d_int(strided[..., ::2], wi, groups=3, stride=2, threads=2, isa=isa)
    np.testing.assert_array_equal(a, b)


def test_padding_forms():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 2, 5, 6), dtype=np.float32)
    w = rng.standard_normal((3, 2, 3, 3), dtype=np.float32)
    np.testing.assert_array_equal(direct.conv2d_f32(x, w, padding=1), direct.conv2d_f32(x, w, padding=(1, 1, 1, 1)))
    np.testing.assert_array_equal(direct.conv2d_f32(x, w, padding=(2, 1)),
                                  direct.conv2d_f32(x, w, padding=(2, 1, 2, 1)))
    assert direct.conv2d_f32(x, w, padding=(0, 1, 2, 3)).shape == (1, 3, 5, 8)


# ---- bad input ------------------------------------------------------------------

def test_invalid_arguments_raise_clear_errors():
    x = np.zeros((1, 4, 5, 5), np.float32)
    w = np.zeros((2, 4, 3, 3), np.float32)
    xi, wi = x.astype(np.int8), w.astype(np.int8)
    cases = [
        (lambda: direct.conv2d_f32(x.astype(np.float64), w), "x must be float32"),
        (lambda: direct.conv2d_f32(x, w.astype(np.int8)), "w must be float32"),
        (lambda: direct.conv2d_f32(x[0], w), r"4-D NCHW, got shape \(4, 5, 5\)"),
        (lambda: direct.conv2d_f32(x, w[0]), "4-D OIHW"),
        (lambda: direct.conv2d_f32(x, w, groups=2), "expects 8 input channels"),
        (lambda: direct.conv2d_f32(x, w, groups=3), "not divisible by groups=3"),
        (lambda: direct.conv2d_f32(x, np.zeros((3, 2, 3, 3), np.float32), groups=2), "output channels 3"),
        (lambda: direct.conv2d_f32(x, np.zeros((2, 4, 7, 3), np.float32)), "padded input height 5"),
        (lambda: direct.conv2d_f32(x, w, dilation=(1, 3)), "dilated kernel width 7"),
        (lambda: direct.conv2d_f32(x, w, padding=-1), "padding must be >= 0"),
        (lambda: direct.conv2d_f32(x, w, padding=(1, 1, 1)), "padding must have 2 or 4 values"),
        (lambda: direct.conv2d_f32(x, w, stride=0), "stride must be >= 1"),
        (lambda: direct.conv2d_f32(x, w, stride=1.5), "stride must be an int"),
        (lambda: direct.conv2d_f32(x, w, stride=True), "stride must be an int"),
        (lambda: direct.conv2d_f32(x, w, groups=0), "groups must be >= 1"),
        (lambda: direct.conv2d_f32(x, w, threads=-1), "threads must be >= 0"),
        (lambda: direct.conv2d_f32(x, w, isa="neon"), "isa must be one of"),
        (lambda: direct.conv2d_f32(x, w, np.zeros(3, np.float32)), r"bias must be float32 of shape \(2,\)"),
        (lambda: direct.conv2d_f32(np.zeros((1, 4, 0, 5), np.float32), w), "empty dimension"),
        (lambda: direct.conv2d_int(xi.astype(np.int32), wi), "x must be int8 or int16"),
        (lambda: direct.conv2d_int(xi, wi.astype(np.uint8)), "w must be int8 or int16"),
        (lambda: direct.conv2d_int(xi.astype(np.int16), wi, acc="i32"), "int16 operands need int64"),
        (lambda: direct.conv2d_int(xi, wi, acc="i16"), "acc must be"),
        (lambda: direct.kernel_name("f64", x.shape, w.shape), "dtype must be"),
    ]
    for call, message in cases:
        with pytest.raises(InputError, match=message):
            call()
        with pytest.raises(ValueError):  # the same errors are ValueErrors too
            call()


def test_native_rejects_bad_arguments():
    x = np.zeros((1, 4, 5, 5), np.int8)
    w = np.zeros((2, 4, 3, 3), np.int8)
    with pytest.raises(ValueError, match="stride_h must be >= 1"):
        _native.direct_conv2d_qs8(x, w, (0, 1), (0, 0, 0, 0), (1, 1), 1)
    with pytest.raises(ValueError, match="weight has 4 input channels per group"):
        _native.direct_conv2d_qs8(x, w, (1, 1), (0, 0, 0, 0), (1, 1), 2)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        _native.naive_conv2d_qs16_i64(x.astype(np.int16), w.astype(np.int16), (1, 1), (0, -1, 0, 0), (1, 1), 1)
    with pytest.raises(ValueError, match="rank 3"):
        _native.direct_conv2d_qs8(x[0], w, (1, 1), (0, 0, 0, 0), (1, 1), 1)
    with pytest.raises(TypeError):  # wrong dtype is never converted silently
        _native.direct_conv2d_qs8(x.astype(np.int16), w, (1, 1), (0, 0, 0, 0), (1, 1), 1)


# ---- prepacked layers -------------------------------------------------------------

@pytest.mark.parametrize("isa", ISAS)
def test_prepacked_layer_runs_any_input_size(isa):
    rng = np.random.default_rng(9)
    geometry = dict(stride=(2, 1), padding=(1, 2, 0, 1), dilation=(1, 2), groups=2)
    w = rng.standard_normal((20, 3, 3, 3), dtype=np.float32)
    bias = rng.standard_normal(20, dtype=np.float32)
    layer = direct.DirectConv2d(w, bias, isa=isa, **geometry)
    assert layer.isa == isa and layer.kernel_name.endswith(isa)
    wi = rand_int(rng, (20, 3, 3, 3), np.int8)
    qs8 = direct.DirectConv2d(wi, isa=isa, **geometry)
    qs16 = direct.DirectConv2d(wi.astype(np.int16) * 200, isa=isa, **geometry)
    assert (qs8.out_dtype, qs16.out_dtype) == (np.int32, np.int64)
    for shape in ((1, 6, 9, 11), (3, 6, 5, 20)):
        x = rng.standard_normal(shape, dtype=np.float32)
        assert_f32_close(layer(x), ref_f32(x, w, bias, **geometry), x, w)
        xi = rand_int(rng, shape, np.int8)
        np.testing.assert_array_equal(qs8(xi), ref_int(xi, wi, **geometry))
        np.testing.assert_array_equal(qs16(xi), ref_int(xi, wi.astype(np.int16) * 200, **geometry))  # int8 x widens


def test_prepacked_layer_rejects_bad_input():
    w = np.zeros((4, 2, 3, 3), np.float32)
    layer = direct.DirectConv2d(w)
    with pytest.raises(InputError, match="x must be float32"):
        layer(np.zeros((1, 2, 5, 5), np.float64))
    with pytest.raises(InputError, match="expects 2 input channels"):
        layer(np.zeros((1, 3, 5, 5), np.float32))
    with pytest.raises(InputError, match="padded input height 2"):
        layer(np.zeros((1, 2, 2, 5), np.float32))
    with pytest.raises(InputError, match="x must be int8"):
        direct.DirectConv2d(w.astype(np.int8))(np.zeros((1, 2, 5, 5), np.int16))
    with pytest.raises(InputError, match="bias is not supported"):
        direct.DirectConv2d(w.astype(np.int8), np.zeros(4, np.float32))
    with pytest.raises(InputError, match="acc='i64' is for integer weights"):
        direct.DirectConv2d(w, acc="i64")
    with pytest.raises(InputError, match="w must be float32, int8 or int16"):
        direct.DirectConv2d(w.astype(np.int32))
    with pytest.raises(ValueError, match="channels"):  # the native check
        _native.DirectConv2dF32(w, None, (1, 1), (0, 0, 0, 0), (1, 1), 1).run(np.zeros((1, 3, 5, 5), np.float32))
