"""REAF+ batch-norm folding: BNs over channel slices of one conv fold per slice, a BN over a
concat of convs folds per input, BNs sharing channels stay (logged); outputs equal PyTorch."""
import numpy as np
import pytest
import torch
from torch import nn

import edgecc
from edgecc.compiler.passes import PassManager, default_pipeline, eliminate_dead_code
from edgecc.compiler.passes.fold_batchnorm_shared import fold_batchnorm_slices
from edgecc.zoo.reaf import InvertedResidual


def randomize_bns(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) * 2 - 1)  # negative scales too
                m.bias.copy_(torch.rand(c, generator=g) - 0.5)
    return model.eval()


def assert_close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))


def compile_and_check(m, x):
    want = m(x).detach().numpy()
    g = edgecc.load(m, (x,))
    default_pipeline().run(g)
    PassManager([fold_batchnorm_slices, eliminate_dead_code]).run(g)
    assert_close(edgecc.interpret(g, x.numpy())[0], want)
    return g


def messages(g):
    return [r["message"] for r in g.meta.get("pass_log", []) if r["pass"] == "fold_batchnorm_slices"]


@pytest.mark.parametrize("g_o,stride", [(2, 1), (4, 2)])
def test_reaf_plus_block(g_o, stride):
    torch.manual_seed(g_o)
    m = randomize_bns(nn.Sequential(InvertedResidual(8, 8, 1, 2, g_o), InvertedResidual(8, 16, stride, 2, g_o)),
                      seed=g_o)
    g = compile_and_check(m, torch.randn(2, 8, 6, 6))
    bns = [n for n in g.nodes if n.op == "batch_norm"]
    # per block: the g_O BN+ReLU6 pairs on the depthwise pre-activation stay (they read the
    # same channels), the BN after the projection folded into the g_O branch convs
    assert len(bns) == 2 * g_o
    assert all("read all channels" in b.meta["fold_blocked"] for b in bns)
    sliced = [n for n in g.nodes if n.op == "conv2d" and "folded_bn_slices" in n.meta]
    assert len(sliced) == 2 * g_o
    assert any("folded" in msg and "per channel slice" in msg for msg in messages(g))


class SplitBN(nn.Module):
    """conv -> channel slices, each with its own BN + ReLU -> concat (or overlapping)."""

    def __init__(self, bounds):
        super().__init__()
        self.conv = nn.Conv2d(4, 12, 3, padding=1, bias=True)
        self.bounds = bounds
        self.bns = nn.ModuleList(nn.BatchNorm2d(e - s) for s, e in bounds)

    def forward(self, x):
        y = self.conv(x)
        return torch.cat([torch.relu(bn(y[:, s:e])) for bn, (s, e) in zip(self.bns, self.bounds)], 1)


def test_distinct_slices_fold_into_rows():
    torch.manual_seed(0)
    m = randomize_bns(SplitBN([(0, 4), (4, 10), (10, 12)]), seed=1)
    g = compile_and_check(m, torch.randn(1, 4, 5, 5))
    assert "batch_norm" not in [n.op for n in g.nodes]
    (conv,) = [n for n in g.nodes if n.op == "conv2d"]
    assert [s["channels"] for s in conv.meta["folded_bn_slices"]] == [(0, 4), (4, 10), (10, 12)]


def test_partial_slices_fold_rest_untouched():
    torch.manual_seed(0)
    m = randomize_bns(SplitBN([(2, 5), (7, 12)]), seed=2)  # channels 0-1 and 5-6 unread
    g = compile_and_check(m, torch.randn(1, 4, 5, 5))
    assert "batch_norm" not in [n.op for n in g.nodes]


def test_overlapping_slices_kept_and_logged():
    torch.manual_seed(0)
    m = randomize_bns(SplitBN([(0, 6), (4, 12)]), seed=3)
    g = compile_and_check(m, torch.randn(1, 4, 5, 5))
    bns = [n for n in g.nodes if n.op == "batch_norm"]
    assert len(bns) == 2
    assert any("also read by" in b.meta["fold_blocked"] for b in bns)
    assert any("kept" in msg and "also read by" in msg for msg in messages(g))
