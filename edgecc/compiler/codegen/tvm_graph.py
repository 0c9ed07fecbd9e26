"""Lower a whole IR graph to TVM: binary layers through edgecc's own TE kernels
(tvm_binary), float layers through plain TE / topi compute definitions.

Each node becomes one PrimFunc ("n<index>_<op>") of a single IRModule that is compiled
once; a small Python executor calls them in graph order on TVM tensors. Constants
(weights, phi, thresholds, folded batch norms) are uploaded once; binary weight bases
are bit-packed at compile time.

    mod = TvmGraph(graph, target="llvm")     # or "cuda" (sm_90, needs nvcc to build)
    logits, = mod(x)                          # numpy in, numpy out (needs a device)

Float ops on CUDA get TVM's generic GPU schedule (dlight Fallback). Binary layers get
one of BINARY_SCHEDULES: on CUDA the 1-bit tensor-core implicit GEMM with mma.sync
(tvm_tensorcore, the default), the same GEMM with Hopper's wgmma (sm_90a; unproven on
hardware so far) or the CUDA-core popcount schedule (tvm_binary.schedule_cuda); on
LLVM edgecc's CPU schedule (the default) or a tensor-core kernel's CPU emulation (same
index math, used to check it without a GPU). `layers` records every node's schedule;
`plan()` is the call plan that tvm_export writes and edgecc.runtime.tvm_artifact runs.
The batch size is the graph's (shapes are static).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import InputError, ShapeError, UnsupportedOpsError
from ..ir import Graph, Node
from . import tvm_binary as TB
from . import tvm_tensorcore as TC

TARGETS = ("llvm", "cuda")
# binary layer schedules per target (first: the default) and their names in model.json
# ("wgmma": Hopper sm_90a; the module is then built for sm_90a, and it is unproven on hardware)
BINARY_SCHEDULES = {"llvm": ("llvm", "tensorcore", "wgmma"), "cuda": ("tensorcore", "popc", "wgmma")}
SCHEDULE_NAMES = {("llvm", "llvm"): "llvm", ("llvm", "tensorcore"): "llvm tensor-core emulation",
                  ("llvm", "wgmma"): "llvm wgmma emulation", ("cuda", "tensorcore"): TC.SCHEDULE_NAME,
                  ("cuda", "wgmma"): TC.WGMMA_SCHEDULE_NAME, ("cuda", "popc"): "cuda popc"}
TENSOR_CORE_TILES = {"tensorcore": TC.TensorCoreTiles(), "wgmma": TC.WGMMA_TILES}
FLOAT_SCHEDULE_NAMES = {"llvm": "llvm", "cuda": "cuda dlight fallback"}


# ---- float ops as TE computes ------------------------------------------------------------
def _elementwise(fn):
    def lower(ins, a):
        from tvm import te
        x = ins[0]
        return te.compute(x.shape, lambda *i: fn(x[i], a), name="y")
    return lower


def _unary(name):
    def fn(v, a):
        from tvm import te, tirx
        zero = tirx.const(0, "float32")
        if name == "relu":
            return tirx.max(v, zero)
        if name == "sigmoid":
            return te.sigmoid(v)
        if name == "tanh":
            return te.tanh(v)
        if name == "identity":
            return v
        if name == "leaky_relu":
            return tirx.Select(v >= zero, v, v * tirx.const(a["alpha"], "float32"))
        if name == "clip":
            lo, hi = a["min"], a["max"]
            out = v if lo is None else tirx.max(v, tirx.const(lo, "float32"))
            return out if hi is None else tirx.min(out, tirx.const(hi, "float32"))
        raise AssertionError(name)
    return _elementwise(fn)


def _broadcast(op):
    def lower(ins, a):
        from tvm import topi
        return {"add": topi.add, "sub": topi.subtract, "mul": topi.multiply, "div": topi.divide}[op](*ins)
    return lower


def _conv2d(ins, a):
    from tvm import te, topi
    x, w = ins[0], ins[1]
    pads = list(a["pads"])
    pads = [pads[0], pads[1], pads[2], pads[3]]   # top, left, bottom, right
    if a["groups"] == 1:
        y = topi.nn.conv2d(x, w, list(a["strides"]), pads, list(a["dilations"]), "NCHW", "OIHW", "float32")
    else:
        y = topi.nn.group_conv2d_nchw(x, w, list(a["strides"]), pads, list(a["dilations"]), a["groups"],
                                      "float32")
    if len(ins) == 3:
        b = ins[2]
        y = te.compute(y.shape, lambda n, o, i, j: y[n, o, i, j] + b[o], name="bias_add")
    return y


def _batch_norm(ins, a):
    from tvm import te
    x, scale, bias, mean, var = ins
    eps = float(a["eps"])

    def f(*i):
        c = i[1]
        return (x[i] - mean[c]) * (scale[c] / te.sqrt(var[c] + eps)) + bias[c]
    return te.compute(x.shape, f, name="bn")


def _global_avg_pool(ins, a):
    from tvm import te
    x = ins[0]
    n, c, h, w = x.shape
    ry, rx = te.reduce_axis((0, h), "ry"), te.reduce_axis((0, w), "rx")
    s = te.compute((n, c, 1, 1), lambda a0, a1, a2, a3: te.sum(x[a0, a1, ry, rx], axis=[ry, rx]), name="gsum")
    return te.compute(s.shape, lambda *i: s[i] / float(int(h) * int(w)), name="gap")


def _max_pool2d(ins, a):
    from tvm import topi
    if a["ceil_mode"]:
        raise InputError("max_pool2d with ceil_mode=True is not lowered to TVM yet")
    strides = a["strides"] if a["strides"] is not None else a["kernel"]
    return topi.nn.pool2d(ins[0], list(a["kernel"]), list(strides), list(a["dilations"]),
                          list(a["pads"]), "max", False, "NCHW", True)


def _gemm(ins, a):
    from tvm import te
    am, bm = ins[0], ins[1]
    ta, tb = bool(a["trans_a"]), bool(a["trans_b"])
    m = am.shape[1] if ta else am.shape[0]
    k = am.shape[0] if ta else am.shape[1]
    n = bm.shape[0] if tb else bm.shape[1]
    r = te.reduce_axis((0, k), "k")
    av = (lambda i, kk: am[kk, i]) if ta else (lambda i, kk: am[i, kk])
    bv = (lambda kk, j: bm[j, kk]) if tb else (lambda kk, j: bm[kk, j])
    alpha, beta = float(a["alpha"]), float(a["beta"])
    y = te.compute((m, n), lambda i, j: te.sum(av(i, r) * bv(r, j), axis=r), name="mm")
    if len(ins) == 3:
        from tvm import topi
        c = ins[2]
        return te.compute((m, n), lambda i, j: alpha * y[i, j] + beta * topi.broadcast_to(c, (m, n))[i, j],
                          name="gemm")
    return te.compute((m, n), lambda i, j: alpha * y[i, j], name="gemm")


def _softmax(ins, a):
    from tvm import topi
    return topi.nn.softmax(ins[0], int(a["axis"]))


def _concat(ins, a):
    from tvm import topi
    return topi.concatenate(list(ins), int(a["axis"]))


def _transpose(ins, a):
    from tvm import topi
    return topi.transpose(ins[0], list(a["perm"]))


FLOAT_OPS = {
    "conv2d": _conv2d, "batch_norm": _batch_norm, "global_avg_pool": _global_avg_pool,
    "max_pool2d": _max_pool2d, "gemm": _gemm, "softmax": _softmax, "concat": _concat,
    "transpose": _transpose,
    **{op: _unary(op) for op in ("relu", "sigmoid", "tanh", "identity", "leaky_relu", "clip")},
    **{op: _broadcast(op) for op in ("add", "sub", "mul", "div")},
}
SHAPE_OPS = ("reshape", "flatten")
BINARY_OPS = ("binary_conv2d", "binary_linear")
SUPPORTED = tuple(FLOAT_OPS) + SHAPE_OPS + BINARY_OPS


# ---- lowering ---------------------------------------------------------------------------
@dataclass
class _Step:
    """One compiled PrimFunc call: argument keys (value ids or constant keys) -> outputs."""
    func: str | None                           # None: a reshape (a view, no kernel)
    args: list = field(default_factory=list)   # ("v", id) activation | ("c", key) constant
    out: int = 0                               # id of the output Value
    in_view: tuple | None = None               # view of the first argument's shape
    out_alloc: tuple | None = None             # allocation shape when it differs from the IR's


def _check_supported(graph: Graph) -> None:
    bad = {}
    for n in graph.nodes:
        if n.op not in SUPPORTED:
            bad.setdefault(n.op, []).append(n.name)
    if bad:
        raise UnsupportedOpsError([(op, "TVM backend", names) for op, names in sorted(bad.items())])
    for n in graph.nodes:
        if n.op in BINARY_OPS and not n.inputs[1].is_constant:
            raise InputError(f"node {n.name!r} ({n.op}): weight bases {n.inputs[1].name!r} must be "
                             "a constant for the TVM backend")
        if len(n.outputs) != 1:
            raise InputError(f"node {n.name!r} ({n.op}): multi-output nodes are not lowered to TVM")
        for v in list(n.inputs) + list(n.outputs):
            if v.dtype.numpy != np.float32 and not (n.op in BINARY_OPS and v is n.inputs[1]):
                raise InputError(f"node {n.name!r} ({n.op}): value {v.name!r} is {v.dtype}; the TVM "
                                 "backend lowers float32 graphs")


class TvmGraph:
    """An IR graph compiled with TVM for `target` ("llvm" or "cuda"); binary layers use
    `binary_schedule` (one of BINARY_SCHEDULES[target]; None: the target's default)."""

    def __init__(self, graph: Graph, target: str = "llvm", binary_schedule: str | None = None):
        tvm = TB._tvm()
        if target not in TARGETS:
            raise InputError(f"target={target!r}: expected one of {TARGETS}")
        allowed = BINARY_SCHEDULES[target]
        binary_schedule = binary_schedule or allowed[0]
        if binary_schedule not in allowed:
            raise InputError(f"binary_schedule={binary_schedule!r}: target {target!r} offers {allowed}")
        _check_supported(graph)
        self.graph, self.target, self.binary_schedule = graph, target, binary_schedule
        self.word_bits = 32 if (target == "cuda" or binary_schedule in TENSOR_CORE_TILES) else 64
        self.constants: dict[str, np.ndarray] = {}
        self.steps: list[_Step] = []
        self.layers: list[dict] = []       # every node: name, op, schedule
        funcs = {}
        for idx, node in enumerate(graph.nodes):
            if node.op in SHAPE_OPS:   # contiguous NCHW reshapes are views
                self.steps.append(_Step(None, [self._arg(node, 0)], id(node.outputs[0])))
                self.layers.append(dict(name=node.name, op=node.op, schedule="view"))
                continue
            name = f"n{idx}_{node.op}"
            func, step = self._lower_node(node, name)
            funcs[name] = func.with_attr("global_symbol", name)
            self.steps.append(step)
            schedule = (SCHEDULE_NAMES[target, binary_schedule] if node.op in BINARY_OPS
                        else FLOAT_SCHEDULE_NAMES[target])
            self.layers.append(dict(name=node.name, op=node.op, func=name, schedule=schedule))
        self.module = tvm.IRModule(funcs)
        self.executable = self._compile()
        self._runner = None

    # -- per node ------------------------------------------------------------------------
    def _const_key(self, node: Node, k, data: np.ndarray) -> tuple[str, str]:
        key = f"c{len(self.constants)}"     # plain keys: they name files in params.npz
        self.constants[key] = np.ascontiguousarray(data)
        return ("c", key)

    def _arg(self, node: Node, k: int):
        v = node.inputs[k]
        return self._const_key(node, k, v.data) if v.is_constant else ("v", id(v))

    def _lower_node(self, node: Node, name: str):
        from tvm import te
        out = node.outputs[0]
        if node.op in BINARY_OPS:
            return self._lower_binary(node, name)
        ins = [te.placeholder(v.shape, v.dtype.numpy.name, name=f"in{k}") for k, v in enumerate(node.inputs)]
        try:
            y = FLOAT_OPS[node.op](ins, node.attrs)
        except InputError as e:
            raise InputError(f"node {node.name!r} ({node.op}): {e}") from None
        if tuple(int(d) for d in y.shape) != out.shape:
            raise ShapeError(f"node {node.name!r} ({node.op}): TVM lowering gives shape "
                             f"{[int(d) for d in y.shape]}, IR says {list(out.shape)}")
        func = te.create_prim_func(ins + [y])
        step = _Step(name, [self._arg(node, k) for k in range(len(node.inputs))], id(out))
        return self._schedule_float(func), step

    def _lower_binary(self, node: Node, name: str):
        x, wb = node.inputs[0], node.inputs[1]
        p = node.inputs[3].shape[1]
        if node.op == "binary_conv2d":
            x_shape, wb_data, attrs = x.shape, wb.data, node.attrs
        else:   # a fully-connected layer is a 1x1 convolution of a 1x1 image
            x_shape, wb_data = (*x.shape, 1, 1), wb.data[..., None, None]
            attrs = dict(strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), groups=1,
                         weight_basis=node.attrs["weight_basis"], act_basis=node.attrs["act_basis"])
        try:
            spec = TB.BinaryConvSpec.from_node_attrs(x_shape, wb_data.shape, p, attrs, self.word_bits)
            packed = TB.pack_weight_bases(wb_data, spec)
        except (InputError, ShapeError) as e:
            raise type(e)(f"node {node.name!r} ({node.op}): {e}") from None
        with_bias = len(node.inputs) == 5
        if self.binary_schedule in TENSOR_CORE_TILES:
            tiles = TENSOR_CORE_TILES[self.binary_schedule]
            try:
                func = TC.layer_prim_func(spec, output="float", emulate=self.target != "cuda", tiles=tiles)
            except InputError as e:
                raise InputError(f"node {node.name!r} ({node.op}): {e}") from None
            bias = self._arg(node, 4) if with_bias else self._const_key(node, "bias", np.zeros(spec.o, np.float32))
            args = [self._arg(node, 0), self._const_key(node, "wg", TC.pack_gemm_weights(wb_data, spec, tiles)),
                    self._const_key(node, "wones", TC.weight_tap_ones(wb_data, spec)), self._arg(node, 2),
                    self._arg(node, 3), bias]
        else:
            func = TB.layer_prim_func(spec, output="float", with_bias=with_bias)
            func = TB.schedule_cuda(func, spec) if self.target == "cuda" else TB.schedule_llvm(func, spec)
            args = [self._arg(node, 0), self._const_key(node, 1, packed), self._arg(node, 2), self._arg(node, 3)]
            if with_bias:
                args.append(self._arg(node, 4))
        step = _Step(name, args, id(node.outputs[0]))
        if node.op == "binary_linear":   # runs on 4-D views of the 2-D tensors
            step.in_view, step.out_alloc = x_shape, (x.shape[0], spec.o, 1, 1)
        return func, step

    def _schedule_float(self, func):
        if self.target != "cuda":
            return func
        import tvm
        from tvm.s_tir import dlight as dl
        mod = tvm.IRModule({"main": func})
        with tvm.target.Target(TB.CUDA_TARGET):
            mod = dl.ApplyDefaultSchedule(dl.gpu.Fallback())(mod)
        return mod["main"]

    def _compile(self):
        import tvm
        if self.target == "cuda":
            arch = "sm_90a" if self.binary_schedule == "wgmma" else TB.CUDA_TARGET["arch"]
            self.tvm_target = tvm.target.Target({**TB.CUDA_TARGET, "arch": arch}, host=TB.LLVM_TARGET)
        else:
            self.tvm_target = tvm.target.Target(TB.LLVM_TARGET)
        return tvm.compile(self.module, target=self.tvm_target)

    # -- the call plan and execution ------------------------------------------------------
    def plan(self) -> dict:
        """JSON-able call plan (value keys "v<k>", constant keys of self.constants)."""
        keys: dict[int, str] = {}

        def key(vid: int) -> str:
            return keys.setdefault(vid, f"v{len(keys)}")
        values = {id(v): v for n in self.graph.nodes for v in n.outputs}
        inputs = [dict(name=v.name, key=key(id(v)), shape=list(v.shape), dtype=v.dtype.numpy.name)
                  for v in self.graph.inputs]
        steps = []
        for s in self.steps:
            v = values[s.out]
            steps.append(dict(func=s.func, args=[[kind, k if kind == "c" else key(k)] for kind, k in s.args],
                              out=key(s.out), shape=list(v.shape), dtype=v.dtype.numpy.name,
                              in_view=list(s.in_view) if s.in_view else None,
                              out_alloc=list(s.out_alloc) if s.out_alloc else None))
        outputs = []
        for v in self.graph.outputs:
            source = ["c", self._output_constant(v)] if v.is_constant else ["v", key(id(v))]
            outputs.append(dict(name=v.name, source=source, shape=list(v.shape), dtype=v.dtype.numpy.name))
        return dict(inputs=inputs, steps=steps, outputs=outputs)

    def _output_constant(self, v) -> str:
        """A graph output that is a constant: stored once among the constants."""
        for k, data in self.constants.items():
            if data is v.data:
                return k
        return self._const_key(None, None, v.data)[1]

    def __call__(self, *arrays) -> list[np.ndarray]:
        from ...runtime.tvm_artifact import TvmPlanRunner
        if self._runner is None:
            plan = self.plan()
            self._runner = TvmPlanRunner(lambda: self.executable, plan, self.constants, self.target)
        return self._runner.run(*arrays)


def lower_graph(graph: Graph, target: str = "llvm") -> TvmGraph:
    """Compile `graph` with TVM for "llvm" or "cuda" (see TvmGraph)."""
    return TvmGraph(graph, target)
