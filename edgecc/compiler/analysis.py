"""Per-layer parameter and MAC counts of a graph, as data, text and JSON.

params of a layer: elements of the constants it reads (a shared weight counts in
every layer that reads it, but once in the total). MACs: multiply-accumulates of
conv2d (N*O*OH*OW*(C/g)*kh*kw), gemm (M*N*K) and matmul (batch*M*N*K); every
other op is counted as 0 MACs and its output elements are summed separately as
`other_elements` (a rough measure of elementwise/pooling work).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field

from .ir import Graph, Node


@dataclass
class LayerInfo:
    name: str
    op: str
    output_shapes: list[list[int]]
    params: int
    macs: int
    shared_params: list[str] = field(default_factory=list)  # constants other nodes read too


@dataclass
class ModelAnalysis:
    graph: str
    inputs: dict[str, list[int]]
    outputs: dict[str, list[int]]
    layers: list[LayerInfo]
    total_params: int
    total_param_bytes: int
    total_macs: int
    other_elements: int
    op_counts: dict[str, int]

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def __str__(self) -> str:
        return format_analysis(self)


def node_macs(n: Node) -> int:
    if n.op == "conv2d":
        o, cg, kh, kw = n.inputs[1].shape
        return n.outputs[0].type.numel * cg * kh * kw
    if n.op == "gemm":
        a = n.inputs[0].shape
        k = a[0] if n.attrs["trans_a"] else a[1]
        return n.outputs[0].type.numel * k
    if n.op == "matmul":
        k = n.inputs[0].shape[-1]
        return n.outputs[0].type.numel * k
    return 0


def analyze(graph: Graph) -> ModelAnalysis:
    uses = graph.users()
    layers = []
    other = 0
    for n in graph.nodes:
        consts = {id(v): v for v in n.inputs if v.is_constant}.values()
        shared = [v.name for v in consts if len({id(u) for u, _ in uses[id(v)]}) > 1]
        macs = node_macs(n)
        if macs == 0:
            other += sum(v.type.numel for v in n.outputs)
        layers.append(LayerInfo(n.name, n.op, [list(v.shape) for v in n.outputs],
                                sum(v.type.numel for v in consts), macs, shared))
    consts = graph.constants()
    return ModelAnalysis(
        graph=graph.name,
        inputs={v.name: list(v.shape) for v in graph.inputs},
        outputs={v.name: list(v.shape) for v in graph.outputs},
        layers=layers,
        total_params=sum(c.type.numel for c in consts),
        total_param_bytes=sum(int(c.data.nbytes) for c in consts),
        total_macs=sum(layer.macs for layer in layers),
        other_elements=other,
        op_counts=dict(Counter(n.op for n in graph.nodes)),
    )


def human(n: float) -> str:
    """1234567 -> '1.23M'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def human_bytes(n: int) -> str:
    """1536 -> '1.50 KiB'."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def format_analysis(a: ModelAnalysis) -> str:
    shape = lambda s: "[" + ",".join(map(str, s)) + "]"  # noqa: E731
    rows = [("#", "name", "op", "output", "params", "MACs")]
    for i, layer in enumerate(a.layers):
        params = f"{layer.params:,}" + (" (shared)" if layer.shared_params else "")
        rows.append((str(i), layer.name, layer.op,
                     " ".join(shape(s) for s in layer.output_shapes), params,
                     f"{layer.macs:,}" if layer.macs else "-"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    right = {0, 4, 5}
    lines = [f"model {a.graph}: inputs " +
             ", ".join(f"{k}{shape(v)}" for k, v in a.inputs.items()) + "; outputs " +
             ", ".join(f"{k}{shape(v)}" for k, v in a.outputs.items())]
    for r in rows:
        lines.append("  ".join(c.rjust(w) if j in right else c.ljust(w)
                               for j, (c, w) in enumerate(zip(r, widths))).rstrip())
    ops = ", ".join(f"{op} {k}" for op, k in sorted(a.op_counts.items(), key=lambda t: -t[1]))
    lines += [
        f"total: {len(a.layers)} nodes ({ops})",
        f"params: {a.total_params:,} ({human(a.total_params)}, {human_bytes(a.total_param_bytes)})",
        f"MACs: {a.total_macs:,} ({human(a.total_macs)}); "
        f"other ops write {a.other_elements:,} elements",
    ]
    return "\n".join(lines)


__all__ = ["LayerInfo", "ModelAnalysis", "analyze", "format_analysis", "node_macs", "human",
           "human_bytes"]
