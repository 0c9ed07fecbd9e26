"""AW-convolution (thesis ch.7, eq 7.6-7.8): recognize it, and compute it with static weights.

AW-conv gives every sample n its own weights K * (1 + A[n]), A[n] of shape [C2, kh, kw]
broadcast over the input channels C1. As a graph that is a weight computed at run time
(the zoo module and the torch frontend: a grouped conv over the batch folded into
channels). Because A[n] is constant over C1 for each (output channel, tap), the conv
splits exactly by taps:

    O[n, o] = sum_{i<kh, j<kw} (1 + A[n, o, i, j]) * T_ij[n, o],
    T_ij    = conv2d(x shifted by tap (i, j), K[:, :, i, j])   (a 1x1 conv, same stride)

so every T_ij uses a static weight and the attention is a per-(sample, channel) gate.
For a 1x1 AW-conv this is conv2d(x, K) * (1 + A): a conv plus per-channel gating.

`recognize_aw_conv` rewrites the torch frontend's pattern
    reshape(conv2d(reshape(x, [1, N*C1, H, W]),
                   reshape(mul(reshape(K, [1,C2,C1,kh,kw]), add(reshape(A, [N,C2,1,kh,kw]), 1)),
                           [N*C2, C1, kh, kw]), groups=N), [N, C2, OH, OW])
into one aw_conv2d(x, K, A) node; `lower_aw_conv_taps` lowers aw_conv2d to the taps
with existing ops (pad once, a strided slice per tap, 1x1 conv2d, add 1, mul, add).
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Node, Value
from .dead_code import eliminate_dead_code
from .manager import log_change


def _source(v: Value, op: str) -> Node | None:
    return v.producer if v.producer is not None and v.producer.op == op else None


def _unreshape(v: Value) -> Value:
    p = _source(v, "reshape")
    return p.inputs[0] if p is not None else v


def _is_one(v: Value) -> bool:
    return v.is_constant and v.type.numel == 1 and float(v.data.reshape(-1)[0]) == 1.0


def _match(graph: Graph, conv: Node, users) -> tuple[Node, Value, Value, Value] | None:
    """(final reshape, x, K, A) when `conv` is the per-sample weighted conv of AW-conv."""
    n = conv.attrs["groups"]
    out_uses = users.get(id(conv.outputs[0]), [])
    if len(out_uses) == 1 and out_uses[0][0].op == "reshape":
        final = out_uses[0][0]
    elif n == 1:  # batch 1: torch drops the reshapes that keep the shape
        final = conv
    else:
        return None
    x, wv = _unreshape(conv.inputs[0]), conv.inputs[1]
    wr, mul = _source(wv, "reshape"), _source(_unreshape(wv), "mul")
    if wr is None or mul is None or x.type.rank != 4 or x.shape[0] != n:
        return None
    for kv, gate in (mul.inputs, mul.inputs[::-1]):
        k = _unreshape(kv)
        add = _source(gate, "add")
        if not (k.is_constant and k.type.rank == 4 and add is not None):
            continue
        c2, c1, kh, kw = k.shape
        for av, one in (add.inputs, add.inputs[::-1]):
            a = _unreshape(av)
            if _is_one(one) and a.shape == (n, c2, kh, kw) and av.shape == (n, c2, 1, kh, kw) \
                    and kv.shape == (1, c2, c1, kh, kw) and x.shape[1] == c1 \
                    and final.outputs[0].shape == (n, c2) + conv.outputs[0].shape[2:] \
                    and a.dtype == k.dtype == x.dtype:
                return final, x, k, a
    return None


def recognize_aw_conv(graph: Graph) -> bool:
    changed = False
    uses = graph.users()   # recomputed only after a rewrite
    for conv in [c for c in graph.nodes if c.op == "conv2d" and not c.inputs[1].is_constant
                 and len(c.inputs) == 2]:
        found = _match(graph, conv, uses)
        if found is None:
            continue
        final, x, k, a = found
        geo = {key: conv.attrs[key] for key in ("strides", "pads", "dilations")}
        node = graph.add_node("aw_conv2d", [x, k, a], geo, name=conv.name + ".aw",
                              index=graph.nodes.index(final), meta=dict(conv.meta))
        y = final.outputs[0]
        graph.remove_nodes([final] if final is conv else [final, conv])
        node.outputs, y.producer = [y], node
        log_change(graph, "recognize_aw_conv", f"{conv.name}: per-sample weighted conv -> "
                   f"aw_conv2d({x.name}, {k.name}, {a.name})")
        uses = graph.users()
        changed = True
    if changed:
        eliminate_dead_code(graph)
    return changed


def lower_aw_conv_taps(graph: Graph) -> bool:
    """aw_conv2d -> sum over taps of (1 + A_tap) * conv1x1(shifted x, K_tap)."""
    changed = False
    for node in [n for n in graph.nodes if n.op == "aw_conv2d"]:
        if not node.inputs[1].is_constant:
            log_change(graph, "lower_aw_conv_taps", f"kept {node.name}: weight is not a constant")
            continue
        _lower(graph, node)
        log_change(graph, "lower_aw_conv_taps", f"{node.name} -> "
                   f"{node.inputs[1].shape[2] * node.inputs[1].shape[3]} static-weight tap(s)")
        changed = True
    return changed


def _lower(graph: Graph, node: Node) -> None:
    x, k, a = node.inputs
    y = node.outputs[0]
    _, c2, oh, ow = y.shape
    kh, kw = k.shape[2:]
    (sh, sw), (dh, dw), pads = node.attrs["strides"], node.attrs["dilations"], node.attrs["pads"]
    pos, taken = graph.nodes.index(node), graph._names()

    def emit(op, ins, attrs=None, suffix=""):
        nonlocal pos
        n = graph.add_node(op, ins, attrs or {}, name=f"{node.name}.{suffix}", index=pos,
                           meta={"lowered_from": node.name})
        pos += 1
        return n.outputs[0]

    def const(suffix, data):
        name = graph.unique_name(f"{node.name}.{suffix}", taken)
        taken.add(name)
        return Graph.constant(name, data)

    pt, pl, pb, pr = pads
    xp = emit("pad", [x], {"pads": (0, 0, pt, pl, 0, 0, pb, pr)}, "pad") if any(pads) else x
    one = const("one", np.ones((), dtype=k.data.dtype))
    acc = None
    for i in range(kh):
        for j in range(kw):
            win = {"starts": (i * dh, j * dw), "ends": (i * dh + sh * (oh - 1) + 1, j * dw + sw * (ow - 1) + 1),
                   "axes": (2, 3), "steps": (sh, sw)}
            xs = xp if xp.shape[2:] == (oh, ow) and (sh, sw) == (1, 1) else \
                emit("slice", [xp], win, f"x_tap{i}{j}")
            kt = const(f"weight_tap{i}{j}", np.ascontiguousarray(k.data[:, :, i:i + 1, j:j + 1]))
            t = emit("conv2d", [xs, kt], {}, f"tap{i}{j}")
            at = a if (kh, kw) == (1, 1) else emit(
                "slice", [a], {"starts": (i, j), "ends": (i + 1, j + 1), "axes": (2, 3)}, f"a_tap{i}{j}")
            gated = emit("mul", [t, emit("add", [at, one], suffix=f"gate{i}{j}")], suffix=f"gated{i}{j}")
            acc = gated if acc is None else emit("add", [acc, gated], suffix=f"sum{i}{j}")
    last = acc.producer
    graph.remove_nodes([node])
    last.outputs, y.producer = [y], last
    assert last.outputs[0].shape == (x.shape[0], c2, oh, ow)
