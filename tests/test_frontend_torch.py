"""PyTorch frontend (torch.export -> IR): each supported op family against PyTorch
eager, plus the error paths (unsupported ops, bad example inputs)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import edgecc
from edgecc.compiler.frontends.torch import import_torch
from edgecc.errors import EdgeccError, ModelLoadError, UnsupportedOpsError

from models import randomize_batch_norms


class Fn(nn.Module):
    """A module running `fn(self, *inputs)`; keyword arguments become submodules or
    parameters, so weights are lifted by torch.export like in a real model."""

    def __init__(self, fn, **members):
        super().__init__()
        self.fn = fn
        for k, v in members.items():
            setattr(self, k, v)

    def forward(self, *xs):
        return self.fn(self, *xs)


def assert_matches_torch(module, inputs, ops=()):
    """Import, interpret, compare with eager: max|diff| <= 1e-4 * max|ref| for float,
    bit-exact for integer outputs. `ops`: IR ops the graph must contain."""
    module = module.eval()
    graph = import_torch(module, tuple(inputs))
    got = edgecc.interpret(graph, *[t.numpy() for t in inputs])
    with torch.no_grad():
        ref = module(*inputs)
    refs = list(ref) if isinstance(ref, (tuple, list)) else [ref]
    assert len(got) == len(refs)
    for g, r in zip(got, refs):
        r = r.numpy()
        assert g.shape == r.shape and g.dtype == r.dtype, (g.shape, g.dtype, r.shape, r.dtype)
        if np.issubdtype(r.dtype, np.floating):
            assert np.abs(g - r).max(initial=0) <= 1e-4 * np.abs(r).max(initial=0) + 1e-30, \
                f"max|diff| {np.abs(g - r).max()} vs max|ref| {np.abs(r).max()}"
        else:
            np.testing.assert_array_equal(g, r)
    present = {n.op for n in graph.nodes}
    assert set(ops) <= present, f"expected IR ops {set(ops)}, graph has {present}"
    return graph


def randn(*shape, scale=1.0):
    return torch.randn(*shape) * scale


def bn(c, affine=True):
    return randomize_batch_norms(nn.BatchNorm2d(c, affine=affine), seed=c)


def prelu(n):
    m = nn.PReLU(n)
    with torch.no_grad():
        m.weight.uniform_(-0.5, 0.5)
    return m


def shuffle_by_view(x, g=2):  # the ShuffleNet idiom: view, transpose, view
    n, c, h, w = x.shape
    return x.view(n, g, c // g, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


# (id, fn(self, *xs), members, input shapes, IR ops expected in the graph)
CASES = [
    # convolution
    ("conv3x3_bias", lambda s, x: s.c(x), dict(c=nn.Conv2d(3, 8, 3, padding=1)), [(2, 3, 9, 9)], {"conv2d"}),
    ("conv_asymmetric", lambda s, x: s.c(x),
     dict(c=nn.Conv2d(4, 6, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(2, 1))), [(1, 4, 11, 10)], {"conv2d"}),
    ("conv_groups_nobias", lambda s, x: s.c(x), dict(c=nn.Conv2d(6, 9, 3, stride=2, groups=3, bias=False)),
     [(1, 6, 8, 8)], {"conv2d"}),
    ("conv_depthwise", lambda s, x: s.c(x), dict(c=nn.Conv2d(8, 8, 3, padding=1, groups=8)), [(1, 8, 7, 7)], {"conv2d"}),
    ("conv_same_odd_total", lambda s, x: s.c(x), dict(c=nn.Conv2d(3, 4, (4, 3), padding="same", dilation=(1, 2))),
     [(1, 3, 7, 8)], {"conv2d"}),
    ("conv_valid", lambda s, x: F.conv2d(x, s.w, padding="valid"), dict(w=nn.Parameter(randn(5, 3, 3, 3))),
     [(1, 3, 6, 6)], {"conv2d"}),
    ("conv_computed_weight", lambda s, x: F.conv2d(x, s.w * 2.0, stride=2), dict(w=nn.Parameter(randn(4, 3, 2, 2))),
     [(1, 3, 6, 6)], {"conv2d", "mul"}),
    # batch norm
    ("bn2d", lambda s, x: s.b(x), dict(b=bn(5)), [(2, 5, 4, 4)], {"batch_norm"}),
    ("bn2d_no_affine", lambda s, x: s.b(x), dict(b=bn(5, affine=False)), [(2, 5, 4, 4)], {"batch_norm"}),
    ("bn1d_after_linear", lambda s, x: s.b(s.l(x)),
     dict(l=nn.Linear(6, 5), b=randomize_batch_norms(nn.BatchNorm1d(5))), [(3, 6)], {"gemm", "batch_norm"}),
    # activations
    ("relu", lambda s, x: F.relu(x), {}, [(2, 3, 5, 5)], {"relu"}),
    ("relu6", lambda s, x: F.relu6(x * 4), {}, [(2, 3, 5, 5)], {"clip"}),
    ("hardtanh", lambda s, x: F.hardtanh(x * 3, -2.0, 3.0), {}, [(2, 3, 5, 5)], {"clip"}),
    ("clamp_min", lambda s, x: torch.clamp(x, min=-0.5), {}, [(2, 3, 5, 5)], {"clip"}),
    ("clamp_max", lambda s, x: x.clamp(max=0.3), {}, [(2, 3, 5, 5)], {"clip"}),
    ("leaky_relu", lambda s, x: F.leaky_relu(x, 0.2), {}, [(2, 3, 5, 5)], {"leaky_relu"}),
    ("prelu_channels", lambda s, x: s.p(x), dict(p=prelu(3)), [(2, 3, 5, 5)], {"prelu"}),
    ("prelu_single", lambda s, x: s.p(x), dict(p=prelu(1)), [(2, 3, 5, 5)], {"prelu"}),
    ("hardsigmoid", lambda s, x: F.hardsigmoid(x * 4), {}, [(2, 3, 5, 5)], {"hardsigmoid"}),
    ("hardswish", lambda s, x: F.hardswish(x * 4), {}, [(2, 3, 5, 5)], {"hardswish"}),
    ("sigmoid", lambda s, x: torch.sigmoid(x), {}, [(2, 3, 5, 5)], {"sigmoid"}),
    ("tanh", lambda s, x: torch.tanh(x), {}, [(2, 3, 5, 5)], {"tanh"}),
    ("sign", lambda s, x: torch.sign(x), {}, [(2, 3, 5, 5)], {"sign"}),
    ("silu", lambda s, x: F.silu(x), {}, [(2, 3, 5, 5)], {"sigmoid", "mul"}),
    # pooling
    ("maxpool_k3s2p1", lambda s, x: F.max_pool2d(x, 3, 2, 1), {}, [(1, 2, 9, 9)], {"max_pool2d"}),
    ("maxpool_ceil", lambda s, x: F.max_pool2d(x, 3, 2, ceil_mode=True), {}, [(1, 2, 8, 8)], {"max_pool2d"}),
    ("maxpool_asym_ceil", lambda s, x: F.max_pool2d(x, (2, 3), (1, 2), (1, 0), ceil_mode=True), {},
     [(1, 2, 7, 8)], {"max_pool2d"}),
    ("maxpool_dilation", lambda s, x: F.max_pool2d(x, 3, 1, 1, dilation=2), {}, [(1, 2, 9, 9)], {"max_pool2d"}),
    ("avgpool_ceil_include_pad", lambda s, x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True), {},
     [(1, 2, 8, 8)], {"avg_pool2d"}),
    ("avgpool_ceil_exclude_pad", lambda s, x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
     {}, [(1, 2, 8, 8)], {"avg_pool2d"}),
    ("avgpool_asym", lambda s, x: F.avg_pool2d(x, (3, 2), (2, 1), (1, 1)), {}, [(1, 2, 7, 6)], {"avg_pool2d"}),
    ("adaptive_global", lambda s, x: F.adaptive_avg_pool2d(x, 1), {}, [(2, 3, 7, 5)], {"global_avg_pool"}),
    ("adaptive_nondivisible", lambda s, x: F.adaptive_avg_pool2d(x, (3, 4)), {}, [(1, 2, 7, 10)],
     {"adaptive_avg_pool2d"}),
    ("adaptive_upsampling_bins", lambda s, x: F.adaptive_avg_pool2d(x, (5, 3)), {}, [(1, 2, 4, 2)],
     {"adaptive_avg_pool2d"}),
    ("mean_keepdim", lambda s, x: x.mean((2, 3), keepdim=True), {}, [(2, 3, 4, 5)], {"global_avg_pool"}),
    ("mean_flat", lambda s, x: x.mean((-1, -2)), {}, [(2, 3, 4, 5)], {"global_avg_pool", "reshape"}),
    # elementwise arithmetic
    ("add", lambda s, x, y: x + y, {}, [(2, 3, 4, 4), (2, 3, 4, 4)], {"add"}),
    ("add_alpha", lambda s, x, y: torch.add(x, y, alpha=2.5), {}, [(2, 3, 4, 4), (3, 1, 1)], {"add", "mul"}),
    ("sub_alpha", lambda s, x, y: torch.sub(x, y, alpha=0.5), {}, [(2, 3, 4, 4), (4,)], {"sub"}),
    ("sub_scalar", lambda s, x: x - 1.5, {}, [(2, 3)], {"sub"}),
    ("rsub_scalar", lambda s, x: 3 - x, {}, [(2, 3)], {"sub"}),
    ("mul_param_broadcast", lambda s, x: x * s.g, dict(g=nn.Parameter(randn(3, 1, 1))), [(2, 3, 4, 4)], {"mul"}),
    ("div_scalar", lambda s, x: x / 3, {}, [(2, 3, 4)], {"div"}),
    ("div_tensor", lambda s, x, y: x / (y * y + 1), {}, [(2, 3, 4), (2, 3, 4)], {"div"}),
    ("add_lifted_constant", lambda s, x: x + torch.tensor([1.0, -2.0, 0.5]).view(3, 1, 1), {},
     [(2, 3, 2, 2)], {"add"}),
    ("add_ones_full", lambda s, x: x + torch.ones(3, 1, 1) - torch.full((1, 2), 0.25), {}, [(2, 3, 2, 2)],
     {"add", "sub"}),
    # shape manipulation
    ("cat", lambda s, x, y: torch.cat([x, y, x * 2], 1), {}, [(1, 2, 3, 3), (1, 4, 3, 3)], {"concat"}),
    ("chunk_uneven", lambda s, x: torch.chunk(x, 3, dim=1)[2] * torch.chunk(x, 3, dim=1)[0][:, :1], {},
     [(1, 7, 2, 2)], {"split"}),
    ("split_sizes", lambda s, x: tuple(torch.split(x, [2, 5], dim=1)), {}, [(1, 7, 2, 2)], {"split"}),
    ("split_size", lambda s, x: torch.split(x, 2, dim=3), {}, [(1, 2, 2, 5)], {"split"}),
    ("slice_steps", lambda s, x: x[:, :, 1:7:2, ::3], {}, [(1, 2, 8, 7)], {"slice"}),
    ("narrow_negative", lambda s, x: torch.narrow(x, 2, -3, 2), {}, [(1, 2, 6, 3)], {"slice"}),
    ("select", lambda s, x: x[:, 1] + x[:, -1], {}, [(2, 3, 4)], {"slice", "reshape"}),
    ("flatten_1", lambda s, x: torch.flatten(x, 1), {}, [(2, 3, 4, 5)], set()),
    ("flatten_all", lambda s, x: torch.flatten(x), {}, [(2, 3, 4)], {"reshape"}),
    ("flatten_mid", lambda s, x: torch.flatten(x, 1, 2), {}, [(2, 3, 4, 5)], {"reshape"}),
    ("view_reshape", lambda s, x: x.view(2, 12, 5).reshape(-1, 6), {}, [(2, 3, 4, 5)], {"reshape"}),
    ("unsqueeze_squeeze", lambda s, x: x.unsqueeze(1).squeeze(), {}, [(2, 3, 1)], {"reshape"}),
    ("permute", lambda s, x: x.permute(0, 2, 3, 1), {}, [(2, 3, 4, 5)], {"transpose"}),
    ("transpose", lambda s, x: x.transpose(1, -1), {}, [(2, 3, 4, 5)], {"transpose"}),
    ("t", lambda s, x: x.t(), {}, [(3, 5)], {"transpose"}),
    ("channel_shuffle", lambda s, x: s.cs(x), dict(cs=nn.ChannelShuffle(3)), [(1, 6, 2, 3)], {"channel_shuffle"}),
    ("shuffle_view_transpose", lambda s, x: shuffle_by_view(x), {}, [(1, 6, 2, 3)], {"reshape", "transpose"}),
    ("pad_constant_asym", lambda s, x: F.pad(x, (1, 2, 0, 3), value=0.5), {}, [(1, 2, 3, 4)], {"pad"}),
    ("pad_crop", lambda s, x: F.pad(x, (-1, 2, 1, -2)), {}, [(1, 2, 5, 4)], {"pad"}),
    ("pad_reflect", lambda s, x: F.pad(x, (2, 1, 1, 2), mode="reflect"), {}, [(1, 2, 4, 5)], {"pad"}),
    ("pad_replicate", lambda s, x: F.pad(x, (2, 1, 3, 0), mode="replicate"), {}, [(1, 2, 4, 5)], {"pad"}),
    # dense
    ("linear", lambda s, x: s.l(x), dict(l=nn.Linear(6, 4)), [(3, 6)], {"gemm"}),
    ("linear_nobias_3d", lambda s, x: s.l(x), dict(l=nn.Linear(6, 4, bias=False)), [(2, 5, 6)], {"gemm"}),
    ("linear_1d", lambda s, x: s.l(x), dict(l=nn.Linear(6, 4)), [(6,)], {"gemm"}),
    ("addmm", lambda s, b, x, w: torch.addmm(b, x, w, beta=0.5, alpha=2.0), {}, [(4,), (3, 5), (5, 4)], {"gemm"}),
    ("mm", lambda s, x, y: torch.mm(x, y), {}, [(3, 5), (5, 4)], {"matmul"}),
    ("matmul_batched", lambda s, x, y: x @ y, {}, [(2, 3, 4), (4, 5)], {"matmul"}),
    ("bmm", lambda s, x, y: torch.bmm(x, y), {}, [(2, 3, 4), (2, 4, 5)], {"matmul"}),
    ("softmax_channels", lambda s, x: torch.softmax(x * 3, 1), {}, [(2, 4, 3, 3)], {"softmax"}),
    ("softmax_last", lambda s, x: F.softmax(x, -1), {}, [(2, 10)], {"softmax"}),
    # resize
    ("nearest_x2", lambda s, x: F.interpolate(x, scale_factor=2, mode="nearest"), {}, [(1, 2, 3, 4)], {"resize"}),
    ("nearest_half", lambda s, x: F.interpolate(x, scale_factor=0.5, mode="nearest"), {}, [(1, 2, 8, 6)], {"resize"}),
    ("nearest_size", lambda s, x: F.interpolate(x, size=(6, 10), mode="nearest"), {}, [(1, 2, 3, 4)], {"resize"}),
    ("nearest_exact_x2", lambda s, x: F.interpolate(x, scale_factor=2, mode="nearest-exact"), {},
     [(1, 2, 3, 4)], {"resize"}),
    ("nearest_exact_size", lambda s, x: F.interpolate(x, size=(5, 7), mode="nearest-exact"), {},
     [(1, 2, 3, 4)], {"resize"}),
    ("bilinear_x2", lambda s, x: F.interpolate(x, scale_factor=2, mode="bilinear"), {}, [(1, 2, 3, 4)], {"resize"}),
    ("bilinear_size_align", lambda s, x: F.interpolate(x, size=(7, 5), mode="bilinear", align_corners=True), {},
     [(1, 2, 3, 4)], {"resize"}),
    ("bilinear_down", lambda s, x: F.interpolate(x, size=(3, 3), mode="bilinear"), {}, [(1, 2, 8, 8)], {"resize"}),
    ("bilinear_to_1x1", lambda s, x: F.interpolate(x, size=(1, 1), mode="bilinear"), {}, [(1, 2, 4, 6)],
     {"resize"}),
    # removed at import and multi-input/output plumbing
    ("identities", lambda s, x: s.seq(x).clone().contiguous().detach() * 2,
     dict(seq=nn.Sequential(nn.Dropout(0.5), nn.Identity())), [(2, 3)], {"mul"}),
    ("two_in_two_out", lambda s, x, y: (torch.relu(x + y), x * y), {}, [(2, 3), (2, 3)], {"relu", "mul"}),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_op_matches_torch(case):
    _, fn, members, shapes, ops = case
    torch.manual_seed(0)
    inputs = [randn(*s, scale=2.0) for s in shapes]
    assert_matches_torch(Fn(fn, **members), inputs, ops)


def test_passthrough_ops_disappear():
    g = import_torch(Fn(lambda s, x: s.d(x).clone().contiguous() * 2, d=nn.Dropout(0.3)), (randn(2, 3),))
    assert [n.op for n in g.nodes] == ["mul"]


def test_integer_arithmetic_is_exact():
    x = torch.randint(-100, 100, (2, 3, 4), dtype=torch.int64)
    g = assert_matches_torch(Fn(lambda s, x: (x + 3) * 2 - x), [x], {"add", "mul", "sub"})
    assert all(c.dtype.name == "i64" for c in g.constants())


@settings(max_examples=15, deadline=None)
@given(kind=st.sampled_from(["max", "avg"]), k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       s=st.tuples(st.integers(1, 3), st.integers(1, 3)), ceil=st.booleans(), include_pad=st.booleans(),
       hw=st.tuples(st.integers(4, 9), st.integers(4, 9)), data=st.data())
def test_pool_configs_match_torch(kind, k, s, ceil, include_pad, hw, data):
    p = (data.draw(st.integers(0, k[0] // 2)), data.draw(st.integers(0, k[1] // 2)))
    if kind == "max":
        fn = lambda m, x: F.max_pool2d(x, k, s, p, ceil_mode=ceil)  # noqa: E731
    else:
        fn = lambda m, x: F.avg_pool2d(x, k, s, p, ceil_mode=ceil, count_include_pad=include_pad)  # noqa: E731
    torch.manual_seed(1)
    assert_matches_torch(Fn(fn), [randn(1, 2, *hw)], {f"{kind}_pool2d"})


@settings(max_examples=12, deadline=None)
@given(k=st.tuples(st.integers(1, 4), st.integers(1, 4)), s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       d=st.tuples(st.integers(1, 2), st.integers(1, 2)), g=st.sampled_from([1, 2, 4]),
       pad=st.tuples(st.integers(0, 2), st.integers(0, 2)), bias=st.booleans())
def test_conv_configs_match_torch(k, s, d, g, pad, bias):
    torch.manual_seed(2)
    conv = nn.Conv2d(4, 8, k, s, pad, d, groups=g, bias=bias)
    assert_matches_torch(Fn(lambda m, x: m.c(x), c=conv), [randn(1, 4, 9, 10)], {"conv2d"})


# ---- names, sharing ---------------------------------------------------------------
def test_names_come_from_the_module():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), randomize_batch_norms(nn.BatchNorm2d(4)), nn.ReLU())
    g = import_torch(net, (randn(1, 3, 5, 5),))
    assert {c.name for c in g.constants()} == {"0.weight", "0.bias", "1.weight", "1.bias",
                                               "1.running_mean", "1.running_var"}
    assert [n.meta.get("module") for n in g.nodes] == ["0", "1", "2"]
    assert g.inputs[0].name == "x" or len(g.inputs) == 1


def test_tied_parameter_is_one_constant():
    a, b = nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1)
    b.weight = a.weight  # the same nn.Parameter registered in two modules
    g = assert_matches_torch(Fn(lambda s, x: s.b(torch.relu(s.a(x))), a=a, b=b), [randn(1, 3, 6, 6)])
    convs = [n for n in g.nodes if n.op == "conv2d"]
    assert len(convs) == 2 and convs[0].inputs[1] is convs[1].inputs[1]
    assert convs[0].inputs[2] is not convs[1].inputs[2]  # biases differ


def test_load_api_and_training_flag_restored():
    net = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5)).train()
    g = edgecc.load(net, (randn(2, 4),))
    assert net.training and [n.op for n in g.nodes] == ["gemm"]


# ---- errors -----------------------------------------------------------------------
class ManyUnsupported(nn.Module):
    def forward(self, x):
        a = torch.floor(x)
        b = F.conv_transpose2d(x, torch.ones(2, 2, 2, 2))
        c = F.avg_pool2d(x, 2, divisor_override=3)
        return a.sum() + b.sum() + c.sum() + torch.floor(x * 2).sum()


def test_unsupported_ops_are_all_listed():
    with pytest.raises(UnsupportedOpsError) as ei:
        import_torch(ManyUnsupported(), (randn(1, 2, 4, 4),))
    found = {op: (why, names) for op, why, names in ei.value.unsupported}
    assert found["aten.floor.default"][1] == ["floor", "floor_1"]
    assert "transposed" in found["aten.conv_transpose2d.input"][0]
    assert "divisor_override=3" in found["aten.avg_pool2d.default"][0]
    assert len(found["aten.sum.default"][1]) == 4
    msg = str(ei.value)
    for name in ("floor", "floor_1", "conv_transpose2d", "avg_pool2d", "sum_1"):
        assert name in msg


@pytest.mark.parametrize("fn, shape, dtype, needle", [
    (lambda s, x: F.pad(x, (1, 1, 1, 1), mode="circular"), (1, 2, 4, 4), torch.float32, "circular"),
    (lambda s, x: x * 2.5, (2, 3), torch.int64, "promotion"),
    (lambda s, x: F.max_pool2d(x, 2, return_indices=True)[1].float(), (1, 2, 4, 4), torch.float32, "indices"),
    (lambda s, x: s.c(x), (3, 6, 6), torch.float32, "rank-4"),  # unbatched conv input
    (lambda s, x: s.b(x), (2, 3, 4, 4), torch.float32, "running statistics"),
])
def test_unsupported_variants_name_the_problem(fn, shape, dtype, needle):
    m = Fn(fn, c=nn.Conv2d(3, 2, 3), b=nn.BatchNorm2d(3, track_running_stats=False))
    x = (randn(*shape) * 10).to(dtype)
    with pytest.raises(UnsupportedOpsError, match=needle):
        import_torch(m, (x,))


@pytest.mark.parametrize("module, inputs, needle", [
    (nn.Linear(8, 4), torch.randn(2, 8), "single Tensor"),
    (nn.Linear(8, 4), [torch.randn(2, 8), 3], r"example_inputs\[1\] is a int"),
    (nn.Linear(8, 4), "x", "tuple of tensors"),
    (nn.Linear(8, 4), (torch.randn(2, 8).half(),), "float16"),
    ("not a module", (torch.randn(2, 8),), "torch.nn.Module"),
])
def test_bad_example_inputs(module, inputs, needle):
    with pytest.raises(ModelLoadError, match=needle):
        import_torch(module, inputs)


@pytest.mark.parametrize("inputs", [(torch.randn(2, 3),), (torch.randn(2, 8), torch.randn(2, 8))],
                         ids=["wrong_shape", "wrong_count"])
def test_export_failure_is_model_load_error(inputs):
    with pytest.raises(ModelLoadError, match="torch.export failed for Linear") as ei:
        import_torch(nn.Linear(8, 4), inputs)
    assert ei.value.__cause__ is not None
    assert isinstance(ei.value, EdgeccError)
