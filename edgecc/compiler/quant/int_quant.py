"""Post-training integer quantization (int8 / int16) of a float IR graph.

    qgraph, report = quantize_int(graph, bits=8, calib=[x0, x1, ...])
    qgraph, report = quantize_int(graph, bits=8, calib="data-free")

Run it AFTER default_pipeline() (batch norms folded into conv weights/bias). Every
conv2d with constant f32 weights (grouped and depthwise included) becomes `qconv2d`
(semantics in ir/ops.py):
  - weights: per-output-channel symmetric, w_scale[o] = max|w[o]| / qmax, integers
    rint(w / w_scale) (round half to even, float64); an all-zero row gets w_scale 1;
  - activations: one symmetric scale per conv input, x_scale = c / qmax, from the
    calibration activations of that input:
      int8:  c = the MSE-optimal clipping bound (grid search over (0, max|x|],
             calibration.range_mse): it clips the sparse tail that max-abs spends int8
             steps on. On digits (benchmarks/int_digits.py) all of max-abs, the 99.99th
             percentile and MSE keep float accuracy; MSE gives the lowest logit error.
      int16: c = max|x| (calibration.range_max_abs): 32767 steps leave no reason to clip;
  - scale[o] = float32(x_scale * w_scale[o]); bias = the float bias (0 if none);
  - a relu that is the conv's only consumer fuses into qconv2d(relu=True).
A weight constant read by several convs (shared weights) is quantized once and stays one
constant: w_scale depends only on the weight, so every reader agrees on it.
Everything else (gemm classifier, batch norms that did not fold, pools, adds) stays
float; the report says for every conv/dense layer its precision, x_scale, and why a
layer stayed float.

Calibration: `calib` is a non-empty list of input samples, each one array per graph
input (a bare array for a one-input graph) with exactly the graph's input shape; they
run through the reference interpreter and the float activations at every conv input are
recorded. "data-free" synthesizes the samples from the batch-norm statistics the graph
keeps (data_free.synthesize_calibration: batch_norm nodes, or the statistics folding
left in node.meta["folded_bn"]); to synthesize on the graph before folding, call
synthesize_calibration(unfolded_graph) first and pass its result as `calib`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ...errors import InputError
from ..ir import DType, Graph, Node, Value, verify
from . import calibration

QMAX = {8: 127, 16: 32767}
WEIGHT_DTYPE = {8: np.int8, 16: np.int16}
COMPUTE_OPS = ("conv2d", "gemm", "matmul", "indexed_conv2d", "aw_conv2d")


@dataclass
class LayerQuant:
    """How one conv/dense layer was compiled."""
    node: str
    op: str
    precision: str                    # "int8", "int16" or "float"
    x_scale: float | None = None
    relu_fused: bool = False
    reason: str = ""                  # why the layer stayed float


@dataclass
class QuantReport:
    bits: int
    calibration: str                  # "data (k samples)" or "data-free (k samples)"
    estimator: str
    layers: list[LayerQuant] = field(default_factory=list)
    weight_bits_float: int = 0        # storage of all constants before / after
    weight_bits_quant: int = 0

    def layer(self, name: str) -> LayerQuant:
        for lq in self.layers:
            if lq.node == name:
                return lq
        raise KeyError(name)

    def __str__(self) -> str:
        lines = [f"int{self.bits} quantization, calibration {self.calibration}, "
                 f"activation range {self.estimator}; constants {self.weight_bits_float} -> "
                 f"{self.weight_bits_quant} bits"]
        for lq in self.layers:
            xs = f"x_scale={lq.x_scale:.6g}" if lq.x_scale is not None else ""
            extra = "+relu" if lq.relu_fused else lq.reason
            lines.append(f"  {lq.node:<32} {lq.op:<8} {lq.precision:<6} {xs:<22} {extra}")
        return "\n".join(lines)


def quantize_int(graph: Graph, *, bits: int = 8, calib: Sequence | str = "data-free",
                 skip: Sequence[str] = (), log: Callable[[str], None] | None = None,
                 data_free_samples: int | None = None, seed: int = 0,
                 estimator: Callable | None = None) -> tuple[Graph, QuantReport]:
    """A copy of `graph` with its convs as qconv2d (int8 or int16), and the report.
    `skip`: node names kept in float. `calib`: calibration samples or "data-free"
    (then `data_free_samples` and `seed` steer the synthesis). `estimator(values, qmax)
    -> clipping bound` overrides the activation-range rule (values: list of arrays)."""
    if bits not in QMAX:
        raise InputError(f"quantize_int: bits={bits!r}; supported: 8 or 16")
    names = {n.name for n in graph.nodes}
    unknown = sorted(set(skip) - names)
    if unknown:
        raise InputError(f"quantize_int: skip names unknown node(s) {unknown} of graph {graph.name!r}")
    if isinstance(calib, str):
        if calib != "data-free":
            raise InputError(f"quantize_int: calib={calib!r}; give a list of input samples or 'data-free'")
        from .data_free import synthesize_calibration
        samples = _check_calib(graph, synthesize_calibration(graph, n=data_free_samples, seed=seed))
        how = f"data-free ({len(samples)} batch(es) of {graph.inputs[0].shape[0]})"
    else:
        samples = _check_calib(graph, calib)
        how = f"data ({len(samples)} batch(es))"
    qmax = QMAX[bits]
    if estimator is None:
        estimator = _max_abs if bits == 16 else calibration.range_mse
    name = {_max_abs: "max |x|", calibration.range_mse: "MSE-optimal clipping"}.get(
        estimator, getattr(estimator, "__name__", "custom"))
    report = QuantReport(bits, how, name, weight_bits_float=storage_bits(graph))

    g = _clone(graph)
    plan = _plan(g, set(skip), report)
    ranges = _calibrate(g, samples, plan, qmax, estimator)
    uses = g.users()
    quantized: dict[int, tuple[Value, np.ndarray]] = {}   # id(float weight) -> (int weight, w_scale)
    x_scales = [_x_scale(ranges[id(conv.inputs[0])], qmax) for conv in plan]  # before rewiring
    for conv, x_scale in zip(plan, x_scales):
        relu = _fusable_relu(g, conv, uses)
        _replace(g, conv, relu, x_scale, bits, quantized)
        lq = report.layer(conv.name)
        lq.precision, lq.x_scale, lq.relu_fused = f"int{bits}", x_scale, relu is not None
        if log:
            log(f"{conv.name}: int{bits}, x_scale {x_scale:.6g}" + (", relu fused" if relu else ""))
    if log:
        for lq in report.layers:
            if lq.precision == "float":
                log(f"{lq.node} ({lq.op}): stays float: {lq.reason}")
    verify(g)
    report.weight_bits_quant = storage_bits(g)
    return g, report


def storage_bits(graph: Graph) -> int:
    """Bits of all distinct constants (shared ones once)."""
    return sum(v.type.numel * v.dtype.bits for v in graph.constants())


# ---- steps ----------------------------------------------------------------------------
def _check_calib(graph: Graph, calib) -> list[list[np.ndarray]]:
    if calib is None or isinstance(calib, np.ndarray) or not hasattr(calib, "__len__"):
        raise InputError("quantize_int: calib must be a list of input samples or 'data-free'")
    if len(calib) == 0:
        raise InputError("quantize_int: calib is empty; give at least one input sample")
    from ...runtime.interpreter import check_inputs
    out = []
    for i, sample in enumerate(calib):
        arrays = [sample] if len(graph.inputs) == 1 and not isinstance(sample, (list, tuple)) \
            else list(sample)
        try:
            out.append(check_inputs(graph, arrays, cast_float=True))
        except InputError as exc:
            raise InputError(f"quantize_int: calibration sample {i}: {exc}") from None
    return out


def _clone(graph: Graph) -> Graph:
    """Structural copy: new nodes and activation values, constants shared (not mutated)."""
    new: dict[int, Value] = {}

    def get(v: Value) -> Value:
        if v.is_constant:
            return v
        if id(v) not in new:
            c = Value(v.name, v.type)
            c.meta = dict(v.meta)
            new[id(v)] = c
        return new[id(v)]

    g = Graph(graph.name, [get(v) for v in graph.inputs], meta=dict(graph.meta))
    for n in graph.nodes:
        m = Node(n.name, n.op, [get(v) for v in n.inputs], [get(v) for v in n.outputs],
                 n.attrs, n.meta)
        for v in m.outputs:
            v.producer = m
        g.nodes.append(m)
    g.outputs = [get(v) for v in graph.outputs]
    return g


def _plan(g: Graph, skip: set[str], report: QuantReport) -> list[Node]:
    """The convs to quantize; every compute layer gets a report entry."""
    plan = []
    for n in g.nodes:
        if n.op not in COMPUTE_OPS:
            continue
        lq = LayerQuant(n.name, n.op, "float")
        report.layers.append(lq)
        if n.name in skip:
            lq.reason = "skipped by override"
        elif n.op in ("gemm", "matmul"):
            lq.reason = f"no integer {n.op} kernel"
        elif n.op != "conv2d":
            lq.reason = f"no integer kernel for {n.op}"
        elif n.inputs[0].is_constant:
            lq.reason = "input is a constant (constant folding computes it)"
        elif n.inputs[0].dtype != DType.f32:
            lq.reason = f"input is {n.inputs[0].dtype}, not f32"
        elif not all(v.is_constant and v.dtype == DType.f32 for v in n.inputs[1:]):
            lq.reason = "weight or bias is not an f32 constant"
        else:
            plan.append(n)
    return plan


def _max_abs(values, qmax: int) -> float:
    return calibration.range_max_abs(values)


def _calibrate(g: Graph, samples, convs: list[Node], qmax: int, estimator) -> dict[int, float]:
    """id(conv input value) -> clipping bound c, from the float activations."""
    from ...runtime.interpreter import execute, reference_kernel

    watched = {id(n.inputs[0]) for n in convs}
    seen: dict[int, list[np.ndarray]] = {}
    for v in g.inputs:
        if id(v) in watched:
            seen[id(v)] = []

    def kernel_for(node: Node):
        fn = reference_kernel(node)

        def run(ins):
            outs = fn(ins)
            for v, a in zip(node.outputs, outs):
                if id(v) in watched:
                    seen.setdefault(id(v), []).append(a)
            return outs
        return run

    for arrays in samples:
        for v, a in zip(g.inputs, arrays):
            if id(v) in watched:
                seen[id(v)].append(a)
        execute(g, arrays, kernel_for)
    bounds = {}
    for k, vals in seen.items():
        c = float(estimator(vals, qmax))
        if not (np.isfinite(c) and c >= 0):
            raise InputError(f"quantize_int: activation range estimator gave {c} (need finite >= 0)")
        bounds[k] = c
    return bounds


def _x_scale(bound: float, qmax: int) -> float:
    """float32 x_scale = bound / qmax (1.0 when the input was all zeros)."""
    s = float(np.float32(bound / qmax))
    return s if s > 0 and np.isfinite(s) else 1.0


def _fusable_relu(g: Graph, conv: Node, uses) -> Node | None:
    y = conv.outputs[0]
    readers = uses.get(id(y), [])
    if len(readers) != 1 or any(v is y for v in g.outputs):
        return None
    node = readers[0][0]
    return node if node.op == "relu" else None


def quantize_weight(w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel symmetric: (integer weights, w_scale float64 [O])."""
    qmax = QMAX[bits]
    w64 = w.astype(np.float64)
    w_scale = np.abs(w64).reshape(w.shape[0], -1).max(axis=1) / qmax
    w_scale[w_scale == 0] = 1.0              # an all-zero row: any scale, integers are 0
    q = np.clip(np.rint(w64 / w_scale.reshape((-1,) + (1,) * (w.ndim - 1))), -qmax, qmax)
    return q.astype(WEIGHT_DTYPE[bits]), w_scale


