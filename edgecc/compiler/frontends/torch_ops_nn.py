"""ATen op -> IR op converters for the network layers: convolution, batch norm,
pooling, dense products, softmax and resize (see torch_ops.py for the conventions)."""
from __future__ import annotations

import numpy as np

from .torch_ops import converter, need_rank, shape_of
from .torch_ops_compare import fold_constant


def _pair(v) -> tuple[int, int]:
    v = [v] if isinstance(v, int) else list(v)
    return (int(v[0]), int(v[0])) if len(v) == 1 else (int(v[0]), int(v[1]))


# ---- convolution ----------------------------------------------------------------
def _check_conv(node, a):
    if a.get("transposed"):
        return "transposed convolution is not supported"
    return need_rank(4, "input", "weight")(node, a)


@converter("aten.conv2d.default", "aten.conv2d.padding", "aten.convolution.default",
           check=_check_conv)
def _conv(cx, node, a):
    x, w = cx.value(a["input"]), cx.value(a["weight"])
    strides, dil = _pair(a["stride"]), _pair(a["dilation"])
    pad = a["padding"]
    if pad == "valid":
        pads = (0, 0, 0, 0)
    elif pad == "same":  # torch puts the odd extra row/column at the bottom/right
        th, tw = dil[0] * (w.shape[2] - 1), dil[1] * (w.shape[3] - 1)
        pads = (th // 2, tw // 2, th - th // 2, tw - tw // 2)
    else:
        ph, pw = _pair(pad)
        pads = (ph, pw, ph, pw)
    ins = [x, w] + ([cx.value(a["bias"])] if a["bias"] is not None else [])
    return cx.emit(node, "conv2d", ins, {"strides": strides, "pads": pads, "dilations": dil,
                                         "groups": a["groups"]})


# ---- batch norm (inference form: running statistics) ----------------------------
def _check_bn(node, a):
    if a.get("training"):
        return "batch norm in training mode (batch statistics)"
    if a["running_mean"] is None or a["running_var"] is None:
        return "batch norm without running statistics (track_running_stats=False)"
    return None


def _bn_param(cx, node, arg, fill, channels, what):
    if arg is not None:
        return cx.value(arg)
    return cx.const(f"{node.name}.{what}", np.full(channels, fill, np.float32))


def _batch_norm(cx, node, a):
    x = cx.value(a["input"])
    c = x.shape[1]
    ins = [x, _bn_param(cx, node, a["weight"], 1.0, c, "weight"),
           _bn_param(cx, node, a["bias"], 0.0, c, "bias"),
           cx.value(a["running_mean"]), cx.value(a["running_var"])]
    return cx.emit(node, "batch_norm", ins, {"eps": a["eps"]})


converter("aten.batch_norm.default", check=_check_bn)(_batch_norm)


@converter("aten._native_batch_norm_legit_no_training.default", check=_check_bn)
def _bn_no_training(cx, node, a):
    return [_batch_norm(cx, node, a), None, None]  # (out, save_mean, save_invstd)


# ---- pooling --------------------------------------------------------------------
def _pool_attrs(a):
    kernel = _pair(a["kernel_size"])
    strides = _pair(a["stride"]) if a["stride"] else kernel  # torch: empty stride = kernel
    ph, pw = _pair(a["padding"])
    return {"kernel": kernel, "strides": strides, "pads": (ph, pw, ph, pw),
            "ceil_mode": a["ceil_mode"]}


@converter("aten.max_pool2d.default", check=need_rank(4, "self"))
def _max_pool(cx, node, a):
    return cx.emit(node, "max_pool2d", [cx.value(a["self"])],
                   dict(_pool_attrs(a), dilations=_pair(a["dilation"])))


@converter("aten.max_pool2d_with_indices.default", check=need_rank(4, "self"))
def _max_pool_with_indices(cx, node, a):
    return [_max_pool(cx, node, a), None]


def _check_avg_pool(node, a):
    if a["divisor_override"] is not None:
        return f"divisor_override={a['divisor_override']}"
    return need_rank(4, "self")(node, a)


@converter("aten.avg_pool2d.default", check=_check_avg_pool)
def _avg_pool(cx, node, a):
    return cx.emit(node, "avg_pool2d", [cx.value(a["self"])],
                   dict(_pool_attrs(a), count_include_pad=a["count_include_pad"]))


@converter("aten.adaptive_avg_pool2d.default", "aten._adaptive_avg_pool2d.default",
           check=need_rank(4, "self"))
def _adaptive_avg_pool(cx, node, a):
    x = cx.value(a["self"])
    out_hw = cx.out_type(node)[0][2:]
    if out_hw == (1, 1):
        return cx.emit(node, "global_avg_pool", [x])
    return cx.emit(node, "adaptive_avg_pool2d", [x], {"output_size": out_hw})


def _check_mean(node, a):
    shp = shape_of(a["self"])
    dims = sorted(int(d) % max(len(shp), 1) for d in (a["dim"] or ()))
    if len(shp) != 4 or dims != [2, 3] or a["dtype"] is not None:
        return f"mean over dims {list(a['dim'] or [])} of shape {list(shp)} (only the spatial " \
               "dims [2, 3] of an NCHW tensor, i.e. global average pooling, or any mean of a constant)"
    return None


def _mean_of_constant_ok(node, a):
    return None   # checked in the converter: any mean of a constant folds (binary weight scales)


@converter("aten.mean.dim", check=_mean_of_constant_ok)
def _mean(cx, node, a):
    folded = fold_constant(cx, node)
    if folded is not None:
        return folded
    why = _check_mean(node, a)
    if why is not None:
        raise cx.unsupported(node, why)
    x = cx.value(a["self"])
    if a["keepdim"]:
        return cx.emit(node, "global_avg_pool", [x])
    y = cx.emit(node, "global_avg_pool", [x], suffix="pool")
    return cx.emit(node, "reshape", [y], {"shape": cx.out_type(node)[0]})


# ---- dense ----------------------------------------------------------------------
def _check_linear(node, a):
    return None if len(shape_of(a["weight"])) == 2 else "weight must be 2-D"


@converter("aten.linear.default", check=_check_linear)
def _linear(cx, node, a):
    x, w = cx.value(a["input"]), cx.value(a["weight"])
    ins_tail = [w] + ([cx.value(a["bias"])] if a["bias"] is not None else [])
    if x.type.rank == 2:
        return cx.emit(node, "gemm", [x] + ins_tail, {"trans_b": True})
    # Other ranks: fold leading dims into rows, multiply, restore them.
    k = x.shape[-1]
    x2 = cx.emit(node, "reshape", [x], {"shape": (x.type.numel // k, k)}, suffix="rows")
    y2 = cx.emit(node, "gemm", [x2] + ins_tail, {"trans_b": True}, suffix="gemm")
    return cx.emit(node, "reshape", [y2], {"shape": cx.out_type(node)[0]})


@converter("aten.addmm.default")
def _addmm(cx, node, a):  # beta * self + alpha * (mat1 @ mat2)
    ins = [cx.value(a["mat1"]), cx.value(a["mat2"]), cx.value(a["self"])]
    return cx.emit(node, "gemm", ins, {"alpha": a["alpha"], "beta": a["beta"]})


@converter("aten.mm.default", "aten.bmm.default", "aten.matmul.default")
def _matmul(cx, node, a):
    other = a["mat2"] if "mat2" in a else a["other"]
    return cx.emit(node, "matmul", [cx.value(a["self"]), cx.value(other)])


@converter("aten.softmax.int", check=lambda node, a: None if a["dtype"] is None
           else f"softmax with dtype={a['dtype']}")
def _softmax(cx, node, a):
    return cx.emit(node, "softmax", [cx.value(a["self"])], {"axis": a["dim"]})


@converter("aten._softmax.default")
def _softmax_internal(cx, node, a):
    return cx.emit(node, "softmax", [cx.value(a["self"])], {"axis": a["dim"]})


# ---- resize ---------------------------------------------------------------------
def _resize_scale(a):
    """The user's scale factors, which torch (and the IR) use to map coordinates
    instead of output/input size; None when the output size was given."""
    if a.get("scale_factors"):
        return tuple(float(s) for s in a["scale_factors"])
    if a.get("scales_h") is not None and a.get("scales_w") is not None:
        return float(a["scales_h"]), float(a["scales_w"])
    return None


def _resize(mode, coord_mode_fn, nearest_mode="floor"):
    def convert(cx, node, a):
        x = cx.value(a["input"] if "input" in a else a["self"])
        return cx.emit(node, "resize", [x], {
            "mode": mode, "size": cx.out_type(node)[0][2:], "scale": _resize_scale(a),
            "coord_mode": coord_mode_fn(a), "nearest_mode": nearest_mode})
    return convert


_rank4 = need_rank(4, "input")
_rank4_self = need_rank(4, "self")
# Legacy torch "nearest": src = floor(dst / scale).
converter("aten.upsample_nearest2d.vec", check=_rank4)(_resize("nearest", lambda a: "asymmetric"))
converter("aten.upsample_nearest2d.default", check=_rank4_self)(
    _resize("nearest", lambda a: "asymmetric"))
# "nearest-exact": src = floor((dst + 0.5) / scale) = round-half-up of the half-pixel coordinate.
converter("aten._upsample_nearest_exact2d.vec", check=_rank4)(
    _resize("nearest", lambda a: "half_pixel", "round_prefer_ceil"))
converter("aten._upsample_nearest_exact2d.default", check=_rank4_self)(
    _resize("nearest", lambda a: "half_pixel", "round_prefer_ceil"))
# Bilinear: half-pixel centres clamped at 0 (torch does not special-case size 1).
_bilinear = _resize("linear", lambda a: "align_corners" if a["align_corners"] else "half_pixel")
converter("aten.upsample_bilinear2d.vec", check=_rank4)(_bilinear)
converter("aten.upsample_bilinear2d.default", check=_rank4_self)(_bilinear)
