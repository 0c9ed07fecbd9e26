"""torch.export converter for aten.index_select with a constant index (REAF and rolling
pointwise convs gather input channels with one): the gather becomes a slice per run of
consecutive indices and one concat, i.e. existing IR ops. The pass
recognize_indexed_conv (compiler/passes/lower_indexed_conv.py) later turns such a gather
feeding a grouped conv into one indexed_conv2d node.
"""
from __future__ import annotations

import numpy as np

from ..ir.ranges import index_runs
from .torch_ops import converter


_VIEWS = ("aten.view.default", "aten.reshape.default", "aten._unsafe_view.default",
          "aten.flatten.using_ints", "aten.clone.default", "aten.contiguous.default")


def _check_index_select(node, a):
    idx = a["index"]
    while getattr(idx, "op", None) == "call_function" and str(idx.target) in _VIEWS:
        idx = idx.args[0]  # a buffer flattened in forward (RPW's index table)
    if getattr(idx, "op", None) != "placeholder":
        return "the index must be a constant (a module buffer), not computed at run time"
    return None


def _constant_data(v):
    """The data of `v`, looking through reshape/identity nodes of a constant."""
    while not v.is_constant and v.producer is not None and v.producer.op in ("reshape", "identity"):
        v = v.producer.inputs[0]
    return v.data if v.is_constant else None


@converter("aten.index_select.default", check=_check_index_select)
def _index_select(cx, node, a):
    x, idx = cx.value(a["self"]), cx.value(a["index"])
    data = _constant_data(idx)
    if data is None or idx.type.rank != 1 or idx.dtype.is_float:
        raise cx.unsupported(node, f"index {idx.name!r} must be a constant 1-D integer tensor")
    axis = a["dim"] % x.type.rank
    dim = x.shape[axis]
    index = data.reshape(-1).astype(np.int64)
    if np.any((index < -dim) | (index >= dim)):
        raise cx.unsupported(node, f"index {idx.name!r} out of range for dim {dim} of {x.name!r}")
    index = np.where(index < 0, index + dim, index)
    runs = index_runs(index)
    if runs == [(0, dim)]:
        return x
    parts = [cx.emit(node, "slice", [x], {"starts": (s,), "ends": (e,), "axes": (axis,),
                                          "steps": (1,)}, suffix=f"run{i}")
             for i, (s, e) in enumerate(runs)]
    return parts[0] if len(parts) == 1 else cx.emit(node, "concat", parts, {"axis": axis})


def _check_index(node, a):
    picked = [i for i, t in enumerate(a["indices"] or []) if t is not None]
    if len(picked) != 1:
        return f"advanced indexing with {len(picked)} index tensors (one constant index list is supported)"
    return _check_index_select(node, {"index": a["indices"][picked[0]]})


@converter("aten.index.Tensor", check=_check_index)
def _index(cx, node, a):
    # x[:, idx] with one constant 1-D index list: the same gather as index_select
    dim = next(i for i, t in enumerate(a["indices"]) if t is not None)
    idx = cx.value(a["indices"][dim])
    if idx.type.rank != 1:
        raise cx.unsupported(node, f"index {idx.name!r} of rank {idx.type.rank} (a 1-D list is supported)")
    return _index_select(cx, node, {"self": a["self"], "index": a["indices"][dim], "dim": dim})
