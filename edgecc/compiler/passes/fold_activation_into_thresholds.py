"""Fold the batch norm and ReLU in front of a binary layer into its activation thresholds.

A binary layer only compares its input with per-channel thresholds t[c, j]. When that
input is relu(bn(z)) (or bn(z), or relu(z)), the comparisons can be made on z itself:

    bn:   s*z + shift >= t   <=>   z >= (t - shift) / s          (needs s > 0 per channel)
    relu: relu(y) >= t       <=>   y >= t                       (needs t > 0: every value
          the ReLU clamps to 0 lies below the first threshold, in no plane / on the -1 side)

with s = gamma / sqrt(var + eps), shift = beta - mean * s. The layer then reads z and
the producer of z can write the layer's bit-planes directly, with no float round trip.
The BN / ReLU nodes stay for any other reader and are removed by dead-code elimination
when nobody else reads them.

Refused (the reason is logged) when a BN scale is not positive, when a ReLU precedes a
threshold <= 0, or when BN parameters or thresholds are not constants. The new
thresholds are computed in float64 and rounded to float32, so an input lying within
float rounding of a threshold may land on the other side, exactly as float rounding in
the original BN would have moved it.
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Node
from .fold_batchnorm import bn_scale_shift
from .manager import log_change

NAME = "fold_activation_into_thresholds"
BINARY_OPS = ("binary_conv2d", "binary_linear")


def fold_activation_into_thresholds(graph: Graph) -> bool:
    changed = False
    producers = {id(v): n for n in graph.nodes for v in n.outputs}
    for layer in [n for n in graph.nodes if n.op in BINARY_OPS]:
        while True:
            src = producers.get(id(layer.inputs[0]))
            if src is None or src.op not in ("relu", "batch_norm"):
                break
            new_t, reason = _rethreshold(src, layer)
            if reason:
                log_change(graph, NAME, f"kept {src.name} ({src.op}) before {layer.name}: {reason}")
                break
            taken = graph._names()
            t = Graph.constant(graph.unique_name(f"{layer.name}.thresholds", taken),
                               new_t.astype(np.float32))
            layer.inputs = [src.inputs[0], layer.inputs[1], layer.inputs[2], t] + layer.inputs[4:]
            layer.meta.setdefault("folded_into_thresholds", []).append(src.name)
            log_change(graph, NAME, f"folded {src.name} ({src.op}) into the thresholds of {layer.name}")
            changed = True
    return changed


def _rethreshold(src: Node, layer: Node) -> tuple[np.ndarray | None, str | None]:
    t_val = layer.inputs[3]
    if not t_val.is_constant:
        return None, f"thresholds {t_val.name!r} are not constants"
    t = t_val.data.astype(np.float64)
    if src.op == "relu":
        if not np.all(t > 0):
            return None, "a threshold <= 0 sees the values the ReLU clamps to 0"
        return t, None
    if not all(v.is_constant for v in src.inputs[1:]):
        return None, "BN parameters are not all constants"
    if not np.all(src.inputs[4].data.astype(np.float64) + src.attrs["eps"] > 0):
        return None, "var + eps is not positive for every channel"
    s, shift = bn_scale_shift(src)
    if not np.all(s > 0):
        bad = np.flatnonzero(s <= 0)[:8].tolist()
        return None, f"BN scale is not positive for channel(s) {bad} (would reverse the comparisons)"
    new_t = (t - shift[:, None]) / s[:, None]
    if not np.all(np.diff(new_t, axis=1) > 0) or not np.all(np.isfinite(new_t.astype(np.float32))):
        return None, "rescaled thresholds are not finite and strictly increasing in float32"
    if not np.all(np.diff(new_t.astype(np.float32), axis=1) > 0):
        return None, "rescaled thresholds collapse in float32"
    return new_t, None
