"""indexed_conv2d: recognize it, and lower it to existing ops by a cost choice.

An indexed conv (REAF, rolling pointwise, grouped conv) has G output groups; group l
convolves the concatenation of the input-channel ranges `ranges[l]` with its O/G rows
of w[O, K, kh, kw]. REAF G_I-G_M-G_O: G = C(G_I, G_M) groups, each reading the union of
its G_M input groups; G_M = 1 is a grouped conv, G_M = G_I a dense conv. RPW: one group
per filter, reading a window of C_in/g channels that wraps around (two ranges).

How it gets into the IR: the torch frontend imports the zoo modules' constant-index
channel gather (x.index_select(1, index)) as slices of runs + concat
(frontends/torch_ops_gather.py); `recognize_indexed_conv` turns "concat of channel
slices of one tensor -> grouped conv2d" into one indexed_conv2d node, so the graph
states the connectivity instead of materializing the gathered copy.

Three exact lowerings, IR rewrites to existing ops:
  dense    conv2d(x, W_dense) with W_dense[O, C] zero outside each group's ranges
  gather   slices + concat of the gathered channels, then conv2d(groups=G)
  partial  per (output group, input range): conv2d(slice of x, the rows/columns of w
           for that range), summed with add, groups concatenated. The input slices
           are channel blocks of x (views in NCHW), so no activation copies.

Cost (in multiply-accumulates; out_px = N*OH*OW, k = kh*kw, R = sum of ranges over
groups, the gather copy reads x once per gathered channel):
  dense    out_px * O * C * k
  gather   out_px * O * K * k + move * N*H*W * G*K      (move term 0 when the gather is
                                                        the identity: a grouped conv)
  partial  out_px * O * K * k + add * out_px * (O/G) * (R - G)
           + move * out_px * O [concat, G > 1] + call * (number of convs)
with CostWeights(move=2, add=1, call=20000) as default: a copied element costs about
two MACs, one kernel call about 20k MACs (~2 us). `lower_indexed_conv` picks the
cheapest; `make_lowering("dense" | "gather" | "partial")` forces one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir.ranges import index_runs
from ..ir import Graph, Node, Value
from .dead_code import eliminate_dead_code
from .manager import log_change

STRATEGIES = ("dense", "gather", "partial")


def ranges_from_index(index, groups: int) -> tuple[tuple[tuple[int, int], ...], ...]:
    """Per-group input ranges of a flat gather index split into `groups` equal parts."""
    index = [int(i) for i in np.asarray(index).reshape(-1)]
    if groups < 1 or len(index) % groups:
        raise ValueError(f"{len(index)} gathered channels do not split into {groups} groups")
    k = len(index) // groups
    return tuple(tuple(index_runs(index[l * k:(l + 1) * k])) for l in range(groups))


# ---- recognition ---------------------------------------------------------------------
def _gathered_channels(v: Value) -> tuple[Value, list[int]] | None:
    """(source, channel list) when v is a channel gather: channel slices of one tensor,
    concatenated on axis 1; None otherwise."""
    p = v.producer
    parts = p.inputs if p is not None and p.op == "concat" and p.attrs["axis"] == 1 else [v]
    src, idx = None, []
    for part in parts:
        q = part.producer
        if q is not None and q.op == "slice" and q.attrs["axes"] == (1,) and q.attrs["steps"] == (1,):
            base, chans = q.inputs[0], range(q.attrs["starts"][0], q.attrs["ends"][0])
        else:
            base, chans = part, range(part.shape[1])
        if src is None:
            src = base
        if base is not src or base.type.rank != 4:
            return None
        idx.extend(chans)
    if p is None or (p.op != "concat" and p.op != "slice"):
        return None  # no gather: a plain grouped conv stays conv2d
    return src, idx


def recognize_indexed_conv(graph: Graph) -> bool:
    """Grouped conv2d reading a channel gather of one tensor -> indexed_conv2d."""
    changed = False
    for conv in [n for n in graph.nodes if n.op == "conv2d"]:
        x = conv.inputs[0]
        found = _gathered_channels(x) if x.type.rank == 4 and x.dtype.is_float else None
        if found is None:
            continue
        uses = graph.users().get(id(x), [])
        if len(uses) != 1 or any(v is x for v in graph.outputs):
            continue
        src, idx = found
        ranges = ranges_from_index(idx, conv.attrs["groups"])
        attrs = {k: conv.attrs[k] for k in ("strides", "pads", "dilations")}
        new = graph.add_node("indexed_conv2d", [src] + conv.inputs[1:], {"ranges": ranges, **attrs},
                             name=conv.name, output_names=[conv.outputs[0].name + "_indexed"],
                             index=graph.nodes.index(conv), meta=dict(conv.meta))
        _replace(graph, conv, new)
        log_change(graph, "recognize_indexed_conv",
                   f"{conv.name}: gather of {src.name!r} + conv2d(groups={len(ranges)}) "
                   f"-> indexed_conv2d")
        changed = True
    if changed:
        eliminate_dead_code(graph)
    return changed


def _replace(graph: Graph, old: Node, new: Node) -> None:
    """Move old's output value onto new (keeps the name users and outputs know)."""
    y = old.outputs[0]
    graph.remove_nodes([old])
    new.outputs = [y]
    y.producer = new


