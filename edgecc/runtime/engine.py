"""Run an IR graph on edgecc's native kernels where they exist, the numpy reference
kernels elsewhere.

Native today: binary_conv2d and binary_linear (PA, ABC-Net and sign layers) through
the binary engine (edgecc.kernels.binary: bit-packed planes, AND/XNOR-popcount
convolution, phi/bias epilogue). Their weight bases are packed once, when the Engine
is built; phi and bias are read at run time (they may be computed by the graph, e.g.
before merge_pa_coefficients runs).

    run(graph, *arrays, threads=0, isa="")   # threads 0: all OpenMP threads; isa "": best
    Engine(graph, threads=..., isa=...)(*arrays)   # prepare once, call many times

IR thresholds t are [C, P]; the engine takes them as [P, C]. "pm1" activations with
P > 1 thresholds are P independent +-1 tensors: the engine packs one +-1 plane per
threshold and sums the P convolutions (each with its phi[:, :, j]).

Plane links (edgecc.compiler.passes.plane_outputs): a binary layer whose output only
binary layers read, all with one threshold table, writes their planes from its
epilogue and they skip their pack step (identical bits). The executor still sees a
tensor of the IR's shape and dtype: a NaN-filled stand-in that carries the planes.
Engine(graph, plane_outputs=False) turns the links off.
"""
from __future__ import annotations

import numpy as np

from ..compiler.ir import Graph, Node
from ..compiler.passes.plane_outputs import plan_plane_outputs
from ..errors import EdgeccError, InputError
from ..kernels import binary as B
from ..kernels.reference import IMPLS
from .interpreter import execute, reference_kernel

NATIVE_OPS = ("binary_conv2d", "binary_linear")


class _PlaneTensor(np.ndarray):
    """Stands for a float tensor that only binary layers read: NaN values of the IR's
    shape and dtype (what the executor checks, no memory), carrying the packed planes."""
    packed: B.PackedActivations


def _plane_tensor(shape, packed: B.PackedActivations) -> _PlaneTensor:
    a = np.broadcast_to(np.float32(np.nan), shape).view(_PlaneTensor)
    a.packed = packed
    return a


def _one_conv(node: Node) -> bool:
    """The layer is one convolution per call (not P summed +-1 ones), so its epilogue
    sees the whole y and its input can be a single set of planes."""
    return not (node.attrs["act_basis"] == "pm1" and node.inputs[3].shape[1] > 1)


class _BinaryLayer:
    """One binary_conv2d / binary_linear node with its packed weight bases."""

    def __init__(self, node: Node, threads, isa):
        wb = node.inputs[1]
        if not wb.is_constant:
            raise InputError(f"node {node.name!r} ({node.op}): weight bases {wb.name!r} must be a "
                             "constant for the binary engine")
        a = node.attrs
        self.node, self.threads, self.isa = node, threads, isa
        self.conv = node.op == "binary_conv2d"
        self.signed_w = a["weight_basis"] == "pm1"
        self.signed_x = a["act_basis"] == "pm1"
        allowed = (-1, 1) if self.signed_w else (0, 1)
        if not np.isin(wb.data, allowed).all():
            raise InputError(f"node {node.name!r} ({node.op}): weight bases {wb.name!r} hold values "
                             f"outside {set(allowed)} (weight_basis {a['weight_basis']!r})")
        data = wb.data if self.conv else wb.data[..., None, None]
        groups = a["groups"] if self.conv else 1
        self.weights = B.pack_weights(data, signed=self.signed_w, groups=groups)
        self.geometry = dict(stride=a["strides"], padding=a["pads"], dilation=a["dilations"]) \
            if self.conv else {}
        self.out_planes = None   # (thresholds [Q, C_out], signed) of the readers, when linked

    def __call__(self, x, phi, t, bias):
        t = np.asarray(t, dtype=np.float64).T            # [C, P] -> [P, C]
        phi = np.asarray(phi, dtype=np.float64)
        if isinstance(x, _PlaneTensor):                  # planes written by the producer
            packed = x.packed    # one plane reads as {0,1} or +-1 alike: take this layer's view
            if packed.signed != self.signed_x:
                packed = B.PackedActivations(packed.words, packed.channels, self.signed_x)
            return self._conv(packed, phi, bias)
        x4 = x if self.conv else x[:, :, None, None]
        if not self.signed_x:
            return self._conv(B.pack_activations(x4, t, threads=self.threads, isa=self.isa), phi, bias)
        y = None
        for j in range(t.shape[0]):          # one +-1 plane per threshold
            packed = B.pack_activations(x4, t[j:j + 1], signed=True, threads=self.threads, isa=self.isa)
            yj = self._conv(packed, phi[:, :, j:j + 1], bias if j == 0 else None)
            y = yj if y is None else y + yj
        return y

    def _conv(self, packed, phi, bias):
        out_t, out_signed = self.out_planes or (None, False)
        layer = B.BinaryConv2d(self.weights, packed.planes, in_signed=packed.signed, phi=phi,
                               bias=bias, out_thresholds=out_t, out_signed=out_signed,
                               threads=self.threads, isa=self.isa, **self.geometry)
        y = layer(packed)
        if self.out_planes is not None:
            n, _, h, w = packed.shape
            oh, ow = layer.output_size(h, w)
            shape = (n, self.weights.out_channels, oh, ow) if self.conv else (n, self.weights.out_channels)
            return _plane_tensor(shape, y)
        return y if self.conv else y.reshape(y.shape[0], y.shape[1])


class Engine:
    """A graph prepared for execution: binary layers packed, other ops on reference kernels."""

    def __init__(self, graph: Graph, threads: int = 0, isa: str = "", plane_outputs: bool = True):
        if not isinstance(threads, (int, np.integer)) or threads < 0:
            raise InputError(f"threads={threads!r}: expected 0 (all) or a positive integer")
        self.graph = graph
        self.threads = None if threads == 0 else int(threads)
        self.isa = B._isa(isa)
        self.binary = {id(n): _BinaryLayer(n, self.threads, self.isa)
                       for n in graph.nodes if n.op in NATIVE_OPS}
        missing = sorted({n.op for n in graph.nodes if n.op not in NATIVE_OPS and n.op not in IMPLS})
        if missing:
            raise EdgeccError(f"graph {graph.name!r}: no kernel for op(s) {missing}")
        self.planes = plan_plane_outputs(graph, enabled=plane_outputs, compiled_binary=_one_conv)
        for link in self.planes.links.values():
            reader = link.consumers[0]
            self.binary[id(link.producer)].out_planes = (
                link.thresholds.data.astype(np.float64).T, reader.attrs["act_basis"] == "pm1")

    def _kernel(self, node: Node):
        layer = self.binary.get(id(node))
        if layer is None:
            return reference_kernel(node)
        return lambda ins: [layer(ins[0], ins[2], ins[3], ins[4] if len(ins) == 5 else None)]

    def __call__(self, *arrays) -> list[np.ndarray]:
        return execute(self.graph, arrays, self._kernel)


def run(graph: Graph, *arrays, threads: int = 0, isa: str = "") -> list[np.ndarray]:
    """Execute `graph` on `arrays` (binary layers on the native binary engine)."""
    return Engine(graph, threads=threads, isa=isa)(*arrays)
