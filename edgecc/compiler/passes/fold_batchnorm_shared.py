"""Batch-norm folding where the plain fold_batchnorm refuses because something is shared.

fold_batchnorm_slices (REAF+, thesis eq 6.7-6.8):
  - one BN reading concat(conv_1, ..., conv_k) on channels: BN channel slice i folds into
    conv_i (each conv's weight and output must be its own);
  - several BNs reading distinct channel slices (slice / split on axis 1) of one conv
    output: each BN folds into its rows of the conv weight and bias;
  - several BNs reading the same channels (REAF+'s g_O BN+ReLU pairs on one pre-activation)
    stay: one folded weight per BN would need one copy of the conv per BN. Kept and logged.

fold_batchnorm_shared_weight (DACNN): a BN after a conv whose weight constant is read by
several convs keeps the shared weight and becomes a per-layer per-channel epilogue
    y = conv(x, W_shared) * s + t,  s = gamma / sqrt(var + eps),  t = beta + (b - mean) * s
as mul + add by [1, C, 1, 1] constants (the conv's own constant bias b moves into t).
The BN statistics stay on the conv as meta["folded_bn"], as in fold_batchnorm.
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Node, Value
from .fold_batchnorm import bn_scale_shift
from .manager import log_change


def _bn_affine(bn: Node) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, shift) of an inference BN in float64, None if it is not foldable."""
    if not all(v.is_constant for v in bn.inputs[1:]):
        return None
    if not np.all(bn.inputs[4].data.astype(np.float64) + bn.attrs["eps"] > 0):
        return None
    return bn_scale_shift(bn)


def _stats(bn: Node) -> dict:
    return {"node": bn.name, "eps": float(bn.attrs["eps"]),
            **{k: v.data.copy() for k, v in zip(("scale", "bias", "mean", "var"), bn.inputs[1:])}}


def _own_conv(graph: Graph, v: Value, uses) -> Node | None:
    """The conv2d producing v when its float weight/bias are constants only it reads."""
    c = v.producer
    if c is None or c.op != "conv2d" or not v.dtype.is_float or "folded_bn" in c.meta:
        return None
    if any(o is v for o in graph.outputs):
        return None
    for p in c.inputs[1:]:
        if not p.is_constant or len(uses.get(id(p), [])) != 1 or p.dtype != v.dtype:
            return None
    return c


def _scale_rows(graph: Graph, conv: Node, rows: slice, s, t, bn: Node, taken: set) -> None:
    """conv rows `rows` := BN(conv rows) with per-channel (s, t)."""
    w = conv.inputs[1]
    o = w.shape[0]
    wd = w.data.astype(np.float64)
    b = conv.inputs[2].data.astype(np.float64) if len(conv.inputs) == 3 else np.zeros(o)
    wd[rows] *= s.reshape(-1, 1, 1, 1)
    b[rows] = b[rows] * s + t

    def const(base, data):
        name = graph.unique_name(base, taken)
        taken.add(name)
        return Graph.constant(name, data.astype(w.data.dtype))

    conv.inputs = [conv.inputs[0], const(f"{conv.name}.weight_bnfold", wd),
                   const(f"{conv.name}.bias_bnfold", b)]
    conv.meta.setdefault("folded_bn_slices", []).append(
        {**_stats(bn), "channels": (rows.start, rows.stop)})


# ---- REAF+: slices ---------------------------------------------------------------------
def fold_batchnorm_slices(graph: Graph) -> bool:
    changed = False
    for bn in [n for n in graph.nodes if n.op == "batch_norm"]:
        x = bn.inputs[0]
        p = x.producer
        if p is not None and p.op == "concat" and p.attrs["axis"] == 1 and x.type.rank == 4 \
                and any(n is bn for n in graph.nodes):   # an earlier fold may have removed it
            changed |= _fold_over_concat(graph, bn, p)
    uses = graph.users()   # recomputed only after a fold (per conv it would be quadratic)
    for conv in [n for n in graph.nodes if n.op == "conv2d"]:
        if _fold_slices_of(graph, conv, uses):
            uses = graph.users()
            changed = True
    return changed


