"""fold_activation_into_thresholds: BN / ReLU in front of a binary layer become its
thresholds; outputs unchanged (reference interpreter), refused cases logged."""
import numpy as np
import pytest
import torch

import edgecc
from edgecc.compiler.ir import Graph, verify
from edgecc.compiler.passes import default_pipeline, fold_activation_into_thresholds
from edgecc.compiler.quant.export import exportable
from edgecc.runtime.engine import run
from edgecc.zoo import digits as D


def _graph(rng, gamma, thresholds, act_basis="01", with_relu=True, extra_reader=False):
    c, o, m = 6, 5, 2
    g = Graph("binary_after_bn")
    x = g.add_input("x", (2, c, 7, 7))
    bn = g.add_node("batch_norm", [x, g.constant("gamma", gamma.astype(np.float32)),
                                   g.constant("beta", rng.normal(size=c).astype(np.float32)),
                                   g.constant("mean", rng.normal(size=c).astype(np.float32)),
                                   g.constant("var", rng.uniform(0.5, 2, size=c).astype(np.float32))],
                    name="bn")
    act = g.add_node("relu", bn.outputs, name="relu") if with_relu else bn
    basis = [0, 1] if act_basis == "01" else [-1, 1]
    wb = rng.choice(basis, size=(m, o, c, 3, 3)).astype(np.int8)
    phi = rng.normal(size=(o, m, thresholds.shape[1])).astype(np.float32)
    layer = g.add_node("binary_conv2d", [act.outputs[0], g.constant("wb", wb), g.constant("phi", phi),
                                         g.constant("t", thresholds.astype(np.float32))],
                       dict(pads=1, act_basis=act_basis, weight_basis=act_basis), name="bconv")
    g.outputs = [layer.outputs[0]]
    if extra_reader:
        g.outputs.append(act.outputs[0])
    return g


def _ties(g_before, x, band=1e-4):
    """True when some activation lies within `band` of a threshold (float rounding may
    then legitimately move it to the neighbouring plane)."""
    layer = [n for n in g_before.nodes if n.op == "binary_conv2d"][0]
    probe = Graph("probe", inputs=g_before.inputs, nodes=g_before.nodes[:-1],
                  outputs=[layer.inputs[0]])
    a = edgecc.interpret(probe, x)[0]
    t = layer.inputs[3].data
    return np.any(np.abs(a[:, :, None] - t[None, :, :, None, None]) < band)


@pytest.mark.parametrize("act_basis,with_relu", [("01", True), ("01", False), ("pm1", True), ("pm1", False)])
def test_outputs_unchanged_and_bn_relu_removed(act_basis, with_relu):
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(0.1, 1.5, size=(6, 3)), axis=1)
    for seed in range(20):  # find inputs with no activation within float noise of a threshold
        x = np.random.default_rng(seed).normal(size=(2, 6, 7, 7)).astype(np.float32)
        g = _graph(np.random.default_rng(3), rng.uniform(0.5, 2, size=6), t, act_basis, with_relu)
        if not _ties(g, x):
            break
    before = edgecc.interpret(g, x)[0]
    assert fold_activation_into_thresholds(g)
    verify(g)
    default_pipeline().run(g)
    assert [n.op for n in g.nodes] == ["binary_conv2d"]
    after = edgecc.interpret(g, x)[0]
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5 * np.abs(before).max())


def test_negative_bn_scale_is_refused_and_logged():
    rng = np.random.default_rng(0)
    gamma = np.array([1.0, -0.5, 1.0, 1.0, 2.0, 1.0])
    g = _graph(rng, gamma, np.sort(rng.uniform(0.1, 1.5, size=(6, 2)), axis=1), with_relu=False)
    assert not fold_activation_into_thresholds(g)
    assert [n.op for n in g.nodes] == ["batch_norm", "binary_conv2d"]
    assert any("not positive for channel(s) [1]" in r["message"] for r in g.meta["pass_log"])


def test_relu_before_nonpositive_threshold_is_refused():
    rng = np.random.default_rng(1)
    t = np.tile(np.array([-0.2, 0.4]), (6, 1))
    g = _graph(rng, rng.uniform(0.5, 2, size=6), t)
    fold_activation_into_thresholds(g)
    assert "relu" in [n.op for n in g.nodes]
    assert any("threshold <= 0" in r["message"] for r in g.meta["pass_log"])


def test_other_readers_keep_the_bn_relu():
    rng = np.random.default_rng(2)
    g = _graph(rng, rng.uniform(0.5, 2, size=6), np.sort(rng.uniform(0.1, 1.5, size=(6, 2)), axis=1),
               extra_reader=True)
    default_pipeline().run(g)
    layer = g.node("bconv")
    assert layer.inputs[0] is g.inputs[0]          # the binary layer reads x directly
    assert [n.op for n in g.nodes] == ["batch_norm", "relu", "binary_conv2d"]  # still needed


def test_digits_pa_model_keeps_its_predictions():
    torch.set_num_threads(1)
    _, _, xte, _ = D.load_digits_split()
    pa = D.load_bundled("pa45")
    g = edgecc.load(exportable(pa), (xte,))
    default_pipeline().run(g)
    # every BN / ReLU in front of a binary layer was absorbed
    producers = {id(v): n for n in g.nodes for v in n.outputs}
    for n in g.nodes:
        if n.op == "binary_conv2d":
            p = producers.get(id(n.inputs[0]))
            assert p is None or p.op not in ("relu", "batch_norm"), n.name
    with torch.no_grad():
        ref = pa(xte).numpy()
    out = run(g, xte.numpy(), threads=1)[0]
    assert (out.argmax(1) == ref.argmax(1)).all()
    scale = np.abs(ref).max(axis=1, keepdims=True)
    close = (np.abs(out - ref) <= 1e-4 * scale).all(axis=1)
    assert close.mean() >= 0.99   # the rest: activations within float rounding of a threshold
