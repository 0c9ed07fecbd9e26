"""oneDNN in compiled libraries (cpp/include/edgecc/model_onednn.h).

fp32 models compiled with and without oneDNN both equal edgecc.interpret; the int8
wrapper (OnednnConvS8S32, for the integer-conv emitter) is bit-exact against a numpy
int64 convolution, through a small test library built from the header."""
from __future__ import annotations

import ctypes
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import edgecc
import edgecc.runtime
from edgecc.compiler.codegen import build as B
from edgecc.compiler.codegen import onednn
from edgecc.compiler.compile import compile as compile_model
from edgecc.compiler.ir import Graph
from edgecc.compiler.passes import default_pipeline
from tests.models import ResNet18, randomize_batch_norms

pytestmark = pytest.mark.skipif(not onednn.available(),
                                reason=f"oneDNN not installed: {onednn.INSTALL_HINT}")
TOL = dict(rtol=1e-4, atol=1e-4)
REPO = B.REPO


def _compile_both(graph: Graph, tmp_path, name: str):
    """(model with oneDNN, model without) of the same graph, each with its model.json."""
    out = []
    for flag in (True, False):
        d = tmp_path / f"{name}-{'onednn' if flag else 'own'}"
        meta = compile_model(graph, d, scheme="fp32", onednn=flag)
        kernels = {layer["op"]: layer["kernel"] for layer in meta["layers"]}
        for op in ("conv2d", "gemm"):
            if op in kernels:
                assert kernels[op].startswith("onednn") == flag, kernels[op]
        needed = subprocess.run(["readelf", "-d", str(d / "model.so")], capture_output=True, text=True).stdout
        assert ("libdnnl" in needed) == flag
        if flag:   # absolute RPATH to the oneDNN install: loads with nothing but the venv
            assert "RPATH" in needed and str(onednn.find().lib) in needed
        out.append(edgecc.runtime.load(d))
    return out


def _check(graph: Graph, models, inputs) -> None:
    ref = edgecc.interpret(graph, *inputs)
    for m in models:
        for threads in (1, 2):
            m.threads = threads
            ys = m.run(*inputs)
            for y, r in zip(ys, ref):
                np.testing.assert_allclose(y, r, **TOL)


def test_resnet18_small_input(tmp_path):
    torch.manual_seed(18)
    model = randomize_batch_norms(ResNet18(num_classes=10), 18)
    graph = edgecc.load(model, (torch.randn(1, 3, 32, 32),))
    default_pipeline().run(graph)
    models = _compile_both(graph, tmp_path, "resnet18")
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    _check(graph, models, [x])
    # A fresh process with an empty environment (no LD_LIBRARY_PATH) loads and runs it: the
    # RPATH finds libdnnl; and torch's libgomp, loaded first, is the one OpenMP runtime.
    np.save(tmp_path / "x.npy", x)
    code = ("import sys, numpy as np, torch, edgecc.runtime; m = edgecc.runtime.load(sys.argv[1], threads=1); "
            "np.save(sys.argv[2], m.run(np.load(sys.argv[3]))[0]); "
            "print(sorted({l.split()[-1].split('/')[-1] for l in open('/proc/self/maps') if 'gomp' in l}))")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "resnet18-onednn"), str(tmp_path / "y.npy"),
                        str(tmp_path / "x.npy")], env={}, capture_output=True, text=True, cwd=str(REPO))
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "['libgomp.so.1']"
    models[0].threads = 1
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), models[0].run(x)[0])


def test_grouped_depthwise_dilated_convs(tmp_path):
    """Grouped, depthwise (channel multiplier 2), dilated, strided, asymmetrically padded."""
    rng = np.random.default_rng(1)
    const = lambda name, shape: Graph.constant(name, rng.standard_normal(shape).astype(np.float32))  # noqa: E731
    g = Graph("grouped")
    x = g.add_input("x", (2, 6, 13, 11))
    y = g.add_node("conv2d", [x, const("w1", (12, 2, 3, 3)), const("b1", (12,))],
                   {"strides": (2, 1), "pads": (2, 0, 0, 1), "groups": 3}).outputs[0]
    y = g.add_node("relu", [y]).outputs[0]
    y = g.add_node("conv2d", [y, const("w_dw", (24, 1, 3, 3))],
                   {"pads": (2, 2, 1, 3), "dilations": (2, 2), "groups": 12}).outputs[0]
    y = g.add_node("conv2d", [y, const("w2", (8, 24, 1, 3)), const("b2", (8,))],
                   {"strides": (1, 2), "pads": (0, 1, 0, 0)}).outputs[0]
    g.outputs = [y]
    models = _compile_both(g, tmp_path, "grouped")
    _check(g, models, [rng.standard_normal((2, 6, 13, 11)).astype(np.float32)])
    # model.json names oneDNN and the implementation it picks here (e.g. "brdgmm_dw:avx512_core")
    layers = json.loads((tmp_path / "grouped-onednn" / "model.json").read_text())["layers"]
    dw = next(layer for layer in layers if layer["node"] == g.nodes[2].name)
    impl = onednn.conv_impl((2, 12, 7, 10, 24, 3, 3, 1, 1, 2, 2, 2, 2, 1, 3, 12))
    assert ":" in impl and dw["kernel"].startswith(f"onednn f32 conv ({impl} on the build CPU")
    assert f"oneDNN {onednn.find().version}" in dw["kernel"]


