"""Readable text form of a graph.

    graph tiny(%x: f32[1,3,8,8]) -> (%y) {
      %c1: f32[1,4,8,8] = conv2d(%x, @w, @b) {strides=[1,1], ...}  # node conv1
    }
Graph inputs and node outputs are %names, constants @names; a constant read by
several nodes is listed once in the header with its users' count.
"""
from __future__ import annotations

import numpy as np

from .graph import Graph


def _fmt_attr(v) -> str:
    if isinstance(v, (tuple, list)):
        return "[" + ",".join(_fmt_attr(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, np.ndarray):
        return f"array{list(v.shape)}"
    return str(v)


def format_graph(g: Graph) -> str:
    ref = lambda v: ("@" if v.is_constant else "%") + v.name  # noqa: E731
    ins = ", ".join(f"%{v.name}: {v.type}" for v in g.inputs)
    outs = ", ".join(ref(v) for v in g.outputs)
    lines = [f"graph {g.name}({ins}) -> ({outs}) {{"]
    uses = g.users()
    for c in g.constants():
        n_users = len({id(n) for n, _ in uses.get(id(c), [])})
        shared = f"  # shared by {n_users} nodes" if n_users > 1 else ""
        lines.append(f"  const @{c.name}: {c.type}{shared}")
    for n in g.nodes:
        lhs = ", ".join(f"%{v.name}: {v.type}" for v in n.outputs)
        args = ", ".join(ref(v) for v in n.inputs)
        attrs = ", ".join(f"{k}={_fmt_attr(v)}" for k, v in n.attrs.items())
        attrs = f" {{{attrs}}}" if attrs else ""
        lines.append(f"  {lhs} = {n.op}({args}){attrs}  # {n.name}")
    lines.append("}")
    return "\n".join(lines)
