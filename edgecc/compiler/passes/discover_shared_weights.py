"""Re-discover conv weights shared across layers (DACNN) in exported models.

An ONNX export with constant folding bakes each layer's BN into its own copy of a shared
weight: W_l = diag(s_l) W_base (one scale per output channel). This pass finds conv2d
weight constants of one shape that are such per-row rescalings of an earlier one,

    s_l[o] = <W_l[o], B[o]> / <B[o], B[o]>,   accepted when for every row o
    max |W_l[o] - s_l[o] B[o]| <= rtol * max |W_l[o]|   (a zero B row needs a zero W_l row)

and rewrites conv(x, W_l, b_l) to conv(x, B) * s_l + b_l (mul + add by [1, O, 1, 1]
constants, the same per-layer epilogue fold_batchnorm_shared_weight emits), so the base
weight is stored once. Rows with fewer than `min_row` weights (e.g. 1x1 depthwise) are
never matched: any two single numbers are proportional. A copy equal to the base (all
s = 1 within rtol) just reads the base.
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Node, Value
from .manager import log_change

NAME = "discover_shared_weights"


def row_scales(w: np.ndarray, base: np.ndarray, rtol: float = 1e-5) -> np.ndarray | None:
    """Per-output-row s with w ~= s[:, None] * base (float64), or None if w is no such copy."""
    if w.shape[0] > 1 and row_scales(w[:1], base[:1], rtol) is None:
        return None   # cheap reject on the first row: most candidate pairs are not copies
    wf = w.reshape(w.shape[0], -1).astype(np.float64)
    bf = base.reshape(base.shape[0], -1).astype(np.float64)
    bb = np.einsum("ij,ij->i", bf, bf)
    s = np.where(bb > 0, np.einsum("ij,ij->i", wf, bf) / np.where(bb > 0, bb, 1.0), 1.0)
    err = np.abs(wf - s[:, None] * bf).max(axis=1)
    if np.all(err <= rtol * np.abs(wf).max(axis=1)):
        return s
    return None


def make_discover_shared_weights(rtol: float = 1e-5, min_row: int = 4):
    def run(graph: Graph) -> bool:
        return _discover(graph, rtol, min_row)
    run.name = NAME
    return run


def discover_shared_weights(graph: Graph) -> bool:
    return _discover(graph, 1e-5, 4)


def _discover(graph: Graph, rtol: float, min_row: int) -> bool:
    bases: dict[tuple, list[Value]] = {}
    changed = False
    for conv in [n for n in graph.nodes if n.op == "conv2d"]:
        w = conv.inputs[1]
        if not w.is_constant or not w.dtype.is_float or w.type.numel // max(w.shape[0], 1) < min_row:
            continue
        if len(conv.inputs) == 3 and not conv.inputs[2].is_constant:
            continue
        group = bases.setdefault((w.shape, w.dtype), [])
        if any(b is w for b in group):
            continue
        for base in group:
            s = row_scales(w.data, base.data, rtol)
            if s is not None:
                _rewrite(graph, conv, base, s, rtol)
                log_change(graph, NAME, f"{conv.name}: weight {w.name!r} = diag(s) * {base.name!r}"
                           f" -> reads {base.name!r} + per-channel scale")
                changed = True
                break
        else:
            group.append(w)
    return changed


def _rewrite(graph: Graph, conv: Node, base: Value, s: np.ndarray, rtol: float) -> None:
    dt = base.data.dtype
    bias = conv.inputs[2] if len(conv.inputs) == 3 else None
    if np.all(np.abs(s - 1.0) <= rtol):  # the same weight: share it, nothing else changes
        conv.inputs[1] = base
        return
    conv.inputs = [conv.inputs[0], base]
    taken = graph._names()

    def const(suffix, data):
        name = graph.unique_name(f"{conv.name}.{suffix}", taken)
        taken.add(name)
        return Graph.constant(name, np.asarray(data, np.float64).reshape(1, -1, 1, 1).astype(dt))

    y = conv.outputs[0]
    pos = graph.nodes.index(conv) + 1
    mul = graph.add_node("mul", [y, const("scale_c", s)], name=f"{conv.name}.scale", index=pos,
                         meta={"shared_weight_epilogue": base.name})
    last = mul
    if bias is not None:
        last = graph.add_node("add", [mul.outputs[0], const("shift_c", bias.data)],
                              name=f"{conv.name}.shift", index=pos + 1,
                              meta={"shared_weight_epilogue": base.name})
    z = last.outputs[0]
    graph.replace_all_uses(y, z)  # users (and graph outputs) of the conv now read the epilogue
    mul.inputs[0] = y
