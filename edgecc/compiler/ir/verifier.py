"""Graph verifier: reports the first inconsistent node by name."""
from __future__ import annotations

from ...errors import ShapeError, VerifyError
from .graph import Graph
from .ops import infer_node_types


def verify(graph: Graph) -> None:
    """Check SSA form, topological order, constant data, and that every node's
    recorded output types equal what its op's shape rule infers."""
    defined: set[int] = set()
    names: dict[str, str] = {}

    def define(v, where):
        if id(v) in defined:
            raise VerifyError(f"{where}: value {v.name!r} is defined twice")
        if v.name in names:
            raise VerifyError(f"{where}: value name {v.name!r} already used by {names[v.name]}")
        defined.add(id(v))
        names[v.name] = where

    for v in graph.inputs:
        if v.is_constant:
            raise VerifyError(f"graph input {v.name!r} must not be a constant")
        define(v, f"graph input {v.name!r}")
    node_names: set[str] = set()
    for n in graph.nodes:
        where = f"node {n.name!r} (op {n.op})"
        if n.name in node_names:
            raise VerifyError(f"{where}: duplicate node name")
        node_names.add(n.name)
        for i, v in enumerate(n.inputs):
            if v.is_constant:
                if tuple(v.data.shape) != v.type.shape or v.data.dtype != v.type.dtype.numpy:
                    raise VerifyError(f"{where}: constant {v.name!r} data {v.data.dtype}"
                                      f"{list(v.data.shape)} does not match its type {v.type}")
                if id(v) not in defined:
                    define(v, f"constant {v.name!r}")
            elif id(v) not in defined:
                raise VerifyError(f"{where}: input {i} ({v.name!r}) is used before it is defined "
                                  "(not a graph input, constant or earlier node output)")
        try:
            types, _ = infer_node_types(n.op, [v.type for v in n.inputs], n.attrs, n.name)
        except ShapeError as e:
            raise VerifyError(str(e)) from None
        if len(types) != len(n.outputs):
            raise VerifyError(f"{where}: has {len(n.outputs)} outputs, op gives {len(types)}")
        for v, t in zip(n.outputs, types):
            if v.type != t:
                raise VerifyError(f"{where}: output {v.name!r} is recorded as {v.type}, "
                                  f"shape rule gives {t}")
            if v.producer is not n:
                raise VerifyError(f"{where}: output {v.name!r} does not point back to its node")
            define(v, where)
    for v in graph.outputs:
        if id(v) not in defined:
            raise VerifyError(f"graph output {v.name!r} is not produced by any node or input")
