"""Peak run-time memory by liveness over a topological schedule: an analysis, no rewrite.

At each step (one node executing, in graph order) the live activations are the node's
inputs and outputs plus every earlier value that a later node (or the graph output) still
reads: exactly "the activations of a layer plus the shortcut activations that cross past
it" of thesis ch.5. Graph inputs count as activations; constants are weights.

Activations scale with `batch` (dim 0 of every activation is the batch, as in the
frontends' graphs); `act_bits` fixes their element size (32 = the thesis' fp32 counting;
None = each value's own dtype). Weights: "all" (the whole model is resident, the default),
"layer" (only the executing node's weights), or "none" (the thesis tables: their values
are activations only, e.g. 3 x 64x56x56 fp32 x batch 64 = 154.14 MB for Bi-Real ResNet18).
With a cost `policy`, weight bits follow the cost model (1 bit per binary weight, ...).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from ...errors import InputError
from ..ir import Graph, Value
from .cost_model import CostPolicy, cost_model

WEIGHT_MODES = ("all", "layer", "none")


@dataclass
class Step:
    node: str
    op: str
    activation_bytes: int
    weight_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.activation_bytes + self.weight_bytes


@dataclass
class MemoryReport:
    graph: str
    batch: int
    act_bits: int | None
    weights: str
    steps: list[Step]
    peak_bytes: int
    peak_node: str
    peak_live: list[str]       # activations live at the peak step
    weight_bytes: int          # all weights of the model

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 1e6

    def peak_after(self, node_name: str) -> Step:
        """The largest step from `node_name` on (e.g. the body after an ImageNet stem)."""
        names = [s.node for s in self.steps]
        if node_name not in names:
            raise InputError(f"no node named {node_name!r} in graph {self.graph!r}")
        return max(self.steps[names.index(node_name):], key=lambda s: s.total_bytes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["peak_mb"] = self.peak_mb
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def __str__(self) -> str:
        return format_memory(self)


def _weight_bits(graph: Graph, policy: CostPolicy | None) -> tuple[dict[str, int], int]:
    """(node name -> bits of the weights it reads, bits of all weights stored once)."""
    if policy is not None:
        report = cost_model(graph, policy)
        return {c.name: c.bits for c in report.layers}, report.storage_bits
    per_node = {n.name: sum(8 * v.data.nbytes for v in {id(v): v for v in n.inputs
                                                        if v.is_constant}.values())
                for n in graph.nodes}
    return per_node, sum(8 * c.data.nbytes for c in graph.constants())


def peak_memory(graph: Graph, batch: int | None = None, act_bits: int | None = 32,
                weights: str = "all", policy: CostPolicy | None = None) -> MemoryReport:
    """Peak of weights + live activations over the graph's (topological) node order."""
    if weights not in WEIGHT_MODES:
        raise InputError(f"weights={weights!r}: expected one of {WEIGHT_MODES}")
    if act_bits is not None and act_bits < 1:
        raise InputError(f"act_bits must be >= 1, got {act_bits}")
    if not graph.inputs:
        raise InputError(f"graph {graph.name!r} has no inputs to take the batch from")
    graph_batch = graph.inputs[0].shape[0] if graph.inputs[0].shape else 1
    batch = graph_batch if batch is None else batch
    if batch < 1 or graph_batch < 1:
        raise InputError(f"batch must be >= 1 (asked {batch}, graph batch {graph_batch})")

    def nbytes(v: Value) -> int:
        bits = act_bits if act_bits is not None else v.dtype.bits
        return -(-v.type.numel * batch // graph_batch * bits // 8)

    end = len(graph.nodes)
    last_use: dict[int, int] = {}
    for i, n in enumerate(graph.nodes):
        for v in n.inputs:
            last_use[id(v)] = i
    for v in graph.outputs:
        last_use[id(v)] = end
    born = {id(v): -1 for v in graph.inputs}
    for i, n in enumerate(graph.nodes):
        for v in n.outputs:
            born.setdefault(id(v), i)
    values = {id(v): v for v in graph.inputs}
    values.update({id(v): v for n in graph.nodes for v in n.outputs})

    wbits, total_wbits = _weight_bits(graph, policy)

    # sweep: +bytes when a value is born, -bytes after its last use
    steps: list[Step] = []
    live: dict[int, int] = {k: nbytes(values[k]) for k, b in born.items() if b < 0}
    best = (-1, -1, [])
    for i, n in enumerate(graph.nodes):
        for v in n.outputs:
            live[id(v)] = nbytes(v)
        act = sum(live.values())
        w = {"all": total_wbits, "layer": wbits.get(n.name, 0), "none": 0}[weights]
        steps.append(Step(n.name, n.op, act, -(-w // 8)))
        if steps[-1].total_bytes > best[0]:
            best = (steps[-1].total_bytes, i, [values[k].name for k in live])
        for k in [k for k in live if last_use.get(k, born.get(k)) <= i]:
            del live[k]
    if not steps:
        raise InputError(f"graph {graph.name!r} has no nodes")
    return MemoryReport(graph.name, batch, act_bits, weights, steps, best[0],
                        graph.nodes[best[1]].name, best[2], -(-total_wbits // 8))


def format_memory(r: MemoryReport, top: int = 10) -> str:
    bits = "own dtype" if r.act_bits is None else f"{r.act_bits}-bit"
    lines = [f"run-time memory of {r.graph}: batch {r.batch}, {bits} activations, "
             f"weights {r.weights}",
             f"peak {r.peak_mb:.2f} MB at node {r.peak_node} "
             f"(weights of the model: {r.weight_bytes / 1e6:.2f} MB)",
             f"live at the peak: {', '.join(r.peak_live)}",
             f"largest {min(top, len(r.steps))} steps:"]
    rows = sorted(r.steps, key=lambda s: -s.total_bytes)[:top]
    w = max(len(s.node) for s in rows)
    for s in rows:
        lines.append(f"  {s.node.ljust(w)}  {s.op:<16} activations {s.activation_bytes / 1e6:9.2f} MB"
                     f"  weights {s.weight_bytes / 1e6:8.2f} MB")
    return "\n".join(lines)


__all__ = ["Step", "MemoryReport", "peak_memory", "format_memory"]
