"""Rebuild a float IR graph as a real PyTorch module: `to_torch(graph) -> fx.GraphModule`.

Layers become real nn submodules (conv2d -> nn.Conv2d with the weights copied,
batch_norm -> nn.BatchNorm2d in eval mode with the IR's running statistics, gemm ->
nn.Linear, relu -> nn.ReLU, pools -> nn pools, ...), so the result works with PyTorch
tooling that looks for modules: FX post-training quantization (quantize_fx), forward
hooks on BN layers (data-free calibration), autograd to the input.

The module is batch-agnostic where the IR allows it: a reshape that keeps the first
(batch) dimension becomes reshape(-1, ...), flatten(axis >= 1) keeps the batch axis.
Ops without a sensible PyTorch equivalent (binary layers, integer qconv2d,
aw_conv2d, ...) raise InputError naming the node.
"""
from __future__ import annotations

import math
import operator
import re
from typing import Sequence

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from ..compiler.ir import Graph, Node, Value
from ..errors import InputError

_CONVERTERS = {}


def _converter(*ops):
    def deco(fn):
        for op in ops:
            _CONVERTERS[op] = fn
        return fn
    return deco


def supported_ops() -> list[str]:
    return sorted(_CONVERTERS)


def to_torch(graph: Graph, taps: Sequence[Value] = ()) -> fx.GraphModule:
    """The float IR `graph` as an eval-mode torch.fx.GraphModule computing the same
    function (float32 in, float32 out; one output -> a tensor, several -> a tuple).
    With `taps` (IR values of the graph) it returns (outputs, [tap tensors]) instead,
    e.g. to read intermediate activations with autograd attached."""
    b = _Builder(graph)
    for n in graph.nodes:
        conv = _CONVERTERS.get(n.op)
        if conv is None:
            raise InputError(f"to_torch: node {n.name!r} (op {n.op}) has no PyTorch equivalent; "
                             f"supported ops: {', '.join(supported_ops())}")
        if any(not v.dtype.is_float for v in n.outputs):
            raise InputError(f"to_torch: node {n.name!r} (op {n.op}) produces "
                             f"{[str(v.type) for v in n.outputs]}; only float graphs convert")
        outs = conv(b, n)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for v, o in zip(n.outputs, outs):
            b.env[id(v)] = o
    res = [b.val(v) for v in graph.outputs]
    out = res[0] if len(res) == 1 else tuple(res)
    if taps:
        missing = [v.name for v in taps if id(v) not in b.env and not v.is_constant]
        if missing:
            raise InputError(f"to_torch: tap value(s) {missing} are not in graph {graph.name!r}")
        out = (out, [b.val(v) for v in taps])
    b.fx.output(out)
    gm = fx.GraphModule(b.root, b.fx, class_name=_ident(graph.name) or "IRModule")
    return gm.eval()


