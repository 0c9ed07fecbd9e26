"""TVM backend: binary / PA convolution as TE computes (edgecc.compiler.codegen.tvm_binary)
and whole-graph lowering (tvm_graph). The LLVM-built kernels are checked bit-exactly
against the C++ binary engine (edgecc.kernels.binary); the CUDA build is checked by
compiling its generated source with nvcc (no GPU needed)."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

tvm = pytest.importorskip("tvm", reason="apache-tvm is not installed (pip install apache-tvm==0.27.0.post1)")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

from edgecc.compiler.codegen import tvm_binary as TB  # noqa: E402
from edgecc.errors import InputError, ShapeError, UnsupportedOpsError  # noqa: E402
from edgecc.kernels import binary as B  # noqa: E402

NVCC = shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH: CUDA source generation "
                                "(tvm.compile for cuda) needs it")


def _layer_data(spec: TB.BinaryConvSpec, seed: int):
    return spec.random_arrays(seed)


def _run_cpu(executable, *arrays, out_shape, out_dtype):
    dev = tvm.cpu()
    out = tvm.runtime.empty(out_shape, out_dtype, dev)
    executable["main"](*[tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in arrays], out)
    return out.numpy()


def _engine_counts(spec, x, t, wb):
    """The C++ engine's counts [N, M, P, O, OH, OW] (per +-1 plane for pm1 activations)."""
    w = B.pack_weights(wb, signed=spec.weight_basis == "pm1", groups=spec.groups)
    geo = dict(stride=spec.strides, padding=spec.pads, dilation=spec.dilations)
    tt = t.T.astype(np.float64)
    if spec.act_basis == "01":
        c = B.binary_conv2d_counts(B.pack_activations(x, tt), w, **geo)
        return c.reshape(spec.n, spec.m, spec.p, spec.o, spec.out_h, spec.out_w)
    per_plane = [B.binary_conv2d_counts(B.pack_activations(x, tt[j:j + 1], signed=True), w, **geo)
                 for j in range(spec.p)]
    return np.stack(per_plane, axis=2)   # [N, M, P, O, OH, OW]


def _engine_float(spec, x, t, wb, phi, bias):
    w = B.pack_weights(wb, signed=spec.weight_basis == "pm1", groups=spec.groups)
    geo = dict(stride=spec.strides, padding=spec.pads, dilation=spec.dilations)
    tt = t.T.astype(np.float64)
    if spec.act_basis == "01":
        return B.binary_conv2d(B.pack_activations(x, tt), w, phi=phi, bias=bias, **geo)
    y = None
    for j in range(spec.p):
        yj = B.binary_conv2d(B.pack_activations(x, tt[j:j + 1], signed=True), w, phi=phi[:, :, j:j + 1],
                             bias=bias if j == 0 else None, **geo)
        y = yj if y is None else y + yj
    return y


@st.composite
def layer_specs(draw, word_bits=None):
    groups = draw(st.sampled_from([1, 1, 2]))
    cg = draw(st.integers(1, 70))              # channels per group: rarely a multiple of 32/64
    og = draw(st.integers(1, 9))
    k = draw(st.sampled_from([1, 3]))
    dil = draw(st.integers(1, 2))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    eff = dil * (k - 1) + 1
    h = draw(st.integers(max(1, eff - pads[0] - pads[2]), 7))
    w = draw(st.integers(max(1, eff - pads[1] - pads[3]), 7))
    return TB.BinaryConvSpec(
        n=draw(st.integers(1, 2)), c=cg * groups, h=h, w=w, o=og * groups, m=draw(st.integers(1, 4)),
        p=draw(st.integers(1, 3)), kh=k, kw=k, strides=(draw(st.integers(1, 2)), draw(st.integers(1, 2))),
        pads=pads, dilations=(dil, dil), groups=groups, weight_basis=draw(st.sampled_from(TB.BASES)),
        act_basis=draw(st.sampled_from(TB.BASES)),
        word_bits=word_bits or draw(st.sampled_from([32, 64])))


