"""ONNX converters for sign binarization and channel gathers (the zoo's binary models
and its REAF / rolling pointwise layers as torch.onnx writes them):

    Less / LessOrEqual / Greater / GreaterOrEqual / Equal  ->  held, then with the Where
    (Not)                                                     that reads it: one IR `select`
                                                               (no boolean tensor in the IR)
    Where(constant mask, a, b)                             ->  select(mask != 0, a, b)
    Abs, ReduceMean, Neg                                   ->  folded on constants (weights)
    Gather(x, constant indices)                            ->  a slice per run of
                                                               consecutive indices + concat

All of them still fold with numpy when every input is constant (shape subgraphs).
"""
from __future__ import annotations

import dataclasses
import weakref

import numpy as np
from onnx import helper

from ..ir import TensorType, Value
from ..ir.dtypes import DType
from ..ir.ranges import index_runs
from .onnx_ops import CONVERTERS, OnnxNode, _ints, _norm_axis, converter

_CMPS: dict = {"Less": ("lt", np.less), "LessOrEqual": ("le", np.less_equal),
         "Greater": ("gt", np.greater), "GreaterOrEqual": ("ge", np.greater_equal),
         "Equal": ("eq", np.equal)}


_INDEX: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()   # importer -> its node index


def _index(ctx) -> tuple[dict, dict]:
    """(producer by value name, consumers by value name) of the model being imported."""
    if ctx not in _INDEX:
        producer, consumers = {}, {}
        for m in ctx.nodes:
            for o in m.outputs:
                producer.setdefault(o, m)
            for i in set(m.inputs):
                consumers.setdefault(i, []).append(m)
        _INDEX[ctx] = (producer, consumers)
    return _INDEX[ctx]


def _consumers(ctx, name: str) -> list[OnnxNode]:
    return _index(ctx)[1].get(name, [])


def _producer(ctx, name: str) -> OnnxNode | None:
    return _index(ctx)[0].get(name)


def _all_const(ctx, n: OnnxNode) -> bool:
    return all(ctx.is_const(i) for i in n.inputs if i)


@converter(*_CMPS, min_version=7, folds=True)
def _compare(ctx, n):
    fn = _CMPS[n.op][1]
    if _all_const(ctx, n):
        ctx.bind_const(n.output(0), np.asarray(fn(ctx.const(n.input(0)), ctx.const(n.input(1)))))
        return
    _check_feeds_where(ctx, n)
    x, y = ctx.value(n.input(0)), ctx.value(n.input(1))
    if x.dtype != y.dtype:
        n.fail(f"compares {x.dtype} with {y.dtype}")
    _placeholder(ctx, n, np.broadcast_shapes(x.shape, y.shape))


def _check_feeds_where(ctx, n: OnnxNode) -> None:
    """A run-time comparison (or its Not) may only be the condition of Where nodes."""
    name = n.output(0)
    for m in _consumers(ctx, name):
        if m.op in ("Not", "Cast"):
            continue   # checked when the Not / Cast converts
        if m.op != "Where" or m.inputs[0] != name or name in m.inputs[1:]:
            n.unsupported(f"a comparison on run-time values is supported only as the condition "
                          f"of Where (read by {m.name!r}, op {m.op})")


def _placeholder(ctx, n: OnnxNode, shape) -> None:
    # The Where reading it emits the select; the placeholder is in no IR node.
    ctx.bind(n.output(0), Value(n.output(0), TensorType(tuple(shape), DType.bool)))


@converter("Not", min_version=1, folds=True)
def _not(ctx, n):
    if _all_const(ctx, n):
        ctx.bind_const(n.output(0), np.logical_not(ctx.const(n.input(0))))
        return
    src = _producer(ctx, n.input(0))
    if src is None or (src.op not in _CMPS and src.op != "Not"):
        n.unsupported("Not of a run-time value that is not a comparison")
    _check_feeds_where(ctx, n)
    _placeholder(ctx, n, ctx.value(n.input(0)).shape)


@converter("Where", min_version=9, folds=True)
def _where(ctx, n):
    c, a, b = n.input(0), n.input(1), n.input(2)
    if _all_const(ctx, n):
        ctx.bind_const(n.output(0), np.where(ctx.const(c), ctx.const(a), ctx.const(b)))
        return
    p, q = ctx.value(a), ctx.value(b)
    if ctx.is_const(c):   # a constant mask
        mask = np.asarray(ctx.const(c)).astype(np.float32)
        ctx.bind_const(f"{c}/mask", mask)
        ctx.bind_const(f"{n.output(0)}/zero", np.zeros((), np.float32))
        ctx.emit(n, "select", [ctx.value(f"{c}/mask"), ctx.value(f"{n.output(0)}/zero"), p, q],
                 {"cmp": "ne"})
        return
    _emit_select(ctx, n, c, p, q)


