"""Emitters for the ops the zoo models need beyond cpp.py's core set: select (sign
binarization), sigmoid / tanh / sign / hardswish / leaky_relu / hardsigmoid, softmax,
adaptive average pooling, and slice / split / pad / transpose / channel_shuffle as one
index-map gather (cpp/include/edgecc/model_ops_extra.h).

indexed_conv2d and aw_conv2d have no emitter: run their lowering passes first
(passes.lower_indexed_conv.lower_indexed_conv, passes.aw_conv_taps.lower_aw_conv_taps),
which rewrite them into conv2d / slice / pad / concat / add / mul.
"""
from __future__ import annotations

import math

from ...errors import UnsupportedOpsError
from ..ir import Node, Value
from . import cpp
from .cpp import Emitter, Step, _broadcast_strides, _f, _numel


def _simple(n: Node, kernel: str, body: list[str]) -> Step:
    step = cpp._simple(n, kernel, body)
    step.includes = ("edgecc/model_ops_extra.h",)
    return step

MAX_RANK = 8   # the odometer loops of model_ops_extra.h


def _arr(xs) -> str:
    return "{" + ", ".join(str(int(x)) for x in xs) + "}"


def _check_rank(n: Node, rank: int) -> None:
    if rank > MAX_RANK:
        raise UnsupportedOpsError([(n.op, f"rank {rank} above {MAX_RANK}", [n.name])])


# ---- select ------------------------------------------------------------------------------
_CMP = {"lt": "kLt", "le": "kLe", "gt": "kGt", "ge": "kGe", "eq": "kEq", "ne": "kNe"}


def emit_select(e: Emitter, n: Node, k: int) -> Step:
    out = n.outputs[0]
    _check_rank(n, out.type.rank)
    shape = list(out.shape) or [1]
    strides = [(_broadcast_strides(v, out.shape) or [0]) + [0] * (MAX_RANK - len(shape)) for v in n.inputs]
    body = [f"static const int64_t shape[] = {_arr(shape)};",
            "static const int64_t strides[4][8] = {" + ", ".join(_arr(s) for s in strides) + "};",
            "const float* ops[4] = {" + ", ".join(e.ptr(v) for v in n.inputs) + "};",
            f"edgecc::model::select_f32(edgecc::model::Cmp::{_CMP[n.attrs['cmp']]}, ops, strides, "
            f"{e.ptr(out)}, shape, {len(shape)});"]
    return _simple(n, f"model_ops_extra select_f32 ({n.attrs['cmp']})", body)


# ---- unary activations -------------------------------------------------------------------
_UNARY = {"sigmoid": "kSigmoid", "tanh": "kTanh", "sign": "kSign", "hardswish": "kHardSwish",
          "leaky_relu": "kLeakyRelu", "hardsigmoid": "kHardSigmoid"}


def emit_unary(e: Emitter, n: Node, k: int) -> Step:
    a = n.attrs.get("alpha", 0.0)
    b = n.attrs.get("beta", 0.0)
    body = [f"edgecc::model::unary_f32(edgecc::model::Unary::{_UNARY[n.op]}, {e.ptr(n.inputs[0])}, "
            f"{e.ptr(n.outputs[0])}, {_numel(n.outputs[0])}, {_f(a)}, {_f(b)});"]
    return _simple(n, f"model_ops_extra unary_f32 ({n.op})", body)


# ---- softmax and adaptive pooling ---------------------------------------------------------
def emit_softmax(e: Emitter, n: Node, k: int) -> Step:
    x = n.inputs[0]
    ax = n.attrs["axis"] % max(x.type.rank, 1)
    outer, inner = math.prod(x.shape[:ax]), math.prod(x.shape[ax + 1:])
    body = [f"edgecc::model::softmax_f32({e.ptr(x)}, {e.ptr(n.outputs[0])}, {outer}, "
            f"{x.shape[ax] if x.type.rank else 1}, {inner});"]
    return _simple(n, "model_ops_extra softmax_f32 (float64)", body)