# ---- LLVM kernels vs the C++ engine --------------------------------------------------------
@settings(max_examples=15, deadline=None)
@given(spec=layer_specs(), seed=st.integers(0, 2**16))
def test_llvm_counts_bit_exact_vs_engine(spec, seed):
    x, t, wb, _, _ = _layer_data(spec, seed)
    ex = TB.build_layer(spec, "llvm", output="counts")
    got = _run_cpu(ex, x, TB.pack_weight_bases(wb, spec), t, out_dtype="int32",
                   out_shape=(spec.n, spec.m, spec.p, spec.o, spec.out_h, spec.out_w))
    np.testing.assert_array_equal(got, _engine_counts(spec, x, t, wb))


@settings(max_examples=10, deadline=None)
@given(spec=layer_specs(word_bits=64), seed=st.integers(0, 2**16), with_bias=st.booleans())
def test_llvm_float_epilogue_vs_engine(spec, seed, with_bias):
    x, t, wb, phi, bias = _layer_data(spec, seed)
    ex = TB.build_layer(spec, "llvm", output="float", with_bias=with_bias)
    args = [x, TB.pack_weight_bases(wb, spec), phi, t] + ([bias] if with_bias else [])
    got = _run_cpu(ex, *args, out_dtype="float32", out_shape=(spec.n, spec.o, spec.out_h, spec.out_w))
    want = _engine_float(spec, x, t, wb, phi, bias if with_bias else None)
    scale = np.abs(want).max() + 1.0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale)


def test_resnet_like_layer_64_channels_stride2():
    """A channel count that fills whole words, PA(2,3), stride 2 and padding 1."""
    spec = TB.BinaryConvSpec(1, 64, 10, 10, 32, 2, 3, 3, 3, (2, 2), (1, 1, 1, 1), word_bits=64)
    x, t, wb, _, _ = _layer_data(spec, 7)
    ex = TB.build_layer(spec, "llvm", output="counts")
    got = _run_cpu(ex, x, TB.pack_weight_bases(wb, spec), t, out_dtype="int32",
                   out_shape=(1, 2, 3, 32, spec.out_h, spec.out_w))
    np.testing.assert_array_equal(got, _engine_counts(spec, x, t, wb))
    assert got.max() > 0


def test_bad_specs_and_weights_raise():
    with pytest.raises(ShapeError, match="groups=2"):
        TB.BinaryConvSpec(1, 3, 4, 4, 4, 1, 1, 3, 3, groups=2)
    with pytest.raises(ShapeError, match="does not fit"):
        TB.BinaryConvSpec(1, 8, 2, 2, 4, 1, 1, 3, 3)
    with pytest.raises(InputError, match="word_bits"):
        TB.BinaryConvSpec(1, 8, 4, 4, 4, 1, 1, 3, 3, word_bits=16)
    spec = TB.BinaryConvSpec(1, 8, 4, 4, 4, 1, 1, 3, 3)
    with pytest.raises(InputError, match="outside"):
        TB.pack_weight_bases(np.full((1, 4, 8, 3, 3), 2, np.int8), spec)
    with pytest.raises(ShapeError, match="expected"):
        TB.pack_weight_bases(np.zeros((1, 4, 7, 3, 3), np.int8), spec)
    with pytest.raises(InputError, match="target"):
        TB.build_layer(spec, "vulkan")


# ---- whole graph: the PA digits model -------------------------------------------------------
@pytest.fixture(scope="module")
def digits_graph():
    pytest.importorskip("torch")
    import edgecc
    from edgecc.compiler.passes import default_pipeline
    from edgecc.compiler.quant.export import exportable
    from edgecc.zoo import digits as D
    _, _, xte, _ = D.load_digits_split()
    graph = edgecc.load(exportable(D.load_bundled("pa45")), (xte,))
    default_pipeline().run(graph)
    return graph, xte.numpy()


def test_pa_digits_through_tvm_llvm_matches_engine(digits_graph):
    from edgecc.compiler.codegen.tvm_graph import TvmGraph
    from edgecc.runtime.engine import Engine
    graph, x = digits_graph
    assert sum(n.op == "binary_conv2d" for n in graph.nodes) >= 6
    logits = TvmGraph(graph, "llvm")(x)[0]
    ref = Engine(graph, threads=1)(x)[0]
    assert logits.shape == (x.shape[0], 10)
    np.testing.assert_array_equal(logits.argmax(1), ref.argmax(1))   # all 450 test images
    np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_graph_lowering_rejects_unsupported_ops():
    from edgecc.compiler.codegen.tvm_graph import TvmGraph
    from edgecc.compiler.ir import Graph
    g = Graph("g")
    x = g.add_input("x", (1, 4, 8, 8))
    y = g.add_node("resize", [x], {"mode": "nearest", "size": (16, 16)}, name="up").outputs[0]
    g.outputs = [y]
    with pytest.raises(UnsupportedOpsError, match="resize"):
        TvmGraph(g, "llvm")
    with pytest.raises(InputError, match="target"):
        TvmGraph(g, "rocm")


