"""ATen op -> IR op converters for the torch.export frontend: activations, elementwise
arithmetic, shape manipulation and constant creation (convolution, normalization,
pooling, dense and resize live in torch_ops_nn.py).

A converter gets the importer context `cx`, the FX node and its arguments bound to
the op schema's names (defaults filled in); it returns the IR value (or a list, one
entry per output of a multi-output op; None marks an output edgecc does not produce).
An optional `check(node, args)` runs during the up-front scan and returns the reason
a node cannot be imported, so all problems are reported together.
"""
from __future__ import annotations

import operator
import sys
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class Converter:
    convert: Callable
    check: Callable | None = None


CONVERTERS: dict[str, Converter] = {}

# Ops with a clear reason why edgecc cannot import them.
REJECTED = {
    "aten.conv_transpose1d.default": "transposed convolution is not supported",
    "aten.conv_transpose2d.input": "transposed convolution is not supported",
    "aten.conv_transpose3d.input": "transposed convolution is not supported",
    "aten._native_batch_norm_legit.no_stats": "batch norm without running statistics "
                                              "(track_running_stats=False)",
    "aten._native_batch_norm_legit.default": "batch norm in training mode (batch statistics)",
}

# Runtime assertions torch.export inserts; they produce nothing and are skipped.
NO_OPS = {"aten._assert_tensor_metadata.default", "aten._assert_scalar.default",
          "aten._assert_async.msg", "aten.sym_constrain_range_for_size.default"}


def op_key(target) -> str:
    """The name an FX call target is registered under ("aten.conv2d.default")."""
    if target is operator.getitem:
        return "getitem"
    return str(target)


def converter(*keys: str, check: Callable | None = None):
    def deco(fn):
        for k in keys:
            CONVERTERS[k] = Converter(fn, check)
        return fn
    return deco


def bind_args(node) -> dict[str, Any]:
    """The node's arguments by schema name, with the schema defaults filled in."""
    schema = getattr(node.target, "_schema", None)
    if schema is None:
        return {}
    out = {}
    for i, arg in enumerate(schema.arguments):
        if i < len(node.args) and not arg.kwarg_only:
            out[arg.name] = node.args[i]
        elif arg.name in node.kwargs:
            out[arg.name] = node.kwargs[arg.name]
        else:
            out[arg.name] = arg.default_value if arg.has_default_value() else None
    return out


def shape_of(arg) -> tuple[int, ...]:
    """Static shape of an FX node's tensor value (from export's fake-tensor metadata)."""
    return tuple(int(d) for d in arg.meta["val"].shape)


def need_rank(rank: int, *names: str):
    """A check: the tensor arguments `names` must have the given rank."""
    def check(node, a):
        for nm in names:
            shp = shape_of(a[nm])
            if len(shp) != rank:
                return f"needs a rank-{rank} {nm}, got shape {list(shp)}"
        return None
    return check


# ---- plumbing -------------------------------------------------------------------
# Multi-output ops of which edgecc produces only output 0 (the others are training
# statistics or argmax indices).
FIRST_OUTPUT_ONLY = {
    "aten._native_batch_norm_legit_no_training.default": "batch norm statistics",
    "aten.max_pool2d_with_indices.default": "max pool indices (return_indices=True)",
}


def _check_getitem(node, a):
    src, idx = node.args
    what = FIRST_OUTPUT_ONLY.get(op_key(src.target))
    return f"output {idx} of {src.name}: {what}" if what and idx != 0 else None


@converter("getitem", check=_check_getitem)
def _getitem(cx, node, a):
    src, idx = node.args
    return cx.env[src][idx]


@converter("aten.clone.default", "aten.contiguous.default", "aten.detach.default",
           "aten.alias.default", "aten.lift_fresh_copy.default", "aten.dropout.default",
           "aten.feature_dropout.default", "aten.alpha_dropout.default")
def _passthrough(cx, node, a):
    # Inference-time identities (dropout is off in eval mode): the node disappears.
    return cx.value(node.args[0])


def _check_same_dtype_copy(node, a):
    src, dst = node.args[0].meta["val"].dtype, node.meta["val"].dtype
    return None if src == dst else f"dtype conversion {src} -> {dst} is not supported"


converter("aten._to_copy.default", check=_check_same_dtype_copy)(_passthrough)


@converter("aten.full.default", "aten.ones.default", "aten.zeros.default")
def _full(cx, node, a):
    shape, dt = cx.out_type(node)
    fill = {"aten.ones.default": 1, "aten.zeros.default": 0}.get(op_key(node.target))
    fill = a["fill_value"] if fill is None else fill
    return cx.const(node.name, np.full(shape, fill, dtype=dt.numpy))