class _Builder:
    """Holds the FX graph under construction, the root module and value -> FX node."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.root = nn.Module()
        self.fx = fx.Graph()
        self.env: dict[int, fx.Node] = {}
        self.names: set[str] = set()
        for v in graph.inputs:
            if not v.dtype.is_float:
                raise InputError(f"to_torch: input {v.name!r} is {v.type}; only float inputs convert")
            self.env[id(v)] = self.fx.placeholder(self.unique(v.name))

    def unique(self, base: str) -> str:
        name = _ident(base) or "m"
        cand, i = name, 1
        while cand in self.names or hasattr(nn.Module, cand):
            cand, i = f"{name}_{i}", i + 1
        self.names.add(cand)
        return cand

    def val(self, v: Value) -> fx.Node:
        """FX node for an IR value; constants become buffers (one per constant)."""
        node = self.env.get(id(v))
        if node is None:
            if not v.is_constant:
                raise InputError(f"to_torch: value {v.name!r} is used before it is defined")
            name = self.unique("c_" + v.name)
            self.root.register_buffer(name, torch.from_numpy(np.array(v.data)))
            node = self.env[id(v)] = self.fx.get_attr(name)
        return node

    def module(self, n: Node, mod: nn.Module, *args) -> fx.Node:
        name = self.unique(n.name)
        self.root.add_module(name, mod)
        return self.fx.call_module(name, tuple(args))

    def call(self, fn, *args, **kwargs) -> fx.Node:
        return self.fx.call_function(fn, tuple(args), kwargs)

    def method(self, name, *args) -> fx.Node:
        return self.fx.call_method(name, tuple(args))


def _ident(name: str) -> str:
    s = re.sub(r"\W", "_", str(name))
    return "_" + s if s[:1].isdigit() else s


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32))


def _fail(n: Node, why: str):
    raise InputError(f"to_torch: node {n.name!r} (op {n.op}): {why}")


def _pad_arg(pads):
    """IR spatial pads (top, left, bottom, right) -> F.pad order (left, right, top, bottom)."""
    t, l, b, r = pads
    return (l, r, t, b)


# ---- convolution / normalization ---------------------------------------------------
@_converter("conv2d")
def _conv2d(b: _Builder, n: Node):
    a = n.attrs
    x = b.val(n.inputs[0])
    w = n.inputs[1]
    has_bias = len(n.inputs) == 3
    t, l, bo, r = a["pads"]
    symmetric = t == bo and l == r
    if not symmetric:  # PyTorch convs pad symmetrically: pad explicitly first
        x = b.call(F.pad, x, _pad_arg(a["pads"]))
    padding = (t, l) if symmetric else (0, 0)
    if not w.is_constant or (has_bias and not n.inputs[2].is_constant):
        args = [x, b.val(w), b.val(n.inputs[2]) if has_bias else None]
        return b.call(F.conv2d, *args, stride=a["strides"], padding=padding,
                      dilation=a["dilations"], groups=a["groups"])
    o, cg, kh, kw = w.shape
    conv = nn.Conv2d(cg * a["groups"], o, (kh, kw), stride=a["strides"], padding=padding,
                     dilation=a["dilations"], groups=a["groups"], bias=has_bias)
    with torch.no_grad():
        conv.weight.copy_(_t(w.data))
        if has_bias:
            conv.bias.copy_(_t(n.inputs[2].data))
    return b.module(n, conv, x)


@_converter("batch_norm")
def _batch_norm(b: _Builder, n: Node):
    x, scale, bias, mean, var = n.inputs
    if not all(v.is_constant for v in n.inputs[1:]):
        _fail(n, "scale, bias, mean and var must be constants")
    c = x.shape[1]
    cls = {4: nn.BatchNorm2d, 5: nn.BatchNorm3d}.get(x.type.rank, nn.BatchNorm1d)
    bn = cls(c, eps=n.attrs["eps"])
    with torch.no_grad():
        bn.weight.copy_(_t(scale.data))
        bn.bias.copy_(_t(bias.data))
        bn.running_mean.copy_(_t(mean.data))
        bn.running_var.copy_(_t(var.data))
    return b.module(n, bn.eval(), b.val(x))


@_converter("indexed_conv2d")
def _indexed_conv2d(b: _Builder, n: Node):
    """Gather each output group's input-channel ranges, then one grouped nn.Conv2d."""
    a = n.attrs
    if not all(v.is_constant for v in n.inputs[1:]):
        _fail(n, "weight and bias must be constants")
    idx = [c for group in a["ranges"] for s, e in group for c in range(s, e)]
    name = b.unique(n.name + "_index")
    b.root.register_buffer(name, torch.tensor(idx, dtype=torch.int64))
    x = b.call(torch.index_select, b.val(n.inputs[0]), 1, b.fx.get_attr(name))
    w = n.inputs[1]
    o, k, kh, kw = w.shape
    g = len(a["ranges"])
    t, l, bo, r = a["pads"]
    if not (t == bo and l == r):
        x = b.call(F.pad, x, _pad_arg(a["pads"]))
    conv = nn.Conv2d(k * g, o, (kh, kw), stride=a["strides"], dilation=a["dilations"],
                     padding=(t, l) if (t == bo and l == r) else (0, 0), groups=g,
                     bias=len(n.inputs) == 3)
    with torch.no_grad():
        conv.weight.copy_(_t(w.data))
        if len(n.inputs) == 3:
            conv.bias.copy_(_t(n.inputs[2].data))
    return b.module(n, conv, x)


