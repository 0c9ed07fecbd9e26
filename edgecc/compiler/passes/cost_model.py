"""Binary/integer-network cost model over the IR (thesis ch.3-5): an analysis, no rewrite.

Every weighted layer (conv2d, gemm, matmul with a constant operand) gets a precision from
`node_precision(node)`:
  * fp32: its weights cost 32 bits each, its MACs are full-precision MACs;
  * binary with M weight bases and N activation bases (PA, ABC-Net; Bi-Real is M = N = 1):
    each weight is stored as M bits, and one MAC becomes M*N binary MACs
    (conv(W, A) = sum_ij alpha_i beta_j conv(T_i, V_j), thesis eq 3.15-3.19);
  * int with b bits: b bits per weight, MACs counted per bit-width.
Storage bits = 32 x fp params + binary bits + b x int params.
FLOPs (the papers' convention) = fp MACs + binary MACs / 64 (64-way AND/XNOR + popcount).
Integer MACs are reported separately, not folded into FLOPs.

Since the IR has no binary ops yet, a "scheme" is a `CostPolicy` applied to a float graph:
every conv/gemm is binary (or int) except the layers the convention keeps full precision,
plus per-node overrides. A later pass or IR that knows a node's precision sets
`node.meta["precision"] = {"kind": ..., "bits": ..., "weight_bases": ..., "act_bases": ...}`
and that wins over the policy.

Conventions that differ between the thesis chapters:
  * ch.4-5 (`CH5`): first conv, last FC and the 1x1 downsample/transition convs stay fp;
    BN parameters and FC bias are not counted (Bi-Real ResNet18 = 33.18 Mbit, 1.640e8).
  * ch.3 PA (`pa_policy(M, N)`): first conv and last FC fp, the 1x1 downsample is
    binarized, M bits per binary weight, M*N binary MACs per MAC.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field

from ...errors import InputError
from ..analysis import node_macs
from ..ir import Graph, Node

WEIGHTED_OPS = ("conv2d", "gemm", "matmul")
BN_MODES = ("none", "affine", "all")


@dataclass(frozen=True)
class Precision:
    kind: str               # "fp32" | "binary" | "int"
    bits: int = 32          # stored bits per weight element and base
    weight_bases: int = 1   # M: binary weight planes
    act_bases: int = 1      # N: binary activation planes

    def __post_init__(self):
        if self.kind not in ("fp32", "binary", "int"):
            raise InputError(f"precision kind {self.kind!r}: expected fp32, binary or int")
        if self.bits < 1 or self.weight_bases < 1 or self.act_bases < 1:
            raise InputError(f"precision {self}: bits and bases must be >= 1")
        if self.kind == "binary" and self.bits != 1:
            raise InputError(f"binary precision must have bits=1, got {self.bits}")

    def __str__(self) -> str:
        if self.kind == "binary":
            return "binary" if self.weight_bases == self.act_bases == 1 else \
                f"binary M={self.weight_bases} N={self.act_bases}"
        return "fp32" if self.kind == "fp32" else f"int{self.bits}"


FP32 = Precision("fp32", 32)


def binary(weight_bases: int = 1, act_bases: int = 1) -> Precision:
    return Precision("binary", 1, weight_bases, act_bases)


def integer(bits: int) -> Precision:
    return Precision("int", bits)


@dataclass(frozen=True)
class CostPolicy:
    """Which layers get which precision, and what is counted."""
    default: Precision = binary()     # precision of every layer not kept full precision
    fp_first_conv: bool = True
    fp_last_fc: bool = True
    fp_downsample: bool = True        # 1x1 shortcut projections and pool->1x1 transitions
    fp_depthwise: bool = False        # PA MobileNet keeps depthwise convs fp (thesis 3.4)
    count_bn: str = "none"            # BN params: none | affine (scale, bias) | all (+ stats)
    count_bias: bool = False          # conv/FC biases (always fp32)
    overrides: dict = field(default_factory=dict)   # node name -> Precision

    def __post_init__(self):
        if self.count_bn not in BN_MODES:
            raise InputError(f"count_bn {self.count_bn!r}: expected one of {BN_MODES}")


CH5 = CostPolicy()
FULL_PRECISION = CostPolicy(default=FP32, count_bn="affine", count_bias=True)


def pa_policy(weight_bases: int = 4, act_bases: int = 5, **kw) -> CostPolicy:
    """Thesis ch.3 PA-Net: M weight bases, N activation bases, downsample binarized."""
    kw.setdefault("fp_downsample", False)
    return CostPolicy(default=binary(weight_bases, act_bases), **kw)


# ---- which layer is which -------------------------------------------------------
def _weight(n: Node):
    """The weight constant of a weighted layer, or None (matmul of two activations)."""
    if n.op == "conv2d" or n.op == "gemm":
        return n.inputs[1] if n.inputs[1].is_constant else None
    if n.op == "matmul":
        return next((v for v in n.inputs if v.is_constant), None)
    return None


class _Structure:
    """Graph facts the policy rules need: first conv, last FC, downsample convs."""

    THROUGH_BACK = ("avg_pool2d", "max_pool2d", "identity")
    THROUGH_FWD = ("batch_norm", "identity")

    def __init__(self, graph: Graph):
        self.users = graph.users()
        layers = [n for n in graph.nodes if n.op in WEIGHTED_OPS and _weight(n) is not None]
        convs = [n for n in layers if n.op == "conv2d"]
        self.first_conv = convs[0] if convs else None
        fcs = [n for n in layers if n.op in ("gemm", "matmul")]
        self.last_fc = fcs[-1] if fcs else None

    def _sole_user(self, v):
        us = self.users.get(id(v), [])
        return us[0][0] if len(us) == 1 else None

    def is_downsample(self, n: Node) -> bool:
        """A 1x1 conv that is a shortcut projection (it reads, through pools only, a value
        other nodes also read, and reaches an add through BN only) or a transition
        (it reads an average pool directly: AvgPool -> 1x1 of Bi-Real / UA)."""
        if n.op != "conv2d" or n.inputs[1].shape[2:] != (1, 1):
            return False
        src = n.inputs[0]
        if src.producer is not None and src.producer.op == "avg_pool2d":
            return True
        while src.producer is not None and src.producer.op in self.THROUGH_BACK \
                and len(self.users.get(id(src), [])) == 1:
            src = src.producer.inputs[0]
        if len(self.users.get(id(src), [])) < 2:
            return False
        out = n.outputs[0]
        while True:
            u = self._sole_user(out)
            if u is None:
                return False
            if u.op == "add":
                return True
            if u.op not in self.THROUGH_FWD:
                return False
            out = u.outputs[0]


def _meta_precision(n: Node) -> Precision | None:
    p = n.meta.get("precision")
    if p is None:
        return None
    if isinstance(p, Precision):
        return p
    try:
        return Precision(**p)
    except TypeError as e:
        raise InputError(f"node {n.name!r}: bad meta['precision'] {p!r}: {e}") from None


def node_precision(n: Node, policy: CostPolicy = CH5, structure: _Structure | None = None,
                   graph: Graph | None = None) -> Precision:
    """The precision of a weighted layer: meta['precision'] > override > policy rules."""
    p = _meta_precision(n)
    if p is not None:
        return p
    if n.name in policy.overrides:
        return policy.overrides[n.name]
    if structure is None:
        if graph is None:
            raise InputError("node_precision needs the graph or its structure")
        structure = _Structure(graph)
    if policy.fp_first_conv and n is structure.first_conv:
        return FP32
    if policy.fp_last_fc and n is structure.last_fc:
        return FP32
    if policy.fp_downsample and structure.is_downsample(n):
        return FP32
    if policy.fp_depthwise and n.op == "conv2d" and n.attrs["groups"] > 1 \
            and n.inputs[1].shape[1] == 1:
        return FP32
    return policy.default


# ---- the report -----------------------------------------------------------------
@dataclass
class LayerCost:
    name: str
    op: str
    precision: str
    params: int        # weight elements (each base of a binary weight is not counted twice)
    extra_params: int  # fp32 bias / BN params counted with this layer
    bits: int          # storage bits of weights + extras
    macs: int          # MACs of the float layer
    binary_macs: int   # macs * M * N for binary layers


@dataclass
class CostReport:
    graph: str
    policy: str
    layers: list[LayerCost]
    fp_params: int
    binary_params: int                 # weight elements stored in binary (x M bits each)
    int_params: dict[int, int]         # bits -> weight elements
    binary_bits: int
    storage_bits: int
    fp_macs: int
    binary_macs: int
    int_macs: dict[int, int]           # bits -> MACs
    flops: float                       # fp MACs + binary MACs / 64

    @property
    def storage_mbit(self) -> float:
        return self.storage_bits / 1e6

    def to_dict(self) -> dict:
        d = asdict(self)
        d["storage_mbit"] = self.storage_mbit
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def __str__(self) -> str:
        return format_cost(self)


def _extra_params(n: Node, policy: CostPolicy, counted: set[int]) -> int:
    """The fp32 bias of this layer (a shared one is counted once)."""
    extra = 0
    if policy.count_bias and n.op in ("conv2d", "gemm") and len(n.inputs) == 3 \
            and n.inputs[2].is_constant and id(n.inputs[2]) not in counted:
        counted.add(id(n.inputs[2]))
        extra += n.inputs[2].type.numel
    return extra


def _bn_params(n: Node, policy: CostPolicy, counted: set[int]) -> int:
    keep = {"none": 0, "affine": 2, "all": 4}[policy.count_bn]
    total = 0
    for v in n.inputs[1:1 + keep]:
        if v.is_constant and id(v) not in counted:
            counted.add(id(v))
            total += v.type.numel
    return total


def cost_model(graph: Graph, policy: CostPolicy = CH5) -> CostReport:
    """Params, MACs, storage bits and FLOPs of `graph` under `policy`."""
    unknown = set(policy.overrides) - {n.name for n in graph.nodes}
    if unknown:
        raise InputError(f"cost policy overrides name unknown node(s) {sorted(unknown)}")
    st = _Structure(graph)
    counted: set[int] = set()   # shared constants are stored once
    layers: list[LayerCost] = []
    fp_params = binary_params = binary_bits = fp_macs = bin_macs = 0
    int_params: dict[int, int] = defaultdict(int)
    int_macs: dict[int, int] = defaultdict(int)
    extra_fp = 0
    for n in graph.nodes:
        if n.op == "batch_norm":
            extra = _bn_params(n, policy, counted)
            if extra:
                extra_fp += extra
                layers.append(LayerCost(n.name, n.op, "fp32", 0, extra, 32 * extra, 0, 0))
            continue
        w = _weight(n) if n.op in WEIGHTED_OPS else None
        if w is None:
            continue
        p = node_precision(n, policy, st)
        macs = node_macs(n)
        params = 0 if id(w) in counted else w.type.numel
        counted.add(id(w))
        extra = _extra_params(n, policy, counted)
        extra_fp += extra
        if p.kind == "fp32":
            fp_params += params
            fp_macs += macs
            bits, bmacs = 32 * params, 0
        elif p.kind == "binary":
            binary_params += params
            bits, bmacs = params * p.weight_bases, macs * p.weight_bases * p.act_bases
            binary_bits += bits
            bin_macs += bmacs
        else:
            int_params[p.bits] += params
            int_macs[p.bits] += macs
            bits, bmacs = params * p.bits, 0
        layers.append(LayerCost(n.name, n.op, str(p), params, extra, bits + 32 * extra,
                                macs, bmacs))
    fp_params += extra_fp
    storage = 32 * fp_params + binary_bits + sum(b * k for b, k in int_params.items())
    return CostReport(graph.name, describe_policy(policy), layers, fp_params, binary_params,
                      dict(int_params), binary_bits, storage, fp_macs, bin_macs,
                      dict(int_macs), fp_macs + bin_macs / 64)


def describe_policy(p: CostPolicy) -> str:
    keep = [k for k, on in (("first conv", p.fp_first_conv), ("last FC", p.fp_last_fc),
                            ("1x1 downsample", p.fp_downsample),
                            ("depthwise", p.fp_depthwise)) if on]
    s = f"default {p.default}; fp32: {', '.join(keep) or 'nothing'}; BN params {p.count_bn}; " \
        f"bias {'counted' if p.count_bias else 'not counted'}"
    if p.overrides:
        s += f"; {len(p.overrides)} override(s)"
    return s


def format_cost(r: CostReport, per_layer: bool = True) -> str:
    lines = [f"cost model of {r.graph} ({r.policy})"]
    if per_layer:
        rows = [("name", "op", "precision", "params", "bits", "MACs", "binary MACs")]
        for c in r.layers:
            rows.append((c.name, c.op, c.precision, f"{c.params + c.extra_params:,}",
                         f"{c.bits:,}", f"{c.macs:,}" if c.macs else "-",
                         f"{c.binary_macs:,}" if c.binary_macs else "-"))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            lines.append("  " + "  ".join(v.rjust(w) if i >= 3 else v.ljust(w)
                                          for i, (v, w) in enumerate(zip(row, widths))).rstrip())
    ints = "".join(f", int{b}: {k:,}" for b, k in sorted(r.int_params.items()))
    lines += [
        f"params: fp32 {r.fp_params:,}, binary {r.binary_params:,} ({r.binary_bits:,} bits)"
        + ints,
        f"storage: {r.storage_mbit:.2f} Mbit",
        f"MACs: fp32 {r.fp_macs:,}, binary {r.binary_macs:,}"
        + "".join(f", int{b} {k:,}" for b, k in sorted(r.int_macs.items())),
        f"FLOPs (fp MACs + binary MACs / 64): {r.flops:.4g}",
    ]
    return "\n".join(lines)


__all__ = ["Precision", "FP32", "binary", "integer", "CostPolicy", "CH5", "FULL_PRECISION",
           "pa_policy", "node_precision", "LayerCost", "CostReport", "cost_model",
           "format_cost", "describe_policy"]