def _bins(size: int, out: int) -> list[int]:
    """[start, end) per output index: PyTorch's adaptive pooling bins (as the reference)."""
    return [v for i in range(out) for v in ((i * size) // out, -(-((i + 1) * size) // out))]


def emit_adaptive_avg_pool(e: Emitter, n: Node, k: int) -> Step:
    x = n.inputs[0]
    N, C, H, W = x.shape
    oh, ow = n.attrs["output_size"]
    body = [f"static const int64_t bins_h[] = {_arr(_bins(H, oh))}, bins_w[] = {_arr(_bins(W, ow))};",
            f"edgecc::model::adaptive_avg_pool2d_f32({e.ptr(x)}, {e.ptr(n.outputs[0])}, {N * C}, {H}, {W}, "
            f"{oh}, {ow}, bins_h, bins_w);"]
    return _simple(n, "model_ops_extra adaptive_avg_pool2d_f32 (float64)", body)


# ---- data movement as index-map gathers ----------------------------------------------------
def _contiguous_strides(shape) -> list[int]:
    strides, acc = [0] * len(shape), 1
    for d in range(len(shape) - 1, -1, -1):
        strides[d] = acc
        acc *= shape[d]
    return strides


def _gather(e: Emitter, n: Node, x: Value, y: Value, maps: list[list[int]], strides: list[int],
            fill: float = 0.0, tag: str = "") -> list[str]:
    """Statements of one gather_f32 call: y[i] = x[sum_d maps[d][i_d] * strides[d]]."""
    _check_rank(n, len(maps))
    if not maps:   # rank 0: one element
        maps, strides = [[0]], [0]
    names = [f"m{tag}_{d}" for d in range(len(maps))]
    lines = [f"static const int64_t {nm}[] = {_arr(m)};" for nm, m in zip(names, maps)]
    lines += [f"static const int64_t shape{tag}[] = {_arr([len(m) for m in maps])}, "
              f"strides{tag}[] = {_arr(strides)};",
              f"static const int64_t* const maps{tag}[] = {{{', '.join(names)}}};",
              f"edgecc::model::gather_f32({e.ptr(x)}, {e.ptr(y)}, shape{tag}, strides{tag}, maps{tag}, "
              f"{len(maps)}, {_f(fill)});"]
    return lines


def emit_slice(e: Emitter, n: Node, k: int) -> Step:
    x, y = n.inputs[0], n.outputs[0]
    maps = [list(range(d)) for d in x.shape]
    for s, end, ax, st in zip(n.attrs["starts"], n.attrs["ends"], n.attrs["axes"], n.attrs["steps"]):
        maps[ax] = list(range(x.shape[ax])[slice(s, end if end >= 0 else None, st)])  # as the reference
    return _simple(n, "model_ops_extra gather_f32 (slice)", _gather(e, n, x, y, maps, _contiguous_strides(x.shape)))


def emit_split(e: Emitter, n: Node, k: int) -> Step:
    x = n.inputs[0]
    ax, start, body = n.attrs["axis"], 0, []
    for i, (size, y) in enumerate(zip(n.attrs["sizes"], n.outputs)):
        maps = [list(range(d)) for d in x.shape]
        maps[ax] = list(range(start, start + size))
        body += _gather(e, n, x, y, maps, _contiguous_strides(x.shape), tag=str(i))
        start += size
    return _simple(n, "model_ops_extra gather_f32 (split)", body)


def _pad_map(dim: int, begin: int, end: int, mode: str) -> list[int]:
    """Source index per output index; -1 = the constant. Negative pads crop first."""
    lo, length = max(0, -begin), dim - max(0, -begin) - max(0, -end)
    out = []
    for i in range(length + max(0, begin) + max(0, end)):
        j = i - max(0, begin)              # index into the cropped input
        if 0 <= j < length:
            out.append(lo + j)
        elif mode == "constant":
            out.append(-1)
        elif mode == "edge":
            out.append(lo + min(max(j, 0), length - 1))
        else:                              # reflect (numpy: the edge is not repeated)
            period = 2 * (length - 1)
            r = 0 if period == 0 else j % period
            out.append(lo + (r if r < length else period - r))
    return out


def emit_pad(e: Emitter, n: Node, k: int) -> Step:
    x, y = n.inputs[0], n.outputs[0]
    r, pads = x.type.rank, n.attrs["pads"]
    maps = [_pad_map(x.shape[d], pads[d], pads[d + r], n.attrs["mode"]) for d in range(r)]
    return _simple(n, f"model_ops_extra gather_f32 (pad, {n.attrs['mode']})",
                   _gather(e, n, x, y, maps, _contiguous_strides(x.shape), fill=n.attrs["value"]))


def emit_transpose(e: Emitter, n: Node, k: int) -> Step:
    x, y = n.inputs[0], n.outputs[0]
    src = _contiguous_strides(x.shape)
    perm = n.attrs["perm"]
    maps = [list(range(x.shape[p])) for p in perm]
    return _simple(n, "model_ops_extra gather_f32 (transpose)", _gather(e, n, x, y, maps, [src[p] for p in perm]))


def emit_channel_shuffle(e: Emitter, n: Node, k: int) -> Step:
    # x as [N, g, C/g, R] read as [N, C/g, g, R]: a transpose of the middle two dims
    x, y = n.inputs[0], n.outputs[0]
    N, C = x.shape[:2]
    g = n.attrs["groups"]
    R = math.prod(x.shape[2:])
    maps = [list(range(N)), list(range(C // g)), list(range(g)), list(range(R))]
    return _simple(n, "model_ops_extra gather_f32 (channel_shuffle)",
                   _gather(e, n, x, y, maps, [C * R, R, (C // g) * R, 1]))


EXTRA_EMITTERS = {
    "select": emit_select, **{op: emit_unary for op in _UNARY}, "softmax": emit_softmax,
    "adaptive_avg_pool2d": emit_adaptive_avg_pool, "slice": emit_slice, "split": emit_split,
    "pad": emit_pad, "transpose": emit_transpose, "channel_shuffle": emit_channel_shuffle,
}
