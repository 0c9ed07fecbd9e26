"""DFNT convolution is exact: the Table 2.2 layer configurations (batch 1) and random
shapes give 0 mismatches against an int64 numpy reference for INT8 and INT16, with
extreme values; the overflow check refuses a case that would wrap (and the test
shows it would); stride by polyphase; the direct fallback."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from edgecc import _native
from edgecc.errors import InputError
from edgecc.kernels import dfnt
from edgecc.kernels import reference
from edgecc.kernels.dfnt_reference import Ring, overflow_bound

ISAS = ["scalar"] + (["avx512"] if _native.best_isa() == "avx512" else [])
BEST = ISAS[-1]
# Table 2.2: (k, n + k - 1, f, f'), "same" padding, so n = (n + k - 1) - k + 1.
TABLE_2_2 = [(11, 32, 3, 96), (7, 32, 96, 256), (5, 16, 256, 384), (5, 16, 384, 384), (3, 16, 384, 384)]


def ref_conv(x, w, pads, stride=(1, 1)):
    """int64 numpy reference."""
    return reference.conv2d(x, w, strides=stride, pads=pads).astype(np.int64)


def ref_conv_blas(x, w, pads):
    """The same numpy reference evaluated in float64 (BLAS): exact, because every
    product and partial sum is an integer below 2^53; returned as int64."""
    assert int(np.abs(w.astype(np.int64)).reshape(len(w), -1).sum(1).max()) * 32768 < 2 ** 53
    y = reference.conv2d(x.astype(np.float64), w.astype(np.float64), pads=pads)
    return y.astype(np.int64)


def data(rng, dtype, shape, extreme):
    info = np.iinfo(dtype)
    if extreme:
        return rng.choice(np.array([info.min, info.max], dtype=dtype), size=shape)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


@pytest.mark.parametrize("dtype,modulus", [(np.int8, "F5"), (np.int16, "2^48+1"), (np.int16, "F6")])
@pytest.mark.parametrize("k,tile,f,fo", TABLE_2_2)
def test_table_2_2_configurations_exact(k, tile, f, fo, dtype, modulus):
    if modulus == "F6" and f * fo > 96 * 256:  # the largest F6 layers: same k and tile, fewer channels
        f, fo = f // 4, fo // 4
    rng = np.random.default_rng(k * 1000 + f)
    n = tile - k + 1
    extreme = fo % 2 == 0 and k != 5  # a mix: some layers with only the extreme values
    x = data(rng, dtype, (1, f, n, n), extreme)
    w = data(rng, dtype, (fo, f, k, k), extreme)
    conv = dfnt.DfntConv2d(w, padding="same", modulus=modulus, input_dtype=dtype, transform_size=tile, isa=BEST)
    assert conv.modulus == modulus and conv.transform_size == tile
    y = conv(x)
    expected = ref_conv_blas(x, w, ((k - 1) // 2,) * 4)
    assert y.dtype == (np.int32 if modulus == "F5" else np.int64)
    assert int((y != expected).sum()) == 0


@pytest.mark.parametrize("dtype", [np.int8, np.int16])
def test_extreme_values_at_the_bound(dtype):
    # All inputs at the most negative value and weights at the largest magnitude:
    # every output is the largest possible, max|x| * sum|w|.
    info = np.iinfo(dtype)
    x = np.full((2, 40, 9, 9), info.min, dtype)
    w = np.full((3, 40, 3, 3), info.min, dtype)
    w[1] = info.max
    for modulus in (["F5", "2^48+1", "F6"] if dtype == np.int8 else ["2^48+1", "F6"]):
        y = dfnt.DfntConv2d(w, padding="valid", modulus=modulus, input_dtype=dtype, isa=BEST)(x)
        expected = ref_conv(x, w, (0, 0, 0, 0))
        assert int(np.abs(expected).max()) == overflow_bound(w, -int(info.min))
        assert int((y != expected).sum()) == 0


def test_f5_accepts_exactly_up_to_its_limit():
    # int8 data, int16 weights: bound = 128 * 32768 * entries; 511 entries fit int32 / F5, 512 do not.
    x = np.full((1, 511, 2, 2), -128, np.int8)
    w = np.full((1, 511, 1, 1), -32768, np.int16)
    conv = dfnt.DfntConv2d(w, padding="valid", modulus="F5", input_dtype=np.int8, isa=BEST)
    assert conv.bound == 128 * 32768 * 511 <= dfnt.output_limit("F5")
    y = conv(x)
    assert y.dtype == np.int32 and (y == 128 * 32768 * 511).all()
    w512 = np.full((1, 512, 1, 1), -32768, np.int16)
    with pytest.raises(InputError, match="wrap"):
        dfnt.DfntConv2d(w512, padding="valid", modulus="F5", input_dtype=np.int8)


def test_overflow_check_refuses_a_case_that_would_wrap():
    # int16 data on F5: |output| can reach 3 * 32768 * 32767 > 2^31 - 1.
    w = np.full((2, 3, 1, 1), 32767, np.int16)
    x = np.full((1, 3, 4, 4), 32767, np.int16)
    true = ref_conv(x, w, (0, 0, 0, 0))
    with pytest.raises(InputError, match="wrap"):
        dfnt.DfntConv2d(w, padding="valid", modulus="F5", input_dtype=np.int16)
    # It would indeed wrap: the unchecked native F5 convolution returns the residue.
    plan = _native.dfnt_prepare_conv(w.astype(np.int64), 32, 8, BEST, "", 1)
    wrapped = _native.dfnt_run_conv(plan, x, (0, 0, 0, 0), 1)
    p = (1 << 32) + 1
    assert (wrapped != true).all()
    assert (wrapped == np.vectorize(lambda v: Ring(32).signed(int(v) % p))(true)).all()
    # "auto" picks a ring that holds it, and the caller can ask for the direct kernel.
    auto = dfnt.DfntConv2d(w, padding="valid", input_dtype=np.int16)
    assert auto.modulus == "2^48+1" and (auto(x) == true).all()
    direct = dfnt.DfntConv2d(w, padding="valid", modulus="F5", input_dtype=np.int16, on_overflow="direct")
    assert direct.fallback and (direct(x) == true).all()


def test_overflow_bound_matches_reference_and_auto_choice():
    rng = np.random.default_rng(3)
    w = rng.integers(-128, 128, size=(5, 7, 3, 3), dtype=np.int8)
    assert dfnt.overflow_bound(w, np.int8) == overflow_bound(w, 128)
    assert dfnt.overflow_bound(w, np.int16) == overflow_bound(w, 32768)
    assert dfnt.DfntConv2d(w, input_dtype=np.int8).modulus == "F5"
    # small weights keep even int16 data inside F5; full-range int16 weights need 2^48+1
    assert dfnt.DfntConv2d(w.astype(np.int16), input_dtype=np.int16).modulus == "F5"
    w16 = rng.integers(-32768, 32768, size=(5, 7, 3, 3), dtype=np.int16)
    assert dfnt.DfntConv2d(w16, input_dtype=np.int16).modulus == "2^48+1"
    huge = np.full((1, 2, 1, 1), np.iinfo(np.int64).max // 4, np.int64)  # too big for every ring
    with pytest.raises(InputError, match="any ring"):
        dfnt.DfntConv2d(huge, input_dtype=np.int16)


@st.composite
def conv_cases(draw):
    dtype = draw(st.sampled_from([np.int8, np.int16]))
    kh, kw = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    stride = draw(st.sampled_from([1, 1, 2, 3]))
    padding = draw(st.sampled_from(["same", "valid", 0, 1, 3, (1, 2, 0, 3)]))
    h, w = draw(st.integers(kh, 30)), draw(st.integers(kw, 30))
    return dict(dtype=dtype, k=(kh, kw), stride=stride, padding=padding, hw=(h, w),
                batch=draw(st.integers(1, 3)), c=draw(st.integers(1, 19)), o=draw(st.integers(1, 21)),
                modulus=draw(st.sampled_from(["auto", "F6"] + (["F5"] if dtype == np.int8 else []))),
                isa=draw(st.sampled_from(ISAS)), n=draw(st.sampled_from([None, 8, 16, 32, 64])),
                extreme=draw(st.booleans()), seed=draw(st.integers(0, 2 ** 31)))


@settings(max_examples=60, deadline=None)
@given(case=conv_cases())
def test_random_shapes_exact(case):
    rng = np.random.default_rng(case["seed"])
    dtype, (kh, kw), s = case["dtype"], case["k"], case["stride"]
    x = data(rng, dtype, (case["batch"], case["c"]) + case["hw"], case["extreme"])
    w = data(rng, dtype, (case["o"], case["c"], kh, kw), case["extreme"])
    n = case["n"]
    if n is not None and max(-(-kh // s), -(-kw // s)) > n:
        n = None
    conv = dfnt.DfntConv2d(w, padding=case["padding"], stride=s, modulus=case["modulus"], input_dtype=dtype,
                           transform_size=n, isa=case["isa"])
    pads = dfnt._resolve_pads(case["padding"], *case["hw"], kh, kw, s, s)
    y = conv(x)
    expected = ref_conv(x, w, pads, (s, s))
    assert y.shape == expected.shape
    assert int((y != expected).sum()) == 0


def test_scalar_and_vector_paths_and_threads_agree():
    rng = np.random.default_rng(7)
    x = data(rng, np.int8, (3, 21, 19, 23), False)
    w = data(rng, np.int8, (17, 21, 5, 3), False)
    expected = ref_conv(x, w, (2, 1, 2, 1))
    variants = [(isa, m, "") for isa in ISAS for m in ("F5", "2^48+1", "F6")]
    variants += [("avx512", "F5", "muludq")] if "avx512" in ISAS else []
    for isa, modulus, gemm in variants:
        for threads in (1, 2):
            conv = dfnt.DfntConv2d(w, padding="same", modulus=modulus, isa=isa, threads=threads, transform_size=16,
                                   gemm=gemm)
            assert (conv(x) == expected).all(), (isa, threads, modulus, gemm)


@pytest.mark.skipif("avx512" not in ISAS, reason="vpmuludq kernel is AVX-512")
def test_muludq_kernel_patches_the_33_bit_residue():
    # A lone -1 at a tile's origin transforms to -1 = 2^32 in every bin: the one F5
    # residue that vpmuludq cannot take (it is fixed up afterwards).
    rng = np.random.default_rng(2)
    w = data(rng, np.int8, (20, 9, 3, 3), False)
    x = np.zeros((2, 9, 30, 30), np.int8)
    x[:, :, 0, 0] = -1
    x[1, :, 14, 28] = -1  # the origin of another tile (tile size 16 - 3 + 1 = 14)
    x[1, 3] = data(rng, np.int8, (30, 30), False)
    for gemm in ("muludq", "ifma"):
        conv = dfnt.DfntConv2d(w, padding="valid", modulus="F5", transform_size=16, gemm=gemm)
        assert conv.plan.gemm_kernel.startswith("f5_gemm_" + gemm)
        assert (conv(x) == ref_conv(x, w, (0, 0, 0, 0))).all()


def test_layer_is_reusable_and_batch_independent():
    rng = np.random.default_rng(11)
    w = data(rng, np.int16, (9, 6, 3, 3), False)
    conv = dfnt.DfntConv2d(w, padding="same", input_dtype=np.int16)
    for shape in [(1, 6, 12, 12), (4, 6, 7, 30), (2, 6, 40, 9), (0, 6, 5, 5)]:
        x = data(rng, np.int16, shape, False)
        assert (conv(x) == ref_conv(x, w, (1, 1, 1, 1))).all()


def test_one_shot_function_matches_reference():
    rng = np.random.default_rng(5)
    x = data(rng, np.int8, (2, 4, 33, 17), True)
    w = data(rng, np.int8, (6, 4, 7, 7), True)
    y = dfnt.dfnt_conv2d(x, w, padding="same", stride=2)
    assert (y == ref_conv(x, w, dfnt._resolve_pads("same", 33, 17, 7, 7, 2, 2), (2, 2))).all()


def test_transform_size_choice():
    assert dfnt.choose_transform_size(3, 3, "F5") == 16
    assert dfnt.choose_transform_size(11, 11, "F5") == 32
    # with the layer's sizes and a batch, the cost model picks the thesis's tiles (Table 2.2)
    for k, tile, f, fo in TABLE_2_2:
        for modulus in ("F5", "2^48+1", "F6"):
            n = dfnt.choose_transform_size(k, k, modulus, out_hw=(tile - k + 1,) * 2, in_channels=f,
                                           out_channels=fo, batch=16)
            assert n == tile, (k, tile, modulus, n)
    # transformed weights beyond the memory cap are not considered
    assert dfnt.choose_transform_size(7, 7, "F5", out_hw=(56, 56), in_channels=256, out_channels=256, batch=64,
                                      max_weight_bytes=1 << 28) <= 16
    with pytest.raises(InputError, match="does not fit"):
        dfnt.choose_transform_size(70, 70, "2^48+1")


def test_bad_arguments_raise_input_error():
    w = np.ones((2, 3, 3, 3), np.int8)
    x = np.ones((1, 3, 8, 8), np.int8)
    conv = dfnt.DfntConv2d(w)
    with pytest.raises(InputError, match="dtype"):
        conv(x.astype(np.int16))
    with pytest.raises(InputError, match="3 channels"):
        conv(np.ones((1, 4, 8, 8), np.int8))
    with pytest.raises(InputError, match="smaller than the kernel"):
        dfnt.DfntConv2d(w, padding="valid")(np.ones((1, 3, 2, 8), np.int8))
    with pytest.raises(InputError, match="integers"):
        dfnt.DfntConv2d(w.astype(np.float32))
    with pytest.raises(InputError, match="4-D"):
        dfnt.DfntConv2d(np.ones((2, 3, 3), np.int8))
    with pytest.raises(InputError, match="modulus"):
        dfnt.DfntConv2d(w, modulus="F7")
    with pytest.raises(InputError, match="padding"):
        dfnt.DfntConv2d(w, padding="full")
    with pytest.raises(InputError, match="input_dtype"):
        dfnt.DfntConv2d(w, input_dtype=np.int32)
    with pytest.raises(InputError, match="on_overflow"):
        dfnt.DfntConv2d(w, on_overflow="ignore")
    with pytest.raises(InputError, match="transform size"):
        dfnt.DfntConv2d(w, transform_size=12)
    with pytest.raises(InputError, match="transform size"):
        dfnt.DfntConv2d(np.ones((1, 1, 9, 9), np.int8), transform_size=8)
    with pytest.raises(InputError, match="stride"):
        dfnt.DfntConv2d(w, stride=0)
    with pytest.raises(ValueError, match="int8 or int16"):
        _native.dfnt_run_conv(conv.plan, x.astype(np.int32), (0, 0, 0, 0), 1)