# ---- activations ----------------------------------------------------------------
def _unary(ir_op: str, attrs_fn=lambda a: {}):
    def convert(cx, node, a):
        return cx.emit(node, ir_op, [cx.value(a["self"])], attrs_fn(a))
    return convert


for _aten, _ir in [("relu", "relu"), ("sigmoid", "sigmoid"), ("tanh", "tanh"),
                   ("sign", "sign"), ("hardswish", "hardswish")]:
    converter(f"aten.{_aten}.default")(_unary(_ir))

converter("aten.relu6.default")(_unary("clip", lambda a: {"min": 0.0, "max": 6.0}))
converter("aten.hardtanh.default")(
    _unary("clip", lambda a: {"min": a["min_val"], "max": a["max_val"]}))
converter("aten.clamp.default")(_unary("clip", lambda a: {"min": a["min"], "max": a["max"]}))
converter("aten.leaky_relu.default")(_unary("leaky_relu", lambda a: {"alpha": a["negative_slope"]}))
converter("aten.hardsigmoid.default")(_unary("hardsigmoid", lambda a: {"alpha": 1 / 6, "beta": 0.5}))


@converter("aten.silu.default")
def _silu(cx, node, a):
    x = cx.value(a["self"])
    return cx.emit(node, "mul", [x, cx.emit(node, "sigmoid", [x], suffix="sigmoid")])


@converter("aten.prelu.default", check=lambda node, a: None if len(shape_of(a["weight"])) == 1
           else f"weight of shape {list(shape_of(a['weight']))} (expected 1-D)")
def _prelu(cx, node, a):
    x, slope = cx.value(a["self"]), cx.value(a["weight"])
    if slope.shape[0] > 1 and x.type.rank > 2:  # per-channel slope broadcasts over dim 1
        shape = slope.shape + (1,) * (x.type.rank - 2)
        slope = cx.const(slope.name, slope.data.reshape(shape)) if slope.is_constant else \
            cx.emit(node, "reshape", [slope], {"shape": shape}, suffix="slope")
    return cx.emit(node, "prelu", [x, slope])


# ---- elementwise arithmetic -----------------------------------------------------
def _binary(ir_op: str):
    def convert(cx, node, a):
        dt = cx.out_type(node)[1]
        x = cx.operand(a["self"], dt, node, "self")
        alpha = a.get("alpha", 1)
        if alpha != 1 and not isinstance(a["other"], (int, float)):
            y = cx.operand(a["other"], dt, node, "other")
            y = cx.emit(node, "mul", [y, cx.const(f"{node.name}.alpha", np.asarray(alpha, dt.numpy))],
                        suffix="alpha")
        else:
            y = cx.operand(a["other"] * alpha if alpha != 1 else a["other"], dt, node, "other")
        return cx.emit(node, ir_op, [x, y])
    return convert


for _aten in ("add", "sub", "mul", "div"):
    converter(f"aten.{_aten}.Tensor", f"aten.{_aten}.Scalar")(_binary(_aten))
converter("aten.div.Tensor_mode", check=lambda node, a: None if a["rounding_mode"] is None
          else f"rounding_mode={a['rounding_mode']!r}")(_binary("div"))


@converter("aten.rsub.Scalar", "aten.rsub.Tensor")
def _rsub(cx, node, a):  # other - alpha * self
    dt = cx.out_type(node)[1]
    x = cx.operand(a["self"], dt, node, "self")
    if a["alpha"] != 1:
        x = cx.emit(node, "mul", [x, cx.const(f"{node.name}.alpha", np.asarray(a["alpha"], dt.numpy))],
                    suffix="alpha")
    return cx.emit(node, "sub", [cx.operand(a["other"], dt, node, "other"), x])


# ---- shape manipulation ---------------------------------------------------------
def _reshape_to_output(cx, node, a):
    x = cx.value(node.args[0])
    shape = cx.out_type(node)[0]
    return x if shape == x.shape else cx.emit(node, "reshape", [x], {"shape": shape})


converter("aten.view.default", "aten._unsafe_view.default", "aten.reshape.default",
          "aten.view_copy.default", "aten.unsqueeze.default", "aten.squeeze.dim",
          "aten.squeeze.dims", "aten.squeeze.default")(_reshape_to_output)


@converter("aten.flatten.using_ints")
def _flatten(cx, node, a):
    x = cx.value(a["self"])
    r = max(x.type.rank, 1)
    start, end = a["start_dim"] % r, a["end_dim"] % r
    if start == 1 and end == r - 1:  # [N, rest]: the IR flatten
        return cx.emit(node, "flatten", [x], {"axis": 1})
    return _reshape_to_output(cx, node, a)