# ---- cost ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CostWeights:
    move: float = 2.0      # MACs per copied activation element
    add: float = 1.0       # MACs per element-wise add
    call: float = 20000.0  # MACs per kernel call


def _is_identity_gather(ranges, c: int) -> bool:
    flat = [r for group in ranges for r in group]
    return index_runs([i for s, e in flat for i in range(s, e)]) == [(0, c)]


def lowering_costs(node: Node, weights: CostWeights = CostWeights()) -> dict[str, float]:
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    n, c, h, wd = x.shape
    o, k, kh, kw = w.shape
    ranges = node.attrs["ranges"]
    g, r = len(ranges), sum(len(group) for group in ranges)
    out_px = n * y.shape[2] * y.shape[3]
    useful = out_px * o * k * kh * kw
    gather_move = 0 if _is_identity_gather(ranges, c) else n * h * wd * g * k
    return {
        "dense": float(out_px * o * c * kh * kw),
        "gather": useful + weights.move * gather_move,
        "partial": useful + weights.add * out_px * (o // g) * (r - g)
        + weights.move * (out_px * o if g > 1 else 0) + weights.call * r,
    }


# ---- the three lowerings -------------------------------------------------------------
class _Builder:
    """Adds nodes before `at`, naming them after it; constants get unique names."""

    def __init__(self, graph: Graph, at: Node):
        self.g, self.at, self.pos = graph, at, graph.nodes.index(at)
        self.taken = graph._names()

    def const(self, suffix: str, data: np.ndarray) -> Value:
        name = self.g.unique_name(f"{self.at.name}.{suffix}", self.taken)
        self.taken.add(name)
        return Graph.constant(name, data)

    def node(self, op: str, inputs, attrs=None, suffix: str = "") -> Value:
        n = self.g.add_node(op, inputs, attrs or {}, name=f"{self.at.name}.{suffix}",
                            index=self.pos, meta={"lowered_from": self.at.name})
        self.pos += 1
        return n.outputs[0]

    def channel_slice(self, x: Value, s: int, e: int, suffix: str) -> Value:
        if (s, e) == (0, x.shape[1]):
            return x
        return self.node("slice", [x], {"starts": (s,), "ends": (e,), "axes": (1,), "steps": (1,)},
                         suffix)


def _geometry(node: Node) -> dict:
    return {k: node.attrs[k] for k in ("strides", "pads", "dilations")}


def _lower_dense(b: _Builder, node: Node) -> Value:
    x, w = node.inputs[0], node.inputs[1]
    ranges, o = node.attrs["ranges"], w.shape[0]
    rows = o // len(ranges)
    dense = np.zeros((o, x.shape[1]) + w.shape[2:], dtype=np.float64)
    for l, group in enumerate(ranges):
        k0 = 0
        for s, e in group:  # += : a channel read twice by one group adds both weights
            dense[l * rows:(l + 1) * rows, s:e] += w.data[l * rows:(l + 1) * rows, k0:k0 + e - s]
            k0 += e - s
    wd = b.const("weight_dense", dense.astype(w.data.dtype))
    return b.node("conv2d", [x, wd] + node.inputs[2:], {**_geometry(node), "groups": 1}, "dense")


def _lower_gather(b: _Builder, node: Node) -> Value:
    x = node.inputs[0]
    ranges = node.attrs["ranges"]
    runs = index_runs([i for group in ranges for s, e in group for i in range(s, e)])
    parts = [b.channel_slice(x, s, e, f"gather{i}") for i, (s, e) in enumerate(runs)]
    xg = parts[0] if len(parts) == 1 else b.node("concat", parts, {"axis": 1}, "gather")
    return b.node("conv2d", [xg] + node.inputs[1:], {**_geometry(node), "groups": len(ranges)},
                  "grouped")


def _lower_partial(b: _Builder, node: Node) -> Value:
    x, w = node.inputs[0], node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) == 3 else None
    ranges, o = node.attrs["ranges"], w.shape[0]
    rows = o // len(ranges)
    slices: dict[tuple[int, int], Value] = {}  # one slice per distinct range, shared by groups
    outs = []
    for l, group in enumerate(ranges):
        acc, k0 = None, 0
        for j, (s, e) in enumerate(group):
            if (s, e) not in slices:
                slices[(s, e)] = b.channel_slice(x, s, e, f"in{s}_{e}")
            wj = b.const(f"weight_g{l}_r{j}", np.ascontiguousarray(
                w.data[l * rows:(l + 1) * rows, k0:k0 + e - s]))
            ins = [slices[(s, e)], wj]
            if bias is not None and j == 0:
                ins.append(b.const(f"bias_g{l}", bias.data[l * rows:(l + 1) * rows].copy()))
            y = b.node("conv2d", ins, {**_geometry(node), "groups": 1}, f"g{l}_r{j}")
            acc = y if acc is None else b.node("add", [acc, y], suffix=f"g{l}_sum{j}")
            k0 += e - s
        outs.append(acc)
    return outs[0] if len(outs) == 1 else b.node("concat", outs, {"axis": 1}, "groups")