def _replace(g: Graph, conv: Node, relu: Node | None, x_scale: float, bits: int,
             quantized: dict) -> None:
    w = conv.inputs[1]
    if id(w) not in quantized:
        q, w_scale = quantize_weight(w.data, bits)
        quantized[id(w)] = (Graph.constant(g.unique_name(f"{w.name}.q{bits}"), q), w_scale)
    wq, w_scale = quantized[id(w)]
    o = w.shape[0]
    scale = (np.float64(x_scale) * w_scale).astype(np.float32)
    bias = conv.inputs[2].data.astype(np.float32) if len(conv.inputs) == 3 else np.zeros(o, np.float32)
    scale_c = Graph.constant(g.unique_name(f"{conv.name}.scale"), scale)
    bias_c = Graph.constant(g.unique_name(f"{conv.name}.qbias"), bias)
    old_out = (relu or conv).outputs[0]
    index = g.nodes.index(conv)
    g.remove_nodes([conv] + ([relu] if relu else []))
    attrs = {k: conv.attrs[k] for k in ("strides", "pads", "dilations", "groups")}
    node = g.add_node("qconv2d", [conv.inputs[0], wq, scale_c, bias_c],
                      {**attrs, "x_scale": x_scale, "relu": relu is not None},
                      name=conv.name, output_names=[old_out.name], index=index,
                      meta={**conv.meta, "quantized_from": "conv2d"})
    g.replace_all_uses(old_out, node.outputs[0])