# ---- elementwise unary -------------------------------------------------------------
_SIMPLE = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "hardswish": nn.Hardswish,
           "identity": nn.Identity}


@_converter(*_SIMPLE)
def _simple(b: _Builder, n: Node):
    return b.module(n, _SIMPLE[n.op](), b.val(n.inputs[0]))


@_converter("sign")
def _sign(b: _Builder, n: Node):
    return b.call(torch.sign, b.val(n.inputs[0]))


_COMPARE = {"lt": torch.lt, "le": torch.le, "gt": torch.gt, "ge": torch.ge, "eq": torch.eq, "ne": torch.ne}


@_converter("select")
def _select(b: _Builder, n: Node):
    x, y, p, q = (b.val(v) for v in n.inputs)
    return b.call(torch.where, b.call(_COMPARE[n.attrs["cmp"]], x, y), p, q)


@_converter("clip")
def _clip(b: _Builder, n: Node):
    lo, hi = n.attrs["min"], n.attrs["max"]
    x = b.val(n.inputs[0])
    if lo == 0.0 and hi is None:
        return b.module(n, nn.ReLU(), x)
    if lo == 0.0 and hi == 6.0:
        return b.module(n, nn.ReLU6(), x)
    if lo is not None and hi is not None:
        return b.module(n, nn.Hardtanh(lo, hi), x)
    if lo is None and hi is None:
        return b.module(n, nn.Identity(), x)
    return b.call(torch.clamp, x, min=lo, max=hi)


@_converter("leaky_relu")
def _leaky(b: _Builder, n: Node):
    return b.module(n, nn.LeakyReLU(n.attrs["alpha"]), b.val(n.inputs[0]))


@_converter("hardsigmoid")
def _hardsigmoid(b: _Builder, n: Node):
    x = b.val(n.inputs[0])
    if math.isclose(n.attrs["alpha"], 1 / 6, rel_tol=1e-6) and n.attrs["beta"] == 0.5:
        return b.module(n, nn.Hardsigmoid(), x)
    y = b.call(operator.add, b.call(operator.mul, x, n.attrs["alpha"]), n.attrs["beta"])
    return b.call(torch.clamp, y, min=0.0, max=1.0)


@_converter("prelu")
def _prelu(b: _Builder, n: Node):
    x, s = n.inputs
    if s.is_constant and x.type.rank >= 2:
        c, xr = x.shape[1], x.type.rank
        flat = s.data.reshape(-1)
        full = (1,) * (xr - s.type.rank) + s.shape   # slope shape aligned to x
        per_channel = full[1] == c and all(d == 1 for i, d in enumerate(full) if i != 1)
        if flat.size == 1 or per_channel:
            p = nn.PReLU(flat.size)
            with torch.no_grad():
                p.weight.copy_(_t(flat))
            return b.module(n, p, b.val(x))
    xv = b.val(x)
    return b.call(torch.where, b.call(operator.ge, xv, 0.0), xv, b.call(operator.mul, xv, b.val(s)))


# ---- pooling -----------------------------------------------------------------------
def _pool_padding(a: dict) -> tuple[int, int] | None:
    """The (h, w) padding of a PyTorch pool for these pads, or None: PyTorch pools pad
    symmetrically by at most half the kernel."""
    (kh, kw), (t, l, bo, r) = a["kernel"], a["pads"]
    return (t, l) if t == bo and l == r and 2 * t <= kh and 2 * l <= kw else None


@_converter("max_pool2d")
def _max_pool(b: _Builder, n: Node):
    a = n.attrs
    x = b.val(n.inputs[0])
    padding = _pool_padding(a)
    if padding is None:  # pad explicitly with -inf, then pool unpadded
        x = b.call(F.pad, x, _pad_arg(a["pads"]), value=-math.inf)
        padding = (0, 0)
    return b.module(n, nn.MaxPool2d(a["kernel"], a["strides"], padding, a["dilations"],
                                    ceil_mode=a["ceil_mode"]), x)