@pytest.mark.parametrize("schedule", ["llvm", "tensorcore"])
def test_binary_linear_through_tvm_matches_engine(schedule):
    from edgecc.compiler.codegen.tvm_graph import TvmGraph
    from edgecc.compiler.ir import Graph
    from edgecc.runtime.engine import Engine
    rng = np.random.default_rng(3)
    g = Graph("fc")
    x = g.add_input("x", (3, 70))
    wb = Graph.constant("wb", rng.integers(0, 2, size=(2, 5, 70)).astype(np.int8))
    phi = Graph.constant("phi", rng.normal(size=(5, 2, 2)).astype(np.float32))
    t = Graph.constant("t", np.sort(rng.normal(size=(70, 2)), axis=1).astype(np.float32))
    y = g.add_node("binary_linear", [x, wb, phi, t], name="fc").outputs[0]
    z = g.add_node("relu", [y], name="act").outputs[0]
    g.outputs = [z]
    xs = rng.normal(size=(3, 70)).astype(np.float32)
    got = TvmGraph(g, "llvm", binary_schedule=schedule)(xs)[0]
    want = Engine(g, threads=1)(xs)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * (np.abs(want).max() + 1))


# ---- CUDA: code generation checked with nvcc (no GPU needed) ---------------------------------
@pytest.fixture(scope="module")
def cuda_sources():
    if NVCC is None:
        pytest.skip("nvcc is not on PATH: CUDA source generation needs it")
    out = {}
    for name, spec in {
        "pa23": TB.BinaryConvSpec(1, 64, 8, 8, 32, 2, 3, 3, 3, pads=(1, 1, 1, 1), word_bits=32),
        "pm1": TB.BinaryConvSpec(1, 40, 12, 12, 40, 1, 1, 3, 3, (2, 2), (1, 1, 1, 1), weight_basis="pm1",
                                 act_basis="pm1", word_bits=32),
    }.items():
        ex = TB.build_layer(spec, "cuda", output="float", with_bias=True)
        out[name] = ex.mod.imports[0].inspect_source()
    return out


@needs_nvcc
def test_cuda_schedule_structure(cuda_sources):
    for name, src in cuda_sources.items():
        assert "__popc(" in src, name                  # 32-bit popcount on CUDA cores
        assert "__shared__" in src, name               # bit-packed operands staged in shared memory
        assert "blockIdx.x" in src and "blockIdx.y" in src and "threadIdx.x" in src, name
        assert "__syncthreads()" in src, name
    # {0,1} x {0,1}: the phi/bias epilogue is fused into the popcount kernel (2 kernels: pack, conv)
    assert cuda_sources["pa23"].count("__global__ void") == 4   # declarations + definitions


@needs_nvcc
def test_cuda_source_compiles_to_ptx_popc(cuda_sources, tmp_path):
    for name, src in cuda_sources.items():
        cu, ptx = tmp_path / f"{name}.cu", tmp_path / f"{name}.ptx"
        cu.write_text(src)
        r = subprocess.run([NVCC, "-arch=sm_90", "-ptx", "-w", str(cu), "-o", str(ptx)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        text = ptx.read_text()
        assert "popc.b32" in text, name
        assert "ld.shared" in text, name


@needs_nvcc
def test_cuda_whole_graph_builds(digits_graph):
    from edgecc.compiler.codegen.tvm_graph import TvmGraph
    graph, _ = digits_graph
    mod = TvmGraph(graph, "cuda", binary_schedule="popc")
    src = mod.executable.mod.imports[0].inspect_source()
    assert src.count("__popc(") >= 7   # one conv kernel per binary layer
    assert {d["schedule"] for d in mod.layers if d["op"] == "binary_conv2d"} == {"cuda popc"}
