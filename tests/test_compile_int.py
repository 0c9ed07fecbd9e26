"""Compiled integer convolutions (`qconv2d`): the library must equal the numpy reference
interpreter BIT FOR BIT (float32 outputs compared as raw bits), through edgecc's direct
int8 / int16 kernels and through DFNT, for every geometry, on every target ISA.

Graphs are built by hand (random integer weights, float scales); each geometry appears
twice, once forced to each kernel, so one compile covers both. Inputs include NaN,
+-inf, values far beyond the clip range and exact rounding ties.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edgecc
import edgecc.runtime
from edgecc.compiler import compile as compile_module
from edgecc.compiler.codegen import build as B
from edgecc.compiler.codegen import cpp as C
from edgecc.compiler.codegen.int_kernel_choice import RING_LIMIT, choose, dfnt_layer, overflow_bound
from edgecc.compiler.ir import Graph
from edgecc.errors import InputError

QMAX = {8: 127, 16: 32767}
# The reference quantizer multiplies 3e38 by 1/x_scale on purpose (it must clip).
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in multiply:RuntimeWarning")
BIG_C = 14800     # int8, 3x3 taps: reduction 133200 > 131071 (int32 direct), 127*127*133200 > 2^31-1 (F5)
BIG_C16 = 14600   # int16, 3x3 taps: 32767*32767*131400 > 2^47-1 (2^48+1): needs F6


def _qconv(g, x, name, o, k, bits, rng, wmax=None, **attrs):
    cg = x.shape[1] // attrs.get("groups", 1)
    wmax = QMAX[bits] if wmax is None else wmax
    w = rng.integers(-wmax, wmax + 1, size=(o, cg, *k)).astype(np.int8 if bits == 8 else np.int16)
    scale = (rng.uniform(0.5, 2.0, o) / (QMAX[bits] * wmax * cg * k[0] * k[1]) ** 0.5).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    attrs.setdefault("x_scale", 0.02)
    consts = [Graph.constant(f"{name}_w", w), Graph.constant(f"{name}_scale", scale),
              Graph.constant(f"{name}_bias", bias)]
    return g.add_node("qconv2d", [x, *consts], attrs, name=name).outputs[0]


# (name, input, out channels, kernel, attrs): strides, pads, dilation, groups, depthwise, relu
GEOMETRIES = [
    ("same3", "x", 8, (3, 3), dict(pads=(1, 1, 1, 1), relu=True, x_scale=0.25)),   # 0.25: exact ties
    ("strided", "x", 5, (3, 2), dict(strides=(2, 3), pads=(0, 1, 2, 0), dilations=(2, 1))),
    ("dilated5", "x", 7, (5, 5), dict(pads=(4, 4, 4, 4), dilations=(2, 2), relu=True)),
    ("point_s2", "x", 3, (1, 1), dict(strides=(2, 2))),
    ("depthwise", "same3", 8, (3, 3), dict(groups=8, pads=(1, 0, 1, 2), strides=(2, 1))),
    ("grouped", "same3", 4, (1, 3), dict(groups=2, pads=(0, 1, 0, 1), relu=True)),
]


def _graph(bits: int, *, big: bool, seed: int, wmax=None) -> Graph:
    rng = np.random.default_rng(seed)
    g = Graph(f"qconv_int{bits}")
    x = g.add_input("x", (2, 6, 11, 13))
    outs = []
    for kernel in ("direct", "dfnt"):
        values = {"x": x}
        for name, src, o, k, attrs in GEOMETRIES:
            values[name] = _qconv(g, values[src], f"{kernel}_{name}", o, k, bits, rng, wmax, **attrs)
            outs.append(values[name])
        # epilogue edge cases: inf / NaN / negative scales, NaN and -0.0 biases through relu
        edge = _qconv(g, x, f"{kernel}_edge", 4, (3, 3), bits, rng, wmax, pads=(1, 1, 1, 1), relu=True)
        edge.producer.inputs[2].data[:] = [np.inf, -2e-3, 2e-3, np.nan]
        edge.producer.inputs[3].data[:] = [0.0, -0.0, np.nan, 1.0]
        outs.append(edge)
    if big:   # every weight at +-qmax and every input clipping to +qmax: the widest sums
        c = BIG_C if bits == 8 else BIG_C16
        xb = g.add_input("xbig", (1, c, 3, 3))
        w = np.full((2, c, 3, 3), QMAX[bits], np.int8 if bits == 8 else np.int16)
        w[1, ::2] = -QMAX[bits]
        consts = [Graph.constant("big_w", w), Graph.constant("big_scale", np.array([1e-9, 3e-9], np.float32)),
                  Graph.constant("big_bias", np.array([0.5, -0.25], np.float32))]
        outs.append(g.add_node("qconv2d", [xb, *consts], {"x_scale": 0.5}, name="dfnt_big").outputs[0])
    g.outputs = outs
    return g


def _kernels(g: Graph) -> dict[str, str]:
    return {n.name: n.name.split("_")[0] for n in g.nodes}


def _compile(graph: Graph, out: Path, target: str = "host", **options):
    """codegen + build + model.json (compile.py's steps without its scheme and passes:
    the graph already holds qconv2d nodes)."""
    shutil.rmtree(out, ignore_errors=True)
    src = out / "src"
    src.mkdir(parents=True)
    tgt = B.resolve_target(target)
    opts = C.CodegenOptions(isa_request=tgt.isa_request, **options)
    gen = C.generate(graph, options=opts, required_flags=tgt.required_flags, build_info=f"test {target}",
                     weights_path="weights.bin")
    (src / "weights.bin").write_bytes(gen.weights)
    (src / "model.cpp").write_text(gen.model_cpp)
    (src / "entry.cpp").write_text(gen.entry_cpp)
    shutil.move(B.build_library(src, tgt), out / "model.so")
    lib = out / "model.so"
    meta = compile_module._metadata(graph, gen, tgt, "int", f"test {target}", lib, lib.stat().st_size)
    (out / "model.json").write_text(json.dumps(meta, indent=1))
    return edgecc.runtime.load(out), meta


def _inputs(g: Graph, seed: int, x_scale_hint: float = 0.02):
    """Random activations spanning the clip range, plus NaN, +-inf, huge values and ties."""
    rng = np.random.default_rng(seed)
    arrays = []
    for v in g.inputs:
        if v.name == "xbig":
            arrays.append(np.full(v.shape, 1e6, np.float32))   # all clip to +127
            continue
        a = (rng.standard_normal(v.shape) * 3.0).astype(np.float32)
        flat = a.reshape(-1)
        flat[:8] = [np.nan, np.inf, -np.inf, 3e38, -3e38, 1e9, -1e9, 0.0]
        ties = rng.integers(-600, 600, size=200) + 0.5    # k + 1/2 times 0.25: rint ties of x_scale 0.25
        flat[100:300] = (ties * 0.25).astype(np.float32)
        arrays.append(a)
    return arrays


def _assert_bit_exact(g: Graph, model, arrays):
    got = model.run(*arrays)
    want = edgecc.interpret(g, *arrays)
    assert len(got) == len(want)
    for v, y, r in zip(g.outputs, got, want):
        assert y.dtype == r.dtype == np.float32 and y.shape == r.shape, v.name
        np.testing.assert_array_equal(y.view(np.uint32), r.view(np.uint32), err_msg=v.name)


def _layers(meta) -> dict[str, dict]:
    return {L["node"]: L for L in meta["layers"]}


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory):
    g = _graph(8, big=True, seed=0)
    model, meta = _compile(g, tmp_path_factory.mktemp("int8") / "m", layer_kernels=_kernels(g))
    return g, model, meta


def test_int8_bit_exact_direct_and_dfnt(int8_model):
    g, model, _ = int8_model
    for seed in (1, 2):
        _assert_bit_exact(g, model, _inputs(g, seed))
    model.threads = 1
    _assert_bit_exact(g, model, _inputs(g, 3))


def test_int8_kernels_and_reasons_recorded(int8_model):
    g, _, meta = int8_model
    layers = _layers(meta)
    for name in ("same3", "strided", "dilated5", "point_s2"):
        assert layers[f"direct_{name}"]["kernel"].startswith("qs8_conv2d_direct_"), name
        assert layers[f"direct_{name}"]["why"] == "direct forced for this layer"
        assert layers[f"dfnt_{name}"]["kernel"].startswith("qs8_conv2d_dfnt_f5_"), name
        assert layers[f"dfnt_{name}"]["why"] == "dfnt forced for this layer"
    assert "stride phases" in layers["dfnt_strided"]["kernel"]
    assert layers["direct_depthwise"]["kernel"].startswith("qs8_dwconv2d_direct_")
    for name in ("depthwise", "grouped"):   # DFNT has no groups: direct, and the reason
        assert "_direct_" in layers[f"dfnt_{name}"]["kernel"]
        assert "no grouped convolution" in layers[f"dfnt_{name}"]["why"]
        assert "falls back to direct" in layers[f"dfnt_{name}"]["why"]
    big = layers["dfnt_big"]   # F5 bound fails -> direct; reduction too long for int32 -> int64 sums
    assert "DFNT overflow bound fails" in big["why"] and str(RING_LIMIT["F5"]) in big["why"]
    assert big["kernel"].startswith("qs16_conv2d_direct_") and "int64 sums" in big["kernel"]


def test_int8_big_reduction_needs_more_than_32_bits(int8_model):
    g, model, _ = int8_model
    arrays = _inputs(g, 4)
    y = model.run(*arrays)[-1]
    acc = 127 * 127 * BIG_C * 9   # every tap at +127 * +127 for output channel 0
    assert acc > 2**31 - 1
    assert y[0, 0, 0, 0] == np.float32(float(acc) * float(np.float32(1e-9)) + float(np.float32(0.5)))


def test_int16_bit_exact_direct_and_dfnt_all_rings(tmp_path):
    g = _graph(16, big=True, seed=5)
    rng = np.random.default_rng(6)
    # small weights: the bound fits F5; the others need 2^48+1, dfnt_big needs F6
    g.outputs.append(_qconv(g, g.inputs[0], "dfnt_small_w", 4, (3, 3), 16, rng, wmax=20, pads=(1, 1, 1, 1)))
    model, meta = _compile(g, tmp_path / "m", layer_kernels=_kernels(g))
    for seed in (7, 8):
        _assert_bit_exact(g, model, _inputs(g, seed))
    layers = _layers(meta)
    assert layers["dfnt_small_w"]["kernel"].startswith("qs16_conv2d_dfnt_f5_")
    assert layers["dfnt_same3"]["kernel"].startswith("qs16_conv2d_dfnt_f48_")
    assert layers["dfnt_big"]["kernel"].startswith("qs16_conv2d_dfnt_f6_")
    assert layers["direct_same3"]["kernel"].startswith("qs16_conv2d_direct_")
    assert "no grouped convolution" in layers["dfnt_depthwise"]["why"]


@pytest.mark.parametrize("target", ["avx512", "avx2", "generic"])
def test_targets_bit_exact(tmp_path, target):
    isa = {"avx512": "avx512", "avx2": "avx2", "generic": "scalar"}[target]
    if target != "generic" and not edgecc._native.cpu_features()[{"avx512": "avx512vnni", "avx2": "avx2"}[target]]:
        pytest.skip(f"this CPU cannot run {target} code")
    g = Graph("qconv_targets")
    rng = np.random.default_rng(9)
    x = g.add_input("x", (1, 5, 9, 7))
    a = _qconv(g, x, "dfnt_a", 6, (3, 3), 8, rng, pads=(1, 1, 1, 1), relu=True, x_scale=0.25)
    b = _qconv(g, a, "direct_b", 6, (3, 3), 8, rng, groups=6, strides=(2, 2))
    c = _qconv(g, x, "dfnt_c", 4, (3, 5), 16, rng, strides=(1, 2), dilations=(2, 1))
    d = _qconv(g, x, "direct_d", 4, (2, 2), 16, rng, pads=(0, 0, 1, 1))
    g.outputs = [a, b, c, d]
    model, meta = _compile(g, tmp_path / "m", target, layer_kernels=_kernels(g))
    assert meta["target"]["kernel_isa"] == isa
    layers = _layers(meta)
    assert f"_{isa} (" in layers["direct_b"]["kernel"] and f"_{isa} (" in layers["direct_d"]["kernel"]
    dfnt_isa = "avx512" if target == "avx512" else "scalar"   # DFNT has AVX-512 and scalar kernels
    assert layers["dfnt_a"]["kernel"].startswith("qs8_conv2d_dfnt_f5_")
    assert f"_{dfnt_isa} (" in layers["dfnt_a"]["kernel"]
    assert layers["dfnt_c"]["kernel"].startswith("qs16_conv2d_dfnt_")
    for seed in (10, 11):
        _assert_bit_exact(g, model, _inputs(g, seed))


def test_tune_records_measured_choice(tmp_path):
    g = Graph("qconv_tune")
    rng = np.random.default_rng(12)
    x = g.add_input("x", (1, 8, 12, 12))
    a = _qconv(g, x, "t8", 8, (3, 3), 8, rng, pads=(1, 1, 1, 1))
    b = _qconv(g, x, "t16", 8, (5, 5), 16, rng, wmax=300, pads=(2, 2, 2, 2), relu=True)
    c = _qconv(g, a, "t_dw", 8, (3, 3), 8, rng, groups=8)
    g.outputs = [a, b, c]
    model, meta = _compile(g, tmp_path / "m", tune=True)
    layers = _layers(meta)
    for name in ("t8", "t16"):
        why = layers[name]["why"]
        found = re.search(r"^tuned on this machine \(\w+\): direct ([0-9.]+) ms, dfnt F5 n=\d+ ([0-9.]+) ms", why)
        assert found, why
        direct_ms, dfnt_ms = map(float, found.groups())
        faster = "dfnt" if dfnt_ms < direct_ms else "direct"
        assert layers[name]["kernel"].startswith(f"qs{8 if name == 't8' else 16}_conv2d_{faster}_"), (why, layers[name])
    assert "no grouped convolution" in layers["t_dw"]["why"]   # not tunable: direct with the reason
    _assert_bit_exact(g, model, _inputs(g, 13))


# ---- the choice without compiling ------------------------------------------------------------
def _layer_graph(bits, c, o, k, hw, wmax, **attrs):
    g = Graph("choice")
    x = g.add_input("x", (1, c, hw, hw))
    _qconv(g, x, "L", o, (k, k), bits, np.random.default_rng(14), wmax, **attrs)
    return g.nodes[0]


def test_table_choice_uses_nearest_measured_point():
    opts = C.CodegenOptions(isa_request="avx512")
    big = _layer_graph(8, 64, 64, 11, 56, 3, pads=(5, 5, 5, 5))
    kernel, why = choose(big, 8, opts)
    assert kernel == "dfnt" and "int8,k=11,56x56,C=64" in why, why
    small = _layer_graph(8, 60, 70, 3, 50, 3, pads=(1, 1, 1, 1))
    kernel, why = choose(small, 8, opts)
    assert kernel == "direct" and "int8,k=3,56x56,C=64" in why, why
    kernel, why = choose(big, 8, C.CodegenOptions(isa_request="avx2"))
    assert kernel == "direct" and "scalar kernels" in why
    kernel, why = choose(big, 8, C.CodegenOptions(isa_request="avx512", layer_kernels={"L": "direct"}))
    assert (kernel, why) == ("direct", "direct forced for this layer")
    with pytest.raises(InputError, match="'L'.*'winograd'"):
        choose(big, 8, C.CodegenOptions(layer_kernels={"L": "winograd"}))


def test_overflow_bound_matches_python_integers():
    rng = np.random.default_rng(15)
    for bits, dt in ((8, np.int8), (16, np.int16)):
        w = rng.integers(-QMAX[bits], QMAX[bits] + 1, size=(5, 7, 3, 3)).astype(dt)
        want = QMAX[bits] * max(sum(abs(int(v)) for v in row.reshape(-1)) for row in w)
        assert overflow_bound(w, bits) == want
    g = _graph(16, big=True, seed=16)
    layer, _ = dfnt_layer(g.node("dfnt_big"), 16)
    assert layer.bound == 32767 * 32767 * BIG_C16 * 9 > RING_LIMIT["2^48+1"] and layer.ring == "F6"
    layer, _ = dfnt_layer(g.node("dfnt_same3"), 16)
    assert layer.ring == "2^48+1" and layer.weights.shape == (8, 6, 3, 3)
    layer, _ = dfnt_layer(g.node("dfnt_strided"), 16)   # dilated 5x2 kernel, stride phases 2x3
    assert layer.weights.shape == (5, 6 * 6, 3, 1)


@settings(max_examples=30, deadline=None)
@given(k=st.tuples(st.integers(1, 5), st.integers(1, 5)), s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       d=st.tuples(st.integers(1, 3), st.integers(1, 2)), p=st.tuples(*[st.integers(0, 3)] * 4),
       c=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_dfnt_weight_layout_is_the_same_convolution(k, s, d, p, c, seed):
    """The DFNT form (dilated kernel, stride phases as channels, stride 1) of any
    geometry gives the reference strided, dilated convolution exactly (numpy int64)."""
    from edgecc.compiler.codegen.int_kernel_choice import dilate_and_split
    from edgecc.kernels.dfnt import polyphase_input
    from edgecc.kernels.reference import conv2d
    rng = np.random.default_rng(seed)
    h, w_ = 9 + rng.integers(0, 4), 8 + rng.integers(0, 4)
    x = rng.integers(-127, 128, size=(2, c, h, w_)).astype(np.int64)
    w = rng.integers(-127, 128, size=(3, c, *k)).astype(np.int8)
    if h + p[0] + p[2] < d[0] * (k[0] - 1) + 1 or w_ + p[1] + p[3] < d[1] * (k[1] - 1) + 1:
        return
    want = conv2d(x, w.astype(np.int64), strides=s, pads=p, dilations=d, out_dtype=np.int64)
    wp = dilate_and_split(w, d, s).astype(np.int64)
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])))
    oh, ow = want.shape[2:]
    xq = polyphase_input(xp, *s, oh + wp.shape[2] - 1, ow + wp.shape[3] - 1)
    np.testing.assert_array_equal(conv2d(xq, wp, out_dtype=np.int64), want)


# ---- oneDNN int8 (s8 x s8 -> s32) as a third kernel ------------------------------------------
def _onednn_available() -> bool:
    from edgecc.compiler.codegen import onednn
    return onednn.available()


needs_onednn = pytest.mark.skipif(not _onednn_available(),
                                  reason="oneDNN (onednn-cpu-gomp + onednn-devel-cpu-gomp) is not installed")
needs_vnni = pytest.mark.skipif(not (edgecc._native.cpu_features()["avx512vnni"]
                                     or edgecc._native.cpu_features().get("avxvnni", False)),
                                reason="oneDNN int8 is exact only on CPUs with VNNI")


def _onednn_graph(seed: int) -> Graph:
    """Int8 layers: same / strided / dilated / pointwise, depthwise and grouped, chained,
    plus the epilogue edge cases (inf / NaN scales, NaN and -0.0 biases)."""
    rng = np.random.default_rng(seed)
    g = Graph("qconv_onednn")
    x = g.add_input("x", (2, 6, 11, 13))
    a = _qconv(g, x, "a_same", 8, (3, 3), 8, rng, pads=(1, 1, 1, 1), relu=True, x_scale=0.25)
    b = _qconv(g, a, "b_depthwise", 8, (3, 3), 8, rng, groups=8, pads=(1, 0, 1, 2), strides=(2, 1))
    c = _qconv(g, a, "c_grouped", 4, (1, 3), 8, rng, groups=2, pads=(0, 1, 0, 1), relu=True)
    d = _qconv(g, x, "d_strided", 5, (3, 2), 8, rng, strides=(2, 3), pads=(0, 1, 2, 0), dilations=(2, 1))
    e = _qconv(g, b, "e_point", 16, (1, 1), 8, rng, x_scale=0.05)
    edge = _qconv(g, x, "f_edge", 4, (3, 3), 8, rng, pads=(1, 1, 1, 1), relu=True)
    edge.producer.inputs[2].data[:] = [np.inf, -2e-3, 2e-3, np.nan]
    edge.producer.inputs[3].data[:] = [0.0, -0.0, np.nan, 1.0]
    g.outputs = [a, b, c, d, e, edge]
    return g


@pytest.fixture(scope="module")
def onednn_model(tmp_path_factory):
    g = _onednn_graph(20)
    out = tmp_path_factory.mktemp("onednn") / "m"
    model, meta = _compile(g, out, onednn=True, layer_kernels={n.name: "onednn" for n in g.nodes})
    return g, model, meta, out


@needs_onednn
@needs_vnni
def test_int8_onednn_forced_bit_exact(onednn_model):
    g, model, meta, _ = onednn_model
    for L in meta["layers"]:
        assert L["kernel"].startswith("qs8_conv2d_onednn ("), L
        assert "oneDNN" in L["kernel"] and L["why"].startswith("onednn forced for this layer"), L
    for seed in (21, 22):
        _assert_bit_exact(g, model, _inputs(g, seed))
    model.threads = 1   # oneDNN rebuilds its primitives for another thread count
    _assert_bit_exact(g, model, _inputs(g, 23))


@needs_onednn
def test_int8_onednn_falls_back_to_direct_at_open_without_vnni(onednn_model, tmp_path):
    """oneDNN capped below VNNI (its own ONEDNN_MAX_CPU_ISA switch) would round int8 sums:
    the model sees OnednnConvS8S32::exact_on_this_cpu() false at open and runs edgecc's
    direct kernel, with the same bits."""
    import subprocess
    import sys
    g, _, _, out = onednn_model
    arrays = _inputs(g, 24)
    np.save(tmp_path / "x.npy", arrays[0])
    script = ("import sys, numpy as np, edgecc.runtime\n"
              "from edgecc.compiler.codegen.onednn_s8 import exact_on_this_cpu\n"
              "assert not exact_on_this_cpu(), 'oneDNN ISA cap not applied'\n"
              "m = edgecc.runtime.load(sys.argv[1])\n"
              "ys = m.run(np.load(sys.argv[2]))\n"
              "np.savez(sys.argv[3], *ys)\n")
    env = {**__import__("os").environ, "ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "DNNL_MAX_CPU_ISA": "AVX512_CORE"}
    r = subprocess.run([sys.executable, "-c", script, str(out), str(tmp_path / "x.npy"), str(tmp_path / "y.npz")],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    got = np.load(tmp_path / "y.npz")
    want = edgecc.interpret(g, *arrays)
    for i, (v, ref) in enumerate(zip(g.outputs, want)):
        np.testing.assert_array_equal(got[f"arr_{i}"].view(np.uint32), ref.view(np.uint32), err_msg=v.name)


def test_onednn_forced_on_int16_is_a_clear_error():
    node = _layer_graph(16, 8, 8, 3, 12, 300, pads=(1, 1, 1, 1))
    with pytest.raises(InputError, match=r"node 'L' \(op qconv2d\).*'onednn' runs int8 layers only.*int16"):
        choose(node, 16, C.CodegenOptions(onednn=True, layer_kernels={"L": "onednn"}))
    g = Graph("q16")   # and through codegen, before any C++ is written
    g.add_input("x", (1, 8, 12, 12))
    _qconv(g, g.inputs[0], "L16", 8, (3, 3), 16, np.random.default_rng(30), pads=(1, 1, 1, 1))
    g.outputs = [g.nodes[0].outputs[0]]
    with pytest.raises(InputError, match="'L16'.*int8 layers only"):
        C.generate(g, options=C.CodegenOptions(onednn=True, layer_kernels={"L16": "onednn"}), required_flags=[],
                   build_info="test", weights_path="weights.bin")


def test_onednn_forced_falls_back_where_it_cannot_run():
    node = _layer_graph(8, 8, 8, 3, 12, 127, pads=(1, 1, 1, 1))
    kernel, why = choose(node, 8, C.CodegenOptions(onednn=False, layer_kernels={"L": "onednn"}))
    assert kernel == "direct" and "compiled without oneDNN" in why and "falls back to direct" in why
    g = _graph(8, big=True, seed=31)   # reduction 133200: int32 sums not exact
    kernel, why = choose(g.node("dfnt_big"), 8, C.CodegenOptions(onednn=True, layer_kernels={"dfnt_big": "onednn"}))
    assert kernel == "direct" and "reduction 133200 > 131071" in why


def test_default_rule_follows_the_measured_table():
    """benchmarks/results/int8_conv_kernels.md: oneDNN beats direct only on 3x3
    depthwise layers with stride 2 or outputs <= 7 wide; ResNet 3x3 / 1x1 and pointwise
    layers stay direct."""
    opts = C.CodegenOptions(isa_request="avx512", onednn=True)
    resnet = _layer_graph(8, 64, 64, 3, 56, 127, pads=(1, 1, 1, 1))
    kernel, why = choose(resnet, 8, opts)
    assert kernel == "direct" and "oneDNN" in why, why
    dw7 = _layer_graph(8, 64, 64, 3, 7, 127, pads=(1, 1, 1, 1), groups=64)
    kernel, why = choose(dw7, 8, opts)
    assert kernel == "onednn" and "depthwise" in why, why
    dw56 = _layer_graph(8, 64, 64, 3, 56, 127, pads=(1, 1, 1, 1), groups=64)
    assert choose(dw56, 8, opts)[0] == "direct"
    dw56_s2 = _layer_graph(8, 64, 64, 3, 56, 127, pads=(1, 1, 1, 1), groups=64, strides=(2, 2))
    assert choose(dw56_s2, 8, opts)[0] == "onednn"
    pointwise7 = _layer_graph(8, 256, 256, 1, 7, 127)
    assert choose(pointwise7, 8, opts)[0] == "direct"
    kernel, why = choose(dw7, 8, C.CodegenOptions(isa_request="avx512", onednn=False))   # no oneDNN: never
    assert kernel == "direct" and "oneDNN" not in why
    assert choose(_layer_graph(16, 64, 64, 3, 7, 300, pads=(1, 1, 1, 1), groups=64), 16, opts)[0] == "direct"


@needs_onednn
@needs_vnni
def test_tune_times_onednn_too(tmp_path):
    g = Graph("qconv_tune_onednn")
    rng = np.random.default_rng(32)
    x = g.add_input("x", (1, 8, 12, 12))
    a = _qconv(g, x, "t8", 8, (3, 3), 8, rng, pads=(1, 1, 1, 1))
    b = _qconv(g, a, "t_dw", 8, (3, 3), 8, rng, groups=8, pads=(1, 1, 1, 1))
    c = _qconv(g, x, "t16", 8, (3, 3), 16, rng, pads=(1, 1, 1, 1))
    g.outputs = [a, b, c]
    model, meta = _compile(g, tmp_path / "m", tune=True, onednn=True)
    layers = _layers(meta)
    found = re.search(r"^tuned on this machine \(\w+\): direct ([0-9.]+) ms, dfnt F5 n=\d+ ([0-9.]+) ms, "
                      r"onednn ([0-9.]+) ms", layers["t8"]["why"])
    assert found, layers["t8"]["why"]
    ms = dict(zip(("direct", "dfnt", "onednn"), map(float, found.groups())))
    assert layers["t8"]["kernel"].startswith(f"qs8_conv2d_{min(ms, key=ms.get)}")
    found = re.search(r"^tuned on this machine \(\w+\): direct ([0-9.]+) ms, onednn ([0-9.]+) ms",
                      layers["t_dw"]["why"])   # no DFNT for groups: direct vs oneDNN
    assert found, layers["t_dw"]["why"]
    assert "onednn" not in layers["t16"]["why"]   # int16: not a candidate
    _assert_bit_exact(g, model, _inputs(g, 33))


@needs_onednn
@needs_vnni
@pytest.mark.parametrize("shape", [(2, 6, 11, 13, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),
                                   (1, 8, 11, 13, 8, 3, 3, 2, 1, 1, 1, 1, 0, 1, 2, 8),
                                   (1, 6, 11, 13, 5, 3, 2, 2, 3, 2, 1, 0, 1, 2, 0, 1)])
def test_onednn_s8_wrapper_is_exact(shape):
    """The wrapper --tune and the benchmark time gives the Python-integer reference sums."""
    from edgecc.compiler.codegen.onednn_s8 import OnednnS8Conv
    from edgecc.kernels.reference import conv2d
    n, c, h, w, o, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, groups = shape
    rng = np.random.default_rng(34)
    wt = rng.integers(-128, 128, size=(o, c // groups, kh, kw)).astype(np.int8)   # -128 too: oneDNN takes it
    x = rng.integers(-128, 128, size=(n, c, h, w)).astype(np.int8)
    want = conv2d(x.astype(np.int64), wt.astype(np.int64), strides=(sh, sw), pads=(pt, pl, pb, pr),
                  dilations=(dh, dw), groups=groups, out_dtype=np.int64)
    np.testing.assert_array_equal(OnednnS8Conv(shape, wt)(x, threads=1), want)
