"""Remove nodes none of whose outputs reaches a graph output.

A multi-output node stays while any one of its outputs is used. Constants need no
removal: they live only as node inputs, so they go with their last reader.
"""
from __future__ import annotations

from ..ir import Graph
from .manager import log_change

NAME = "eliminate_dead_code"


def eliminate_dead_code(graph: Graph) -> bool:
    live = {id(v) for v in graph.outputs}
    dead = []
    for n in reversed(graph.nodes):  # topological order: users come after producers
        if any(id(v) in live for v in n.outputs):
            live.update(id(v) for v in n.inputs)
        else:
            dead.append(n)
    if not dead:
        return False
    graph.remove_nodes(dead)
    names = [f"{n.name} ({n.op})" for n in reversed(dead)]
    log_change(graph, NAME, f"removed {len(names)} unused node(s): {', '.join(names)}")
    return True
