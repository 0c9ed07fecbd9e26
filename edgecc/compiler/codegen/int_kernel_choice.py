"""Which integer kernel runs a compiled `qconv2d` layer: edgecc's direct int kernel
(VNNI int8 / int16, weights packed at open), DFNT (weights transformed at open) or,
for int8 layers of models compiled with oneDNN, oneDNN's s8 x s8 -> s32 convolution.

    kernel, why = choose(node, bits, options)     # ("direct" | "dfnt" | "onednn", reason)

In order: a kernel forced for the layer (`options.layer_kernels[node.name]`) wins;
with `options.tune` every candidate is timed on this machine for this exact layer; else
the nearest point of the crossover sweep measured by benchmarks/dfnt_conv.py
(benchmarks/results/dfnt_conv.json) decides DFNT or direct, and a layer left to direct
goes to oneDNN where the rule measured by benchmarks/int8_conv_kernels.py says oneDNN
beats direct (`onednn_rule`). DFNT is only ever chosen where it is exact: its ring must
hold every possible |acc| (the overflow bound, from the actual weights) and it takes
groups == 1 and kernels up to its largest tile; oneDNN only for int8 weights, reductions
that int32 holds exactly, and (checked again when the model is opened) CPUs with VNNI.
Otherwise the layer runs direct and `why` says so.

`dfnt_layer(node, bits)` describes the DFNT form of a layer (ring, transform size,
weights dilated and split into stride phases) or says why there is none.
"""
from __future__ import annotations

import functools
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import InputError
from ..ir import Node

KERNELS = ("direct", "dfnt", "onednn")
QS8_MAX_REDUCTION_I32 = 131071   # direct_conv.h kQs8MaxReductionI32: K * 128 * 128 <= 2^31 - 1
QMAX = {8: 127, 16: 32767}
# Rings cheapest first, with the largest |result| each recovers exactly (2^(b-1) - 1).
# INT8 layers use F5 only: DFNT's int8 path is the int32-output ring.
RINGS = (("F5", 32), ("2^48+1", 48), ("F6", 64))
RING_LIMIT = {name: (1 << (b - 1)) - 1 for name, b in RINGS}
CROSSOVER_JSON = Path(__file__).resolve().parents[3] / "benchmarks" / "results" / "dfnt_conv.json"
TUNE_BUDGET_S = 1.0   # per layer, both kernels together
TUNE_MAX_REPS = 7


@dataclass
class DfntLayer:
    ring: str
    bits: int                 # ring bits: 32, 48 or 64
    transform_size: int
    weights: np.ndarray       # [O, C*sh*sw, qh, qw] of the layer's int dtype: dilated, stride phases
    bound: int                # largest possible |acc|: qmax * max_o sum|w[o]|


def layer_geometry(n: Node) -> dict:
    x, w, y = n.inputs[0], n.inputs[1], n.outputs[0]
    a = n.attrs
    return {"batch": x.shape[0], "in_channels": x.shape[1], "in_hw": tuple(x.shape[2:]),
            "out_channels": w.shape[0], "kernel": tuple(w.shape[2:]), "out_hw": tuple(y.shape[2:]),
            "strides": tuple(a["strides"]), "pads": tuple(a["pads"]), "dilations": tuple(a["dilations"]),
            "groups": a["groups"], "reduction": w.shape[1] * w.shape[2] * w.shape[3]}


def overflow_bound(w: np.ndarray, bits: int) -> int:
    """Largest |acc| any input can give: qmax * max over output channels of sum|w[o]|
    (exact Python int; inputs are clipped to +-qmax by the quantizer)."""
    row_sums = np.abs(w.astype(np.int64)).reshape(w.shape[0], -1).sum(axis=1)
    return QMAX[bits] * int(row_sums.max())


def dilate_and_split(w: np.ndarray, dilations, strides) -> np.ndarray:
    """OIHW weights -> the stride-1 kernel DFNT runs: zeros between dilated taps, then
    the stride phases as extra input channels (kernels/dfnt.py's polyphase layout)."""
    from ...kernels.dfnt import polyphase_weights
    o, c, kh, kw = w.shape
    dh, dw = dilations
    wd = np.zeros((o, c, (kh - 1) * dh + 1, (kw - 1) * dw + 1), dtype=w.dtype)
    wd[:, :, ::dh, ::dw] = w
    sh, sw = strides
    return polyphase_weights(wd, sh, sw) if (sh, sw) != (1, 1) else wd