def _emit_select(ctx, n: OnnxNode, cond: str, p: Value, q: Value) -> None:
    """select(x cmp y, p, q) for the comparison `cond` comes from (through Nots)."""
    cmp = _producer(ctx, cond)
    while cmp is not None and cmp.op == "Not":   # Where(Not(c), p, q) = Where(c, q, p)
        p, q = q, p
        cmp = _producer(ctx, cmp.input(0))
    if cmp is None or cmp.op not in _CMPS:
        n.unsupported("the condition must come from a comparison (Less, GreaterOrEqual, ...) "
                      "or be constant")
    ctx.emit(n, "select", [ctx.value(cmp.input(0)), ctx.value(cmp.input(1)), p, q],
             {"cmp": _CMPS[cmp.op][0]})


_fold_cast = CONVERTERS["Cast"].convert


@converter("Cast", min_version=6, folds=True)
def _cast(ctx, n):
    if _all_const(ctx, n):
        _fold_cast(ctx, n)
        return
    x = ctx.value(n.input(0))
    to = np.dtype(helper.tensor_dtype_to_np_dtype(int(n.attrs["to"])))
    if to == x.dtype.numpy:
        ctx.bind(n.output(0), x)
    elif x.dtype == DType.bool and to.kind == "f":   # a comparison as a 0/1 mask
        one = f"{n.output(0)}/one"
        zero = f"{n.output(0)}/zero"
        ctx.bind_const(one, np.ones((), to))
        ctx.bind_const(zero, np.zeros((), to))
        _emit_select(ctx, n, n.input(0), ctx.value(one), ctx.value(zero))
    else:
        n.unsupported(f"cast of a run-time {x.dtype} tensor to {to}")


def _constant_only(fn):
    def convert(ctx, n):
        if not _all_const(ctx, n):
            n.unsupported("supported on constants (weights) only, not on run-time values")
        ctx.bind_const(n.output(0), np.asarray(fn(n, *[ctx.const(i) for i in n.inputs if i])))
    return convert


def _reduce_mean(n, x, axes_input=None):
    axes = n.attrs.get("axes") if axes_input is None else axes_input
    keep = bool(n.attrs.get("keepdims", 1))
    if axes is None or len(_ints(axes)) == 0:
        if n.attrs.get("noop_with_empty_axes", 0):
            return x
        axes = range(x.ndim)
    axes = tuple(_norm_axis(n, int(a), x.ndim) for a in _ints(list(axes)))
    # float64 accumulation, one rounding: as close to any framework's mean as it gets
    return x.astype(np.float64).mean(axis=axes, keepdims=keep).astype(x.dtype)


converter("Abs", min_version=6, folds=True)(_constant_only(lambda n, x: np.abs(x)))
converter("ReduceMean", min_version=1, folds=True)(_constant_only(_reduce_mean))


@converter("Neg", min_version=6, folds=True)
def _neg(ctx, n):
    if _all_const(ctx, n):
        ctx.bind_const(n.output(0), -ctx.const(n.input(0)))
        return
    x = ctx.value(n.input(0))   # -x = x * -1 exactly (signed zeros included)
    ctx.bind_const(f"{n.output(0)}/minus_one", np.asarray(-1, x.dtype.numpy))
    ctx.emit(n, "mul", [x, ctx.value(f"{n.output(0)}/minus_one")], {})


# ---- Gather ---------------------------------------------------------------------
_fold_gather = CONVERTERS["Gather"].convert


@converter("Gather", const_inputs=(1,), folds=True)
def _gather(ctx, n):
    if _all_const(ctx, n):
        _fold_gather(ctx, n)
        return
    x = ctx.value(n.input(0))
    idx = np.asarray(ctx.const(n.input(1)))
    if idx.dtype.kind not in "iu" or idx.ndim > 1:
        n.unsupported(f"indices of dtype {idx.dtype} and rank {idx.ndim} (a scalar or 1-D integer "
                      "list is supported)")
    axis = _norm_axis(n, int(n.attrs.get("axis", 0)), x.type.rank)
    dim = x.shape[axis]
    flat = idx.reshape(-1).astype(np.int64)
    if np.any((flat < -dim) | (flat >= dim)):
        n.fail(f"indices {flat.tolist()} out of range for dim {dim}")
    flat = np.where(flat < 0, flat + dim, flat)
    runs = index_runs(flat)
    out = n.output(0)
    if idx.ndim == 0:   # one index: the axis disappears
        part = _slice(ctx, n, x, axis, runs[0], "slice", f"{out}/slice")
        shape = x.shape[:axis] + x.shape[axis + 1:]
        ctx.emit(n, "reshape", [part], {"shape": shape})
        return
    if runs == [(0, dim)]:
        ctx.bind(out, x)
        return
    if len(runs) == 1:
        ctx.bind(out, _slice(ctx, n, x, axis, runs[0], "slice", out))
        return
    parts = [_slice(ctx, n, x, axis, r, f"run{i}", f"{out}/run{i}") for i, r in enumerate(runs)]
    ctx.emit(dataclasses.replace(n, name=f"{n.name}/concat"), "concat", parts, {"axis": axis})


def _slice(ctx, n, x, axis, run, suffix, out_name) -> Value:
    sub = dataclasses.replace(n, name=f"{n.name}/{suffix}")
    return ctx.emit(sub, "slice", [x], {"starts": (run[0],), "ends": (run[1],), "axes": (axis,),
                                        "steps": (1,)}, out=out_name)
