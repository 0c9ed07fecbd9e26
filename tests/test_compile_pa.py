"""`edgecc compile --scheme pa` of the bundled PA(4,5) digits network: the compiled
library must reproduce the engine (binary layers exact) and PyTorch's predictions."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import edgecc
import edgecc.runtime
from edgecc.compiler.compile import compile as compile_model
from edgecc.compiler.ir import Graph
from edgecc.compiler.passes import default_pipeline
from edgecc.compiler.quant.export import exportable
from edgecc.kernels import reference as ref
from edgecc.runtime.engine import Engine
from edgecc.zoo import digits as D


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    _, _, xte, yte = D.load_digits_split()
    pa = D.load_bundled("pa45")
    graph = edgecc.load(exportable(pa), (xte,))     # static batch: every test image at once
    default_pipeline().run(graph)
    out = tmp_path_factory.mktemp("pa") / "digits"
    meta = compile_model(graph, out, scheme="pa")
    with torch.no_grad():
        torch_logits = pa(xte).numpy()
    return graph, edgecc.runtime.load(out), meta, xte.numpy(), yte.numpy(), torch_logits


def test_equals_engine_and_torch_predictions(digits):
    graph, model, _, x, y, torch_logits = digits
    (logits,) = model.run(x)
    engine = Engine(graph)(x)[0]
    np.testing.assert_allclose(logits, engine, rtol=1e-5, atol=1e-5 * np.abs(engine).max())
    assert np.array_equal(logits.argmax(1), torch_logits.argmax(1))   # all 450 test images
    assert (logits.argmax(1) == y).mean() > 0.9


def test_metadata_counts_binary_layers(digits):
    graph, _, meta, *_ = digits
    binary = [layer for layer in meta["layers"] if layer["op"] == "binary_conv2d"]
    assert len(binary) == sum(n.op == "binary_conv2d" for n in graph.nodes) == 7
    assert all(layer["kernel"].startswith("binary engine") and layer["binary_plane_macs"] > 0 for layer in binary)
    s = meta["summary"]
    assert s["compression_ratio"] > 2.5     # 4 one-bit planes vs fp32 weights
    assert {f["node"] for f in s["float_layers"]} == {n.name for n in graph.nodes if n.op in ("conv2d", "gemm")}
    # the arena shares memory between layers whose lifetimes do not overlap
    assert meta["memory_plan"]["arena_bytes"] < meta["memory_plan"]["unshared_bytes"]


def _single_binary_layer(op: str, act_basis: str, weight_basis: str, seed: int) -> Graph:
    rng = np.random.default_rng(seed)
    m, p, c, o = 3, (1 if act_basis == "pm1" else 4), 40, 20
    g = Graph(f"one_{op}")
    if op == "binary_conv2d":
        x = g.add_input("x", (2, c, 7, 6))
        wb_shape, attrs = (m, o, c, 3, 3), dict(strides=(2, 1), pads=(1, 0, 1, 2))
    else:
        x = g.add_input("x", (3, c))
        wb_shape, attrs = (m, o, c), {}
    wb = rng.integers(0, 2, wb_shape).astype(np.int8)
    if weight_basis == "pm1":
        wb = (2 * wb - 1).astype(np.int8)
    t = np.sort(rng.standard_normal((c, p)), axis=1).astype(np.float32)
    ins = [x, Graph.constant("wb", wb), Graph.constant("phi", rng.standard_normal((o, m, p)).astype(np.float32)),
           Graph.constant("t", t), Graph.constant("bias", rng.standard_normal(o).astype(np.float32))]
    node = g.add_node(op, ins, dict(attrs, act_basis=act_basis, weight_basis=weight_basis))
    g.outputs = [node.outputs[0]]
    return g


@pytest.mark.parametrize("op,act,wt", [("binary_conv2d", "01", "01"), ("binary_conv2d", "pm1", "pm1"),
                                       ("binary_linear", "01", "pm1")])
def test_binary_layer_bit_exact(op, act, wt, tmp_path, monkeypatch):
    """One binary layer: identical floats to the engine (same kernels), and equal to the
    exact integer plane counts combined with phi and bias in float64, on the best and on
    the portable (EDGECC_ISA=scalar) kernels, whose epilogues round differently."""
    g = _single_binary_layer(op, act, wt, seed=len(op) + len(act + wt))
    compile_model(g, tmp_path / "m", scheme="pa")
    x = np.random.default_rng(7).standard_normal(g.inputs[0].shape).astype(np.float32)
    (y,) = edgecc.runtime.load(tmp_path / "m").run(x)
    np.testing.assert_array_equal(y, Engine(g)(x)[0])
    monkeypatch.setenv("EDGECC_ISA", "scalar")         # host builds honour the reference toggle
    (y_scalar,) = edgecc.runtime.load(tmp_path / "m").run(x)
    n = g.nodes[0]
    wb, phi, t, bias = (v.data for v in n.inputs[1:])
    geo = dict(n.attrs) if op == "binary_conv2d" else dict(strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1),
                                                             groups=1, act_basis=act)
    xs, wbs = (x, wb) if op == "binary_conv2d" else (x[:, :, None, None], wb[..., None, None])
    counts = ref.binary_plane_counts(xs, wbs, t, geo)               # exact int64 [M, P, N, O, ...]
    exact = np.einsum("omp,mpno...->no...", phi.astype(np.float64), counts.astype(np.float64))
    exact += bias.astype(np.float64).reshape((1, -1) + (1,) * (exact.ndim - 2))
    for out in (y, y_scalar):
        np.testing.assert_allclose(out, exact.reshape(y.shape), rtol=1e-5, atol=1e-5 * np.abs(exact).max())
