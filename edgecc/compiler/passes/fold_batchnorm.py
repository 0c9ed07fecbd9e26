"""Fold batch_norm into the conv2d or gemm that feeds it.

    bn(conv(x, w, b)) = conv(x, w * s, (b - mean) * s + beta),  s = gamma / sqrt(var + eps)

per output channel (conv weight axis 0; gemm output column). Legal only when the
BN is the sole user of the producer's output, the producer's weight is a float
constant read by no other node (a weight shared across layers, as in DACNN, keeps
one copy and gets a per-layer scale/shift epilogue later), and every BN parameter
is constant. Folding is done in float64 and cast back to the weight dtype.

The BN's running statistics stay on the folded node as `node.meta["folded_bn"]`
(data-free calibration, AutoReCon, matches synthetic batches against them). A BN
that is kept gets `node.meta["fold_blocked"]` with the reason, also logged.
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Node, Value
from .manager import log_change

NAME = "fold_batchnorm"


def fold_batchnorm(graph: Graph) -> bool:
    producers = {id(v): n for n in graph.nodes for v in n.outputs}
    uses = graph.users()      # kept current below (recomputing per BN is quadratic)
    taken = graph._names()
    changed = False
    for bn in [n for n in graph.nodes if n.op == "batch_norm"]:
        target = producers.get(id(bn.inputs[0]))
        reason = _blocked(graph, bn, target, uses)
        if reason:
            bn.meta["fold_blocked"] = reason
            log_change(graph, NAME, f"kept {bn.name}: {reason}")
            continue
        old_out, y = target.outputs[0], bn.outputs[0]
        _fold(graph, bn, target, taken)
        # the BN's readers now read the target's output; the old output's only reader was the BN
        readers = uses.pop(id(y), [])
        uses.pop(id(old_out), None)
        uses[id(target.outputs[0])] = readers
        for i, v in enumerate(target.inputs[1:], 1):
            uses[id(v)] = [(target, i)]
        log_change(graph, NAME, f"folded {bn.name} into {target.name}")
        producers[id(target.outputs[0])] = target  # may be the BN's former output now
        changed = True
    return changed


def _blocked(graph: Graph, bn: Node, target: Node | None, uses) -> str | None:
    """Why `bn` cannot be folded into `target`, or None when it can."""
    x = bn.inputs[0]
    if target is None:
        return f"input {x.name!r} is a graph input or constant, not a conv2d/gemm output"
    if target.op not in ("conv2d", "gemm"):
        return f"input {x.name!r} comes from {target.name} (op {target.op}), not a conv2d/gemm"
    if not x.dtype.is_float:
        return f"{target.name} output is {x.dtype}, folding needs float"
    n_users = len(uses.get(id(x), []))
    if n_users != 1 or any(v is x for v in graph.outputs):
        return f"output {x.name!r} of {target.name} is also used elsewhere ({n_users} users" + \
            (", a graph output)" if any(v is x for v in graph.outputs) else ")")
    consts = bn.inputs[1:]
    if not all(v.is_constant for v in consts):
        return "BN parameters are not all constants"
    if "folded_bn" in target.meta:
        return f"{target.name} already has {target.meta['folded_bn']['node']} folded in"
    if len(target.inputs) == 3 and not target.inputs[2].is_constant:
        return f"{target.name} bias {target.inputs[2].name!r} is not a constant"
    w = target.inputs[1]
    if not w.is_constant:
        return f"{target.name} weight {w.name!r} is not a constant"
    w_users = {n.name for n, _ in uses.get(id(w), [])}
    if len(uses.get(id(w), [])) > 1 or any(v is w for v in graph.outputs):
        return (f"weight {w.name!r} is shared by {', '.join(sorted(w_users))}; folding would "
                "change the other users (needs a per-layer scale/shift epilogue)")
    if w.dtype != x.dtype:
        return f"weight dtype {w.dtype} differs from output dtype {x.dtype}"
    var = consts[3].data.astype(np.float64) + bn.attrs["eps"]
    if not np.all(var > 0):
        return "var + eps is not positive for every channel"
    return None


def bn_scale_shift(bn: Node) -> tuple[np.ndarray, np.ndarray]:
    """Inference BN as y = s * x + shift, in float64 (parameters must be constants and
    var + eps > 0: callers check and log why not)."""
    gamma, beta, mean, var = (v.data.astype(np.float64) for v in bn.inputs[1:])
    s = gamma / np.sqrt(var + bn.attrs["eps"])
    return s, beta - mean * s


def _fold(graph: Graph, bn: Node, target: Node, taken: set[str]) -> None:
    s, shift = bn_scale_shift(bn)
    w = target.inputs[1]
    dt = w.data.dtype
    wd = w.data.astype(np.float64)

    def new_const(base: str, data: np.ndarray) -> Value:
        name = graph.unique_name(base, taken)
        taken.add(name)
        return Graph.constant(name, data.astype(dt))

    if target.op == "conv2d":
        new_w = wd * s.reshape(-1, 1, 1, 1)
        b = target.inputs[2].data.astype(np.float64) if len(target.inputs) == 3 else 0.0
        new_b = b * s + shift
        target.inputs = [target.inputs[0], new_const(f"{target.name}.weight_bnfold", new_w),
                         new_const(f"{target.name}.bias_bnfold", new_b)]
    else:
        # y = alpha * A' @ B' + beta * C; BN scales output columns (B' columns).
        new_w = wd * (s[:, None] if target.attrs["trans_b"] else s[None, :])
        if len(target.inputs) == 3:
            c = target.attrs["beta"] * target.inputs[2].data.astype(np.float64)
        else:
            c = np.zeros(1)
        new_c = c * s + shift  # broadcasts C ([N], [1,N], [M,N] or scalar) against [N]
        target.inputs = [target.inputs[0], new_const(f"{target.name}.weight_bnfold", new_w),
                         new_const(f"{target.name}.bias_bnfold", new_c)]
        target.attrs["beta"] = 1.0

    target.meta["folded_bn"] = {
        "node": bn.name, "eps": float(bn.attrs["eps"]),
        **{k: v.data.copy() for k, v in zip(("scale", "bias", "mean", "var"), bn.inputs[1:])},
    }
    y = bn.outputs[0]
    if any(v is y for v in graph.outputs):  # keep the graph output's name: move y onto target
        target.outputs = [y]
        y.producer = target
    else:
        graph.replace_all_uses(y, target.outputs[0])
    graph.remove_nodes([bn])