def _fold_over_concat(graph: Graph, bn: Node, cat: Node) -> bool:
    uses = graph.users()
    affine = _bn_affine(bn)
    y = cat.outputs[0]
    why = None
    if affine is None:
        why = "BN parameters are not constants with var + eps > 0"
    elif len(uses.get(id(y), [])) != 1 or any(v is y for v in graph.outputs):
        why = f"concat {cat.name} output has other users"
    convs = [_own_conv(graph, v, uses) for v in cat.inputs]
    if why is None and (None in convs or len({id(c) for c in convs}) != len(convs)
                        or any(len(uses.get(id(v), [])) != 1 for v in cat.inputs)):
        why = (f"not every input of {cat.name} is a conv2d with its own constant weight and "
               "a single user")
    if why:
        bn.meta["fold_blocked"] = why
        log_change(graph, "fold_batchnorm_slices", f"kept {bn.name}: {why}")
        return False
    s, t = affine
    taken, off = graph._names(), 0
    for v, conv in zip(cat.inputs, convs):
        c = v.shape[1]
        sl = slice(off, off + c)
        _scale_rows(graph, conv, slice(0, c), s[sl], t[sl], bn, taken)
        off += c
    _drop_bn(graph, bn, y)
    log_change(graph, "fold_batchnorm_slices", f"folded {bn.name} per channel slice into "
               + ", ".join(c.name for c in convs))
    return True


def _channel_views(graph: Graph, v: Value, uses) -> list[tuple[Value, int, int]] | None:
    """[(view value, first channel, end channel)] when every user of v is a channel slice or
    split on axis 1; None otherwise."""
    views = []
    for user, _ in uses.get(id(v), []):
        if user.op == "slice" and user.attrs["axes"] == (1,) and user.attrs["steps"] == (1,):
            views.append((user.outputs[0], user.attrs["starts"][0], user.attrs["ends"][0]))
        elif user.op == "split" and user.attrs["axis"] == 1:
            off = 0
            for out, size in zip(user.outputs, user.attrs["sizes"]):
                views.append((out, off, off + size))
                off += size
        else:
            return None
    return views


def _fold_slices_of(graph: Graph, conv: Node, uses) -> bool:
    x = conv.outputs[0]
    direct_bns = [u for u, _ in uses.get(id(x), []) if u.op == "batch_norm"]
    if len(direct_bns) > 1:  # REAF+: g_O BNs on one pre-activation
        why = (f"{len(direct_bns)} batch_norm nodes ({', '.join(b.name for b in direct_bns)}) "
               f"read all channels of {conv.name}; folding each would need one copy of "
               f"{conv.name} per BN ({len(direct_bns)}x its MACs), kept as per-channel affine")
        for b in direct_bns:
            b.meta["fold_blocked"] = why
        log_change(graph, "fold_batchnorm_slices", f"kept {', '.join(b.name for b in direct_bns)}: {why}")
        return False
    if _own_conv(graph, x, uses) is None:
        return False
    views = _channel_views(graph, x, uses)
    if not views:
        return False
    bn_views = []
    for v, s, e in views:
        vu = uses.get(id(v), [])
        if len(vu) == 1 and vu[0][0].op == "batch_norm" and _bn_affine(vu[0][0]) is not None \
                and not any(o is v for o in graph.outputs):
            bn_views.append((vu[0][0], v, s, e))
    if not bn_views:
        return False
    # every BN'd channel range must be read by nothing else
    for bn, v, s, e in bn_views:
        for v2, s2, e2 in views:
            if v2 is not v and s2 < e and s < e2:
                why = f"channels [{s}, {e}) of {conv.name} are also read by {v2.name!r}"
                bn.meta["fold_blocked"] = why
                log_change(graph, "fold_batchnorm_slices", f"kept {bn.name}: {why}")
                return False
    taken = graph._names()
    for bn, v, s, e in bn_views:
        scale, shift = _bn_affine(bn)
        _scale_rows(graph, conv, slice(s, e), scale, shift, bn, taken)
        _drop_bn(graph, bn, v)
    log_change(graph, "fold_batchnorm_slices", f"folded {', '.join(b[0].name for b in bn_views)} "
               f"into channel slices of {conv.name}")
    return True


