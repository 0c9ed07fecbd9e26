"""AW-conv: the zoo module imported, recognized as aw_conv2d, and lowered to static-weight taps
O = sum_taps (1 + A_tap) * T_tap; every form equals the module's per-sample convolution."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import edgecc
from edgecc.compiler.ir import Graph, verify
from edgecc.compiler.passes import PassManager, eliminate_dead_code
from edgecc.compiler.passes.aw_conv_taps import lower_aw_conv_taps, recognize_aw_conv
from edgecc.errors import ShapeError
from edgecc.zoo.aw import AWConv2d


def aw_module(c1, c2, k, stride, seed):
    torch.manual_seed(seed)
    m = AWConv2d(c1, c2, k, stride=stride, reduction=4).eval()
    with torch.no_grad():  # non-trivial BN statistics so the attention varies per sample
        for bn in (m.bn1, m.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.uniform_(-1.0, 1.0)
    return m


def assert_close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))


def ops(g):
    return [n.op for n in g.nodes]


@pytest.mark.parametrize("c1,c2,k,stride,n,hw", [(8, 16, 3, 1, 2, 7), (6, 8, 3, 2, 3, 8),
                                                 (4, 8, 5, 1, 1, 6), (8, 12, 1, 1, 2, 5)])
def test_taps_equal_per_sample_conv(c1, c2, k, stride, n, hw):
    m = aw_module(c1, c2, k, stride, seed=c1 + k)
    x = torch.randn(n, c1, hw, hw)
    want = m(x).detach().numpy()
    g = edgecc.load(m, (x,))
    assert PassManager([recognize_aw_conv]).run(g)
    assert ops(g).count("aw_conv2d") == 1
    # the recognized graph has no conv with a weight computed at run time
    assert all(c.inputs[1].is_constant for c in g.nodes if c.op == "conv2d")
    assert_close(edgecc.interpret(g, x.numpy())[0], want)
    assert PassManager([lower_aw_conv_taps, eliminate_dead_code]).run(g)
    assert "aw_conv2d" not in ops(g)
    taps = [c for c in g.nodes if c.op == "conv2d" and c.meta.get("lowered_from")]
    assert len(taps) == k * k and all(c.inputs[1].shape[2:] == (1, 1) for c in taps)
    assert_close(edgecc.interpret(g, x.numpy())[0], want)
    if k == 1:  # conv plus per-channel gating: one conv, one add (1 + A), one mul
        lowered = [c.op for c in g.nodes if c.meta.get("lowered_from")]
        assert sorted(lowered) == ["add", "conv2d", "mul"]


def test_tap_form_by_hand_with_dilation_and_padding():
    """aw_conv2d built directly (dilation 2, asymmetric pads) vs an explicit per-sample loop."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    k = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    a = rng.uniform(0, 1, (2, 4, 3, 2)).astype(np.float32)
    g = Graph("aw")
    xv, av = g.add_input("x", x.shape), g.add_input("a", a.shape)
    node = g.add_node("aw_conv2d", [xv, Graph.constant("k", k), av],
                      {"strides": (2, 1), "pads": (2, 1, 1, 0), "dilations": (2, 2)}, name="aw")
    g.outputs = node.outputs
    verify(g)
    xp = F.pad(torch.from_numpy(x), (1, 0, 2, 1))
    want = np.concatenate([F.conv2d(xp[i:i + 1], torch.from_numpy(k * (1 + a[i][:, None])),
                                    stride=(2, 1), dilation=2).numpy() for i in range(2)])
    assert_close(edgecc.interpret(g, x, a)[0], want)
    lower_aw_conv_taps(g)
    verify(g)
    assert_close(edgecc.interpret(g, x, a)[0], want)


def test_attention_shape_checked():
    g = Graph("bad")
    x = g.add_input("x", (2, 3, 5, 5))
    a = g.add_input("a", (2, 4, 3, 1))
    with pytest.raises(ShapeError, match=r"attention shape \[2, 4, 3, 1\] != \[2, 4, 3, 3\]"):
        g.add_node("aw_conv2d", [x, Graph.constant("k", np.zeros((4, 3, 3, 3), np.float32)), a])
