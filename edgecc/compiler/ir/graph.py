"""The graph IR: typed values, nodes with an op and attributes, graph inputs/outputs.

A constant is a Value that carries its data. Constants are referenced by identity:
two nodes that read the same weight hold the same Value object, and serialization
stores it once. Nodes are kept in a topological order.
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from .dtypes import DType


@dataclass(frozen=True)
class TensorType:
    shape: tuple[int, ...]
    dtype: DType

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if any(d < 0 for d in self.shape):
            raise ValueError(f"negative dimension in shape {self.shape}")

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(str(d) for d in self.shape)}]"


class Value:
    """An SSA value: a graph input, a node output, or a constant (data is not None)."""

    __slots__ = ("name", "type", "data", "producer", "meta")

    def __init__(self, name: str, type: TensorType, data: np.ndarray | None = None):
        self.name = name
        self.type = type
        self.data = data
        self.producer: Node | None = None
        self.meta: dict[str, Any] = {}

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self) -> DType:
        return self.type.dtype

    def __repr__(self) -> str:
        return f"Value({self.name!r}, {self.type})"


class Node:
    __slots__ = ("name", "op", "inputs", "outputs", "attrs", "meta")

    def __init__(self, name: str, op: str, inputs: Sequence[Value], outputs: Sequence[Value],
                 attrs: dict[str, Any] | None = None, meta: dict[str, Any] | None = None):
        self.name = name
        self.op = op
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.attrs = dict(attrs or {})
        # Non-semantic facts kept for later stages (source op, folded BN stats, ...).
        self.meta = dict(meta or {})

    def __repr__(self) -> str:
        return f"Node({self.name!r}, {self.op})"


@dataclass
class Graph:
    name: str = "graph"
    inputs: list[Value] = field(default_factory=list)
    outputs: list[Value] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def copy(self) -> "Graph":
        """A structural copy to rewrite without touching this graph: new nodes and values
        (constants shared by identity stay shared; their arrays are not duplicated, since
        passes replace constants rather than write into them). Iterative: deep graphs do
        not hit the recursion limit the way copy.deepcopy does."""
        vmap: dict[int, Value] = {}

        def cp(v: Value) -> Value:
            nv = vmap.get(id(v))
            if nv is None:
                nv = vmap[id(v)] = Value(v.name, v.type, v.data)
                nv.meta = copy.deepcopy(v.meta)
            return nv

        g = Graph(self.name, [cp(v) for v in self.inputs], [], [], copy.deepcopy(self.meta))
        for n in self.nodes:
            nn = Node(n.name, n.op, [cp(v) for v in n.inputs], [cp(v) for v in n.outputs],
                      copy.deepcopy(n.attrs), copy.deepcopy(n.meta))
            for v in nn.outputs:
                v.producer = nn
            g.nodes.append(nn)
        g.outputs = [cp(v) for v in self.outputs]
        return g

    # ---- construction -------------------------------------------------------
    def _names(self) -> set[str]:
        names = {v.name for v in self.inputs}
        for n in self.nodes:
            names.update(v.name for v in n.outputs)
            names.update(v.name for v in n.inputs if v.is_constant)
        return names

    def unique_name(self, base: str, taken: set[str] | None = None) -> str:
        """A value name not yet used (pass `taken` to reuse one computed name set)."""
        taken = self._names() if taken is None else taken
        if base not in taken:
            return base
        for i in itertools.count(1):
            cand = f"{base}_{i}"
            if cand not in taken:
                return cand
        raise AssertionError

    def add_input(self, name: str, shape: Iterable[int], dtype: DType = DType.f32) -> Value:
        v = Value(name, TensorType(tuple(shape), dtype))
        self.inputs.append(v)
        return v

    @staticmethod
    def constant(name: str, data: np.ndarray) -> Value:
        data = np.asarray(data, order="C")  # keeps 0-d arrays 0-d
        return Value(name, TensorType(data.shape, DType.from_numpy(data.dtype)), data)

    def add_node(self, op: str, inputs: Sequence[Value], attrs: dict[str, Any] | None = None,
                 name: str | None = None, output_names: Sequence[str] | None = None,
                 index: int | None = None, meta: dict[str, Any] | None = None) -> Node:
        """Create a node, infer its output types with the op's shape rule, and insert it
        (at the end, or at `index` in the node list)."""
        from .ops import infer_node_types  # ops imports this module

        attrs = dict(attrs or {})
        out_types, attrs = infer_node_types(op, [v.type for v in inputs], attrs,
                                            node_name=name or op)
        name = self.unique_name(name or op, {n.name for n in self.nodes})
        taken = self._names()
        outs = []
        for i, t in enumerate(out_types):
            base = output_names[i] if output_names and i < len(output_names) else (
                name if len(out_types) == 1 else f"{name}:{i}")
            vname = self.unique_name(base, taken)
            taken.add(vname)
            outs.append(Value(vname, t))
        node = Node(name, op, inputs, outs, attrs, meta)
        for v in outs:
            v.producer = node
        if index is None:
            self.nodes.append(node)
        else:
            self.nodes.insert(index, node)
        return node

    # ---- queries ------------------------------------------------------------
    def constants(self) -> list[Value]:
        """Distinct constants in first-use order (shared ones appear once)."""
        seen: dict[int, Value] = {}
        for n in self.nodes:
            for v in n.inputs:
                if v.is_constant and id(v) not in seen:
                    seen[id(v)] = v
        for v in self.outputs:
            if v.is_constant and id(v) not in seen:
                seen[id(v)] = v
        return list(seen.values())

    def users(self) -> dict[int, list[tuple[Node, int]]]:
        """id(value) -> [(node, input index)] for every use of the value."""
        uses: dict[int, list[tuple[Node, int]]] = {}
        for n in self.nodes:
            for i, v in enumerate(n.inputs):
                uses.setdefault(id(v), []).append((n, i))
        return uses

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node named {name!r} in graph {self.name!r}")

    def value(self, name: str) -> Value:
        for v in self.inputs:
            if v.name == name:
                return v
        for n in self.nodes:
            for v in itertools.chain(n.outputs, n.inputs):
                if v.name == name:
                    return v
        raise KeyError(f"no value named {name!r} in graph {self.name!r}")

    # ---- rewriting ----------------------------------------------------------
    def replace_all_uses(self, old: Value, new: Value) -> None:
        for n in self.nodes:
            n.inputs = [new if v is old else v for v in n.inputs]
        self.outputs = [new if v is old else v for v in self.outputs]

    def remove_nodes(self, dead: Iterable[Node]) -> None:
        dead_ids = {id(n) for n in dead}
        self.nodes = [n for n in self.nodes if id(n) not in dead_ids]

    def topo_sort(self) -> None:
        """Reorder nodes topologically (stable w.r.t. the current order)."""
        producer = {id(v): n for n in self.nodes for v in n.outputs}
        order: list[Node] = []
        state: dict[int, int] = {}  # 1 = visiting, 2 = done

        for root in self.nodes:
            if state.get(id(root)) == 2:
                continue
            stack = [(root, False)]
            while stack:
                n, expanded = stack.pop()
                if expanded:
                    state[id(n)] = 2
                    order.append(n)
                    continue
                s = state.get(id(n))
                if s == 2:
                    continue
                if s == 1:
                    raise ValueError(f"graph {self.name!r} has a cycle through node {n.name!r}")
                state[id(n)] = 1
                stack.append((n, True))
                for v in reversed(n.inputs):
                    p = producer.get(id(v))
                    if p is not None and state.get(id(p)) != 2:
                        if state.get(id(p)) == 1:
                            raise ValueError(
                                f"graph {self.name!r} has a cycle through node {p.name!r}")
                        stack.append((p, False))
        self.nodes = order

    def __str__(self) -> str:
        from .printer import format_graph

        return format_graph(self)