def _drop_bn(graph: Graph, bn: Node, replacement: Value) -> None:
    y = bn.outputs[0]
    graph.remove_nodes([bn])
    if any(o is y for o in graph.outputs):  # keep the output's name on its new producer
        p = replacement.producer
        p.outputs = [y if o is replacement else o for o in p.outputs]
        y.producer = p
        graph.replace_all_uses(replacement, y)
    else:
        graph.replace_all_uses(y, replacement)


# ---- DACNN: shared weights --------------------------------------------------------------
def fold_batchnorm_shared_weight(graph: Graph) -> bool:
    changed = False
    uses = graph.users()
    for bn in [n for n in graph.nodes if n.op == "batch_norm"]:
        x = bn.inputs[0]
        conv = x.producer
        if conv is None or conv.op != "conv2d" or not x.dtype.is_float or "folded_bn" in conv.meta:
            continue
        w = conv.inputs[1]
        if not w.is_constant or len(uses.get(id(w), [])) < 2:
            continue  # not shared: plain fold_batchnorm's job
        affine = _bn_affine(bn)
        why = None
        if affine is None:
            why = "BN parameters are not constants with var + eps > 0"
        elif len(uses.get(id(x), [])) != 1 or any(v is x for v in graph.outputs):
            why = f"output {x.name!r} of {conv.name} has other users"
        elif len(conv.inputs) == 3 and not conv.inputs[2].is_constant:
            why = f"{conv.name} bias is not a constant"
        if why:
            bn.meta["fold_blocked"] = why
            log_change(graph, "fold_batchnorm_shared_weight", f"kept {bn.name}: {why}")
            continue
        _epilogue(graph, bn, conv, *affine)
        log_change(graph, "fold_batchnorm_shared_weight",
                   f"{bn.name} -> per-channel scale/shift after {conv.name} (weight {w.name!r} "
                   f"shared by {len(uses[id(w)])} convs stays one constant)")
        uses = graph.users()   # the epilogue rewired this BN's readers
        changed = True
    return changed


def _epilogue(graph: Graph, bn: Node, conv: Node, s, t) -> None:
    dt = conv.inputs[1].data.dtype
    if len(conv.inputs) == 3:  # conv bias b: (conv + b) * s + t' = conv * s + (b * s + t')
        t = t + conv.inputs[2].data.astype(np.float64) * s
        conv.inputs = conv.inputs[:2]
    taken = graph._names()
    shape = (1, -1) + (1,) * (bn.inputs[0].type.rank - 2)

    def const(base, data):
        name = graph.unique_name(base, taken)
        taken.add(name)
        return Graph.constant(name, data.reshape(shape).astype(dt))

    pos = graph.nodes.index(bn)
    mul = graph.add_node("mul", [conv.outputs[0], const(f"{bn.name}.scale_c", s)],
                         name=f"{bn.name}.scale", index=pos, meta={"bn_epilogue": bn.name})
    add = graph.add_node("add", [mul.outputs[0], const(f"{bn.name}.shift_c", t)],
                         name=f"{bn.name}.shift", index=pos + 1, meta={"bn_epilogue": bn.name})
    conv.meta["folded_bn"] = {**_stats(bn), "epilogue": (mul.name, add.name)}
    y = bn.outputs[0]
    graph.remove_nodes([bn])
    add.outputs, y.producer = [y], add