def dfnt_layer(n: Node, bits: int) -> tuple[DfntLayer | None, str]:
    """The DFNT form of a qconv2d layer, or (None, why DFNT cannot run it exactly)."""
    from ...kernels.dfnt import choose_transform_size
    g = layer_geometry(n)
    if g["groups"] != 1:
        return None, f"DFNT has no grouped convolution (groups={g['groups']})"
    w = n.inputs[1].data
    bound = overflow_bound(w, bits)
    rings = RINGS[:1] if bits == 8 else RINGS
    ring = next(((name, b) for name, b in rings if bound <= RING_LIMIT[name]), None)
    if ring is None:
        last = rings[-1][0]
        return None, (f"DFNT overflow bound fails: |acc| can reach {bound} (qmax {QMAX[bits]} x max_o sum|w[o]|) "
                      f"> {RING_LIMIT[last]}, the exact range of {last}")
    wp = dilate_and_split(w, g["dilations"], g["strides"])
    qh, qw = wp.shape[2:]
    try:
        size = choose_transform_size(qh, qw, ring[0], g["out_hw"], wp.shape[1], wp.shape[0], g["batch"])
    except InputError as exc:
        return None, str(exc)
    return DfntLayer(ring[0], ring[1], size, np.ascontiguousarray(wp), bound), ""


def runnable(request: str) -> bool:
    """Whether this machine can run kernels for ISA `request` ("" = the best it has)."""
    from ... import _native
    try:
        _native.selected_isa(request)
        return True
    except ValueError:
        return False


def resolve_isa(request: str) -> str:
    """The kernel ISA a model compiled for `request` runs on this machine (the request
    itself when this machine cannot run it)."""
    from ... import _native
    try:
        return _native.selected_isa(request)
    except ValueError:
        return request or "scalar"


# ---- the three ways to decide ---------------------------------------------------------
def choose(n: Node, bits: int, options) -> tuple[str, str]:
    """("direct" | "dfnt" | "onednn", why) for qconv2d node `n` with `bits`-bit weights."""
    forced = options.layer_kernels.get(n.name)
    if forced is not None and forced not in KERNELS:
        raise InputError(f"layer kernel for node {n.name!r} (op {n.op}): {forced!r}, expected one of "
                         f"{', '.join(KERNELS)}")
    if forced == "onednn" and bits != 8:
        raise InputError(f"layer kernel for node {n.name!r} (op {n.op}): 'onednn' runs int8 layers only "
                         f"(s8 x s8 -> s32); this layer has int{bits} weights")
    if forced == "direct":
        return "direct", "direct forced for this layer"
    not_onednn = onednn_unavailable(n, bits, options)
    if forced == "onednn":
        if not_onednn:
            return "direct", f"onednn forced for this layer, but {not_onednn}: falls back to direct"
        return "onednn", "onednn forced for this layer" + ONEDNN_FALLBACK_NOTE
    layer, not_dfnt = dfnt_layer(n, bits)
    if forced == "dfnt":
        if layer is None:
            return "direct", f"dfnt forced for this layer, but {not_dfnt}: falls back to direct"
        return "dfnt", "dfnt forced for this layer"
    isa = resolve_isa(options.isa_request)
    if options.tune and (layer is not None or not not_onednn):
        if runnable(options.isa_request):
            return _tuned(n, bits, layer, isa, with_onednn=not not_onednn)
        kernel, why = _by_rules(n, bits, layer, not_dfnt, not_onednn, isa)
        return kernel, f"not tuned: this machine cannot run {options.isa_request} kernels; {why}"
    return _by_rules(n, bits, layer, not_dfnt, not_onednn, isa)


