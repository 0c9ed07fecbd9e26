"""eliminate_dead_code: unused nodes go, everything reaching an output stays."""
import numpy as np

import edgecc
from edgecc.compiler.ir import Graph, verify
from edgecc.compiler.passes import eliminate_dead_code

RNG = np.random.default_rng(3)


def test_removes_dead_branch_and_its_constants():
    g = Graph("g")
    x = g.add_input("x", (1, 2, 4, 4))
    y = g.add_node("relu", [x], name="live").outputs[0]
    d1 = g.add_node("conv2d", [y, Graph.constant("dead_w", np.ones((3, 2, 1, 1), np.float32))],
                    name="dead_conv").outputs[0]
    g.add_node("sigmoid", [d1], name="dead_sig")
    g.outputs = [g.add_node("tanh", [y], name="out").outputs[0]]
    xs = RNG.standard_normal((1, 2, 4, 4)).astype(np.float32)
    before = edgecc.interpret(g, xs)[0]
    assert eliminate_dead_code(g) is True
    verify(g)
    assert [n.name for n in g.nodes] == ["live", "out"]
    assert all(c.name != "dead_w" for c in g.constants())
    np.testing.assert_array_equal(edgecc.interpret(g, xs)[0], before)
    assert g.meta["pass_log"] == [{"pass": "eliminate_dead_code", "message":
                                   "removed 2 unused node(s): dead_conv (conv2d), "
                                   "dead_sig (sigmoid)"}]
    assert eliminate_dead_code(g) is False


def test_keeps_multi_output_node_with_one_used_output():
    g = Graph("g")
    x = g.add_input("x", (2, 6))
    parts = g.add_node("split", [x], {"axis": 1, "sizes": (2, 4)}, name="sp").outputs
    g.outputs = [g.add_node("relu", [parts[1]], name="r").outputs[0]]
    assert eliminate_dead_code(g) is False
    assert [n.name for n in g.nodes] == ["sp", "r"]


def test_output_read_twice_and_unused_input():
    g = Graph("g")
    x = g.add_input("x", (3,))
    g.add_input("unused", (3,))
    y = g.add_node("relu", [x], name="r").outputs[0]
    g.add_node("relu", [x], name="r2")
    g.outputs = [y, y]
    assert eliminate_dead_code(g)
    assert [n.name for n in g.nodes] == ["r"]
    assert len(g.inputs) == 2  # graph inputs are part of the signature, never removed
    xs = np.array([-1, 0, 2], np.float32)
    a, b = edgecc.interpret(g, xs, xs)
    np.testing.assert_array_equal(a, [0, 0, 2])
    np.testing.assert_array_equal(b, [0, 0, 2])
