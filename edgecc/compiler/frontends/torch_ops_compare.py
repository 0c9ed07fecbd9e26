"""torch.export converters for sign binarization (edgecc.zoo.binary, Bi-Real, NASB, UA):
comparisons, torch.where, and the ops that only ever touch constants there.

    sign(x)   = where(x >= 0, ones_like(x), -ones_like(x))      activations: IR select
    binary(w) = mean|w| * sign(w)                                 weights: folded here

A comparison never becomes a boolean IR tensor: it is held back (`Comparison`) until
the where that reads it, and the pair becomes one IR `select` node (ops.py). Any op of
this module whose tensor inputs are all constants is evaluated with torch itself at
import time (the same kernel eager runs, so the constant is bit-identical), which is
how the weight binarization (abs, mean over all dims, neg, where on weights) vanishes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..ir import DType, Value
from .torch_ops import NO_OPS, converter

_CMPS = ("lt", "le", "gt", "ge", "eq", "ne")   # aten names = IR select cmp values


class _NotConstant(Exception):
    pass


def fold_constant(cx, node) -> Value | None:
    """Evaluate `node` with torch when every tensor it reads is a constant; None otherwise."""
    def arg(v):
        if isinstance(v, torch.fx.Node):
            val = cx.env.get(v)
            if not isinstance(val, Value) or not val.is_constant:
                raise _NotConstant
            return torch.from_numpy(np.array(val.data))
        if isinstance(v, (list, tuple)):
            return type(v)(arg(u) for u in v)
        return v
    try:
        args = [arg(v) for v in node.args]
        kwargs = {k: arg(v) for k, v in node.kwargs.items()}
    except _NotConstant:
        return None
    with torch.no_grad():
        out = node.target(*args, **kwargs)
    return cx.const(node.name, out.detach().contiguous().numpy().copy())


@dataclass(frozen=True)
class Comparison:
    """`x cmp y`, not emitted yet: the where reading it emits the select. Carries the
    shape and dtype torch computed, so the importer's type cross-check still holds."""
    cmp: str
    x: Value
    y: Value
    shape: tuple[int, ...]
    dtype: DType = DType.bool


def _check_users_are_where(cx, node):
    for u in node.users:
        if str(u.target) in NO_OPS or (str(u.target) == "aten._to_copy.default" and
                                       _check_to_copy(u, {}) is None):
            continue   # a runtime assertion, or a cast to a float mask
        if not str(u.target).startswith("aten.where.") or u.args[0] is not node or node in u.args[1:]:
            raise cx.unsupported(node, f"a comparison on run-time values is supported only as the "
                                       f"condition of torch.where or cast to float (used by {u.name} = "
                                       f"{u.target})")


def _compare(cmp: str):
    def convert(cx, node, a):
        folded = fold_constant(cx, node)
        if folded is not None:
            return folded
        _check_users_are_where(cx, node)
        x = cx.value(a["self"])
        y = cx.operand(a["other"], x.dtype, node, "other")
        return Comparison(cmp, x, y, cx.out_type(node)[0])
    return convert


for _cmp in _CMPS:
    converter(f"aten.{_cmp}.Scalar", f"aten.{_cmp}.Tensor")(_compare(_cmp))


@converter("aten.where.self", "aten.where.ScalarSelf", "aten.where.ScalarOther", "aten.where.Scalar")
def _where(cx, node, a):
    folded = fold_constant(cx, node)
    if folded is not None:
        return folded
    dt = cx.out_type(node)[1]
    p = cx.operand(a["self"], dt, node, "self")
    q = cx.operand(a["other"], dt, node, "other")
    cond = cx.env.get(a["condition"])
    if isinstance(cond, Comparison):
        return cx.emit(node, "select", [cond.x, cond.y, p, q], {"cmp": cond.cmp})
    if isinstance(cond, Value) and cond.is_constant:   # a constant mask: choose where mask != 0
        mask = cx.const(f"{cond.name}.mask", cond.data.astype(np.float32))
        zero = cx.const(f"{node.name}.zero", np.zeros((), np.float32))
        return cx.emit(node, "select", [mask, zero, p, q], {"cmp": "ne"})
    raise cx.unsupported(node, "the condition must be a comparison (x < y, x >= 0, ...) or a constant mask")


@converter("aten.ones_like.default", "aten.zeros_like.default", "aten.full_like.default",
           "aten.empty_like.default")
def _like(cx, node, a):
    # The values depend only on the (static) shape: a constant. empty_like is zeros.
    shape, dt = cx.out_type(node)
    fill = {"aten.ones_like.default": 1}.get(str(node.target), 0)
    if str(node.target) == "aten.full_like.default":
        fill = a["fill_value"]
    return cx.const(node.name, np.full(shape, fill, dtype=dt.numpy))


@converter("aten.neg.default")
def _neg(cx, node, a):
    folded = fold_constant(cx, node)
    if folded is not None:
        return folded
    x = cx.value(a["self"])   # -x = x * -1 exactly (signed zeros included)
    return cx.emit(node, "mul", [x, cx.const(f"{node.name}.minus_one", np.asarray(-1, x.dtype.numpy))])


def _constant_only(what: str):
    def convert(cx, node, a):
        folded = fold_constant(cx, node)
        if folded is None:
            raise cx.unsupported(node, f"{what} is supported on constants (weights) only, not on "
                                       "run-time values")
        return folded
    return convert


converter("aten.abs.default")(_constant_only("abs"))
converter("aten.mean.default")(_constant_only("a mean over all elements"))


# ---- (x > t).float(): a comparison cast to a float 0/1 mask ----------------------------------
def _is_comparison(fx_node) -> bool:
    return getattr(fx_node, "op", None) == "call_function" and \
        str(fx_node.target).split(".")[1:2] in [[c] for c in _CMPS]   # aten.<cmp>.<overload>


def _check_to_copy(node, a):
    src, dst = node.args[0].meta["val"].dtype, node.meta["val"].dtype
    if src == dst or (src == torch.bool and dst.is_floating_point and _is_comparison(node.args[0])):
        return None
    return f"dtype conversion {src} -> {dst} is not supported"


@converter("aten._to_copy.default", check=_check_to_copy)
def _to_copy(cx, node, a):
    src = cx.env.get(node.args[0])
    if isinstance(src, Comparison):   # select(x cmp y, 1, 0) in the float dtype
        dt = cx.out_type(node)[1]
        one = cx.const(f"{node.name}.one", np.ones((), dt.numpy))
        zero = cx.const(f"{node.name}.zero", np.zeros((), dt.numpy))
        return cx.emit(node, "select", [src.x, src.y, one, zero], {"cmp": src.cmp})
    return cx.value(node.args[0])
