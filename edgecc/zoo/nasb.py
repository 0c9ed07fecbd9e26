"""NASB cell and NASB-ResNet18 (thesis ch.4, Fig 4.2c).

A NASB cell with nodes x_0..x_n computes, for i = 1..n,
    x_i = BN(BConv_i(x_{i-1})) + BN(op_i(x_{p(i)}))
where BConv_i is the backbone binary 3x3 conv (sign activations) and (op_i, p(i)) is the
searched edge. One cell replaces one ResNet-18 stage (4 binary convs, so n = 4 and
x_0 is the stage input). Bi-Real is the special case p(i) = i-1, op = identity.

The found edges: the thesis text (~line 1398) gives only the totals for NASB-ResNet18,
"twelve max pooling and four identity operations" over four cells; the figure with the
per-node predecessors is not in the text. DEFAULT_GENOTYPE is therefore our assumption:
each cell has an identity edge at node 1 (where the stage downsamples, as in Bi-Real) and
3x3 max-pool edges from the previous node at nodes 2-4 (3 x 4 = 12 max pools, 4 identities).
Any (op, predecessor) list can be passed instead.

Conventions: identity and zero edges have no BN (as Bi-Real's identity shortcut; the thesis
counts 2*C_out extra BN parameters per max-pool edge only). When x_{p(i)} has a different
shape than x_i, the edge first applies the Bi-Real downsample (AvgPool + 1x1 conv + BN,
full precision), then the op. Binary-conv edges use sign activations like the backbone.
"""
from torch import nn

from .binary import AvgPoolProjection, SignConvBN
from .bireal import binary_stem


class Zero(nn.Module):
    def forward(self, x):
        return x * 0.0


def make_op(name, channels):
    """Table 4.1 operations, all stride 1 and shape preserving. Returns (module, needs_bn)."""
    if name == "zero":
        return Zero(), False
    if name == "identity":
        return nn.Identity(), False
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False), True
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride=1, padding=1), True
    convs = {"bconv_1x1": (1, 1), "bconv_3x3": (3, 1), "bconv_5x5": (5, 1),
             "dil_bconv_1x1": (1, 2), "dil_bconv_3x3": (3, 2), "dil_bconv_5x5": (5, 2)}
    if name in convs:
        k, d = convs[name]
        return SignConvBN(channels, channels, kernel_size=k, dilation=d), False  # BN already inside
    raise ValueError(f"unknown NASB op {name!r}: expected one of zero, identity, avg_pool_3x3, "
                     f"max_pool_3x3, {', '.join(convs)}")


OPS = ("zero", "avg_pool_3x3", "max_pool_3x3", "identity", "bconv_1x1", "bconv_3x3", "bconv_5x5",
       "dil_bconv_1x1", "dil_bconv_3x3", "dil_bconv_5x5")

DEFAULT_GENOTYPE = (("identity", 0), ("max_pool_3x3", 1), ("max_pool_3x3", 2), ("max_pool_3x3", 3))
BIREAL_GENOTYPE = (("identity", 0), ("identity", 1), ("identity", 2), ("identity", 3))


class NASBEdge(nn.Module):
    """BN(op(x_p)), with a full-precision downsample first when x_p's shape differs."""

    def __init__(self, op, cin, cout, stride):
        super().__init__()
        self.adapt = AvgPoolProjection(cin, cout, stride) if (stride != 1 or cin != cout) else nn.Identity()
        self.op, needs_bn = make_op(op, cout)
        self.bn = nn.BatchNorm2d(cout) if needs_bn else nn.Identity()

    def forward(self, x):
        return self.bn(self.op(self.adapt(x)))


class NASBCell(nn.Module):
    def __init__(self, cin, cout, stride, genotype=DEFAULT_GENOTYPE):
        super().__init__()
        self.genotype = tuple((str(op), int(p)) for op, p in genotype)
        bodies, edges = [], []
        for i, (op, p) in enumerate(self.genotype, start=1):
            if not 0 <= p < i:
                raise ValueError(f"NASB node {i}: predecessor {p} must be an earlier node (0..{i - 1})")
            bodies.append(SignConvBN(cin if i == 1 else cout, cout, stride if i == 1 else 1))
            # node 0 is the cell input (cin channels, full resolution); later nodes are at the output shape
            edges.append(NASBEdge(op, cin if p == 0 else cout, cout, stride if p == 0 else 1))
        self.bodies = nn.ModuleList(bodies)
        self.edges = nn.ModuleList(edges)

    def forward(self, x):
        nodes = [x]
        for i, (body, edge) in enumerate(zip(self.bodies, self.edges), start=1):
            nodes.append(body(nodes[i - 1]) + edge(nodes[self.genotype[i - 1][1]]))
        return nodes[-1]


class NASBResNet18(nn.Module):
    """Four NASB cells (one per ResNet-18 stage) between a full-precision stem and FC."""

    def __init__(self, num_classes=1000, stem="imagenet", width=64, genotypes=None):
        super().__init__()
        genotypes = genotypes or [DEFAULT_GENOTYPE] * 4
        if len(genotypes) != 4:
            raise ValueError(f"NASB-ResNet18 needs 4 cell genotypes, got {len(genotypes)}")
        self.stem = binary_stem(stem, width)
        cells, cin = [], width
        for s, genotype in enumerate(genotypes):
            cout = width * 2 ** s
            cells.append(NASBCell(cin, cout, 2 if s > 0 else 1, genotype))
            cin = cout
        self.cells = nn.Sequential(*cells)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.cells(self.stem(x))).flatten(1))


def nasb_resnet18(**kw):
    return NASBResNet18(**kw)