def _by_rules(n: Node, bits: int, layer, not_dfnt: str, not_onednn: str, isa: str) -> tuple[str, str]:
    kernel, why = _from_table(n, bits, layer, isa) if layer is not None else ("direct", not_dfnt)
    if kernel != "direct" or not_onednn:
        return kernel, why
    wins, rule = onednn_rule(n)
    if wins:
        return "onednn", rule + ONEDNN_FALLBACK_NOTE
    return "direct", f"{why}; {rule}"


# ---- oneDNN int8 ----------------------------------------------------------------------
ONEDNN_TABLE = "benchmarks/results/int8_conv_kernels.md, 1 thread"
ONEDNN_FALLBACK_NOTE = " (edgecc direct instead if, at open, oneDNN int8 is not exact on the CPU: no VNNI)"


def onednn_unavailable(n: Node, bits: int, options) -> str:
    """Why oneDNN cannot run this layer ("" = it can)."""
    if bits != 8:
        return f"oneDNN runs int8 layers only (this one is int{bits})"
    if not options.onednn:
        return "the model is compiled without oneDNN"
    g = layer_geometry(n)
    if g["reduction"] > QS8_MAX_REDUCTION_I32:
        return (f"reduction {g['reduction']} > {QS8_MAX_REDUCTION_I32}: oneDNN's int32 sums would not be exact")
    return ""


def onednn_rule(n: Node) -> tuple[bool, str]:
    """(oneDNN beats edgecc direct for this int8 layer, the rule that says so), from
    benchmarks/results/int8_conv_kernels.md (ResNet-18 and MobileNet layers, batch 1,
    1 thread, whole step with quantize / reorders): oneDNN wins the 3x3 depthwise
    layers with stride 2 (where edgecc's depthwise kernel was measured at its slowest,
    1.0-1.6 GMAC/s) or with outputs <= 7 wide (it puts one output row in 16 lanes: half
    of them idle), by 1.2-2.2x; everything else (ResNet 3x3 / 1x1 / stem, pointwise,
    stride-1 depthwise at >= 14x14) runs as fast or faster direct (oneDNN 0.2-1.05x,
    ratios near 1 flipping with load between runs)."""
    g = layer_geometry(n)
    depthwise = g["groups"] == g["in_channels"] == g["out_channels"] > 1
    measured_dw = depthwise and g["kernel"] == (3, 3) and g["dilations"] == (1, 1)
    if measured_dw and (max(g["strides"]) > 1 or g["out_hw"][1] <= 7):
        return True, (f"oneDNN beats edgecc direct on 3x3 depthwise layers with stride 2 or outputs <= 7 wide "
                      f"(this one: stride {g['strides'][0]}x{g['strides'][1]}, {g['out_hw'][0]}x{g['out_hw'][1]} "
                      f"out; oneDNN x1.2-2.2 faster in {ONEDNN_TABLE})")
    return False, f"oneDNN int8 wins only 3x3 depthwise layers with stride 2 or outputs <= 7 wide ({ONEDNN_TABLE})"


@functools.lru_cache(maxsize=1)
def _sweep() -> list[dict]:
    return json.loads(CROSSOVER_JSON.read_text())["sweep"]


def _from_table(n: Node, bits: int, layer: DfntLayer, isa: str) -> tuple[str, str]:
    if isa != "avx512":
        return "direct", f"DFNT has only scalar kernels on {isa} (the crossover was measured with AVX-512)"
    if not CROSSOVER_JSON.is_file():
        return "direct", f"no crossover table ({CROSSOVER_JSON.name} missing): direct by default"
    points = [p for p in _sweep() if p["dtype"] == f"int{bits}"]
    if not points:
        return "direct", f"no int{bits} points in the crossover table: direct by default"
    g = layer_geometry(n)
    k = max(layer.weights.shape[2:])
    size = max(g["out_hw"])
    channels = math.sqrt(layer.weights.shape[1] * g["out_channels"])

    def distance(p):   # log-scale: a factor 2 in any coordinate counts 1
        return (abs(math.log2(p["k"] / k)) + abs(math.log2(p["size"] / size))
                + abs(math.log2(p["channels"] / channels)))
    p = min(points, key=distance)
    point = (f"nearest crossover point int{bits},k={p['k']},{p['size']}x{p['size']},C={p['channels']} "
             f"(DFNT {p['speedup_vs_direct']}x direct, ring {p['modulus']})")
    ring_rank = [name for name, _ in RINGS]
    if p["winner"] == "dfnt" and ring_rank.index(layer.ring) > ring_rank.index(p["modulus"]):
        return "direct", f"{point}, but this layer's bound needs the costlier ring {layer.ring}"
    return p["winner"], point


