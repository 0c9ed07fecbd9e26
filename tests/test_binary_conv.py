"""Binary convolution: every ISA path against the numpy reference (bit-exact counts),
+-1 against torch conv2d, the fused epilogue against float64 math, and argument checks."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from edgecc import _native
from edgecc.errors import InputError, ShapeError
from edgecc.kernels import binary as B
from edgecc.kernels import binary_reference as R

ISAS = ["scalar"] + (["avx2"] if _native.best_isa() in ("avx2", "avx512") else []) + \
    (["avx512"] if _native.best_isa() == "avx512" else [])


def _random_layer(rng, n, c, h, w, o, kh, kw, groups, m, p, signed):
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    if signed:
        xp = B.pack_activations(x, signed=True)
        wp = B.pack_weights(rng.standard_normal((m, o, c // groups, kh, kw)), signed=True, groups=groups)
    else:
        t = np.sort(rng.standard_normal((p, c)), axis=0).astype(np.float32)
        t[1:] += 0.01
        xp = B.pack_activations(x, t)
        wp = B.pack_weights(rng.random((m, o, c // groups, kh, kw)) < rng.uniform(0.2, 0.8), groups=groups)
    return x, xp, wp


def _reference_counts(xp, wp, stride, padding, dilation):
    ref = R.conv_counts(xp.unpack(), wp.planes_bool, x_signed=xp.signed, w_signed=wp.signed,
                        stride=stride, padding=B._padding(padding), dilation=dilation, groups=wp.groups)
    n, m, p = ref.shape[:3]
    return ref.reshape(n, m * p, *ref.shape[3:])


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_counts_match_reference_on_every_isa(data):
    draw = data.draw
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.sampled_from([1, 5, 31, 32, 33, 64, 70]))
    og = draw(st.integers(1, 20))
    k = draw(st.sampled_from([(1, 1), (3, 3), (5, 5), (7, 7), (2, 3)]))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = tuple(draw(st.integers(0, 3)) for _ in range(4))
    h = draw(st.integers(1, 9))
    w = draw(st.integers(1, 9))
    if h + padding[0] + padding[2] < dilation[0] * (k[0] - 1) + 1 or \
            w + padding[1] + padding[3] < dilation[1] * (k[1] - 1) + 1:
        h, w = h + 12, w + 12
    signed = draw(st.booleans())
    m, p = (1, 1) if signed else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    n = draw(st.integers(1, 2))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    _, xp, wp = _random_layer(rng, n, cg * groups, h, w, og * groups, *k, groups, m, p, signed)
    ref = _reference_counts(xp, wp, stride, padding, dilation)
    for isa in ISAS:
        got = B.binary_conv2d_counts(xp, wp, stride=stride, padding=padding, dilation=dilation, isa=isa,
                                     threads=2)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, ref, err_msg=f"isa={isa}")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("c, o, k, stride, pad", [(3, 64, 7, 2, 3), (130, 40, 1, 2, 0), (96, 64, 3, 1, 1)])
def test_resnet_like_layers(isa, c, o, k, stride, pad):
    rng = np.random.default_rng(c + o)
    _, xp, wp = _random_layer(rng, 3, c, 15, 13, o, k, k, 1, 2, 2, False)
    ref = _reference_counts(xp, wp, (stride, stride), pad, (1, 1))
    got = B.binary_conv2d_counts(xp, wp, stride=stride, padding=pad, isa=isa, threads=1)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("groups, dilation, stride", [(1, 1, 1), (2, 2, 1), (4, 1, 2)])
def test_pm1_equals_torch_conv_with_zero_padding(isa, groups, dilation, stride):
    rng = np.random.default_rng(groups * 10 + dilation)
    x = rng.standard_normal((2, 72, 11, 10)).astype(np.float32)
    w = rng.standard_normal((48, 72 // groups, 3, 3)).astype(np.float32)
    xs = np.where(x >= 0, 1.0, -1.0)
    ws = np.where(w >= 0, 1.0, -1.0)
    expect = F.conv2d(torch.from_numpy(xs), torch.from_numpy(ws), stride=stride, padding=2,
                      dilation=dilation, groups=groups).numpy()
    xp = B.pack_activations(x, signed=True)
    wp = B.pack_weights(w, signed=True, groups=groups)
    got = B.binary_conv2d_counts(xp, wp, stride=stride, padding=2, dilation=dilation, isa=isa)
    np.testing.assert_array_equal(got[:, 0], expect.astype(np.int64))
    # The float path with a scale (Bi-Real: sign weights times mean |W|) and bias.
    scale = np.abs(w).mean(axis=(1, 2, 3))
    bias = rng.standard_normal(48)
    y = B.binary_conv2d(xp, wp, stride=stride, padding=2, dilation=dilation, scale=scale, bias=bias, isa=isa)
    np.testing.assert_allclose(y, expect * scale[None, :, None, None] + bias[None, :, None, None],
                               rtol=1e-5, atol=1e-4)


def test_mixed_encodings():
    """+-1 weights on {0,1} activations and the converse use the same identity."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 40, 6, 6)).astype(np.float32)
    w = rng.standard_normal((20, 40, 3, 3))
    for x_signed, w_signed in [(False, True), (True, False)]:
        xp = B.pack_activations(x, signed=True) if x_signed else B.pack_activations(x, [0.0])
        wp = B.pack_weights(w, signed=True) if w_signed else B.pack_weights((w >= 0).astype(np.uint8))
        for isa in ISAS:
            got = B.binary_conv2d_counts(xp, wp, padding=1, isa=isa)
            np.testing.assert_array_equal(got, _reference_counts(xp, wp, (1, 1), 1, (1, 1)))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_float_epilogue_matches_reference(isa, layout):
    rng = np.random.default_rng(7)
    m, p, o = 3, 2, 37
    x, xp, wp = _random_layer(rng, 2, 50, 7, 6, o, 3, 3, 1, m, p, False)
    phi = rng.standard_normal((o, m, p))
    scale, bias = rng.uniform(0.5, 2, o), rng.standard_normal(o)
    slope = rng.uniform(0, 0.3, o)
    residual = rng.standard_normal((2, o, 7, 6)).astype(np.float32)
    counts = R.conv_counts(xp.unpack(), wp.planes_bool, padding=(1, 1, 1, 1))
    for act in [None, "relu", "prelu"]:
        expect = R.epilogue(counts, phi, scale, bias, residual, act, slope)
        res = residual if layout == "NCHW" else residual.transpose(0, 2, 3, 1).copy()
        y = B.binary_conv2d(xp, wp, padding=1, phi=phi, scale=scale, bias=bias, residual=res,
                            activation=act, prelu_slope=slope, layout=layout, isa=isa, threads=2)
        if layout == "NHWC":
            y = y.transpose(0, 3, 1, 2)
        np.testing.assert_allclose(y, expect, rtol=1e-5, atol=1e-3 * np.abs(expect).max())
    # Per-layer phi (M, P) broadcasts over output channels.
    y = B.binary_conv2d(xp, wp, padding=1, phi=phi[0], isa=isa, layout=layout)
    y = y if layout == "NCHW" else y.transpose(0, 3, 1, 2)
    np.testing.assert_allclose(y, R.epilogue(counts, phi[0]), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("q, residual, act, groups", [(1, False, None, 1), (3, True, "relu", 1),
                                                      (2, False, "prelu", 3), (1, True, None, 2)])
def test_fused_planes_equal_thresholding_the_float_output(isa, q, residual, act, groups):
    rng = np.random.default_rng(q * 7 + groups)
    o = 48 if groups != 3 else 45  # 45/3 = 15: groups whose channels straddle 16-bit halves
    x, xp, wp = _random_layer(rng, 2, 36, 9, 7, o, 3, 3, groups, 2, 2, False)
    kwargs = dict(stride=1, padding=1, phi=rng.standard_normal((2, 2)), bias=rng.standard_normal(o),
                  activation=act, prelu_slope=rng.uniform(0, 0.5, o), isa=isa, threads=2,
                  residual=rng.standard_normal((2, o, 9, 7)).astype(np.float32) if residual else None)
    y = B.binary_conv2d(xp, wp, **kwargs)
    t = np.sort(rng.standard_normal((q, o)) * np.abs(y).mean(), axis=0)
    planes = B.binary_conv2d(xp, wp, out_thresholds=t, **kwargs)
    assert isinstance(planes, B.PackedActivations) and planes.planes == q and planes.channels == o
    np.testing.assert_array_equal(planes.words, B.pack_activations(y, t, isa=isa).words)


def test_signed_output_chains_into_the_next_layer():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1, 64, 8, 8)).astype(np.float32)
    w1 = rng.standard_normal((64, 64, 3, 3))
    w2 = rng.standard_normal((32, 64, 3, 3))
    wp1, wp2 = B.pack_weights(w1, signed=True), B.pack_weights(w2, signed=True)
    xp = B.pack_activations(x, signed=True)
    h_planes = B.binary_conv2d(xp, wp1, padding=1, out_signed=True)  # sign of the output
    h_float = B.binary_conv2d(xp, wp1, padding=1)
    np.testing.assert_array_equal(h_planes.words, B.pack_activations(h_float, signed=True).words)
    y = B.binary_conv2d(h_planes, wp2, padding=1)
    hs = torch.from_numpy(np.where(h_float >= 0, 1.0, -1.0))
    expect = F.conv2d(hs, torch.from_numpy(np.where(w2 >= 0, 1.0, -1.0)), padding=1).numpy()
    np.testing.assert_array_equal(y, expect)


