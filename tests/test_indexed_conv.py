"""indexed_conv2d (REAF / rolling pointwise / grouped): the IR op, its recognition from the
torch frontend's gather + grouped conv, and its three lowerings, all against PyTorch."""
import os
import tempfile
from itertools import combinations
from math import comb

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import edgecc
import edgecc.compiler.frontends.torch_ops_gather  # noqa: F401  (index_select converter)
from edgecc.compiler.ir import Graph, load, save, verify
from edgecc.compiler.passes import PassManager, eliminate_dead_code
from edgecc.compiler.passes.lower_indexed_conv import (
    CostWeights, lower_indexed_conv, lowering_costs, make_lowering, ranges_from_index,
    recognize_indexed_conv)
from edgecc.errors import ShapeError
from edgecc.zoo.reaf import ReafConv2d
from edgecc.zoo.rpw import RollingPointwiseConv2d

STRATEGIES = ("dense", "gather", "partial")


def reaf_ranges(c_in, g_i, g_m):
    a = c_in // g_i
    return tuple(tuple((g * a, g * a + a) for g in subset) for subset in combinations(range(g_i), g_m))


def indexed_graph(x_shape, w, ranges, bias=None, **geo):
    g = Graph("indexed")
    x = g.add_input("x", x_shape)
    ins = [x, Graph.constant("w", w)] + ([Graph.constant("b", bias)] if bias is not None else [])
    g.outputs = [g.add_node("indexed_conv2d", ins, {"ranges": ranges, **geo}, name="ic").outputs[0]]
    verify(g)
    return g


def lowered(g, strategy):
    g2 = load_copy(g)
    PassManager([make_lowering(strategy), eliminate_dead_code]).run(g2)
    assert "indexed_conv2d" not in [n.op for n in g2.nodes]
    return g2


def load_copy(g):
    """An independent copy through .ecir (also checks the ranges attribute round-trips)."""
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "g.ecir")
        save(g, p)
        return load(p)


def torch_reference(x, w, ranges, bias, stride=1, padding=0):
    idx = [c for group in ranges for s, e in group for c in range(s, e)]
    b = None if bias is None else torch.from_numpy(bias)
    return F.conv2d(torch.from_numpy(x)[:, idx], torch.from_numpy(w), b, stride, padding, 1,
                    len(ranges)).numpy()


def assert_close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))


@settings(max_examples=12, deadline=None)
@given(g_i=st.integers(1, 4), data=st.data(), a=st.integers(1, 3), k=st.sampled_from([1, 3]),
       stride=st.integers(1, 2), bias=st.booleans())
def test_reaf_lowerings_equal_op_and_torch(g_i, data, a, k, stride, bias):
    g_m = data.draw(st.integers(1, g_i))
    rows = data.draw(st.integers(1, 2))
    ranges = reaf_ranges(g_i * a, g_i, g_m)
    o = rows * len(ranges)
    rng = np.random.default_rng(g_i * 100 + g_m * 10 + a)
    x = rng.standard_normal((2, g_i * a, 6, 5)).astype(np.float32)
    w = rng.standard_normal((o, g_m * a, k, k)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32) if bias else None
    geo = {"strides": stride, "pads": k // 2}
    g = indexed_graph(x.shape, w, ranges, b, **geo)
    want = torch_reference(x, w, ranges, b, stride, k // 2)
    assert_close(edgecc.interpret(g, x)[0], want)
    dense = edgecc.interpret(lowered(g, "dense"), x)[0]
    assert_close(dense, want)
    for strategy in ("gather", "partial"):
        assert_close(edgecc.interpret(lowered(g, strategy), x)[0], dense)


def test_special_cases_grouped_and_dense():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 12, 5, 5)).astype(np.float32)
    # G_M = 1: a grouped conv with G_I groups (and the gather lowering is the identity)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    g = indexed_graph(x.shape, w, reaf_ranges(12, 4, 1), pads=1)
    want = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), None, 1, 1, 1, 4).numpy()
    gather = lowered(g, "gather")
    assert [n.op for n in gather.nodes] == ["conv2d"] and gather.nodes[0].attrs["groups"] == 4
    for s in STRATEGIES:
        assert_close(edgecc.interpret(lowered(g, s), x)[0], want)
    # G_M = G_I: a dense conv (one group reading everything)
    w = rng.standard_normal((6, 12, 3, 3)).astype(np.float32)
    g = indexed_graph(x.shape, w, reaf_ranges(12, 4, 4), pads=1)
    want = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), None, 1, 1).numpy()
    for s in STRATEGIES:
        assert_close(edgecc.interpret(lowered(g, s), x)[0], want)