def test_gemm_transposes_alpha_beta_and_c_shapes(tmp_path):
    """ONNX Gemm: trans_a / trans_b, alpha / beta, C of [N], [M, 1], [M, N] and a scalar."""
    rng = np.random.default_rng(2)
    M, K, N = 3, 20, 7
    g = Graph("gemms")
    a = g.add_input("a", (M, K))
    at = g.add_input("at", (K, M))
    const = lambda name, shape: Graph.constant(name, rng.standard_normal(shape).astype(np.float32))  # noqa: E731
    outs = [
        g.add_node("gemm", [a, const("b_t", (N, K)), const("c_n", (N,))], {"trans_b": True}),
        g.add_node("gemm", [at, const("b", (K, N)), const("c_m1", (M, 1))],
                   {"trans_a": True, "alpha": 0.5, "beta": -2.0}),
        g.add_node("gemm", [a, const("b2", (K, N)), const("c_mn", (M, N))], {"beta": 0.25}),
        g.add_node("gemm", [at, const("b_t2", (N, K)), const("c_1", ())], {"trans_a": True, "trans_b": True}),
        g.add_node("gemm", [a, const("b3", (K, N))], {"alpha": 3.0}),
    ]
    g.outputs = [n.outputs[0] for n in outs]
    models = _compile_both(g, tmp_path, "gemm")
    _check(g, models, [rng.standard_normal((M, K)).astype(np.float32),
                       rng.standard_normal((K, M)).astype(np.float32)])


# ---- the int8 wrapper, through a small test library ---------------------------------
_HARNESS = r'''
#include <cstring>
#include <exception>
#include "edgecc/model_onednn.h"
// shape: n c h w o kh kw sh sw dh dw pt pl pb pr groups; returns 0 or 1 with the message in err.
#define EXPORT extern "C" __attribute__((visibility("default")))
EXPORT int conv_s8s32(const int64_t* v, const int8_t* x, const int8_t* w, int32_t* y, int threads, char* err,
                      int err_len) {
  try {
    edgecc::Conv2dShape s;
    s.batch = v[0]; s.in_channels = v[1]; s.in_h = v[2]; s.in_w = v[3]; s.out_channels = v[4];
    s.kernel_h = v[5]; s.kernel_w = v[6]; s.stride_h = v[7]; s.stride_w = v[8];
    s.dilation_h = v[9]; s.dilation_w = v[10]; s.pad_top = v[11]; s.pad_left = v[12];
    s.pad_bottom = v[13]; s.pad_right = v[14]; s.groups = v[15];
    edgecc::model::OnednnConvS8S32 conv("node 'q' (op qconv2d)", s, w);
    conv.run(x, y, threads);
    std::strncpy(err, conv.impl().c_str(), err_len - 1);
    return 0;
  } catch (const std::exception& e) {
    std::strncpy(err, e.what(), err_len - 1);
    return 1;
  }
}
EXPORT int exact_on_this_cpu() { return edgecc::model::OnednnConvS8S32::exact_on_this_cpu(); }
'''


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    d = tmp_path_factory.mktemp("onednn_harness")
    (d / "harness.cpp").write_text(_HARNESS)
    found = onednn.require()
    target = B.resolve_target("host")
    lib = d / "harness.so"
    subprocess.run([B._cxx(), *B.COMMON, *onednn.compile_flags(found), "-O1", *target.march, "-shared",
                    str(d / "harness.cpp"), str(B.kernel_archive(target)), "-o", str(lib),
                    *onednn.link_flags(found)], check=True, capture_output=True, cwd=d)
    h = ctypes.CDLL(str(lib))
    h.conv_s8s32.restype = ctypes.c_int
    return h