@pytest.mark.parametrize("isa", ISAS)
def test_binary_linear(isa):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 300)).astype(np.float32)
    t = np.array([-0.5, 0.5, 1.5])
    w = rng.standard_normal((2, 70, 300))
    w_planes = w > 0.3
    xp = B.pack_activations(x, t)
    wp = B.pack_weights(w_planes)
    phi = rng.standard_normal((2, 3))
    y = B.binary_linear(xp, wp, phi=phi, bias=np.arange(70.0), isa=isa)
    v = R.activation_planes(x[:, :, None, None], t)[:, :, :, 0, 0].astype(np.float64)  # [N, P, C]
    expect = np.einsum("npc,moc,mp->no", v, w_planes.astype(np.float64), phi) + np.arange(70.0)
    assert y.shape == (5, 70)
    np.testing.assert_allclose(y, expect, rtol=1e-5, atol=1e-3)
    q = B.binary_linear(xp, wp, phi=phi, bias=np.arange(70.0), out_thresholds=[0.0, 10.0], isa=isa)
    np.testing.assert_array_equal(q.words, B.pack_activations(y, [0.0, 10.0]).words)


def test_threads_and_batches_agree():
    rng = np.random.default_rng(9)
    _, xp, wp = _random_layer(rng, 3, 128, 14, 14, 128, 3, 3, 1, 2, 2, False)
    a = B.binary_conv2d_counts(xp, wp, padding=1, threads=1)
    b = B.binary_conv2d_counts(xp, wp, padding=1, threads=2)
    np.testing.assert_array_equal(a, b)
    single = B.PackedActivations(np.ascontiguousarray(xp.words[1:2]), xp.channels)
    np.testing.assert_array_equal(B.binary_conv2d_counts(single, wp, padding=1), a[1:2])


