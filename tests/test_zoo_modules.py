"""Numerical checks of the zoo's building blocks against independent references."""
from itertools import combinations
from math import comb

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import edgecc.zoo as zoo
from edgecc.zoo.aw import AWConv2d
from edgecc.zoo.binary import BinaryActivation, BinaryConv2d
from edgecc.zoo.dacnn import SharedConvBNReLU
from edgecc.zoo.nasb import BIREAL_GENOTYPE, NASBCell
from edgecc.zoo.reaf import ReafConv2d
from edgecc.zoo.rpw import RollingPointwiseConv2d
from edgecc.zoo.ua import FractalBlock

torch.set_grad_enabled(True)


@settings(max_examples=15, deadline=None)
@given(g_i=st.integers(1, 5), data=st.data())
def test_reaf_index_sets_and_group_count(g_i, data):
    g_m = data.draw(st.integers(1, g_i))
    a_in = data.draw(st.integers(1, 3))
    g_o = comb(g_i, g_m)
    conv = ReafConv2d(g_i * a_in, 2 * g_o, 3, g_i, g_m)
    assert conv.g_o == g_o
    assert conv.subsets == tuple(combinations(range(g_i), g_m))
    expected = [g * a_in + c for s in combinations(range(g_i), g_m) for g in s for c in range(a_in)]
    assert conv.index.tolist() == expected
    # reference: output group l = dense conv over the concatenated input groups of subset l
    x = torch.randn(2, g_i * a_in, 5, 5)
    out = conv(x)
    for l, subset in enumerate(conv.subsets):
        xs = torch.cat([x[:, g * a_in:(g + 1) * a_in] for g in subset], 1)
        ref = F.conv2d(xs, conv.weight[2 * l:2 * l + 2], padding=1)
        torch.testing.assert_close(out[:, 2 * l:2 * l + 2], ref)


def test_reaf_extremes_equal_grouped_and_dense_conv():
    x = torch.randn(2, 12, 7, 7)
    grouped = ReafConv2d(12, 8, 3, g_i=4, g_m=1, stride=2)
    ref = torch.nn.Conv2d(12, 8, 3, stride=2, padding=1, groups=4, bias=False)
    ref.weight.data.copy_(grouped.weight.data)
    torch.testing.assert_close(grouped(x), ref(x))
    dense = ReafConv2d(12, 8, 3, g_i=4, g_m=4)
    ref = torch.nn.Conv2d(12, 8, 3, padding=1, bias=False)
    ref.weight.data.copy_(dense.weight.data)
    torch.testing.assert_close(dense(x), ref(x))
    with pytest.raises(ValueError, match="G_O"):
        ReafConv2d(16, 10, 3, g_i=8, g_m=4)  # C(8,4) = 70 does not divide 10


def test_aw_conv_equals_per_sample_conv():
    torch.manual_seed(0)
    conv = AWConv2d(16, 32, 3, stride=2, reduction=16)
    for bn in (conv.bn1, conv.bn2):  # non-trivial BN statistics
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    conv.eval()
    x = torch.randn(3, 16, 9, 9)
    out = conv(x)
    a = conv.attention(x)
    assert a.shape == (3, 32, 3, 3)
    for n in range(3):
        k = conv.weight
        ref = F.conv2d(x[n:n + 1], k, stride=2, padding=1) + F.conv2d(x[n:n + 1], a[n].unsqueeze(1) * k, stride=2, padding=1)
        torch.testing.assert_close(out[n:n + 1], ref, rtol=1e-4, atol=1e-5)


def test_rpw_windows_and_dense_equivalence():
    rpw = RollingPointwiseConv2d(8, 6, groups=2, overlap=0.25)  # width 4, overlap 1, step 3
    assert rpw.index.tolist()[:4] == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 0, 1], [1, 2, 3, 4]]
    x = torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(rpw(x), F.conv2d(x, rpw.dense_weight()))
    with pytest.raises(ValueError, match="divisible"):
        RollingPointwiseConv2d(10, 4, groups=3, overlap=0.5)


