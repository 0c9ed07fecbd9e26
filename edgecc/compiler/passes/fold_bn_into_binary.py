"""Fold a batch_norm that follows a binary_conv2d / binary_linear into the layer.

    bn(sum_ij phi[o,i,j] conv(W_i, A_j) + b) = sum_ij (s phi)[o,i,j] conv(W_i, A_j) + (b s + shift)
    s = gamma / sqrt(var + eps),  shift = beta - mean * s           (per output channel o)

The scale goes into phi (which becomes per output channel even when the layer's
coefficients were per layer) and the shift into the bias; the weight bases are not
touched. Computed in float64, stored as float32 constants owned by the layer.

Legal only when the BN is the sole user of the layer's output (a residual add or a
graph output reading the pre-BN value would see the scaled value), every BN
parameter is constant, phi and bias are constants (run merge_pa_coefficients first)
and var + eps > 0. A weight basis tensor shared with other layers does not block the
fold: it stays shared, only this layer's private phi and bias change. A BN that is
kept gets `meta["fold_blocked"]` and a pass_log record with the reason; a folded one
is recorded in the layer's `meta["folded_bn"]` (its statistics kept for data-free
calibration, like fold_batchnorm).
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Node
from .fold_batchnorm import bn_scale_shift
from .manager import log_change

NAME = "fold_bn_into_binary"
BINARY_OPS = ("binary_conv2d", "binary_linear")


def fold_bn_into_binary(graph: Graph) -> bool:
    changed = False
    for bn in [n for n in graph.nodes if n.op == "batch_norm"]:
        producers = {id(v): n for n in graph.nodes for v in n.outputs}
        layer = producers.get(id(bn.inputs[0]))
        if layer is None or layer.op not in BINARY_OPS:
            continue   # not ours: fold_batchnorm handles conv2d / gemm producers
        reason = _blocked(graph, bn, layer)
        if reason:
            bn.meta["fold_blocked"] = reason
            log_change(graph, NAME, f"kept {bn.name} after {layer.name}: {reason}")
            continue
        _fold(graph, bn, layer)
        log_change(graph, NAME, f"folded {bn.name} into phi and bias of {layer.name}")
        changed = True
    return changed


def _blocked(graph: Graph, bn: Node, layer: Node) -> str | None:
    y = layer.outputs[0]
    readers = [n.name for n, _ in graph.users().get(id(y), [])]
    if len(readers) != 1:
        others = ", ".join(sorted(r for r in readers if r != bn.name))
        return f"output {y.name!r} is also read by {others}; folding would change what they see"
    if any(v is y for v in graph.outputs):
        return f"output {y.name!r} is also a graph output"
    if not all(v.is_constant for v in bn.inputs[1:]):
        return "BN parameters are not all constants"
    phi = layer.inputs[2]
    if not phi.is_constant:
        return f"phi {phi.name!r} is computed at run time (run merge_pa_coefficients first)"
    if len(layer.inputs) == 5 and not layer.inputs[4].is_constant:
        return f"bias {layer.inputs[4].name!r} is not a constant"
    var = bn.inputs[4].data.astype(np.float64) + bn.attrs["eps"]
    if not np.all(var > 0):
        return "var + eps is not positive for every channel"
    return None


def _fold(graph: Graph, bn: Node, layer: Node) -> None:
    s, shift = bn_scale_shift(bn)
    eps = bn.attrs["eps"]
    phi = layer.inputs[2].data.astype(np.float64) * s[:, None, None]
    bias = layer.inputs[4].data.astype(np.float64) * s + shift if len(layer.inputs) == 5 else shift
    taken = graph._names()
    new_phi = Graph.constant(graph.unique_name(f"{layer.name}.phi_bnfold", taken), phi.astype(np.float32))
    taken.add(new_phi.name)
    new_bias = Graph.constant(graph.unique_name(f"{layer.name}.bias_bnfold", taken), bias.astype(np.float32))
    layer.inputs = layer.inputs[:2] + [new_phi, layer.inputs[3], new_bias]
    layer.meta.setdefault("folded_bn", []).append({
        "node": bn.name, "eps": float(eps),
        **{k: v.data.copy() for k, v in zip(("scale", "bias", "mean", "var"), bn.inputs[1:])}})
    out = bn.outputs[0]
    if any(v is out for v in graph.outputs):   # keep the graph output's name
        layer.outputs = [out]
        out.producer = layer
    else:
        graph.replace_all_uses(out, layer.outputs[0])
    graph.remove_nodes([bn])
