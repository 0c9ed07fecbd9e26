"""to_torch(graph): the IR graph rebuilt as a PyTorch module computes what the numpy
reference interpreter computes (within 1e-5 of the output scale), has real nn layers,
passes gradients to the input, and goes through PyTorch FX int8 quantization."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import edgecc
import edgecc.zoo
from edgecc.compiler.ir import Graph
from edgecc.errors import InputError
from edgecc.runtime.torch_module import to_torch
from tests.models import randomize_batch_norms

REL = 1e-5

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rel_err(y, ref) -> float:
    return float(np.abs(y - ref).max() / max(np.abs(ref).max(), 1e-30))


def _check_equal(g: Graph, *xs):
    ref = edgecc.interpret(g, *xs)
    out = to_torch(g)(*[torch.from_numpy(x) for x in xs])
    out = out if isinstance(out, tuple) else (out,)
    assert len(out) == len(ref)
    for y, r in zip(out, ref):
        assert y.shape == r.shape
        assert _rel_err(y.detach().numpy(), r) <= REL


def _zoo_graph(name, shape):
    torch.manual_seed(0)
    model = randomize_batch_norms(edgecc.zoo.get(name)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return edgecc.load(model, (torch.zeros(shape),))


@pytest.fixture(scope="module")
def resnet18():
    torch.set_num_threads(1)
    return _zoo_graph("resnet18", (1, 3, 64, 64))


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_zoo_models_match_interpreter(name, resnet18):
    g = resnet18 if name == "resnet18" else _zoo_graph(name, (1, 3, 64, 64))
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    ref = edgecc.interpret(g, x)[0]
    assert np.abs(ref).max() > 1e-3 and ref.std() > 1e-4   # a real, non-constant output
    _check_equal(g, x)
    m = to_torch(g)
    kinds = {type(mod).__name__ for mod in m.modules()}
    assert {"Conv2d", "BatchNorm2d", "Linear"} <= kinds


def test_autograd_reaches_the_input(resnet18):
    m = to_torch(resnet18)
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    m(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_fx_int8_quantization_runs(resnet18):
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    m = to_torch(resnet18)
    x = torch.randn(1, 3, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(m, get_default_qconfig_mapping("x86"), (x,))
        with torch.no_grad():
            for _ in range(2):
                prepared(torch.randn(1, 3, 64, 64))
        q = convert_fx(prepared)
        with torch.no_grad():
            yq, yf = q(x), m(x)
    names = {type(mod).__module__ for mod in q.modules()}
    assert any("quantized" in nm for nm in names)          # real int8 modules were inserted
    corr = np.corrcoef(yq.numpy().ravel(), yf.numpy().ravel())[0, 1]
    assert corr > 0.9


def test_batch_agnostic_reshape(resnet18):
    """The IR fixes batch 1; the module runs other batch sizes sample by sample alike."""
    m = to_torch(resnet18)
    x = np.random.default_rng(1).standard_normal((3, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        y = m(torch.from_numpy(x)).numpy()
    ref = np.concatenate([edgecc.interpret(resnet18, x[i:i + 1])[0] for i in range(3)])
    assert _rel_err(y, ref) <= REL


def _rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def test_hand_built_graph_with_many_ops():
    rng = np.random.default_rng(2)
    g = Graph("many")
    x = g.add_input("x", (2, 4, 9, 9))
    w1 = Graph.constant("w1", _rand(rng, 8, 4, 3, 3, scale=0.3))
    c1 = g.add_node("conv2d", [x, w1, Graph.constant("b1", _rand(rng, 8))],
                    {"pads": (1, 0, 2, 1), "strides": (2, 1)}).outputs[0]          # asymmetric pads
    l1 = g.add_node("leaky_relu", [c1], {"alpha": 0.1}).outputs[0]
    dw = g.add_node("conv2d", [l1, Graph.constant("wd", _rand(rng, 8, 1, 3, 3))],
                    {"pads": 1, "groups": 8, "dilations": 1}).outputs[0]         # depthwise
    hs = g.add_node("hardswish", [dw]).outputs[0]
    pr = g.add_node("prelu", [hs, Graph.constant("slope", _rand(rng, 8, 1, 1, scale=0.2))]).outputs[0]
    mp = g.add_node("max_pool2d", [pr], {"kernel": 3, "strides": 2, "pads": (1, 1, 0, 2),
                                          "ceil_mode": True}).outputs[0]
    ap = g.add_node("avg_pool2d", [pr], {"kernel": 3, "strides": 2, "pads": 1,
                                          "ceil_mode": True}).outputs[0]
    cat = g.add_node("concat", [mp, ap], {"axis": 1}).outputs[0]
    sh = g.add_node("channel_shuffle", [cat], {"groups": 4}).outputs[0]
    sp = g.add_node("split", [sh], {"axis": 1, "sizes": (6, 10)}).outputs
    sg = g.add_node("sigmoid", [sp[0]]).outputs[0]
    th = g.add_node("tanh", [sp[1]]).outputs[0]
    sl = g.add_node("slice", [th], {"starts": (0,), "ends": (6,), "axes": (1,), "steps": (1,)}).outputs[0]
    mu = g.add_node("mul", [sg, sl]).outputs[0]
    ad = g.add_node("add", [mu, Graph.constant("k", _rand(rng, 1, 6, 1, 1))]).outputs[0]
    cl = g.add_node("clip", [ad], {"min": -0.3, "max": 0.4}).outputs[0]
    hsg = g.add_node("hardsigmoid", [cl], {"alpha": 0.3, "beta": 0.4}).outputs[0]
    pd = g.add_node("pad", [hsg], {"pads": (0, 0, 1, 0, 0, 0, 0, 2), "mode": "reflect"}).outputs[0]
    rs = g.add_node("resize", [pd], {"mode": "linear", "size": (7, 9)}).outputs[0]
    gp = g.add_node("adaptive_avg_pool2d", [rs], {"output_size": (2, 3)}).outputs[0]
    tr = g.add_node("transpose", [gp], {"perm": (0, 2, 3, 1)}).outputs[0]
    fl = g.add_node("flatten", [tr], {"axis": 1}).outputs[0]
    ge = g.add_node("gemm", [fl, Graph.constant("fw", _rand(rng, 5, 36)),
                             Graph.constant("fb", _rand(rng, 5))],
                    {"trans_b": True, "alpha": 0.5, "beta": 2.0}).outputs[0]
    sm = g.add_node("softmax", [ge], {"axis": 1}).outputs[0]
    g.outputs = [sm, ge]
    _check_equal(g, _rand(rng, 2, 4, 9, 9))


def test_hand_built_graph_with_graph_computed_operands():
    """Two inputs, a matmul, a gemm with computed B, a div, sub, and a BN on rank 2."""
    rng = np.random.default_rng(3)
    g = Graph("two")
    a = g.add_input("a", (3, 6))
    b = g.add_input("b", (6, 4))
    mm = g.add_node("matmul", [a, b]).outputs[0]
    gm = g.add_node("gemm", [a, b, Graph.constant("c", _rand(rng, 3, 4))],
                    {"alpha": 1.5, "beta": 0.5}).outputs[0]
    dv = g.add_node("div", [mm, g.add_node("add", [g.add_node("relu", [gm]).outputs[0],
                                                   Graph.constant("one", np.ones((1, 4), np.float32))]).outputs[0]]).outputs[0]
    bn = g.add_node("batch_norm", [dv] + [Graph.constant(f"bn{i}", np.abs(_rand(rng, 4)) + 0.5)
                                          for i in range(4)], {"eps": 1e-3}).outputs[0]
    sb = g.add_node("sub", [bn, gm]).outputs[0]
    g.outputs = [sb]
    _check_equal(g, _rand(rng, 3, 6), _rand(rng, 6, 4))


def test_unsupported_op_names_the_node():
    g = Graph("bad")
    x = g.add_input("x", (1, 2, 4, 4))
    n = g.add_node("qconv2d", [x, Graph.constant("w", np.ones((2, 2, 1, 1), np.int8)),
                               Graph.constant("s", np.ones(2, np.float32)),
                               Graph.constant("b", np.zeros(2, np.float32))],
                   {"x_scale": 0.1}, name="my_qconv")
    g.outputs = n.outputs
    with pytest.raises(InputError, match="my_qconv.*qconv2d"):
        to_torch(g)


def test_select_matches_interpreter():
    """select (sign binarization of the binary zoo models) -> torch.where of a comparison."""
    g = Graph("sel")
    x = g.add_input("x", (2, 3, 4, 4))
    zero = Graph.constant("zero", np.zeros((1,), np.float32))
    one, neg = Graph.constant("one", np.ones((1,), np.float32)), Graph.constant("neg", -np.ones((1,), np.float32))
    outs = [g.add_node("select", [x, zero, one, neg], {"cmp": c}, name=f"s_{c}").outputs[0] for c in ("ge", "lt")]
    g.outputs = outs
    xs = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    xs[0, 0, 0] = 0.0   # the tie goes where the comparison says
    with torch.no_grad():
        got = to_torch(g)(torch.from_numpy(xs))
    for a, b in zip(got, edgecc.interpret(g, xs)):
        np.testing.assert_array_equal(a.numpy(), b)
