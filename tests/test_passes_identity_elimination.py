"""eliminate_identities: no-op nodes go, real ones stay, graph output names survive."""
import numpy as np
import pytest

import edgecc
from edgecc.compiler.ir import Graph, verify
from edgecc.compiler.passes import eliminate_identities

RNG = np.random.default_rng(4)
SHAPE = (1, 4, 3, 3)

NOOPS = [
    ("identity", {}),
    ("reshape", {"shape": SHAPE}),
    ("transpose", {"perm": (0, 1, 2, 3)}),
    ("slice", {"starts": (0, 0), "ends": (100, 3), "axes": (1, 3)}),
    ("pad", {"pads": (0,) * 8, "mode": "reflect"}),
    ("clip", {}),
    ("concat", {"axis": 1}),
    ("split", {"axis": 2, "sizes": (3,)}),
    ("channel_shuffle", {"groups": 1}),
    ("channel_shuffle", {"groups": 4}),
    ("max_pool2d", {"kernel": 1}),
    ("avg_pool2d", {"kernel": 1}),
]

REAL_OPS = [
    ("reshape", {"shape": (1, 4, 9)}),
    ("transpose", {"perm": (0, 1, 3, 2)}),
    ("slice", {"starts": (-1,), "ends": (-100,), "axes": (3,), "steps": (-1,)}),  # reverses
    ("slice", {"starts": (1,), "ends": (3,), "axes": (2,)}),
    ("pad", {"pads": (0, 0, 1, 0, 0, 0, 0, 0)}),
    ("clip", {"min": -0.5}),
    ("channel_shuffle", {"groups": 2}),
    ("max_pool2d", {"kernel": 2, "strides": 1, "pads": 1}),
]


def sandwich(op, attrs):
    """x -> sigmoid -> op -> tanh: the op's input and output are inner values."""
    g = Graph("g")
    x = g.add_input("x", SHAPE)
    a = g.add_node("sigmoid", [x], name="pre").outputs[0]
    m = g.add_node(op, [a], attrs, name="mid").outputs[0]
    g.outputs = [g.add_node("tanh", [m], name="post").outputs[0]]
    return g


def run(g, xs):
    return edgecc.interpret(g, xs)


@pytest.mark.parametrize("op,attrs", NOOPS, ids=[f"{o}-{i}" for i, (o, _) in enumerate(NOOPS)])
def test_noop_is_removed(op, attrs):
    g = sandwich(op, attrs)
    xs = RNG.standard_normal(SHAPE).astype(np.float32)
    before = run(g, xs)[0]
    assert eliminate_identities(g) is True
    verify(g)
    assert [n.name for n in g.nodes] == ["pre", "post"]
    np.testing.assert_array_equal(run(g, xs)[0], before)
    assert g.meta["pass_log"] == [{"pass": "eliminate_identities",
                                   "message": f"removed mid ({op}, no-op)"}]


@pytest.mark.parametrize("op,attrs", REAL_OPS, ids=[f"{o}-{i}" for i, (o, _) in enumerate(REAL_OPS)])
def test_real_op_is_kept(op, attrs):
    g = sandwich(op, attrs)
    assert eliminate_identities(g) is False
    assert [n.name for n in g.nodes] == ["pre", "mid", "post"]


def test_identity_from_graph_input_to_graph_output_stays():
    g = Graph("g")
    x = g.add_input("x", (2,))
    g.outputs = [g.add_node("identity", [x], name="id").outputs[0]]
    assert eliminate_identities(g) is False
    verify(g)
    assert g.outputs[0].name == "id"
    np.testing.assert_array_equal(run(g, np.array([1, -2], np.float32))[0], [1, -2])


def test_identity_of_constant_output_stays():
    g = Graph("g")
    g.add_input("x", (2,))
    k = Graph.constant("k", np.array([3, 4], np.float32))
    g.outputs = [g.add_node("identity", [k], name="id").outputs[0]]
    assert eliminate_identities(g) is False
    verify(g)


def test_graph_output_name_moves_onto_producer():
    """y = identity(r) is a graph output and r has another reader: r's producer now
    produces y, and the other reader reads y."""
    g = Graph("g")
    x = g.add_input("x", (3,))
    r = g.add_node("relu", [x], name="relu").outputs[0]
    other = g.add_node("tanh", [r], name="other").outputs[0]
    y = g.add_node("identity", [r], name="dropout", output_names=["logits"]).outputs[0]
    g.outputs = [y, other]
    xs = np.array([-1, 0.5, 2], np.float32)
    before = run(g, xs)
    assert eliminate_identities(g)
    verify(g)
    assert [n.name for n in g.nodes] == ["relu", "other"]
    assert [v.name for v in g.outputs] == ["logits", "other"]
    assert g.node("relu").outputs[0] is y and g.node("other").inputs[0] is y
    for a, b in zip(run(g, xs), before):
        np.testing.assert_array_equal(a, b)


def test_identity_between_two_graph_outputs_stays():
    g = Graph("g")
    x = g.add_input("x", (3,))
    r = g.add_node("relu", [x], name="relu").outputs[0]
    y = g.add_node("identity", [r], name="id").outputs[0]
    g.outputs = [r, y]
    assert eliminate_identities(g) is False


def test_chain_of_identities_ending_in_output():
    g = Graph("g")
    x = g.add_input("x", (2, 3))
    v = g.add_node("relu", [x], name="relu").outputs[0]
    for i in range(3):
        v = g.add_node("identity", [v], name=f"id{i}").outputs[0]
    v = g.add_node("flatten", [v], name="flat").outputs[0]
    g.outputs = [v]
    xs = RNG.standard_normal((2, 3)).astype(np.float32)
    before = run(g, xs)[0]
    assert eliminate_identities(g)
    verify(g)
    assert [n.name for n in g.nodes] == ["relu"] and g.outputs[0].name == "flat"
    np.testing.assert_array_equal(run(g, xs)[0], before)
