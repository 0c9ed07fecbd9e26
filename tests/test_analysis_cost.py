"""Binary cost model (edgecc.compiler.passes.cost_model) against thesis Tables 3.7, 5.4, 5.5.

The binary zoo models (edgecc.zoo.bireal / ua) compute sign() with torch.where, which the
torch frontend does not import, so the table sweeps build the same architectures directly
as IR graphs (`ArchBuilder` below, written from the zoo docstrings and the thesis). One
cross-check imports the zoo's Bi-Real ResNet18 / ResNet18 (binary modules swapped for
float ones of the same shape) through edgecc.load and compares every number. Analyses
only use shapes, so the weights are zeros.
"""
from __future__ import annotations

import numpy as np
import pytest

from edgecc.compiler.ir import Graph
from edgecc.compiler.passes.cost_model import (CH5, FP32, FULL_PRECISION, CostPolicy, binary,
                                               cost_model, integer, node_precision, pa_policy)
from edgecc.errors import InputError


# ---- architectures as IR graphs (mirrors edgecc.zoo resnet / bireal / ua) --------
class ArchBuilder:
    def __init__(self, name, shape):
        self.g = Graph(name)
        self.x = self.g.add_input("input", shape)
        self.k = 0

    def _name(self, base):
        self.k += 1
        return f"{base}{self.k}"

    def node(self, op, inputs, **attrs):
        return self.g.add_node(op, inputs, attrs, name=self._name(op)).outputs[0]

    def const(self, shape):
        return Graph.constant(self._name("w"), np.zeros(shape, np.float32))

    def conv(self, x, cout, k, stride=1, pad=None, bias=False, groups=1):
        pad = k // 2 if pad is None else pad
        ins = [x, self.const((cout, x.shape[1] // groups, k, k))]
        if bias:
            ins.append(self.const((cout,)))
        return self.node("conv2d", ins, strides=stride, pads=pad, groups=groups)

    def bn(self, x):
        c = x.shape[1]
        return self.node("batch_norm", [x] + [self.const((c,)) for _ in range(4)])

    def fc(self, x, classes):
        x = self.node("reshape", [self.node("global_avg_pool", [x])], shape=(x.shape[0], x.shape[1]))
        return self.node("gemm", [x, self.const((classes, x.shape[1])), self.const((classes,))],
                         trans_b=True)

    def finish(self, y):
        self.g.outputs = [y]
        return self.g

    # binary units: BN(BConv(sign(x))), AvgPool -> 1x1 -> BN projection
    def sign_conv_bn(self, x, cout, stride=1):
        return self.bn(self.conv(self.node("sign", [x]), cout, 3, stride))

    def projection(self, x, cout, stride):
        if stride > 1:
            x = self.node("avg_pool2d", [x], kernel=stride)
        return self.bn(self.conv(x, cout, 1))

    def binary_stem(self, stem, width):
        if stem == "imagenet":
            y = self.bn(self.conv(self.x, width, 7, 2, 3))
            return self.node("max_pool2d", [y], kernel=3, strides=2, pads=1)
        return self.bn(self.conv(self.x, width, 3))


def input_shape(dataset, batch=1):
    return (batch, 3, 224, 224) if dataset == "imagenet" else (batch, 3, 32, 32)


def bireal_graph(depth=18, dataset="imagenet", width=64, batch=1):
    stages = {18: (4, 4, 4, 4), 34: (6, 8, 12, 6)}[depth]
    b = ArchBuilder(f"bireal_resnet{depth}", input_shape(dataset, batch))
    x = b.binary_stem(dataset, width)
    for s, n in enumerate(stages):
        for i in range(n):
            stride = 2 if s > 0 and i == 0 else 1
            cout = width * 2 ** s
            body = b.sign_conv_bn(x, cout, stride)
            short = b.projection(x, cout, stride) if stride > 1 or x.shape[1] != cout else x
            x = b.node("add", [body, short])
    return b.finish(b.fc(x, 1000 if dataset == "imagenet" else 100))


UA_LAYOUTS = {21: (3, (1, 1, 1, 1)), 37: (4, (1, 1, 1, 1)), 69: (5, (1, 1, 1, 1)),
              41: (3, (2, 2, 3, 2)), 77: (4, (2, 2, 3, 2)), 149: (5, (2, 2, 3, 2))}


def ua_graph(depth, width, dataset="imagenet", batch=1):
    """UA-ResNet (eq 5.1-5.2) with FractalNet's merged joins, like edgecc.zoo.ua."""
    columns, blocks = UA_LAYOUTS[depth]
    b = ArchBuilder(f"ua_resnet{depth}", input_shape(dataset, batch))

    def column_outputs(x, c):
        if c == 1:
            return [b.node("add", [b.sign_conv_bn(x, x.shape[1]), x])]
        return column_outputs(fractal(x, c - 1), c - 1) + column_outputs(x, 1)

    def fractal(x, c):
        cols = column_outputs(x, c)
        out = cols[0]
        for col in cols[1:]:
            out = b.node("add", [out, col])
        return b.node("mul", [out, Graph.constant(b._name("k"),
                                                  np.float32(1.0 / len(cols)).reshape(()))])

    x = b.binary_stem(dataset, width)
    for s, n in enumerate(blocks):
        if s > 0:
            x = b.projection(x, 2 * x.shape[1], 2)
        for _ in range(n):
            x = fractal(x, columns)
    return b.finish(b.fc(x, 1000 if dataset == "imagenet" else 100))


def resnet_graph(depth, dataset="imagenet", batch=1):
    """ResNet v1 (stride on the first 1x1 of a bottleneck), like edgecc.zoo.resnet."""
    blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}[depth]
    b = ArchBuilder(f"resnet{depth}", input_shape(dataset, batch))
    if dataset == "imagenet":
        x = b.node("relu", [b.bn(b.conv(b.x, 64, 7, 2, 3))])
        x = b.node("max_pool2d", [x], kernel=3, strides=2, pads=1)
    else:
        x = b.node("relu", [b.bn(b.conv(b.x, 64, 3))])
    for s, n in enumerate(blocks):
        planes = 64 * 2 ** s
        for i in range(n):
            stride = 2 if s > 0 and i == 0 else 1
            cout = planes * (4 if depth >= 50 else 1)
            short = b.bn(b.conv(x, cout, 1, stride)) if stride > 1 or x.shape[1] != cout else x
            if depth >= 50:
                y = b.node("relu", [b.bn(b.conv(x, planes, 1, stride))])
                y = b.node("relu", [b.bn(b.conv(y, planes, 3))])
                y = b.bn(b.conv(y, cout, 1))
            else:
                y = b.node("relu", [b.bn(b.conv(x, planes, 3, stride))])
                y = b.bn(b.conv(y, planes, 3))
            x = b.node("relu", [b.node("add", [y, short])])
    return b.finish(b.fc(x, 1000 if dataset == "imagenet" else 100))


# ---- the convention of thesis ch.5 ------------------------------------------------
def test_bireal_resnet18_table_5_4():
    """32*(9408+172032+512000) + 10985472 bits = 33.18 Mbit; 1.640e8 FLOPs."""
    r = cost_model(bireal_graph(18), CH5)
    assert r.fp_params == 9408 + 172032 + 512000
    assert r.binary_params == 10985472
    assert r.storage_bits == 32 * (9408 + 172032 + 512000) + 10985472
    assert round(r.storage_mbit, 2) == 33.18
    assert f"{r.flops:.3e}" == "1.640e+08"
    # the FC bias and BN are not counted, the 1x1 downsample convs are fp
    kinds = {c.name: c.precision for c in r.layers}
    assert sum(p == "fp32" for p in kinds.values()) == 1 + 3 + 1


# Table 5.4 (ImageNet) and 5.5 (CIFAR-100): (model, dataset, storage Mbit, FLOPs)
TABLE_5_ROWS = [
    ("bireal18", 64, "imagenet", 33.18, 1.64e8), ("ua21", 53, "imagenet", 32.63, 1.46e8),
    ("ua37", 41, "imagenet", 32.24, 1.28e8), ("ua69", 31, "imagenet", 32.16, 1.14e8),
    ("bireal34", 64, "imagenet", 43.28, 1.93e8), ("ua41", 48, "imagenet", 42.61, 1.64e8),
    ("ua77", 35, "imagenet", 41.53, 1.44e8),
    ("bireal18", 64, "cifar", 18.18, 1.67e7), ("ua21", 50, "cifar", 18.07, 1.53e7),
    ("ua37", 36, "cifar", 17.57, 1.42e7), ("ua69", 26, "cifar", 17.63, 1.38e7),
    ("bireal34", 64, "cifar", 28.28, 2.61e7), ("ua41", 45, "cifar", 27.64, 2.28e7),
    ("ua77", 32, "cifar", 27.94, 2.24e7), ("ua149", 22, "cifar", 26.35, 2.08e7),
]


def table5_graph(model, width, dataset, batch=1):
    depth = int(model.lstrip("bireal").lstrip("ua"))
    if model.startswith("bireal"):
        return bireal_graph(depth, dataset, width, batch)
    return ua_graph(depth, width, dataset, batch)


@pytest.mark.parametrize("model,width,dataset,mbit,flops", TABLE_5_ROWS)
def test_table_5_4_5_5_storage_and_flops(model, width, dataset, mbit, flops):
    r = cost_model(table5_graph(model, width, dataset), CH5)
    assert round(r.storage_mbit, 2) == mbit
    assert float(f"{r.flops:.2e}") == flops


# ---- thesis ch.3 Table 3.7 ---------------------------------------------------------
# (depth, PA Mbit, PA FLOPs, fp Mbit, fp FLOPs)
TABLE_3_7 = [(18, 61.6, 6.74e8, 374.1, 1.81e9), (34, 85.0, 1.27e9, 697.3, 3.66e9),
             (50, 161.3, 1.44e9, 817.8, 3.86e9)]


@pytest.mark.parametrize("depth,pa_mbit,pa_flops,fp_mbit,fp_flops", TABLE_3_7)
def test_table_3_7_full_precision_rows(depth, pa_mbit, pa_flops, fp_mbit, fp_flops):
    """The fp rows count conv + FC weights, FC bias and BN scale/shift (PyTorch's
    parameter count), 32 bits each; FLOPs = MACs of ResNet v1."""
    r = cost_model(resnet_graph(depth), FULL_PRECISION)
    assert r.binary_params == 0
    if depth == 34:  # table: 697.3; 21,797,672 params x 32 = 697.53 Mbit (0.03% apart,
        # the other two rows round exactly; the table seems to use 21.79M params)
        assert abs(r.storage_mbit - fp_mbit) / fp_mbit < 5e-4
    else:
        assert round(r.storage_mbit, 1) == fp_mbit
    assert float(f"{r.flops:.2e}") == fp_flops


@pytest.mark.parametrize("depth,pa_mbit,pa_flops,fp_mbit,fp_flops", TABLE_3_7)
def test_table_3_7_pa_rows(depth, pa_mbit, pa_flops, fp_mbit, fp_flops):
    """PA-ResNet with M = 4 weight bases, N = 5 activation bases, downsample binarized.

    Storage: the convention that reproduces the table is 4 bits per binary weight plus
    32 bits per fp param, the fp params being first conv, FC weight and BN scale/shift
    (FC bias not counted): ResNet18 61.62 -> 61.6, ResNet50 161.32 -> 161.3 Mbit.
    Table inconsistency: the ResNet34 row (85.0) is the binary bits alone, 4 x 21,258,240
    = 85.03 Mbit; with the same fp layers as the other rows it is 102.26 Mbit. (ABC-ResNet34,
    106.3 = 5 x 21,258,240 bits, is counted the same way.)

    FLOPs: with M*N binary MACs per MAC the model gives 6.48e8 / 1.23e9 / 1.29e9, 4%, 3%
    and 11% below the table's 6.74e8 / 1.27e9 / 1.44e9. No consistent convention
    reproduces that column: it is identical to ABC-Net's (M = N = 5) for every depth,
    and the ResNet50 value exceeds fp MACs + 20 x (all other MACs) / 64 = 1.288e9 by
    ~150M, so it must count real-valued work the table does not specify."""
    r = cost_model(resnet_graph(depth), pa_policy(4, 5, count_bn="affine"))
    if depth == 34:
        assert round(r.binary_bits / 1e6, 1) == pa_mbit
        assert round(r.storage_mbit, 2) == 102.26
    else:
        assert round(r.storage_mbit, 1) == pa_mbit
    expected = {18: 6.48e8, 34: 1.23e9, 50: 1.29e9}[depth]
    assert float(f"{r.flops:.3g}") == expected
    assert r.flops < pa_flops  # documented gap, see above
    # every conv but the first is binary (downsample too), the FC is fp
    precisions = [c.precision for c in r.layers if c.op in ("conv2d", "gemm")]
    assert precisions[0] == precisions[-1] == "fp32"
    assert set(precisions[1:-1]) == {"binary M=4 N=5"}


def test_ch5_keeps_only_stem_fc_and_downsample_fp_in_resnet50():
    g = resnet_graph(50)
    r = cost_model(g, CH5)
    fp = [c.name for c in r.layers if c.precision == "fp32"]
    # first conv, 4 downsample projections (not the bottleneck 1x1s), FC
    assert len(fp) == 6
    # 118,013,952 (stem) + 2,048,000 (FC) + 51,380,224 + 3 x 102,760,448 (projections)
    assert r.fp_macs == 118013952 + 2048000 + 51380224 + 3 * 102760448


def test_overrides_int_and_meta_precision():
    g = bireal_graph(18, "cifar")
    convs = [n for n in g.nodes if n.op == "conv2d"]
    base = cost_model(g, CH5)
    # an 8-bit override of one binary conv: its weights move from 1 to 8 bits
    target = convs[1]
    w = target.inputs[1].type.numel
    r = cost_model(g, CostPolicy(overrides={target.name: integer(8)}))
    assert r.int_params == {8: w} and r.binary_params == base.binary_params - w
    assert r.storage_bits == base.storage_bits + 7 * w
    assert r.int_macs == {8: next(c.macs for c in base.layers if c.name == target.name)}
    # a node that knows its precision (a later binary/PA IR) wins over the policy
    target.meta["precision"] = {"kind": "binary", "bits": 1, "weight_bases": 3, "act_bases": 2}
    assert node_precision(target, CH5, graph=g) == binary(3, 2)
    r2 = cost_model(g, CH5)
    assert r2.binary_bits == base.binary_bits + 2 * w
    with pytest.raises(InputError, match="unknown node"):
        cost_model(g, CostPolicy(overrides={"nope": FP32}))
    with pytest.raises(InputError, match="count_bn"):
        CostPolicy(count_bn="some")
    with pytest.raises(InputError, match="bits=1"):
        from edgecc.compiler.passes.cost_model import Precision
        Precision("binary", 2)


def test_shared_weight_stored_once():
    """DACNN-style sharing: two convs read one weight; storage counts it once, MACs twice."""
    b = ArchBuilder("shared", (1, 8, 16, 16))
    w = b.const((8, 8, 3, 3))
    y = b.node("conv2d", [b.x, w], pads=1)
    y = b.node("conv2d", [y, w], pads=1)
    g = b.finish(y)
    r = cost_model(g, CostPolicy(fp_first_conv=False))
    assert r.binary_params == 576 and r.binary_macs == 2 * 576 * 256


def test_zoo_import_cross_check():
    """The IR builders above match the zoo models imported through the torch frontend
    (binary modules swapped for float ones of the same shape: cost only reads shapes)."""
    torch = pytest.importorskip("torch")
    from torch import nn

    import edgecc
    from edgecc import zoo
    from edgecc.zoo.binary import BinaryActivation, BinaryConv2d

    class Sign(nn.Module):
        def forward(self, x):
            return torch.sign(x)

    def floatify(m):
        for name, ch in list(m.named_children()):
            if isinstance(ch, BinaryActivation):
                setattr(m, name, Sign())
            elif isinstance(ch, BinaryConv2d):
                setattr(m, name, nn.Conv2d(ch.in_channels, ch.out_channels, ch.kernel_size,
                                           ch.stride, ch.padding, bias=False))
            else:
                floatify(ch)
        return m

    x = torch.zeros(1, 3, 224, 224)
    g = edgecc.load(floatify(zoo.get("bireal_resnet18")), (x,))
    mine, theirs = cost_model(bireal_graph(18), CH5), cost_model(g, CH5)
    for k in ("fp_params", "binary_params", "storage_bits", "fp_macs", "binary_macs"):
        assert getattr(mine, k) == getattr(theirs, k), k
    g = edgecc.load(zoo.get("resnet18"), (x,))
    mine, theirs = cost_model(resnet_graph(18), FULL_PRECISION), cost_model(g, FULL_PRECISION)
    assert mine.storage_bits == theirs.storage_bits and mine.fp_macs == theirs.fp_macs