def test_binary_activation_forward_and_surrogate_gradient():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.25, 1.5], requires_grad=True)
    y = BinaryActivation()(x)
    assert y.tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 2.0, 1.5, 0.0]  # eq 4.2: 2+2x on [-1,0), 2-2x on [0,1)


def test_binary_conv_uses_scaled_sign_weights():
    conv = BinaryConv2d(3, 4, 3, padding=1)
    x = torch.randn(1, 3, 5, 5)
    w = conv.weight.detach()
    wb = w.abs().mean(dim=(1, 2, 3), keepdim=True) * torch.where(w >= 0, 1.0, -1.0)
    torch.testing.assert_close(conv(x), F.conv2d(x, wb, padding=1))


def test_nasb_with_bireal_genotype_equals_bireal():
    torch.manual_seed(0)
    bireal = zoo.get("bireal_resnet18", stem="cifar", num_classes=10, width=8).eval()
    nasb = zoo.get("nasb_resnet18", stem="cifar", num_classes=10, width=8, genotypes=[BIREAL_GENOTYPE] * 4).eval()
    src = bireal.state_dict()
    mapped = {}
    for key in nasb.state_dict():
        if key.startswith("cells."):
            _, s, kind, i, rest = key.split(".", 4)
            unit = f"units.{4 * int(s) + int(i)}"
            rest = rest.replace("adapt.", "")
            mapped[key] = src[f"{unit}.body.{rest}" if kind == "bodies" else f"{unit}.shortcut.{rest}"]
        else:
            mapped[key] = src[key]
    nasb.load_state_dict(mapped)
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(nasb(x), bireal(x))


def test_nasb_default_cell_ops_and_skip_edges():
    m = zoo.get("nasb_resnet18")
    kinds = [type(e.op).__name__ for cell in m.cells for e in cell.edges]
    assert kinds.count("MaxPool2d") == 12 and kinds.count("Identity") == 4  # thesis ~1398
    cell = NASBCell(8, 16, 2, [("identity", 0), ("max_pool_3x3", 0), ("bconv_3x3", 1), ("avg_pool_3x3", 2)])
    assert cell(torch.randn(2, 8, 8, 8)).shape == (2, 16, 4, 4)
    with pytest.raises(ValueError, match="predecessor"):
        NASBCell(8, 8, 1, [("identity", 1)])


def test_fractal_block_recursion_c2():
    block = FractalBlock(2, 4).eval()
    x = torch.randn(2, 4, 6, 6)
    f1 = lambda unit, t: unit.body(t) + t  # eq 5.1
    ref = (f1(block.second.shallow, f1(block.first.shallow, x)) + f1(block.shallow, x)) / 2  # eq 5.2
    torch.testing.assert_close(block(x), ref)


def test_dacnn_shared_weight_is_one_parameter():
    m = zoo.get("dacnn_plain", depth=18)
    users = [mod for mod in m.modules() if isinstance(mod, SharedConvBNReLU)]
    assert len(users) == 16
    assert len({id(u._shared[0].weight) for u in users}) == 1
    shared = users[0]._shared[0].weight
    assert sum(p is shared for p in m.parameters()) == 1
    mixed = zoo.get("dacnn_mixed18")
    per_section = [{id(u._shared[0].weight) for u in s.modules() if isinstance(u, SharedConvBNReLU)}
                   for s in mixed.sections]
    assert all(len(ids) == 1 for ids in per_section) and len(set().union(*per_section)) == 4
    # regulators add one unshared 1x1 conv + BN per residual block (8 blocks of 128 channels)
    reg = zoo.get("dacnn_plain", depth=18, regulators=True)
    assert sum(p.numel() for p in reg.parameters()) - sum(p.numel() for p in m.parameters()) == 8 * (128 * 128 + 256)


def test_resnet_v1_strides_first_1x1():
    v1, v15 = zoo.get("resnet50"), zoo.get("resnet50", variant="v1.5")
    assert v1.layer2[0].conv1.stride == (2, 2) and v1.layer2[0].conv2.stride == (1, 1)
    assert v15.layer2[0].conv1.stride == (1, 1) and v15.layer2[0].conv2.stride == (2, 2)