@_converter("avg_pool2d")
def _avg_pool(b: _Builder, n: Node):
    a = n.attrs
    x = b.val(n.inputs[0])
    padding = _pool_padding(a)
    if padding is None:
        if not a["count_include_pad"]:
            _fail(n, f"pads {a['pads']} (asymmetric or over half the kernel) with "
                     "count_include_pad=False have no PyTorch pool")
        x = b.call(F.pad, x, _pad_arg(a["pads"]))   # zero pads count: pad, then pool unpadded
        padding = (0, 0)
    return b.module(n, nn.AvgPool2d(a["kernel"], a["strides"], padding, ceil_mode=a["ceil_mode"],
                                    count_include_pad=a["count_include_pad"]), x)


@_converter("global_avg_pool")
def _gap(b: _Builder, n: Node):
    x = n.inputs[0]
    if x.type.rank == 4:
        return b.module(n, nn.AdaptiveAvgPool2d(1), b.val(x))
    return b.call(torch.mean, b.val(x), dim=tuple(range(2, x.type.rank)), keepdim=True)


@_converter("adaptive_avg_pool2d")
def _aap(b: _Builder, n: Node):
    return b.module(n, nn.AdaptiveAvgPool2d(n.attrs["output_size"]), b.val(n.inputs[0]))


# ---- elementwise binary --------------------------------------------------------------
_BINARY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv}


@_converter(*_BINARY)
def _binary(b: _Builder, n: Node):
    return b.call(_BINARY[n.op], b.val(n.inputs[0]), b.val(n.inputs[1]))


# ---- shape manipulation --------------------------------------------------------------
@_converter("concat")
def _concat(b: _Builder, n: Node):
    return b.call(torch.cat, [b.val(v) for v in n.inputs], dim=n.attrs["axis"])


@_converter("split")
def _split(b: _Builder, n: Node):
    parts = b.call(torch.split, b.val(n.inputs[0]), list(n.attrs["sizes"]), dim=n.attrs["axis"])
    return [b.call(operator.getitem, parts, i) for i in range(len(n.attrs["sizes"]))]


@_converter("slice")
def _slice(b: _Builder, n: Node):
    a = n.attrs
    index = [slice(None)] * n.inputs[0].type.rank
    for s, e, ax, st in zip(a["starts"], a["ends"], a["axes"], a["steps"]):
        if st < 0:
            _fail(n, f"negative slice step {st} (PyTorch slicing needs positive steps)")
        index[ax] = slice(s, e if e >= 0 else None, st)
    return b.call(operator.getitem, b.val(n.inputs[0]), tuple(index))


def _batch_shape(in_shape, out_shape) -> tuple:
    """Keep the batch dimension free when a reshape preserves it."""
    out = tuple(out_shape)
    if len(in_shape) and len(out) and out[0] == in_shape[0] and out[0] > 0:
        return (-1,) + out[1:]
    return out


@_converter("flatten")
def _flatten(b: _Builder, n: Node):
    x = n.inputs[0]
    ax = n.attrs["axis"]
    if ax == 0:
        return b.call(torch.reshape, b.val(x), (1, -1))
    return b.call(torch.reshape, b.val(x), (-1, math.prod(x.shape[ax:])))


@_converter("reshape")
def _reshape(b: _Builder, n: Node):
    x = n.inputs[0]
    return b.call(torch.reshape, b.val(x), _batch_shape(x.shape, n.attrs["shape"]))


@_converter("transpose")
def _transpose(b: _Builder, n: Node):
    return b.call(torch.permute, b.val(n.inputs[0]), tuple(n.attrs["perm"]))