def _run_s8(h, shape: list[int], x: np.ndarray, w: np.ndarray, out_shape, threads=1):
    y = np.zeros(out_shape, np.int32)
    err = ctypes.create_string_buffer(512)
    v = np.array(shape, np.int64)
    ptr = lambda a: a.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
    rc = h.conv_s8s32(ptr(v), ptr(x), ptr(w), ptr(y), threads, err, 512)
    return rc, y, err.value.decode()


def _conv_int64(x, w, stride, dil, pads, groups):
    """Exact reference: int64 NCHW convolution in numpy."""
    n, c, hh, ww = x.shape
    o, cg, kh, kw = w.shape
    pt, pl, pb, pr = pads
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    oh = (hh + pt + pb - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (ww + pl + pr - dil[1] * (kw - 1) - 1) // stride[1] + 1
    y = np.zeros((n, o, oh, ow), np.int64)
    og = o // groups
    for g in range(groups):
        wg = w[g * og:(g + 1) * og].astype(np.int64)
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * cg:(g + 1) * cg, i * dil[0]:i * dil[0] + stride[0] * (oh - 1) + 1:stride[0],
                           j * dil[1]:j * dil[1] + stride[1] * (ow - 1) + 1:stride[1]]
                y[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch, wg[:, :, i, j])
    return y


@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_int8_conv_bit_exact(harness, data):
    if not harness.exact_on_this_cpu():
        pytest.skip("this CPU has no VNNI: oneDNN int8 convs are not exact here (the wrapper refuses)")
    groups = data.draw(st.sampled_from([1, 2, 4]))
    cg, og = data.draw(st.integers(1, 12)), data.draw(st.integers(1, 9))
    kh, kw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    stride = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    dil = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    pads = tuple(data.draw(st.integers(0, 2)) for _ in range(4))
    n = data.draw(st.integers(1, 2))
    hh = data.draw(st.integers(dil[0] * (kh - 1) + 1, 9))
    ww = data.draw(st.integers(dil[1] * (kw - 1) + 1, 9))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    x = rng.integers(-128, 128, (n, groups * cg, hh, ww), dtype=np.int8)
    w = rng.integers(-128, 128, (groups * og, cg, kh, kw), dtype=np.int8)
    x.flat[0], w.flat[0] = -128, -128   # the extremes, where 16-bit shortcuts would saturate
    ref = _conv_int64(x, w, stride, dil, pads, groups)
    shape = [n, groups * cg, hh, ww, groups * og, kh, kw, *stride, *dil, *pads, groups]
    rc, y, msg = _run_s8(harness, shape, x, w, ref.shape, threads=data.draw(st.integers(1, 2)))
    assert rc == 0, msg
    np.testing.assert_array_equal(y.astype(np.int64), ref)


def test_int8_conv_wide_reduction_and_errors(harness):
    if not harness.exact_on_this_cpu():
        pytest.skip("this CPU has no VNNI: oneDNN int8 convs are not exact here (the wrapper refuses)")
    # A ResNet-like 3x3 layer at full range: sums near the int32 range of 16-bit-safe kernels.
    rng = np.random.default_rng(3)
    x = np.full((1, 64, 6, 6), -128, np.int8)
    w = np.full((32, 64, 3, 3), -128, np.int8)
    w[1::2] = 127
    x[:, :, ::2] = rng.integers(-128, 128, (1, 64, 3, 6), dtype=np.int8)
    ref = _conv_int64(x, w, (1, 1), (1, 1), (1, 1, 1, 1), 1)
    rc, y, impl = _run_s8(harness, [1, 64, 6, 6, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1], x, w, ref.shape, threads=2)
    assert rc == 0, impl
    np.testing.assert_array_equal(y.astype(np.int64), ref)
    assert impl   # oneDNN's implementation name, e.g. "brg:avx512_core_vnni"
    # Bad shapes: a clear message naming the layer, never an abort.
    bad = [1, 6, 6, 6, 4, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0, 4]   # 6 channels in 4 groups
    rc, _, msg = _run_s8(harness, bad, np.zeros((1, 6, 6, 6), np.int8), np.zeros((4, 1, 3, 3), np.int8), (1, 4, 4, 4))
    assert rc == 1 and "groups" in msg
    huge = [1, 4, 6, 6, 4, 9, 9, 1, 1, 1, 1, 0, 0, 0, 0, 1]   # 9x9 kernel on a 6x6 input: no output
    rc, _, msg = _run_s8(harness, huge, np.zeros((1, 4, 6, 6), np.int8), np.zeros((4, 4, 9, 9), np.int8), (1, 4, 1, 1))
    assert rc == 1 and msg