@converter("aten.permute.default")
def _permute(cx, node, a):
    x = cx.value(a["self"])
    perm = tuple(int(d) % x.type.rank for d in a["dims"])
    return x if perm == tuple(range(x.type.rank)) else cx.emit(node, "transpose", [x], {"perm": perm})


@converter("aten.transpose.int")
def _transpose(cx, node, a):
    x = cx.value(a["self"])
    r = x.type.rank
    d0, d1 = a["dim0"] % r, a["dim1"] % r
    if d0 == d1:
        return x
    perm = list(range(r))
    perm[d0], perm[d1] = d1, d0
    return cx.emit(node, "transpose", [x], {"perm": perm})


@converter("aten.t.default")
def _t(cx, node, a):
    x = cx.value(a["self"])
    return cx.emit(node, "transpose", [x], {"perm": (1, 0)}) if x.type.rank == 2 else x


@converter("aten.cat.default")
def _cat(cx, node, a):
    dt = cx.out_type(node)[1]
    xs = [cx.operand(t, dt, node, f"tensors.{i}") for i, t in enumerate(a["tensors"])]
    return cx.emit(node, "concat", xs, {"axis": a["dim"]})


@converter("aten.split.Tensor", "aten.split_with_sizes.default", "aten.chunk.default",
           "aten.unsafe_split.Tensor")
def _split(cx, node, a):
    x = cx.value(a["self"])
    axis = a["dim"] % x.type.rank
    sizes = [shape_of_val(v)[axis] for v in node.meta["val"]]
    return cx.emit(node, "split", [x], {"axis": axis, "sizes": sizes})


def shape_of_val(v) -> tuple[int, ...]:
    return tuple(int(d) for d in v.shape)


def _slice_node(cx, node, x, axis, start, end, step, suffix=None):
    return cx.emit(node, "slice", [x], {"starts": (start,), "ends": (end,), "axes": (axis,),
                                        "steps": (step,)}, suffix=suffix)


@converter("aten.slice.Tensor")
def _slice(cx, node, a):
    x = cx.value(a["self"])
    axis = a["dim"] % x.type.rank
    start = 0 if a["start"] is None else a["start"]
    end = sys.maxsize if a["end"] is None else a["end"]
    if cx.out_type(node)[0] == x.shape and a["step"] == 1:
        return x  # the whole axis
    return _slice_node(cx, node, x, axis, start, end, a["step"])


@converter("aten.narrow.default")
def _narrow(cx, node, a):
    x = cx.value(a["self"])
    axis = a["dim"] % x.type.rank
    start = a["start"] % x.shape[axis] if a["start"] < 0 else a["start"]
    return _slice_node(cx, node, x, axis, start, start + a["length"], 1)


@converter("aten.select.int")
def _select(cx, node, a):
    x = cx.value(a["self"])
    axis = a["dim"] % x.type.rank
    i = a["index"] % x.shape[axis]
    y = _slice_node(cx, node, x, axis, i, i + 1, 1, suffix="slice")
    return cx.emit(node, "reshape", [y], {"shape": cx.out_type(node)[0]})


@converter("aten.channel_shuffle.default", "aten.native_channel_shuffle.default")
def _channel_shuffle(cx, node, a):
    return cx.emit(node, "channel_shuffle", [cx.value(a["self"])], {"groups": a["groups"]})


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}


def _check_pad(node, a):
    mode = a.get("mode", "constant")
    return None if mode in _PAD_MODES else f"pad mode {mode!r}"


def torch_pads_to_ir(pad, rank: int) -> tuple[int, ...]:
    """torch lists (begin, end) pairs from the last dim backwards; the IR lists all
    begins then all ends, first dim first."""
    begins, ends = [0] * rank, [0] * rank
    for i in range(len(pad) // 2):
        begins[rank - 1 - i], ends[rank - 1 - i] = int(pad[2 * i]), int(pad[2 * i + 1])
    return tuple(begins + ends)


@converter("aten.pad.default", "aten.constant_pad_nd.default", check=_check_pad)
def _pad(cx, node, a):
    x = cx.value(a["self"])
    value = a.get("value")
    return cx.emit(node, "pad", [x], {"pads": torch_pads_to_ir(a["pad"], x.type.rank),
                                      "mode": _PAD_MODES[a.get("mode", "constant")],
                                      "value": 0.0 if value is None else value})


def _fixed_mode_pad(mode: str):
    def convert(cx, node, a):
        x = cx.value(a["self"])
        return cx.emit(node, "pad", [x], {"pads": torch_pads_to_ir(a["padding"], x.type.rank),
                                          "mode": mode})
    return convert


for _d in (1, 2, 3):
    converter(f"aten.reflection_pad{_d}d.default")(_fixed_mode_pad("reflect"))
    converter(f"aten.replication_pad{_d}d.default")(_fixed_mode_pad("edge"))
