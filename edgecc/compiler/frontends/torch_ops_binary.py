"""torch.export converters for the PA / ABC-Net / sign layer ops of
edgecc.compiler.quant.export (edgecc::binary_conv2d, edgecc::binary_linear).

Each op becomes one IR binary_conv2d / binary_linear node. Its phi input is the
product alpha[O, M, 1] * beta[1, 1, P] as an IR `mul` node, so the coefficients stay
visible per factor until the merge_pa_coefficients pass turns them into one matrix.
The layer tensors must be constants (the export modules hold them as buffers).
"""
from __future__ import annotations

from ..ir import DType
from .torch_ops import converter


def _constants(cx, node, a):
    vals = {k: cx.value(a[k]) for k in ("wb", "alpha", "beta", "t")}
    if a["bias"] is not None:
        vals["bias"] = cx.value(a["bias"])
    for k, v in vals.items():
        if not v.is_constant:
            raise cx.unsupported(node, f"{k} ({v.name!r}) is computed at run time; the layer "
                                       "tensors must be constants (module buffers)")
    if vals["wb"].dtype != DType.i8:
        raise cx.unsupported(node, f"weight bases {vals['wb'].name!r} are {vals['wb'].dtype}, need i8")
    return vals


def _phi(cx, node, vals):
    """phi = alpha[:, :, None] * beta[None, None, :] as constants and one mul node."""
    alpha, beta = vals["alpha"], vals["beta"]
    if alpha.shape != (vals["wb"].shape[1], vals["wb"].shape[0]) or beta.shape != (vals["t"].shape[1],):
        raise cx.unsupported(node, f"alpha {list(alpha.shape)} / beta {list(beta.shape)} do not match "
                                   f"wb {list(vals['wb'].shape)} ([O, M]) and t {list(vals['t'].shape)} ([P])")
    a3 = cx.const(f"{alpha.name}.om1", alpha.data.reshape(*alpha.shape, 1))
    b3 = cx.const(f"{beta.name}.11p", beta.data.reshape(1, 1, -1))
    return cx.emit(node, "mul", [a3, b3], suffix="phi")


def _inputs(cx, node, a):
    vals = _constants(cx, node, a)
    ins = [cx.value(a["x"]), vals["wb"], _phi(cx, node, vals), vals["t"]]
    return ins + ([vals["bias"]] if "bias" in vals else [])


@converter("edgecc.binary_conv2d.default")
def _binary_conv2d(cx, node, a):
    ins = _inputs(cx, node, a)
    attrs = {"strides": tuple(a["stride"]), "pads": tuple(a["padding"]),
             "dilations": tuple(a["dilation"]), "groups": int(a["groups"]),
             "weight_basis": a["weight_basis"], "act_basis": a["act_basis"]}
    return cx.emit(node, "binary_conv2d", ins, attrs)


@converter("edgecc.binary_linear.default")
def _binary_linear(cx, node, a):
    ins = _inputs(cx, node, a)
    return cx.emit(node, "binary_linear", ins,
                   {"weight_basis": a["weight_basis"], "act_basis": a["act_basis"]})