@pytest.mark.parametrize("g_i,g_m", [(4, 2), (4, 3), (3, 1), (5, 2)])
def test_reaf_module_recognized(g_i, g_m):
    torch.manual_seed(g_i + g_m)
    c_in, c_out = 4 * g_i, 2 * comb(g_i, g_m)
    m = ReafConv2d(c_in, c_out, 3, g_i, g_m, stride=2).eval()
    x = torch.randn(2, c_in, 7, 7)
    want = m(x).detach().numpy()
    g = edgecc.load(m, (x,))
    changed = PassManager([recognize_indexed_conv, eliminate_dead_code]).run(g)
    ic = [n for n in g.nodes if n.op == "indexed_conv2d"]
    if g_m == 1:  # the zoo's gather is the identity: a plain grouped conv, nothing to do
        assert not changed and [n.op for n in g.nodes] == ["conv2d"]
        assert g.nodes[0].attrs["groups"] == g_i
        return
    assert len(ic) == 1 and [n.op for n in g.nodes] == ["indexed_conv2d"]
    assert len(ic[0].attrs["ranges"]) == comb(g_i, g_m)  # G_O = C(G_I, G_M)
    assert ic[0].attrs["ranges"] == ranges_from_index(m.index.numpy(), comb(g_i, g_m))
    assert_close(edgecc.interpret(g, x.numpy())[0], want)
    for s in ("auto",) + STRATEGIES:
        g2 = load_copy(g)
        PassManager([make_lowering(s), eliminate_dead_code]).run(g2)
        assert_close(edgecc.interpret(g2, x.numpy())[0], want)


@pytest.mark.parametrize("groups,overlap", [(4, 0.5), (2, 0.25), (4, 0.0)])
def test_rpw_module_recognized(groups, overlap):
    torch.manual_seed(groups)
    m = RollingPointwiseConv2d(16, 10, groups, overlap).eval()
    x = torch.randn(1, 16, 5, 5)
    want = m(x).detach().numpy()
    # the dense form the module itself provides
    assert_close(F.conv2d(x, m.dense_weight()).numpy(), want)
    g = edgecc.load(m, (x,))
    PassManager([recognize_indexed_conv, eliminate_dead_code]).run(g)
    (ic,) = [n for n in g.nodes if n.op == "indexed_conv2d"]
    assert len(ic.attrs["ranges"]) == 10
    # a window past the last channel wraps: two ranges
    assert any(len(r) == 2 for r in ic.attrs["ranges"]) == (overlap > 0)
    for s in STRATEGIES:
        g2 = load_copy(g)
        PassManager([make_lowering(s), eliminate_dead_code]).run(g2)
        assert_close(edgecc.interpret(g2, x.numpy())[0], want)


def test_cost_choice():
    rng = np.random.default_rng(3)
    # dense REAF 4-4: every lowering does the same MACs, dense needs no copy or add
    g = indexed_graph((1, 16, 8, 8), rng.standard_normal((8, 16, 3, 3)).astype(np.float32),
                      reaf_ranges(16, 4, 4), pads=1)
    costs = lowering_costs(g.nodes[0])
    assert min(costs, key=costs.get) == "dense"
    # grouped (G_M = 1): the gather is the identity, the grouped conv does 1/4 of the MACs
    g = indexed_graph((1, 16, 8, 8), rng.standard_normal((8, 4, 3, 3)).astype(np.float32),
                      reaf_ranges(16, 4, 1), pads=1)
    costs = lowering_costs(g.nodes[0])
    assert costs["gather"] == 1 * 8 * 8 * 8 * 4 * 9 and costs["dense"] == 4 * costs["gather"]
    lower_indexed_conv(g)
    assert [n.op for n in g.nodes] == ["conv2d"] and g.nodes[0].meta["lowering"] == "gather"
    # REAF 8-2 on a big map: 28 groups of 2/8 channels; kernel calls are cheap next to the
    # copy of 7x the input, so partial sums win; with expensive calls, the gather wins
    g = indexed_graph((1, 64, 32, 32), rng.standard_normal((56, 16, 3, 3)).astype(np.float32),
                      reaf_ranges(64, 8, 2), pads=1)
    c = lowering_costs(g.nodes[0])
    assert c["dense"] > c["partial"] and c["dense"] > c["gather"]
    c2 = lowering_costs(g.nodes[0], CostWeights(call=1e6))
    assert c2["gather"] < c2["partial"]


def test_bad_ranges_rejected():
    g = Graph("bad")
    x = g.add_input("x", (1, 8, 4, 4))
    w = Graph.constant("w", np.zeros((4, 4, 1, 1), np.float32))
    with pytest.raises(ShapeError, match="group 1 reads 3 channels"):
        g.add_node("indexed_conv2d", [x, w], {"ranges": (((0, 4),), ((4, 7),))}, name="ic")
    with pytest.raises(ShapeError, match=r"inside \[0, 8\)"):
        g.add_node("indexed_conv2d", [x, w], {"ranges": (((0, 4),), ((6, 10),))}, name="ic")
    with pytest.raises(ShapeError, match="3 output groups must divide output channels 4"):
        g.add_node("indexed_conv2d", [x, w], {"ranges": (((0, 4),),) * 3}, name="ic")
