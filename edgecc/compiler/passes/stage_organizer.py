"""Stage-level organizer of the 3DRF paper (section 4.1): advice, no rewrite.

Each iteration: (1) the source stage is the one whose last conv has the smallest gain
Delta3DRF_MIN (a stage's first conv is never moved: it sets the stage's width);
(2) the target stage is the one where one more copy of its last conv would have the
largest gain Delta3DRF'_MAX; (3) move the kernel if MAX > MIN and MAX > theta, delete it if
MAX < theta and MIN < theta, else stop. theta = 0 for VGG.

A stage is modelled as its chain of convs (kernel, dilation, groups from the graph); an
appended conv copies the stage's last conv with in = out = the stage width. Params/MACs
of the proposal: the graph's (PyTorch-style count: weights, biases, BN scale/shift) minus
the removed convs plus the added ones (each with its bias and BN, at its stage's output
resolution). Changing the architecture needs retraining, so this only prints advice.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from ...errors import InputError
from ..analysis import node_macs
from ..ir import Graph
from .cost_model import FULL_PRECISION, cost_model
from .receptive_field_3d import conv_channels, gain, receptive_field_3d


@dataclass
class StageModel:
    """What the organizer needs of one stage."""
    h0: int
    w0: int
    c0: int
    layers: list[tuple[int, int, int, int, int]]   # (kh, kw, dilation, groups, cout)
    layer_params: int    # params of one more copy of the last conv (+ bias, BN)
    layer_macs: int      # its MACs (batch 1)

    def rf_chain(self, n: int) -> list[int]:
        """3DRF of the first n convs of the chain (repeating the last one)."""
        h = w = 1
        masks = [1 << i for i in range(self.c0)]
        out = []
        for i in range(n):
            kh, kw, d, g, cout = self.layers[min(i, len(self.layers) - 1)]
            h, w = min(h + d * (kh - 1), self.h0), min(w + d * (kw - 1), self.w0)
            masks = conv_channels(masks, g, cout)
            out.append(h * w * min(bin(m).count("1") for m in masks))
        return out

    def gain_of(self, n: int, alpha: float) -> float | None:
        """Gain of the n-th conv in a stage of n convs (None for n = 1)."""
        if n < 2:
            return None
        rf = self.rf_chain(n)
        return gain(rf[-2], rf[-1], self.h0 * self.w0 * self.c0, alpha)


@dataclass
class Move:
    action: str          # "move" | "delete"
    source: int          # 0-based stage indices
    target: int | None
    gain_min: float
    gain_max: float


@dataclass
class OrganizerResult:
    graph: str
    theta: float
    alpha: float
    depths_before: list[int]
    depths_after: list[int]
    moves: list[Move]
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    stop_reason: str
    stages: list[StageModel] = field(repr=False, default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("stages")
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def __str__(self) -> str:
        return format_organizer(self)


def stage_models(graph: Graph, alpha: float = 3.0) -> list[StageModel]:
    report = receptive_field_3d(graph, alpha)
    users = graph.users()
    models = []
    for s in report.stages:
        convs = [graph.node(layer.node) for layer in s.layers]
        layers = [(*c.inputs[1].shape[2:], c.attrs["dilations"][0], c.attrs["groups"],
                   c.inputs[1].shape[0]) for c in convs]
        last = convs[-1]
        o, cg, kh, kw = last.inputs[1].shape
        g = last.attrs["groups"]
        cin_new = o                                  # appended copy: width -> width
        params = o * (cin_new // g) * kh * kw
        if len(last.inputs) == 3:
            params += o
        bn = [u for u, _ in users.get(id(last.outputs[0]), []) if u.op == "batch_norm"]
        if bn:
            params += 2 * o
        out_hw = last.outputs[0].shape[2] * last.outputs[0].shape[3]
        # the copy runs at the stride-1 resolution of the stage
        if tuple(last.attrs["strides"]) != (1, 1):
            out_hw = s.h0 * s.w0
        models.append(StageModel(s.h0, s.w0, s.c0, layers, params,
                                 o * (cin_new // g) * kh * kw * out_hw))
    return models


def organize_stages(graph: Graph, theta: float = 0.0, alpha: float = 3.0,
                    max_iters: int = 100) -> OrganizerResult:
    """Run the organizer on the conv stages of `graph`."""
    stages = stage_models(graph, alpha)
    if len(stages) < 2:
        raise InputError(f"graph {graph.name!r}: the organizer needs at least 2 conv stages, "
                         f"found {len(stages)}")
    depths = [len(s.layers) for s in stages]
    before = list(depths)
    moves: list[Move] = []
    seen = {tuple(depths)}
    reason = f"stopped after {max_iters} iterations"
    for _ in range(max_iters):
        mins = [(stages[i].gain_of(depths[i], alpha), i) for i in range(len(stages))
                if depths[i] >= 2]
        if not mins:
            reason = "every stage is down to one conv"
            break
        g_min, src = min(mins, key=lambda t: t[0])
        cands = [(stages[i].gain_of(depths[i] + 1, alpha), i) for i in range(len(stages))
                 if i != src]
        g_max, tgt = max(cands, key=lambda t: t[0])
        if g_max > g_min and g_max > theta:
            depths[src] -= 1
            depths[tgt] += 1
            moves.append(Move("move", src, tgt, g_min, g_max))
        elif g_max < theta and g_min < theta:
            depths[src] -= 1
            moves.append(Move("delete", src, None, g_min, g_max))
        else:
            reason = (f"min gain {g_min:.3f} (stage {src + 1}) >= best gain of a move "
                      f"{g_max:.3f} (stage {tgt + 1})")
            break
        if tuple(depths) in seen:
            reason = f"stopped: stage depths {depths} repeat"
            break
        seen.add(tuple(depths))
    base = cost_model(graph, FULL_PRECISION)
    macs = sum(node_macs(n) for n in graph.nodes) // max(graph.inputs[0].shape[0], 1)
    dparams = sum((a - b) * s.layer_params for a, b, s in zip(depths, before, stages))
    dmacs = sum((a - b) * s.layer_macs for a, b, s in zip(depths, before, stages))
    return OrganizerResult(graph.name, theta, alpha, before, depths, moves, base.fp_params,
                           base.fp_params + dparams, macs, macs + dmacs, reason, stages)


def format_organizer(r: OrganizerResult) -> str:
    lines = [f"stage-level organizer (3DRF paper sec. 4.1, theta = {r.theta:g}, "
             f"alpha = {r.alpha:g}) on {r.graph}",
             f"convs per stage: {r.depths_before} -> {r.depths_after}"]
    for i, m in enumerate(r.moves, 1):
        if m.action == "move":
            lines.append(f"  {i}. move the last conv of stage {m.source + 1} (gain "
                         f"{m.gain_min:.3f}) to the end of stage {m.target + 1} "
                         f"(gain there {m.gain_max:.3f})")
        else:
            lines.append(f"  {i}. delete the last conv of stage {m.source + 1} (gain "
                         f"{m.gain_min:.3f}; best gain elsewhere {m.gain_max:.3f})")
    lines += [f"  {r.stop_reason}",
              f"params {r.params_before:,} -> {r.params_after:,}; "
              f"MACs {r.macs_before:,} -> {r.macs_after:,} (per sample)",
              "advice only: the changed architecture must be retrained"]
    return "\n".join(lines)


__all__ = ["StageModel", "Move", "OrganizerResult", "stage_models", "organize_stages",
           "format_organizer"]
