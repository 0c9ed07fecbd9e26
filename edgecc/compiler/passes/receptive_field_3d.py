"""3D-Receptive Field (3DRF paper, eq 4-7) of every conv layer: an analysis, no rewrite.

A stage is a run of layers at one spatial size: a node whose output is spatially smaller
than its input (strided conv or pool) ends the stage, and its output is the next stage's
input tensor (w0 x w0 x c0; the image for the first stage).
For each value we track
  * the spatial extent it sees of the stage input, per axis:
    eq 5, w_k = min(w_{k-1} + d*(k-1), w0) (a dilated kernel counts its span d*(k-1)+1);
    pools with stride 1 grow it the same way;
  * for every channel, the set of stage-input channels it depends on (a bitmask).
    A conv with g groups makes output channel o depend on the union of its group's input
    channels, so standard/pointwise (full c0), depthwise (unchanged), grouped, and any
    connectivity written as convs + concat/split/slice/channel_shuffle (REAF, RPW) fall
    out of the same rule (eq 6's g() for each type).
Joins (add, mul, ...) take the union of the channel sets and the larger spatial extent:
a residual branch sees what its widest input sees. concat stacks channel lists.
3DRF_k = h_k * w_k * c_k (eq 4, c_k = the fewest stage-input channels any output channel
sees); Delta3DRF_k = (3DRF_k - 3DRF_in)/3DRF_in * exp(-alpha * 3DRF_in / V0) (eq 7), where
3DRF_in is what the layer's input already sees and V0 = h0*w0*c0. The first conv of a stage
reads the raw stage input, and its gain is undefined ("-" in the paper's Table 1).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

from ...errors import InputError, UnsupportedOpsError
from ..ir import Graph, Node

UNARY = {"batch_norm", "relu", "sigmoid", "tanh", "sign", "hardswish", "identity", "clip",
         "leaky_relu", "prelu", "hardsigmoid", "pad"}
JOINS = {"add", "sub", "mul", "div"}
END = {"global_avg_pool", "flatten", "reshape", "gemm", "matmul", "softmax",
       "adaptive_avg_pool2d"}


@dataclass
class LayerRF:
    node: str
    stage: int
    k: int                 # 1-based index of the conv inside its stage
    kind: str              # standard | pointwise | depthwise | grouped
    kernel: tuple[int, int]
    rf_h: int
    rf_w: int
    rf_c: int
    rf: int
    gain: float | None     # Delta3DRF; None for the first conv of a stage


@dataclass
class Stage:
    index: int
    h0: int
    w0: int
    c0: int
    layers: list[LayerRF] = field(default_factory=list)

    @property
    def volume(self) -> int:
        return self.h0 * self.w0 * self.c0


@dataclass
class RF3DReport:
    graph: str
    alpha: float
    stages: list[Stage]

    def layer(self, node: str) -> LayerRF:
        for s in self.stages:
            for layer in s.layers:
                if layer.node == node:
                    return layer
        raise InputError(f"no conv layer {node!r} in the 3DRF report of {self.graph!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def __str__(self) -> str:
        return format_3drf(self)


def gain(rf_prev: int, rf_k: int, volume: int, alpha: float = 3.0) -> float:
    """Delta3DRF of eq 7."""
    if rf_prev <= 0 or volume <= 0:
        raise InputError(f"3DRF gain needs positive sizes, got {rf_prev}, {volume}")
    return (rf_k - rf_prev) / rf_prev * math.exp(-alpha * rf_prev / volume)


def conv_kind(n: Node) -> str:
    o, cg, kh, kw = n.inputs[1].shape
    g = n.attrs["groups"]
    if g == 1:
        return "pointwise" if (kh, kw) == (1, 1) else "standard"
    return "depthwise" if cg == 1 else "grouped"


def conv_channels(masks: list[int], groups: int, cout: int) -> list[int]:
    """Channel sets after a conv with `groups` groups: each output channel depends on
    every input channel of its group."""
    cin = len(masks)
    cg, og = cin // groups, cout // groups
    out = []
    for g in range(groups):
        union = 0
        for m in masks[g * cg:(g + 1) * cg]:
            union |= m
        out += [union] * og
    return out


@dataclass
class _Cover:
    stage: int
    rf_h: int
    rf_w: int
    masks: list[int]   # per channel: bitmask of stage-input channels

    def size(self) -> int:
        return self.rf_h * self.rf_w * min(bin(m).count("1") for m in self.masks)


def receptive_field_3d(graph: Graph, alpha: float = 3.0) -> RF3DReport:
    if alpha <= 0:
        raise InputError(f"alpha must be > 0 (the paper uses 3), got {alpha}")
    stages: list[Stage] = []
    cover: dict[int, _Cover] = {}

    def new_stage(shape) -> _Cover:
        n, c, h, w = shape
        stages.append(Stage(len(stages), h, w, c))
        return _Cover(len(stages) - 1, 1, 1, [1 << i for i in range(c)])

    for v in graph.inputs:
        if v.type.rank == 4:
            cover[id(v)] = new_stage(v.shape)
    for n in graph.nodes:
        ins = [cover.get(id(v)) for v in n.inputs if not v.is_constant]
        if not ins or any(i is None for i in ins) or n.op in END:
            continue   # past the conv part (classifier) or not a feature map
        x = n.inputs[0]
        src = ins[0]
        st = stages[src.stage]
        if n.op in UNARY:
            res = _Cover(src.stage, src.rf_h, src.rf_w, list(src.masks))
        elif n.op in JOINS:
            if len({i.stage for i in ins}) > 1:
                raise UnsupportedOpsError(f"node {n.name!r} ({n.op}) joins values of different "
                                          f"stages {sorted({i.stage for i in ins})}")
            width = max(len(i.masks) for i in ins)
            masks = [0] * width
            for i in ins:
                for c in range(width):
                    masks[c] |= i.masks[c % len(i.masks)]  # channel broadcast (size 1)
            res = _Cover(src.stage, max(i.rf_h for i in ins), max(i.rf_w for i in ins), masks)
        elif n.op == "concat" and n.attrs["axis"] in (1, -3):
            res = _Cover(src.stage, max(i.rf_h for i in ins), max(i.rf_w for i in ins),
                         [m for i in ins for m in i.masks])
        elif n.op in ("split", "slice") or n.op == "channel_shuffle":
            res = _channel_op(n, src)
        elif n.op in ("conv2d", "max_pool2d", "avg_pool2d"):
            res = _window_op(n, src, st)
            if n.op == "conv2d":
                prev, now = src.size(), res.size()
                st.layers.append(LayerRF(
                    n.name, src.stage, len(st.layers) + 1, conv_kind(n),
                    tuple(n.inputs[1].shape[2:]), res.rf_h, res.rf_w,
                    min(bin(m).count("1") for m in res.masks), now,
                    None if not st.layers else gain(prev, now, st.volume, alpha)))
        else:
            raise UnsupportedOpsError(f"3DRF: node {n.name!r}: op {n.op} is not handled")
        for v in n.outputs:
            if v.type.rank != 4:
                continue
            if v.shape[2:] != x.shape[2:]:     # spatially smaller: a new stage starts
                cover[id(v)] = new_stage(v.shape)
            elif isinstance(res, list):
                cover[id(v)] = res[n.outputs.index(v)]
            else:
                cover[id(v)] = res
    return RF3DReport(graph.name, alpha, [s for s in stages if s.layers])


def _window_op(n: Node, src: _Cover, st: Stage) -> _Cover:
    if n.op == "conv2d":
        kh, kw = n.inputs[1].shape[2:]
        dh, dw = n.attrs["dilations"]
        masks = conv_channels(src.masks, n.attrs["groups"], n.inputs[1].shape[0])
    else:
        kh, kw = n.attrs["kernel"]
        dh, dw = n.attrs.get("dilations", (1, 1))
        masks = list(src.masks)
    return _Cover(src.stage, min(src.rf_h + dh * (kh - 1), st.h0),
                  min(src.rf_w + dw * (kw - 1), st.w0), masks)


def _channel_op(n: Node, src: _Cover):
    c = len(src.masks)
    if n.op == "channel_shuffle":
        g = n.attrs["groups"]
        idx = [(i % g) * (c // g) + i // g for i in range(c)]   # out i reads in idx[i]
        return _Cover(src.stage, src.rf_h, src.rf_w, [src.masks[j] for j in idx])
    if n.op == "split":
        if n.attrs["axis"] not in (1, -3):
            return [src] * len(n.outputs)
        outs, start = [], 0
        for s in n.attrs["sizes"]:
            outs.append(_Cover(src.stage, src.rf_h, src.rf_w, src.masks[start:start + s]))
            start += s
        return outs
    masks = list(src.masks)   # slice: apply the channel-axis part only
    for start, end, axis, step in zip(n.attrs["starts"], n.attrs["ends"], n.attrs["axes"],
                                      n.attrs["steps"]):
        if axis in (1, -3):
            masks = masks[start:end:step]
    return _Cover(src.stage, src.rf_h, src.rf_w, masks)


def format_3drf(r: RF3DReport) -> str:
    lines = [f"3D receptive field of {r.graph} (alpha = {r.alpha:g})"]
    for s in r.stages:
        lines.append(f"stage {s.index + 1}: input {s.h0}x{s.w0}x{s.c0} (V0 = {s.volume}), "
                     f"{len(s.layers)} conv(s)")
        w = max(len(layer.node) for layer in s.layers)
        for layer in s.layers:
            g = "-" if layer.gain is None else f"{layer.gain:.3f}"
            lines.append(f"  {layer.k:>2} {layer.node.ljust(w)}  {layer.kind:<9} "
                         f"{layer.kernel[0]}x{layer.kernel[1]}  w {layer.rf_h}x{layer.rf_w}  "
                         f"c {layer.rf_c:>5}  3DRF {layer.rf:>9}  gain {g}")
    return "\n".join(lines)


__all__ = ["LayerRF", "Stage", "RF3DReport", "receptive_field_3d", "gain", "conv_kind",
           "conv_channels", "format_3drf"]
