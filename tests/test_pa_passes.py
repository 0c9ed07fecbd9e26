"""merge_pa_coefficients and fold_bn_into_binary: outputs unchanged, BN folded where
legal and kept, with the reason in graph.meta["pass_log"], where not."""
import numpy as np
import pytest

import edgecc
from edgecc.compiler.ir import Graph
from edgecc.compiler.passes import PassManager
from edgecc.compiler.passes.fold_bn_into_binary import fold_bn_into_binary
from edgecc.compiler.passes.merge_pa_coefficients import merge_pa_coefficients
from edgecc.compiler.quant.export import exportable
from edgecc.runtime.engine import run
from edgecc.zoo import digits as D

PIPELINE = [merge_pa_coefficients, fold_bn_into_binary]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _log(g, name):
    return [r["message"] for r in g.meta.get("pass_log", []) if r["pass"] == name]


@pytest.fixture(scope="module")
def digits():
    x = D.load_digits_split()[2]
    return exportable(D.load_bundled("pa45")), x


def test_digits_merge_is_exact_and_fold_keeps_outputs(digits):
    model, x = digits
    g = edgecc.load(model, (x,))
    before = run(g, x.numpy(), threads=1)[0]
    assert PassManager([merge_pa_coefficients]).run(g)
    assert len(_log(g, "merge_pa_coefficients")) == 7
    binary = [n for n in g.nodes if n.op == "binary_conv2d"]
    assert all(n.inputs[2].is_constant and n.inputs[2].shape == (n.outputs[0].shape[1], 4, 5) for n in binary)
    assert not any(n.op == "mul" for n in g.nodes)
    np.testing.assert_array_equal(run(g, x.numpy(), threads=1)[0], before)   # bit-exact

    bns = sum(n.op == "batch_norm" for n in g.nodes)
    assert PassManager([fold_bn_into_binary]).run(g)
    folded = _log(g, "fold_bn_into_binary")
    # bn2 of each block follows conv1 directly; the other BNs follow adds / the stem
    assert sorted(m.split()[1] for m in folded) == sorted(
        n.name for n in edgecc.load(model, (x,)).nodes
        if n.op == "batch_norm" and n.inputs[0].producer.op == "binary_conv2d")
    assert len(folded) == 3 and sum(n.op == "batch_norm" for n in g.nodes) == bns - 3
    conv1s = [n for n in g.nodes if n.meta.get("folded_bn")]
    assert {n.meta["module"] for n in conv1s} == {"block1.conv1", "block2.conv1", "block3.conv1"}
    after = run(g, x.numpy(), threads=1)[0]
    assert np.array_equal(after.argmax(1), before.argmax(1))
    scale = np.abs(before).max(axis=1, keepdims=True)
    assert np.all(np.abs(after - before) <= 1e-4 * scale)
    np.testing.assert_allclose(edgecc.interpret(g, x.numpy())[0], after, rtol=0, atol=1e-4 * scale.max())


def _binary_graph(rng, *, residual=False, shared=False, output_pre_bn=False, bias=True):
    """x -> binary_conv2d (phi as alpha x beta mul) -> batch_norm [-> + residual] ...;
    with shared=True a second layer reuses the same weight bases, with its own BN."""
    g = Graph(name="pa")
    x = g.add_input("x", (2, 6, 5, 5))
    wb = Graph.constant("wb", (rng.random((3, 4, 6, 3, 3)) < 0.3).astype(np.int8))
    t = Graph.constant("t", (np.sort(rng.random((6, 2)), axis=1) + [0.0, 0.5]).astype(np.float32))

    def layer(name, inp):
        alpha = Graph.constant(f"{name}.alpha", rng.normal(size=(4, 3, 1)).astype(np.float32))
        beta = Graph.constant(f"{name}.beta", rng.random((1, 1, 2)).astype(np.float32) + 0.5)
        phi = g.add_node("mul", [alpha, beta], name=f"{name}.phi").outputs[0]
        ins = [inp, wb, phi, t] + ([Graph.constant(f"{name}.b", rng.normal(size=4).astype(np.float32))]
                                   if bias else [])
        y = g.add_node("binary_conv2d", ins, {"pads": 1}, name=name).outputs[0]
        bn = [Graph.constant(f"{name}.bn.{k}", v.astype(np.float32)) for k, v in
              (("scale", rng.normal(size=4)), ("bias", rng.normal(size=4)),
               ("mean", rng.normal(size=4)), ("var", rng.random(4) + 0.1))]
        z = g.add_node("batch_norm", [y] + bn, name=f"{name}.bn").outputs[0]
        return y, z

    y, z = layer("conv", x)
    outs = [z]
    if residual:
        outs = [g.add_node("add", [z, y], name="residual").outputs[0]]
    if output_pre_bn:
        outs.append(y)
    if shared:
        y2, z2 = layer("conv_b", x)
        outs.append(z2)
    g.outputs = outs
    return g