def _tuned(n: Node, bits: int, layer: DfntLayer | None, isa: str, with_onednn: bool) -> tuple[str, str]:
    """Time the candidates (the integer conv only: quantizer and epilogue are shared;
    oneDNN's includes its NCHW reorders in and out)."""
    from ... import _native
    from ...kernels.direct import DirectConv2d
    g = layer_geometry(n)
    w = n.inputs[1].data
    qdt = np.int8 if bits == 8 else np.int16
    rng = np.random.default_rng(0)
    x = rng.integers(-QMAX[bits], QMAX[bits] + 1, size=(g["batch"], g["in_channels"], *g["in_hw"])).astype(qdt)
    direct = DirectConv2d(w, stride=g["strides"], padding=g["pads"], dilation=g["dilations"], groups=g["groups"],
                          isa=isa)
    run = {"direct": lambda: direct(x)}
    if layer is not None:
        run["dfnt"] = _dfnt_runner(layer, g, x, isa)
    not_timed = ""
    if with_onednn:
        from ...errors import EdgeccError
        from .onednn_s8 import OnednnS8Conv
        try:
            conv = OnednnS8Conv(onednn_shape(n), w)
            y = np.empty(conv.out_shape, np.int32)
            run["onednn"] = lambda: conv(x, 0, y)
        except EdgeccError as exc:   # e.g. no VNNI here: oneDNN int8 would not be exact
            with_onednn, not_timed = False, f"; onednn not timed: {exc}"
    for fn in run.values():   # warm-up: first-touch of buffers, thread pool start
        fn()
    times: dict[str, list[float]] = {name: [] for name in run}
    start = time.perf_counter()
    while len(times["direct"]) < TUNE_MAX_REPS and (time.perf_counter() - start < TUNE_BUDGET_S
                                                     or not times["direct"]):
        for name, fn in run.items():   # interleaved: load changes hit all alike
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
    best = min(med, key=med.get)
    parts = [f"direct {med['direct']:.3f} ms"]
    if layer is not None:
        parts.append(f"dfnt {layer.ring} n={layer.transform_size} {med['dfnt']:.3f} ms")
    if with_onednn:
        parts.append(f"onednn {med['onednn']:.3f} ms")
    why = (f"tuned on this machine ({isa}): {', '.join(parts)} (integer conv only, medians of "
           f"{len(times['direct'])}, {_native.omp_max_threads()} threads){not_timed}")
    return best, why + (ONEDNN_FALLBACK_NOTE if best == "onednn" else "")


def _dfnt_runner(layer: DfntLayer, g: dict, x: np.ndarray, isa: str):
    from ... import _native
    from ...kernels.dfnt import polyphase_input
    plan = _native.dfnt_prepare_conv(layer.weights.astype(np.int64), layer.bits, layer.transform_size, isa, "", 0)
    sh, sw = g["strides"]
    pads = g["pads"]
    if (sh, sw) == (1, 1):
        xd, dpads = x, pads
    else:
        xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
        qh, qw = layer.weights.shape[2:]
        xd = polyphase_input(xp, sh, sw, g["out_hw"][0] + qh - 1, g["out_hw"][1] + qw - 1)
        dpads = (0, 0, 0, 0)
    return lambda: _native.dfnt_run_conv(plan, xd, dpads, 0)


def onednn_shape(n: Node) -> tuple[int, ...]:
    """The layer as oneDNN wrappers take it: n c h w o kh kw sh sw dh dw pt pl pb pr groups."""
    g = layer_geometry(n)
    return (g["batch"], g["in_channels"], *g["in_hw"], g["out_channels"], *g["kernel"], *g["strides"],
            *g["dilations"], *g["pads"], g["groups"])
