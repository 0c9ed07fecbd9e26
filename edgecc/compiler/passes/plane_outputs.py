"""Which binary layers can write the next layer's bit-planes instead of a float tensor.

An analysis for code generation (the graph is not changed). A binary layer only
compares its input x with per-channel thresholds t (after
fold_activation_into_thresholds, t also carries the batch norm and ReLU that stood in
between). When every reader of a binary layer's output y is a binary layer reading y
as x with the same thresholds, the producer's epilogue compares y itself and writes
the readers' planes: the same float32 y meets the same float32 thresholds as in the
readers' pack step, so the bits are identical, and neither the float tensor nor the
pack step is left.

Kept in float, with the reason (model.json's `why`):
- y is a graph output, or a reader is not a binary layer (a residual add, a pool, ...);
- a reader takes y as something other than its input x;
- readers compare with different thresholds (a producer writes one set of planes);
- a layer is not compiled by the binary engine (another emitter or a forced kernel).
Padding needs no check: the engine pads plane inputs with zero words, which puts a
padded tap in no plane ({0,1}) and out of the dot product (+-1), whether the planes
came from a pack or from an epilogue. Groups need none either: both write the same
channel-packed layout (channel c at bit c%32 of word c/32, 2*ceil(C/64) words per
plane), and grouped readers are compiled only with a multiple of 32 channels per group.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..ir import Graph, Node, Value

BINARY_OPS = ("binary_conv2d", "binary_linear")


@dataclass
class PlaneLink:
    """A producer whose epilogue writes the planes its binary readers take as input."""
    producer: Node
    consumers: list[Node]
    thresholds: Value   # [C, P] constant of the first reader (all readers' are equal)

    @property
    def planes(self) -> int:
        return self.thresholds.shape[1]

    @property
    def words(self) -> int:
        """32-bit words per (pixel, plane): 2 * ceil(C / 64), as the pack step writes."""
        return 2 * -(-self.thresholds.shape[0] // 64)

    @property
    def nbytes(self) -> int:
        y = self.producer.outputs[0]
        pixels = y.shape[0] * math.prod(y.shape[2:])
        return pixels * self.planes * self.words * 4


@dataclass
class PlanePlan:
    links: dict[int, PlaneLink] = field(default_factory=dict)   # id(producer output) -> link
    kept: dict[str, str] = field(default_factory=dict)          # producer name -> why float

    def output_link(self, node: Node) -> PlaneLink | None:
        """The link when `node` writes planes."""
        return self.links.get(id(node.outputs[0]))

    def input_link(self, node: Node) -> PlaneLink | None:
        """The link when `node` reads planes written by its producer."""
        if node.op not in BINARY_OPS:
            return None
        return self.links.get(id(node.inputs[0]))


def _names(nodes: list[Node]) -> str:
    return ", ".join(n.name for n in nodes[:4]) + (" ..." if len(nodes) > 4 else "")


def _same_thresholds(a: Value, b: Value) -> bool:
    if a is b:
        return True
    return a.shape == b.shape and np.array_equal(a.data.astype(np.float32), b.data.astype(np.float32))


def plan_plane_outputs(graph: Graph, *, enabled: bool = True,
                       compiled_binary: Callable[[Node], bool] = lambda n: True) -> PlanePlan:
    """Decide, for every binary layer, whether it writes its readers' planes.
    `compiled_binary(node)`: the node runs on the binary engine's glue (both ends must)."""
    plan = PlanePlan()
    readers: dict[int, list[Node]] = {}
    for n in graph.nodes:
        for v in n.inputs:
            if not readers.get(id(v)) or readers[id(v)][-1] is not n:
                readers.setdefault(id(v), []).append(n)
    outputs = {id(v) for v in graph.outputs}
    for n in graph.nodes:
        if n.op not in BINARY_OPS:
            continue
        why = _why_float(n, readers.get(id(n.outputs[0]), []), outputs, enabled, compiled_binary)
        if why is None:
            users = readers[id(n.outputs[0])]
            plan.links[id(n.outputs[0])] = PlaneLink(n, users, users[0].inputs[3])
        else:
            plan.kept[n.name] = why
    return plan


def _why_float(n: Node, users: list[Node], outputs: set[int], enabled: bool,
               compiled_binary: Callable[[Node], bool]) -> str | None:
    y = n.outputs[0]
    if not enabled:
        return "plane outputs disabled"
    if not compiled_binary(n):
        return "this layer is not compiled by the binary engine"
    if id(y) in outputs:
        return "its output is a graph output"
    if not users:
        return "its output is not read"
    floats = [u for u in users if u.op not in BINARY_OPS]
    if floats:
        return f"read as floats by {', '.join(f'{u.name} ({u.op})' for u in floats[:4])}"
    if any(v is y for u in users for v in u.inputs[1:]):
        return "a binary reader takes it as a parameter, not as its input x"
    other = [u for u in users if not compiled_binary(u)]
    if other:
        return f"reader(s) {_names(other)} not compiled by the binary engine"
    t0 = users[0].inputs[3]
    if not t0.is_constant or any(not u.inputs[3].is_constant for u in users):
        return "reader thresholds are not constants"
    differ = [u for u in users[1:] if not _same_thresholds(t0, u.inputs[3])]
    if differ:
        return (f"readers compare with different thresholds ({users[0].name} vs {_names(differ)}); "
                "one set of planes per producer")
    return None
