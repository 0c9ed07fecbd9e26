"""Remove nodes that return their input unchanged.

identity (also what dropout imports as), reshape/flatten to the same shape, transpose
with the identity permutation, a full slice, zero padding, unbounded clip, concat of
one input, split into one part, channel_shuffle with 1 or C groups, 1x1 pooling
without padding.

Graph output names are kept: when a removed node's output is a graph output, that
value is moved onto the node producing the input instead. When the input is a
graph input or constant (or itself a graph output) the node stays.
"""
from __future__ import annotations

from typing import Callable

from ..ir import Graph, Node
from .manager import log_change

NAME = "eliminate_identities"


def _unit_pool(n: Node) -> bool:
    return tuple(n.attrs["kernel"]) == (1, 1) and not any(n.attrs["pads"])


def _shuffle_noop(n: Node) -> bool:
    return n.attrs["groups"] in (1, n.inputs[0].shape[1])


# op -> is this node a no-op? (checked only when output type == input type)
NOOP_RULES: dict[str, Callable[[Node], bool]] = {
    "identity": lambda n: True,
    "reshape": lambda n: True,
    "flatten": lambda n: True,
    "transpose": lambda n: tuple(n.attrs["perm"]) == tuple(range(n.inputs[0].type.rank)),
    # steps of 1 and an unchanged shape mean every axis is taken whole
    "slice": lambda n: all(s == 1 for s in n.attrs["steps"]),
    "pad": lambda n: not any(n.attrs["pads"]),
    "clip": lambda n: n.attrs["min"] is None and n.attrs["max"] is None,
    "concat": lambda n: len(n.inputs) == 1,
    "split": lambda n: len(n.outputs) == 1,
    "channel_shuffle": _shuffle_noop,
    "max_pool2d": _unit_pool,
    "avg_pool2d": _unit_pool,
}


def is_noop(n: Node) -> bool:
    rule = NOOP_RULES.get(n.op)
    return (rule is not None and len(n.inputs) == 1 and len(n.outputs) == 1
            and n.outputs[0].type == n.inputs[0].type and rule(n))


def eliminate_identities(graph: Graph) -> bool:
    producers = {id(v): n for n in graph.nodes for v in n.outputs}
    removed = []
    for n in graph.nodes:
        if not is_noop(n):
            continue
        x, y = n.inputs[0], n.outputs[0]
        outputs = {id(v) for v in graph.outputs}
        if id(y) not in outputs:
            graph.replace_all_uses(y, x)
        else:
            p = producers.get(id(x))
            if p is None or id(x) in outputs:
                continue  # x is a graph input / constant / output: y needs this node
            # Rename: p now produces y directly, and x's other readers read y.
            graph.replace_all_uses(x, y)
            p.outputs[p.outputs.index(x)] = y
            y.producer = p
            producers[id(y)] = p
        removed.append(n)
        log_change(graph, NAME, f"removed {n.name} ({n.op}, no-op)")
    graph.remove_nodes(removed)
    return bool(removed)
