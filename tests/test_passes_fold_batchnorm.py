"""fold_batchnorm: folded graphs compute what PyTorch's conv/linear + BN compute, and
BNs stay where folding is illegal."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import edgecc
from edgecc.compiler.ir import Graph, load, save, verify
from edgecc.compiler.passes import fold_batchnorm

RNG = np.random.default_rng(1)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def bn_consts(prefix, c):
    return [Graph.constant(f"{prefix}.scale", rand(c)), Graph.constant(f"{prefix}.bias", rand(c)),
            Graph.constant(f"{prefix}.mean", rand(c)),
            Graph.constant(f"{prefix}.var", RNG.uniform(0.2, 3.0, c).astype(np.float32))]


def ops(g):
    return [n.op for n in g.nodes]


def assert_close(got, want):
    tol = 2e-5 * max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=tol)


def torch_bn(c, eps):
    bn = torch.nn.BatchNorm2d(c, eps=eps).eval()
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(rand(c)))
        bn.bias.copy_(torch.from_numpy(rand(c)))
        bn.running_mean.copy_(torch.from_numpy(rand(c)))
        bn.running_var.copy_(torch.from_numpy(RNG.uniform(0.2, 3.0, c).astype(np.float32)))
    return bn


def bn_inputs(bn, prefix):
    arrs = [bn.weight, bn.bias, bn.running_mean, bn.running_var]
    return [Graph.constant(f"{prefix}.{k}", a.detach().numpy().copy())
            for k, a in zip(("scale", "bias", "mean", "var"), arrs)]


@settings(max_examples=25, deadline=None)
@given(groups_kind=st.sampled_from(["dense", "grouped", "depthwise"]),
       stride=st.integers(1, 2), pad=st.integers(0, 2), dil=st.integers(1, 2),
       k=st.sampled_from([1, 3]), with_bias=st.booleans(), eps=st.sampled_from([1e-5, 1e-3]))
def test_conv_bn_folds_and_matches_torch(groups_kind, stride, pad, dil, k, with_bias, eps):
    c, o, groups = {"dense": (4, 6, 1), "grouped": (4, 6, 2), "depthwise": (6, 6, 6)}[groups_kind]
    conv = torch.nn.Conv2d(c, o, k, stride=stride, padding=pad, dilation=dil, groups=groups,
                           bias=with_bias).eval()
    bn = torch_bn(o, eps)
    x = rand(2, c, 9, 9)
    with torch.no_grad():
        want = bn(conv(torch.from_numpy(x))).numpy()

    g = Graph("convbn")
    xin = g.add_input("x", x.shape)
    cin = [xin, Graph.constant("w", conv.weight.detach().numpy().copy())]
    if with_bias:
        cin.append(Graph.constant("b", conv.bias.detach().numpy().copy()))
    cv = g.add_node("conv2d", cin, {"strides": stride, "pads": pad, "dilations": dil,
                                    "groups": groups}, name="conv")
    b = g.add_node("batch_norm", [cv.outputs[0]] + bn_inputs(bn, "bn"), {"eps": eps}, name="bn")
    g.outputs = [b.outputs[0]]
    before = edgecc.interpret(g, x)[0]

    assert fold_batchnorm(g) is True
    verify(g)
    assert ops(g) == ["conv2d"]
    assert g.outputs[0].name == "bn"  # graph output keeps its name
    after = edgecc.interpret(g, x)[0]
    assert_close(after, want)
    assert_close(after, before)
    meta = g.nodes[0].meta["folded_bn"]
    assert meta["node"] == "bn" and meta["eps"] == eps
    np.testing.assert_array_equal(meta["var"], bn.running_var.numpy())
    np.testing.assert_array_equal(meta["mean"], bn.running_mean.numpy())
    assert g.meta["pass_log"] == [{"pass": "fold_batchnorm", "message": "folded bn into conv"}]


@pytest.mark.parametrize("trans_b", [True, False])
@pytest.mark.parametrize("c_shape", [None, (5,), (1, 5), (3, 5), ()])
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.5, 2.0)])
def test_gemm_bn_folds(trans_b, c_shape, alpha, beta):
    x = rand(3, 7)
    g = Graph("fc")
    xin = g.add_input("x", x.shape)
    w = Graph.constant("w", rand(5, 7) if trans_b else rand(7, 5))
    ins = [xin, w] + ([] if c_shape is None else [Graph.constant("c", rand(*c_shape))])
    fc = g.add_node("gemm", ins, {"trans_b": trans_b, "alpha": alpha, "beta": beta}, name="fc")
    b = g.add_node("batch_norm", [fc.outputs[0]] + bn_consts("bn", 5), name="bn")
    r = g.add_node("relu", [b.outputs[0]], name="relu")
    g.outputs = [r.outputs[0]]
    before = edgecc.interpret(g, x)[0]
    assert fold_batchnorm(g)
    verify(g)
    assert ops(g) == ["gemm", "relu"]
    assert g.nodes[1].inputs[0] is g.nodes[0].outputs[0]
    assert_close(edgecc.interpret(g, x)[0], before)


def test_linear_bn1d_matches_torch():
    lin = torch.nn.Linear(8, 4).eval()
    bn = torch.nn.BatchNorm1d(4).eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.from_numpy(rand(4)))
        bn.running_var.copy_(torch.from_numpy(RNG.uniform(0.2, 3, 4).astype(np.float32)))
        bn.weight.copy_(torch.from_numpy(rand(4)))
    x = rand(2, 8)
    with torch.no_grad():
        want = bn(lin(torch.from_numpy(x))).numpy()
    g = Graph("lin")
    xin = g.add_input("x", x.shape)
    fc = g.add_node("gemm", [xin, Graph.constant("w", lin.weight.detach().numpy().copy()),
                             Graph.constant("b", lin.bias.detach().numpy().copy())],
                    {"trans_b": True}, name="fc")
    b = g.add_node("batch_norm", [fc.outputs[0]] + bn_inputs(bn, "bn"), name="bn")
    g.outputs = [b.outputs[0]]
    assert fold_batchnorm(g)
    assert ops(g) == ["gemm"]
    assert_close(edgecc.interpret(g, x)[0], want)


def conv_graph():
    g = Graph("g")
    x = g.add_input("x", (1, 3, 6, 6))
    return g, x


def conv(g, x, name, w=None):
    w = w if w is not None else Graph.constant(f"{name}.w", rand(4, x.shape[1], 3, 3))
    return g.add_node("conv2d", [x, w], {"pads": 1}, name=name).outputs[0]


def bnorm(g, x, name):
    return g.add_node("batch_norm", [x] + bn_consts(name, x.shape[1]), name=name).outputs[0]


def check_kept(g, reason_part):
    x = rand(*g.inputs[0].shape)
    before = edgecc.interpret(g, x)
    assert fold_batchnorm(g) is False
    verify(g)
    bns = [n for n in g.nodes if n.op == "batch_norm"]
    assert bns and all(reason_part in n.meta["fold_blocked"] for n in bns)
    assert any(reason_part in r["message"] for r in g.meta["pass_log"])
    for a, b in zip(edgecc.interpret(g, x), before):
        np.testing.assert_array_equal(a, b)


def test_bn_after_relu_is_kept():
    g, x = conv_graph()
    r = g.add_node("relu", [conv(g, x, "c1")], name="relu").outputs[0]
    g.outputs = [bnorm(g, r, "bn")]
    check_kept(g, "(op relu), not a conv2d/gemm")


def test_bn_on_graph_input_is_kept():
    g, x = conv_graph()
    g.outputs = [bnorm(g, x, "bn")]
    check_kept(g, "graph input or constant")


def test_conv_output_with_two_users_is_kept():
    g, x = conv_graph()
    c = conv(g, x, "c1")
    y = bnorm(g, c, "bn")
    g.outputs = [g.add_node("add", [y, c], name="add").outputs[0]]
    check_kept(g, "also used elsewhere (2 users)")


def test_conv_output_that_is_a_graph_output_is_kept():
    g, x = conv_graph()
    c = conv(g, x, "c1")
    g.outputs = [bnorm(g, c, "bn"), c]
    check_kept(g, "a graph output")


def test_shared_weight_is_not_folded_into():
    """DACNN: one weight, one BN per layer; the weight must stay shared and unfolded."""
    g, x = conv_graph()
    w = Graph.constant("anchor", rand(3, 3, 3, 3))
    y = bnorm(g, conv(g, x, "c1", w), "bn1")
    y = bnorm(g, conv(g, y, "c2", w), "bn2")
    g.outputs = [y]
    check_kept(g, "weight 'anchor' is shared by c1, c2")
    assert [n.inputs[1] for n in g.nodes if n.op == "conv2d"] == [w, w]
    assert len(g.constants()) == 1 + 2 * 4


def test_weight_from_graph_input_is_kept():
    g = Graph("g")
    x = g.add_input("x", (1, 3, 5, 5))
    w = g.add_input("w", (4, 3, 1, 1))
    c = g.add_node("conv2d", [x, w], name="c1").outputs[0]
    g.outputs = [bnorm(g, c, "bn")]
    xs, ws = rand(1, 3, 5, 5), rand(4, 3, 1, 1)
    before = edgecc.interpret(g, xs, ws)[0]
    assert fold_batchnorm(g) is False
    assert "weight 'w' is not a constant" in g.node("bn").meta["fold_blocked"]
    np.testing.assert_array_equal(edgecc.interpret(g, xs, ws)[0], before)


def test_folds_several_and_keeps_shared_bias_intact():
    """Two convs share a bias constant: both fold into fresh constants, the bias is not
    modified in place."""
    g, x = conv_graph()
    bias = Graph.constant("bias", rand(4))
    bias_copy = bias.data.copy()
    c1 = g.add_node("conv2d", [x, Graph.constant("w1", rand(4, 3, 3, 3)), bias], {"pads": 1},
                    name="c1").outputs[0]
    c2 = g.add_node("conv2d", [x, Graph.constant("w2", rand(4, 3, 3, 3)), bias], {"pads": 1},
                    name="c2").outputs[0]
    y = g.add_node("add", [bnorm(g, c1, "bn1"), bnorm(g, c2, "bn2")], name="add").outputs[0]
    g.outputs = [y]
    xs = rand(1, 3, 6, 6)
    before = edgecc.interpret(g, xs)[0]
    assert fold_batchnorm(g)
    assert ops(g) == ["conv2d", "conv2d", "add"]
    np.testing.assert_array_equal(bias.data, bias_copy)
    assert_close(edgecc.interpret(g, xs)[0], before)


def test_chained_bn_folds_first_only_and_meta_survives_ecir(tmp_path):
    g, x = conv_graph()
    g.outputs = [bnorm(g, bnorm(g, conv(g, x, "c1"), "bn1"), "bn2")]
    xs = rand(1, 3, 6, 6)
    before = edgecc.interpret(g, xs)[0]
    assert fold_batchnorm(g)
    assert ops(g) == ["conv2d", "batch_norm"]
    assert "already has bn1 folded in" in g.node("bn2").meta["fold_blocked"]
    assert_close(edgecc.interpret(g, xs)[0], before)
    save(g, tmp_path / "m.ecir")
    g2 = load(tmp_path / "m.ecir")
    meta = g2.node("c1").meta["folded_bn"]
    np.testing.assert_array_equal(meta["var"], g.node("c1").meta["folded_bn"]["var"])
    assert meta["var"].dtype == np.float32 and meta["node"] == "bn1"
