"""Tensor-core (1-bit MMA) binary / PA convolution (edgecc.compiler.codegen.tvm_tensorcore).

Without a GPU: the same PrimFunc built for LLVM, with each mma.sync computed from the
32 lanes' fragment registers (same implicit-GEMM and fragment index math), must give
the C++ engine's counts bit-exactly; the CUDA build must compile with nvcc and carry
the b1 MMA instruction."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

tvm = pytest.importorskip("tvm", reason="apache-tvm is not installed (pip install apache-tvm==0.27.0.post1)")
pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

from edgecc.compiler.codegen import tvm_binary as TB  # noqa: E402
from edgecc.compiler.codegen import tvm_tensorcore as TC  # noqa: E402
from edgecc.errors import InputError, ShapeError  # noqa: E402
from test_tvm_binary import _engine_counts, _engine_float, _layer_data, layer_specs  # noqa: E402

NVCC = shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH: CUDA source generation "
                                "(tvm.compile for cuda) needs it")
B1_MMA = "mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc"


def _run_emulated(spec, x, t, wb, phi, bias, output, tiles=TC.TensorCoreTiles()):
    ex = TC.build_layer(spec, "llvm", output=output, tiles=tiles)
    dev = tvm.cpu()
    args = [x, TC.pack_gemm_weights(wb, spec, tiles), TC.weight_tap_ones(wb, spec), phi, t, bias]
    shape = ((spec.n, spec.m, spec.p, spec.o, spec.out_h, spec.out_w) if output == "counts"
             else (spec.n, spec.o, spec.out_h, spec.out_w))
    out = tvm.runtime.empty(shape, "int32" if output == "counts" else "float32", dev)
    ex["main"](*[tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in args], out)
    return out.numpy()


def test_fragment_layouts_cover_each_tile_once():
    a = {TC.a_frag(lane, r) for lane in range(32) for r in range(4)}
    b = {TC.b_frag(lane, r) for lane in range(32) for r in range(2)}
    c = {TC.c_frag(lane, r) for lane in range(32) for r in range(4)}
    assert a == {(row, w) for row in range(16) for w in range(8)}
    assert b == {(col, w) for col in range(8) for w in range(8)}
    assert c == {(row, col) for row in range(16) for col in range(8)}
    for lane in range(32):
        for r in range(4):
            assert TC.a_owner(*TC.a_frag(lane, r)) == (lane, r)
        for r in range(2):
            assert TC.b_owner(*TC.b_frag(lane, r)) == (lane, r)


TILES = [TC.TensorCoreTiles(), TC.TensorCoreTiles(1, 1), TC.TensorCoreTiles(2, 3), TC.TensorCoreTiles(4, 1, "wgmma")]


@settings(max_examples=8, deadline=None)
@given(spec=layer_specs(word_bits=32), seed=st.integers(0, 2**16), tiles=st.sampled_from(TILES))
def test_emulated_tensorcore_counts_bit_exact_vs_engine(spec, seed, tiles):
    x, t, wb, phi, bias = _layer_data(spec, seed)
    got = _run_emulated(spec, x, t, wb, phi, bias, "counts", tiles)
    np.testing.assert_array_equal(got, _engine_counts(spec, x, t, wb))


@pytest.mark.parametrize("wbasis,abasis,tiles", [
    ("01", "01", TC.TensorCoreTiles(warps=2, n_tiles=2)), ("pm1", "01", TC.TensorCoreTiles(warps=2, n_tiles=2)),
    ("01", "pm1", TC.TensorCoreTiles(warps=2, n_tiles=2)), ("pm1", "pm1", TC.TensorCoreTiles(warps=2, n_tiles=2)),
    ("01", "01", TC.TensorCoreTiles(4, 1, "wgmma")), ("pm1", "pm1", TC.TensorCoreTiles(4, 2, "wgmma"))])
def test_emulated_tensorcore_several_tiles_and_float_epilogue(wbasis, abasis, tiles):
    """More rows, columns and K steps than one block tile, groups, stride 2; mma.sync
    and wgmma (its operands through the shared-memory tile layout of the descriptors)."""
    spec = TB.BinaryConvSpec(2, 96, 9, 7, 18, 2, 2, 3, 3, (2, 1), (1, 1, 0, 1), groups=2,
                             weight_basis=wbasis, act_basis=abasis, word_bits=32)
    gs = TC.GemmShape.of(spec, tiles)
    assert gs.rows_pad > 16 * tiles.warps and gs.cols_pad > 8 * tiles.n_tiles and gs.k_pad > 8
    x, t, wb, phi, bias = _layer_data(spec, 11)
    counts = _run_emulated(spec, x, t, wb, phi, bias, "counts", tiles)
    np.testing.assert_array_equal(counts, _engine_counts(spec, x, t, wb))
    y = _run_emulated(spec, x, t, wb, phi, bias, "float", tiles)
    want = _engine_float(spec, x, t, wb, phi, bias)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5 * (np.abs(want).max() + 1))


def test_gemm_weights_layout_and_ones_column():
    spec = TB.BinaryConvSpec(1, 40, 5, 5, 6, 2, 1, 3, 3, weight_basis="pm1", act_basis="01", word_bits=32)
    _, _, wb, _, _ = _layer_data(spec, 2)
    wg = TC.pack_gemm_weights(wb, spec)
    gs = TC.GemmShape.of(spec, TC.TensorCoreTiles())
    assert wg.shape == (1, gs.cols_pad, gs.k_pad) and wg.dtype == np.uint32
    ones = np.unpackbits(wg.view(np.uint8), bitorder="little").reshape(1, gs.cols_pad, -1)
    # column i*Og + o holds the +1 weights of basis i, channel o; the ones column all channels of all taps
    assert ones[0, :12].sum() == (wb > 0).sum()
    assert ones[0, 12].sum() == 40 * 9 and ones[0, 13:].sum() == 0
    np.testing.assert_array_equal(TC.weight_tap_ones(wb, spec).sum(axis=2), (wb > 0).sum(axis=(2, 3, 4)))


def test_bad_arguments_raise():
    spec64 = TB.BinaryConvSpec(1, 8, 4, 4, 4, 1, 1, 3, 3, word_bits=64)
    with pytest.raises(InputError, match="32-bit words"):
        TC.layer_prim_func(spec64)
    spec = TB.BinaryConvSpec(1, 8, 4, 4, 4, 1, 1, 3, 3, word_bits=32)
    with pytest.raises(InputError, match="sm_80"):
        TC.build_layer(spec, "cuda", arch="sm_75")
    with pytest.raises(InputError, match="target"):
        TC.build_layer(spec, "rocm")
    with pytest.raises(InputError, match="output"):
        TC.layer_prim_func(spec, output="planes")
    with pytest.raises(InputError, match="warps"):
        TC.TensorCoreTiles(warps=0)
    with pytest.raises(InputError, match="warpgroup"):
        TC.TensorCoreTiles(2, 8, "wgmma")
    with pytest.raises(InputError, match="instruction"):
        TC.TensorCoreTiles(4, 4, "bmma")
    with pytest.raises(InputError, match="sm_90a"):
        TC.build_layer(spec, "cuda", arch="sm_90", tiles=TC.WGMMA_TILES)
    with pytest.raises(ShapeError, match="expected"):
        TC.weight_tap_ones(np.ones((1, 4, 7, 3, 3), np.int8), spec)


# ---- CUDA: generated source and PTX (nvcc, no GPU) -------------------------------------------
@needs_nvcc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_cuda_tensorcore_source_has_b1_mma_and_compiles(arch, tmp_path):
    spec = TB.BinaryConvSpec(1, 64, 8, 8, 64, 2, 3, 3, 3, pads=(1, 1, 1, 1), weight_basis="pm1",
                             act_basis="pm1", word_bits=32)
    ex = TC.build_layer(spec, "cuda", arch=arch)     # TVM runs nvcc for `arch` here
    src = ex.mod.imports[0].inspect_source()
    tiles = TC.TensorCoreTiles()
    k_steps = TC.GemmShape.of(spec, tiles).k_pad // TC.MMA_K_WORDS
    assert src.count(B1_MMA) == tiles.n_tiles * k_steps   # per 8-column tile and K step, unrolled
    assert ".xor.popc" not in src
    assert src.count("__global__ void") == 6                    # pack, GEMM, epilogue (decl + def)
    cu, ptx = tmp_path / "k.cu", tmp_path / "k.ptx"
    cu.write_text(src)
    r = subprocess.run([NVCC, f"-arch={arch}", "-ptx", "-w", str(cu), "-o", str(ptx)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    text = ptx.read_text()
    assert "mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc" in text


@needs_nvcc
def test_cuda_wgmma_source_has_b1_wgmma_and_compiles(tmp_path):
    spec = TB.BinaryConvSpec(1, 64, 8, 8, 64, 2, 3, 3, 3, pads=(1, 1, 1, 1), word_bits=32)
    ex = TC.build_layer(spec, "cuda", tiles=TC.WGMMA_TILES)     # sm_90a
    src = ex.mod.imports[0].inspect_source()
    assert "wgmma.mma_async.sync.aligned.m64n64k256.s32.b1.b1.and.popc" in src
    for step in ("fence.proxy.async", "wgmma.fence.sync.aligned", "wgmma.commit_group.sync.aligned",
                 "wgmma.wait_group.sync.aligned", "__shared__"):
        assert step in src, step
    cu, ptx = tmp_path / "k.cu", tmp_path / "k.ptx"
    cu.write_text(src)
    r = subprocess.run([NVCC, "-arch=sm_90a", "-ptx", "-w", str(cu), "-o", str(ptx)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "wgmma.mma_async.sync.aligned.m64n64k256.s32.b1.b1.and.popc" in ptx.read_text()
