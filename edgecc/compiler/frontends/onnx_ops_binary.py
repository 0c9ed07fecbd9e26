"""ONNX converters for edgecc's custom domain ("edgecc", version 1): the PA / ABC-Net /
sign layers written by edgecc.compiler.quant.export.export_onnx (the node format is
documented there).

    edgecc.BinaryConv2d(x, wb, alpha, beta, t[, bias]) -> IR binary_conv2d
    edgecc.BinaryLinear(x, wb, alpha, beta, t[, bias]) -> IR binary_linear

The IR's phi input is alpha[O, M, 1] * beta[1, 1, P] as one `mul` node, exactly as
the torch route emits it (torch_ops_binary.py); merge_pa_coefficients folds it.
Registered as "edgecc.<OpType>" in onnx_ops.CONVERTERS, the key onnx.py uses for
nodes of a custom domain.
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph
from .onnx_ops import OnnxNode, _ints, converter

DOMAIN = "edgecc"
LAYER_INPUTS = (1, 2, 3, 4, 5)   # wb, alpha, beta, t, bias: initializers


def _check(n: OnnxNode, rank_of) -> str | None:
    if not 5 <= len([i for i in n.inputs if i]) <= 6:
        return f"takes 5 or 6 inputs (x, wb, alpha, beta, t[, bias]), got {len(n.inputs)}"
    for k in ("weight_basis", "act_basis"):
        if n.attrs.get(k, "01") not in ("01", "pm1"):
            return f"{k} {n.attrs[k]!r} is not '01' or 'pm1'"
    return None


def _const_value(ctx, base: str, data: np.ndarray):
    """A new IR constant for `data` (a reshaped initializer)."""
    return Graph.constant(ctx.graph.unique_name(base), np.ascontiguousarray(data))


def _inputs(ctx, n: OnnxNode):
    wb, t = ctx.value(n.input(1)), ctx.value(n.input(4))
    alpha, beta = ctx.const(n.input(2)).astype(np.float32), ctx.const(n.input(3)).astype(np.float32)
    o, m = wb.shape[1], wb.shape[0]
    if alpha.shape != (o, m) or beta.shape != (t.shape[1],):
        n.fail(f"alpha {list(alpha.shape)} / beta {list(beta.shape)} do not match wb "
               f"{list(wb.shape)} ([O, M] = [{o}, {m}]) and t {list(t.shape)} ([P])")
    a3 = _const_value(ctx, f"{n.input(2)}.om1", alpha.reshape(o, m, 1))
    b3 = _const_value(ctx, f"{n.input(3)}.11p", beta.reshape(1, 1, -1))
    phi = ctx.graph.add_node("mul", [a3, b3], {}, name=f"{n.name}.phi",
                             output_names=[f"{n.output(0)}.phi"], meta={"onnx_op": n.op})
    ins = [ctx.value(n.input(0)), wb, phi.outputs[0], t]
    return ins + ([ctx.value(n.input(5))] if n.input(5) else [])


def _bases(n: OnnxNode) -> dict:
    return {"weight_basis": n.attrs.get("weight_basis", "01"), "act_basis": n.attrs.get("act_basis", "01")}


@converter(f"{DOMAIN}.BinaryConv2d", const_inputs=LAYER_INPUTS, check=_check)
def _binary_conv2d(ctx, n: OnnxNode):
    attrs = {"strides": tuple(_ints(n.attrs.get("strides", [1, 1]))),
             "pads": tuple(_ints(n.attrs.get("pads", [0, 0, 0, 0]))),
             "dilations": tuple(_ints(n.attrs.get("dilations", [1, 1]))),
             "groups": int(n.attrs.get("group", 1)), **_bases(n)}
    ctx.emit(n, "binary_conv2d", _inputs(ctx, n), attrs)


@converter(f"{DOMAIN}.BinaryLinear", const_inputs=LAYER_INPUTS, check=_check)
def _binary_linear(ctx, n: OnnxNode):
    ctx.emit(n, "binary_linear", _inputs(ctx, n), _bases(n))
