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
"""
from __future__ import annotations

import numpy as np

from ..compiler.ir import Graph, Node
from ..errors import EdgeccError, InputError, ShapeError
from ..kernels import binary as B
from ..kernels.reference import IMPLS
from .interpreter import check_inputs

NATIVE_OPS = ("binary_conv2d", "binary_linear")


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

    def __call__(self, x, phi, t, bias):
        t = np.asarray(t, dtype=np.float64).T            # [C, P] -> [P, C]
        phi = np.asarray(phi, dtype=np.float64)
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
        layer = B.BinaryConv2d(self.weights, packed.planes, in_signed=packed.signed, phi=phi,
                               bias=bias, threads=self.threads, isa=self.isa, **self.geometry)
        y = layer(packed)
        return y if self.conv else y.reshape(y.shape[0], y.shape[1])


class Engine:
    """A graph prepared for execution: binary layers packed, other ops on reference kernels."""

    def __init__(self, graph: Graph, threads: int = 0, isa: str = ""):
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

    def __call__(self, *arrays) -> list[np.ndarray]:
        graph = self.graph
        env = {id(v): a for v, a in zip(graph.inputs, check_inputs(graph, arrays))}
        last_use = {id(v): i for i, n in enumerate(graph.nodes) for v in n.inputs}
        keep = {id(v) for v in graph.outputs}
        for i, n in enumerate(graph.nodes):
            ins = [v.data if v.is_constant else env[id(v)] for v in n.inputs]
            try:
                if id(n) in self.binary:
                    outs = [self.binary[id(n)](ins[0], ins[2], ins[3], ins[4] if len(ins) == 5 else None)]
                else:
                    outs = IMPLS[n.op](ins, n.attrs)
            except (InputError, ShapeError) as e:   # say which node the kernel rejected
                raise type(e)(f"node {n.name!r} (op {n.op}): {e}") from e
            except EdgeccError:
                raise
            except Exception as e:  # a kernel bug or bad data: name the node, keep the cause
                raise EdgeccError(f"node {n.name!r} (op {n.op}) failed: {type(e).__name__}: {e}") from e
            for v, arr in zip(n.outputs, outs):
                if tuple(arr.shape) != v.shape or arr.dtype != v.dtype.numpy:
                    raise EdgeccError(f"node {n.name!r} (op {n.op}): kernel produced {arr.dtype}"
                                      f"{list(arr.shape)}, IR says {v.type}")
                env[id(v)] = arr
            for v in n.inputs:   # free activations nobody reads any more
                if last_use.get(id(v)) == i and id(v) not in keep and not v.is_constant:
                    env.pop(id(v), None)
        return [v.data.copy() if v.is_constant else env[id(v)] for v in graph.outputs]


def run(graph: Graph, *arrays, threads: int = 0, isa: str = "") -> list[np.ndarray]:
    """Execute `graph` on `arrays` (binary layers on the native binary engine)."""
    return Engine(graph, threads=threads, isa=isa)(*arrays)
