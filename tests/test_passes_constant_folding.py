"""fold_constants: constant subgraphs become constants with the values numpy computes."""
import numpy as np
import pytest

import edgecc
from edgecc.compiler.ir import DType, Graph, verify
from edgecc.compiler.passes import ConstantFolding, fold_constants
from edgecc.errors import EdgeccError

RNG = np.random.default_rng(2)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def weight_chain_graph():
    """y = x @ (reshape(transpose(W)) * 2 + b): everything but the matmul is constant."""
    w, b = rand(6, 4), rand(1, 6)
    g = Graph("chain")
    x = g.add_input("x", (3, 4))
    t = g.add_node("transpose", [Graph.constant("W", w)], {"perm": (1, 0)}, name="t").outputs[0]
    r = g.add_node("reshape", [t], {"shape": (4, 6)}, name="r").outputs[0]
    m = g.add_node("mul", [r, Graph.constant("two", np.full((1,), 2, np.float32))],
                   name="m").outputs[0]
    a = g.add_node("add", [m, Graph.constant("b", b)], name="wb").outputs[0]
    g.outputs = [g.add_node("matmul", [x, a], name="mm").outputs[0]]
    return g, w, b


def test_folds_constant_chain_exactly():
    g, w, b = weight_chain_graph()
    x = rand(3, 4)
    before = edgecc.interpret(g, x)[0]
    assert fold_constants(g) is True
    verify(g)
    assert [n.op for n in g.nodes] == ["matmul"]
    folded = g.nodes[0].inputs[1]
    assert folded.is_constant and folded.name == "wb"
    np.testing.assert_array_equal(folded.data, w.T * np.float32(2) + b)  # numpy oracle
    np.testing.assert_array_equal(edgecc.interpret(g, x)[0], before)
    assert [r["message"] for r in g.meta["pass_log"]] == [
        "folded t (op transpose) into constant t", "folded r (op reshape) into constant r",
        "folded m (op mul) into constant m", "folded wb (op add) into constant wb"]
    assert fold_constants(g) is False


def test_size_cap_leaves_large_results():
    g, _, _ = weight_chain_graph()
    assert ConstantFolding(max_elements=23)(g) is False  # each result has 24 elements
    assert len(g.nodes) == 5
    assert ConstantFolding(max_elements=24)(g) is True


def test_node_producing_graph_output_is_not_folded():
    g = Graph("g")
    x = g.add_input("x", (2,))
    c = g.add_node("relu", [Graph.constant("k", np.array([-1.0, 2.0], np.float32))],
                   name="k_relu").outputs[0]
    g.outputs = [g.add_node("add", [x, c], name="add").outputs[0], c]
    assert fold_constants(g) is False
    assert [n.op for n in g.nodes] == ["relu", "add"]


def test_shared_constant_input_is_not_modified():
    g = Graph("g")
    x = g.add_input("x", (2, 3))
    k = Graph.constant("k", rand(2, 3))
    orig = k.data.copy()
    neg = g.add_node("sub", [k, k], name="zero").outputs[0]
    y = g.add_node("add", [x, k], name="a").outputs[0]
    g.outputs = [g.add_node("add", [y, neg], name="b").outputs[0]]
    xs = rand(2, 3)
    before = edgecc.interpret(g, xs)[0]
    assert fold_constants(g)
    np.testing.assert_array_equal(k.data, orig)
    np.testing.assert_array_equal(edgecc.interpret(g, xs)[0], before)
    np.testing.assert_array_equal(g.node("b").inputs[1].data, np.zeros((2, 3), np.float32))


def test_multi_output_split_folds_every_output():
    g = Graph("g")
    x = g.add_input("x", (2, 2))
    parts = g.add_node("split", [Graph.constant("k", np.arange(8, dtype=np.int64).reshape(2, 4)
                                                .astype(np.float32))],
                       {"axis": 1, "sizes": (2, 2)}, name="sp").outputs
    y = g.add_node("mul", [x, parts[0]], name="m").outputs[0]
    g.outputs = [g.add_node("sub", [y, parts[1]], name="s").outputs[0]]
    xs = rand(2, 2)
    before = edgecc.interpret(g, xs)[0]
    assert fold_constants(g)
    assert [n.op for n in g.nodes] == ["mul", "sub"]
    np.testing.assert_array_equal(g.node("s").inputs[1].data, [[2, 3], [6, 7]])
    np.testing.assert_array_equal(edgecc.interpret(g, xs)[0], before)


def test_integer_division_by_zero_names_the_node():
    g = Graph("g")
    x = g.add_input("x", (2,), DType.i32)
    q = g.add_node("div", [Graph.constant("n", np.array([4, 5], np.int32)),
                           Graph.constant("d", np.array([2, 0], np.int32))],
                   name="bad_div").outputs[0]
    g.outputs = [g.add_node("add", [x, q], name="a").outputs[0]]
    with pytest.raises(EdgeccError, match="node 'bad_div' \\(op div\\).*ZeroDivisionError"):
        fold_constants(g)