def test_isa_selection(monkeypatch):
    assert B.selected_isa("scalar") == "scalar"
    monkeypatch.setenv("EDGECC_ISA", "scalar")
    assert B.selected_isa() == "scalar"
    monkeypatch.setenv("EDGECC_ISA", "vax")
    with pytest.raises(InputError, match="unknown ISA"):
        B.selected_isa()


def test_argument_errors():
    rng = np.random.default_rng(0)
    _, xp, wp = _random_layer(rng, 1, 40, 6, 6, 16, 3, 3, 1, 2, 2, False)
    with pytest.raises(ShapeError, match="40 channels.*expect"):
        B.binary_conv2d(xp, B.pack_weights(np.ones((16, 41, 3, 3), dtype=np.uint8)))
    with pytest.raises(InputError, match="phi has shape"):
        B.binary_conv2d(xp, wp, phi=np.ones((3, 2)))
    with pytest.raises(InputError, match="increase strictly"):
        B.binary_conv2d(xp, wp, out_thresholds=[1.0, 0.0])
    with pytest.raises(InputError, match="exactly one plane"):
        B.binary_conv2d(xp, wp, out_thresholds=[0.0, 1.0], out_signed=True)
    with pytest.raises(ShapeError, match="does not fit"):
        B.binary_conv2d(xp, wp, dilation=4)
    with pytest.raises(InputError, match="stride"):
        B.binary_conv2d(xp, wp, stride=0)
    with pytest.raises(InputError, match="padding"):
        B.binary_conv2d(xp, wp, padding=-1)
    with pytest.raises(InputError, match="threads"):
        B.binary_conv2d(xp, wp, threads=0)
    with pytest.raises(InputError, match="isa"):
        B.binary_conv2d(xp, wp, isa="sse")
    with pytest.raises(InputError, match="activation"):
        B.binary_conv2d(xp, wp, activation="gelu")
    with pytest.raises(InputError, match="prelu_slope"):
        B.binary_conv2d(xp, wp, activation="prelu")
    with pytest.raises(ShapeError, match="residual has shape"):
        B.binary_conv2d(xp, wp, residual=np.zeros((1, 16, 4, 5)))
    with pytest.raises(InputError, match="bias has shape"):
        B.binary_conv2d(xp, wp, bias=np.zeros(15))
    with pytest.raises(InputError, match="PackedActivations"):
        B.binary_conv2d(np.zeros((1, 40, 6, 6)), wp)
    with pytest.raises(InputError, match="signed"):
        B.binary_conv2d(B.PackedActivations(xp.words, 40, signed=True), wp)
    with pytest.raises(InputError, match="in_planes"):
        B.BinaryConv2d(wp, 17)
    with pytest.raises(ShapeError, match="1x1"):
        B.binary_linear(xp, wp)
    # The native checks behind the Python ones also raise InputError, not crash.
    with pytest.raises(InputError, match="elements"):
        _native_call_with_short_weights(xp, wp)


def _native_call_with_short_weights(xp, wp):
    return B._native_call(_native.binary_conv2d, xp.words.view(np.uint32), 1, 6, 6, 2, 2, 0, False,
                          wp.words.ravel()[:-1], 1, 40, 16, 2, 3, 3, False, 1, 1, 0, 0, 1, 1, 4, 4, "counts")