def _check_unchanged(g, run_passes):
    x = np.random.default_rng(9).random((2, 6, 5, 5)).astype(np.float32)
    before = edgecc.interpret(g, x)
    run_passes(g)
    after = edgecc.interpret(g, x)
    for a, b in zip(after, before):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())
    for a, b in zip(run(g, x, threads=1), before):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())


@pytest.mark.parametrize("bias", [True, False])
def test_fold_legal_bn_into_phi_and_bias(bias):
    g = _binary_graph(np.random.default_rng(0), bias=bias)
    _check_unchanged(g, PassManager(PIPELINE).run)
    (conv,) = [n for n in g.nodes if n.op == "binary_conv2d"]
    assert not any(n.op == "batch_norm" for n in g.nodes)
    assert len(conv.inputs) == 5 and conv.meta["folded_bn"][0]["node"] == "conv.bn"
    assert _log(g, "fold_bn_into_binary") == ["folded conv.bn into phi and bias of conv"]


def test_residual_add_blocks_the_fold():
    g = _binary_graph(np.random.default_rng(1), residual=True)
    _check_unchanged(g, PassManager(PIPELINE).run)
    (bn,) = [n for n in g.nodes if n.op == "batch_norm"]
    assert "also read by residual" in bn.meta["fold_blocked"]
    assert any("kept conv.bn after conv" in m and "residual" in m for m in _log(g, "fold_bn_into_binary"))


def test_pre_bn_graph_output_blocks_the_fold():
    g = _binary_graph(np.random.default_rng(2), output_pre_bn=True)
    PassManager(PIPELINE).run(g)
    (bn,) = [n for n in g.nodes if n.op == "batch_norm"]
    assert "graph output" in bn.meta["fold_blocked"]


def test_unmerged_phi_blocks_the_fold():
    g = _binary_graph(np.random.default_rng(3))
    assert not PassManager([fold_bn_into_binary]).run(g)
    assert "run merge_pa_coefficients first" in _log(g, "fold_bn_into_binary")[0]


def test_shared_weight_bases_stay_shared():
    """Two layers reading one wb: each BN goes into that layer's own phi/bias, the
    bases stay one shared constant."""
    g = _binary_graph(np.random.default_rng(4), shared=True)
    _check_unchanged(g, PassManager(PIPELINE).run)
    convs = [n for n in g.nodes if n.op == "binary_conv2d"]
    assert len(convs) == 2 and convs[0].inputs[1] is convs[1].inputs[1]
    assert convs[0].inputs[2] is not convs[1].inputs[2]
    assert len(_log(g, "fold_bn_into_binary")) == 2 and not any(n.op == "batch_norm" for n in g.nodes)


def test_merge_leaves_runtime_phi_and_logs_it():
    g = Graph(name="dyn")
    x = g.add_input("x", (1, 3))
    phi = g.add_input("phi", (2, 1, 1))
    wb = Graph.constant("wb", np.ones((1, 2, 3), np.int8))
    t = Graph.constant("t", np.zeros((3, 1), np.float32))
    g.outputs = g.add_node("binary_linear", [x, wb, phi, t], name="fc").outputs
    assert not merge_pa_coefficients(g)
    assert "kept fc" in _log(g, "merge_pa_coefficients")[0]