_LOWER = {"dense": _lower_dense, "gather": _lower_gather, "partial": _lower_partial}


def _lower(graph: Graph, strategy: str, weights: CostWeights) -> bool:
    changed = False
    for node in [n for n in graph.nodes if n.op == "indexed_conv2d"]:
        if not all(v.is_constant for v in node.inputs[1:]):
            log_change(graph, "lower_indexed_conv", f"kept {node.name}: weight or bias is not "
                       "a constant")
            continue
        costs = lowering_costs(node, weights)
        choice = min(STRATEGIES, key=costs.get) if strategy == "auto" else strategy
        out = _LOWER[choice](_Builder(graph, node), node)
        _replace(graph, node, out.producer)
        out.producer.meta.update(lowered_from=node.name, lowering=choice, lowering_costs=costs)
        log_change(graph, "lower_indexed_conv", f"{node.name} -> {choice} ("
                   + ", ".join(f"{k} {v:.3g}" for k, v in costs.items()) + " MAC-equivalents)")
        changed = True
    return changed


def make_lowering(strategy: str = "auto", weights: CostWeights = CostWeights()):
    """A pass lowering every indexed_conv2d with `strategy` ("auto" = cheapest)."""
    if strategy not in ("auto",) + STRATEGIES:
        raise ValueError(f"unknown indexed conv lowering {strategy!r}; choose auto, "
                         + ", ".join(STRATEGIES))

    def run(graph: Graph) -> bool:
        return _lower(graph, strategy, weights)

    run.name = f"lower_indexed_conv_{strategy}"
    return run


def lower_indexed_conv(graph: Graph) -> bool:
    """Lower every indexed_conv2d with the cheapest lowering by the cost formula."""
    return _lower(graph, "auto", CostWeights())