def _channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    c = x.shape[1]
    return x.unflatten(1, (groups, c // groups)).transpose(1, 2).flatten(1, 2)


@_converter("channel_shuffle")
def _shuffle(b: _Builder, n: Node):
    return b.call(_channel_shuffle, b.val(n.inputs[0]), n.attrs["groups"])


@_converter("pad")
def _pad(b: _Builder, n: Node):
    a = n.attrs
    r = n.inputs[0].type.rank
    pads = a["pads"]
    torch_pads = []
    for d in reversed(range(r)):  # F.pad: last dimension first
        torch_pads += [pads[d], pads[d + r]]
    while len(torch_pads) > 2 and torch_pads[-2:] == [0, 0]:  # reflect/edge pad only trailing dims
        torch_pads = torch_pads[:-2]
    mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}[a["mode"]]
    if mode != "constant" and min(pads) < 0:
        _fail(n, f"negative pads {list(pads)} with mode {a['mode']!r}")
    if mode == "constant":
        return b.call(F.pad, b.val(n.inputs[0]), tuple(torch_pads), value=a["value"])
    return b.call(F.pad, b.val(n.inputs[0]), tuple(torch_pads), mode=mode)


# ---- dense ------------------------------------------------------------------------
@_converter("gemm")
def _gemm(b: _Builder, n: Node):
    a = n.attrs
    A, B = n.inputs[0], n.inputs[1]
    C = n.inputs[2] if len(n.inputs) == 3 else None
    nout = B.shape[0] if a["trans_b"] else B.shape[1]
    c_ok = C is None or (C.is_constant and C.data.size == nout and
                         (C.type.rank == 1 or C.shape[-1] == nout))
    if not a["trans_a"] and B.is_constant and a["alpha"] == 1.0 and c_ok:
        k = B.shape[1] if a["trans_b"] else B.shape[0]
        lin = nn.Linear(k, nout, bias=C is not None)
        with torch.no_grad():
            lin.weight.copy_(_t(B.data if a["trans_b"] else B.data.T))
            if C is not None:
                lin.bias.copy_(_t(C.data.reshape(-1) * a["beta"]))
        return b.module(n, lin, b.val(A))
    x = b.val(A)
    x = b.call(torch.t, x) if a["trans_a"] else x
    w = b.val(B)
    w = b.call(torch.t, w) if a["trans_b"] else w
    y = b.call(torch.matmul, x, w)
    if a["alpha"] != 1.0:
        y = b.call(operator.mul, y, a["alpha"])
    if C is not None:
        c = b.val(C)
        if a["beta"] != 1.0:
            c = b.call(operator.mul, c, a["beta"])
        y = b.call(operator.add, y, c)
    return y


@_converter("matmul")
def _matmul(b: _Builder, n: Node):
    return b.call(torch.matmul, b.val(n.inputs[0]), b.val(n.inputs[1]))


@_converter("softmax")
def _softmax(b: _Builder, n: Node):
    return b.module(n, nn.Softmax(dim=n.attrs["axis"]), b.val(n.inputs[0]))


@_converter("resize")
def _resize(b: _Builder, n: Node):
    """The resize variants F.interpolate computes exactly alike."""
    a = n.attrs
    x = n.inputs[0]
    h, w = x.shape[2:]
    size = a["size"]
    if a["scale"] is not None and a["scale"] != (size[0] / h, size[1] / w):
        _fail(n, f"explicit scale {a['scale']} differs from size/input; not supported")
    mode, cm, nm = a["mode"], a["coord_mode"], a["nearest_mode"]
    one_pixel = min(size) == 1
    if mode == "linear" and cm == "align_corners":
        return b.call(F.interpolate, b.val(x), size=size, mode="bilinear", align_corners=True)
    if mode == "linear" and (cm == "half_pixel" or (cm == "pytorch_half_pixel" and not one_pixel)):
        return b.call(F.interpolate, b.val(x), size=size, mode="bilinear", align_corners=False)
    if mode == "nearest" and cm == "asymmetric" and nm == "floor":
        return b.call(F.interpolate, b.val(x), size=size, mode="nearest")
    if mode == "nearest" and cm == "half_pixel" and nm == "round_prefer_ceil":
        return b.call(F.interpolate, b.val(x), size=size, mode="nearest-exact")
    _fail(n, f"mode {mode!r} with coord_mode {cm!r} / nearest_mode {nm!r} has no exact "
             "F.interpolate equivalent")
