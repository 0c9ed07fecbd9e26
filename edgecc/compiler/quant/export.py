"""Exportable forms of PA / ABC-Net / sign models: one graph node per binary layer.

`exportable(model)` returns an eval-mode copy of a converted model (quant/convert.py)
in which every PAConv2d/PALinear, ABCConv2d/ABCLinear and SignConv2d/SignLinear is
replaced by a module holding the layer's inference decomposition as buffers and
calling one custom op. The op's implementation computes the float forward of the
decomposition, equal to the original layer's eval forward, so the copy is a drop-in
replacement (PA: bit-identical; ABC-Net and sign: equal up to float rounding, the
originals add a straight-through term), and torch.export keeps ONE node per layer:

    edgecc::binary_conv2d(x, wb, alpha, beta, t, bias?, stride, padding, dilation,
                          groups, weight_basis, act_basis) -> y
    edgecc::binary_linear(x, wb, alpha, beta, t, bias?, weight_basis, act_basis) -> y

Tensors (the same in the torch op, the ONNX nodes and, combined, the IR op; see the
binary_conv2d docstring in compiler/ir/ops.py):
    wb     int8 [M, O, C/g, kh, kw] (linear: [M, O, K]): weight bases, {0,1} or {-1,+1}
    alpha  f32 [O, M]: weight coefficients (PA alphas and ABC eps repeated per output
           channel; sign: the per-channel mean |W|, M = 1)
    beta   f32 [P]: activation coefficients (PA/ABC betas; sign: [1])
    t      f32 [C, P] (linear: [K, P]): per-input-channel thresholds of the P bases
    bias   f32 [O] or absent
so that y = sum_ij alpha[o, i] beta[j] conv(W_i, A_j(x)) + bias with
    "01" activations (PA):  A_j = [t_j <= x < t_{j+1}], last open above, below t_0 none
    "pm1" activations (ABC, sign): A_j = +1 if x >= t_j else -1
and zero padding of the quantized input (a padded tap contributes 0). phi[o, i, j] =
alpha[o, i] * beta[j] is formed by the IR pass merge_pa_coefficients.
Geometry: stride (sh, sw), padding (top, left, bottom, right), dilation (dh, dw), groups.

ONNX route (`export_onnx`): the same model through torch.onnx.export (TorchScript
exporter) with the two ops mapped to custom-domain nodes, domain "edgecc" version 1:
    edgecc.BinaryConv2d(x, wb, alpha, beta, t[, bias]) -> y
        attributes: strides [2], pads [4] (ONNX order: top, left, bottom, right),
                    dilations [2], group (int), weight_basis, act_basis (strings)
    edgecc.BinaryLinear(x, wb, alpha, beta, t[, bias]) -> y
        attributes: weight_basis, act_basis
wb, alpha, beta, t and bias are initializers. edgecc's ONNX frontend imports these
nodes (frontends/onnx_ops_binary.py) to the same IR as the torch route.
"""
from __future__ import annotations

import copy
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import InputError
from .abc import ABCConv2d, ABCLinear
from .convert import binary_layers
from .pa import PAConv2d, PALinear
from .sign import SignConv2d, SignLinear

BASES = ("01", "pm1")
ONNX_DOMAIN = "edgecc"
ONNX_DOMAIN_VERSION = 1


# ---- the float forward of the decomposition ------------------------------------------
def _act_levels(x: torch.Tensor, beta: torch.Tensor, t: torch.Tensor, act_basis: str) -> torch.Tensor:
    """A_bar = sum_j beta_j A_j(x) with per-channel thresholds t [C, P] (channel axis 1)."""
    shp = (1, -1) + (1,) * (x.dim() - 2)
    ge = [x >= t[:, j].reshape(shp) for j in range(t.shape[1])]
    if act_basis == "01":
        k = torch.stack(ge).sum(0)            # number of thresholds <= x (they increase)
        levels = torch.cat([beta.new_zeros(1), beta])
        return levels[k]
    h = torch.stack([torch.where(g, 1.0, -1.0).to(x.dtype) for g in ge])   # [P, *x.shape]
    return torch.tensordot(beta, h, dims=1)


def _weight_levels(wb: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """W_bar[o] = sum_i alpha[o, i] wb[i, o] (one-hot {0,1} bases: exactly alpha)."""
    w = wb.to(alpha.dtype)
    shp = (alpha.shape[0],) + (1,) * (w.dim() - 2)
    out = alpha[:, 0].reshape(shp) * w[0]
    for i in range(1, w.shape[0]):
        out = out + alpha[:, i].reshape(shp) * w[i]
    return out


def _check_bases(weight_basis: str, act_basis: str):
    if weight_basis not in BASES or act_basis not in BASES:
        raise InputError(f"weight_basis {weight_basis!r} / act_basis {act_basis!r} must be '01' or 'pm1'")


@torch.library.custom_op("edgecc::binary_conv2d", mutates_args=())
def binary_conv2d(x: torch.Tensor, wb: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor,
                  t: torch.Tensor, bias: Optional[torch.Tensor], stride: list[int],
                  padding: list[int], dilation: list[int], groups: int, weight_basis: str,
                  act_basis: str) -> torch.Tensor:
    _check_bases(weight_basis, act_basis)
    a = _act_levels(x, beta, t, act_basis)
    top, left, bottom, right = padding
    a = F.pad(a, (left, right, top, bottom))    # zero padding after quantization
    return F.conv2d(a, _weight_levels(wb, alpha), bias, tuple(stride), 0, tuple(dilation), groups)


@binary_conv2d.register_fake
def _(x, wb, alpha, beta, t, bias, stride, padding, dilation, groups, weight_basis, act_basis):
    n, _, h, w = x.shape
    kh, kw = wb.shape[3], wb.shape[4]
    oh = (h + padding[0] + padding[2] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w + padding[1] + padding[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    return x.new_empty((n, wb.shape[1], oh, ow))


@torch.library.custom_op("edgecc::binary_linear", mutates_args=())
def binary_linear(x: torch.Tensor, wb: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor,
                  t: torch.Tensor, bias: Optional[torch.Tensor], weight_basis: str,
                  act_basis: str) -> torch.Tensor:
    _check_bases(weight_basis, act_basis)
    return F.linear(_act_levels(x, beta, t, act_basis), _weight_levels(wb, alpha), bias)


@binary_linear.register_fake
def _(x, wb, alpha, beta, t, bias, weight_basis, act_basis):
    return x.new_empty((x.shape[0], wb.shape[1]))


# ---- modules calling the ops -----------------------------------------------------------
def _quad(padding) -> list[int]:
    if isinstance(padding, str):
        raise InputError(f"padding={padding!r}: export needs explicit integer padding")
    p = [int(v) for v in padding]
    return [p[0], p[1], p[0], p[1]] if len(p) == 2 else p


class _BinaryExport(nn.Module):
    """Holds one layer's decomposition as buffers (they become graph constants)."""

    def __init__(self, wb, alpha, beta, t, bias, weight_basis: str, act_basis: str):
        super().__init__()
        _check_bases(weight_basis, act_basis)
        if act_basis == "01" and t.shape[1] > 1 and not bool((np.diff(t, axis=1) > 0).all()):
            raise InputError("{0,1} activation thresholds must increase strictly along P")
        self.register_buffer("wb", torch.as_tensor(np.asarray(wb, dtype=np.int8)))
        self.register_buffer("alpha", torch.as_tensor(np.asarray(alpha, dtype=np.float32)))
        self.register_buffer("beta", torch.as_tensor(np.asarray(beta, dtype=np.float32)))
        self.register_buffer("t", torch.as_tensor(np.asarray(t, dtype=np.float32)))
        self.register_buffer("bias", None if bias is None else
                             torch.as_tensor(np.asarray(bias, dtype=np.float32)))
        self.weight_basis, self.act_basis = weight_basis, act_basis

    def extra_repr(self):
        m, o = self.wb.shape[:2]
        return f"M={m}, P={self.t.shape[1]}, out={o}, bases=({self.weight_basis}, {self.act_basis})"


class BinaryConv2dExport(_BinaryExport):
    def __init__(self, wb, alpha, beta, t, bias, weight_basis, act_basis, stride, padding,
                 dilation, groups):
        super().__init__(wb, alpha, beta, t, bias, weight_basis, act_basis)
        self.stride, self.padding = [int(s) for s in stride], _quad(padding)
        self.dilation, self.groups = [int(d) for d in dilation], int(groups)

    def forward(self, x):
        return torch.ops.edgecc.binary_conv2d(x, self.wb, self.alpha, self.beta, self.t, self.bias,
                                              self.stride, self.padding, self.dilation, self.groups,
                                              self.weight_basis, self.act_basis)


class BinaryLinearExport(_BinaryExport):
    def forward(self, x):
        return torch.ops.edgecc.binary_linear(x, self.wb, self.alpha, self.beta, self.t, self.bias,
                                              self.weight_basis, self.act_basis)


def decomposition(layer: nn.Module) -> dict:
    """The layer's decomposition in the op's tensors: wb, alpha, beta, t, bias, bases
    (and the conv geometry)."""
    if isinstance(layer, (PAConv2d, PALinear)):
        p = layer.pa_params()
        wb, alphas, betas, thr = p["weight_planes"], p["alphas"], p["betas"], p["act_endpoints"]
        bases = ("01", "01")
    elif isinstance(layer, (ABCConv2d, ABCLinear)):
        p = layer.abc_params()
        wb, alphas, betas, thr = p["weight_bases"], p["alphas"], p["betas"], p["act_thresholds"]
        bases = ("pm1", "pm1")
    elif isinstance(layer, (SignConv2d, SignLinear)):
        p = layer.sign_params()
        wb, betas = p["weight_signs"][None], np.ones(1, np.float32)
        bases = ("pm1", "pm1")
    else:
        raise InputError(f"{type(layer).__name__} is not a PA, ABC-Net or sign layer")
    out_ch, in_ch = layer.weight.shape[0], layer.weight.shape[1] * getattr(layer, "groups", 1)
    if isinstance(layer, (SignConv2d, SignLinear)):
        alpha = p["alphas"].reshape(out_ch, 1)
        t = p["act_thresholds"].reshape(in_ch, 1)
    else:
        alpha = np.tile(np.asarray(alphas).reshape(1, -1), (out_ch, 1))
        t = np.tile(np.asarray(thr).reshape(1, -1), (in_ch, 1))
    d = {"wb": wb, "alpha": alpha, "beta": betas, "t": t, "bias": p["bias"],
         "weight_basis": bases[0], "act_basis": bases[1]}
    if isinstance(layer, nn.Conv2d):
        d.update(stride=p["stride"], padding=p["padding"], dilation=p["dilation"], groups=p["groups"])
    return d


def export_layer(layer: nn.Module) -> nn.Module:
    """One binarized layer -> its BinaryConv2dExport / BinaryLinearExport."""
    d = decomposition(layer)
    cls = BinaryConv2dExport if "stride" in d else BinaryLinearExport
    return cls(**d)


def exportable(model: nn.Module) -> nn.Module:
    """Eval-mode copy of `model` with every binarized layer replaced by its export form."""
    model = copy.deepcopy(model).eval()
    layers = binary_layers(model)
    if not layers:
        raise InputError(f"{type(model).__name__} has no PA, ABC-Net or sign layer to export")
    for name, layer in layers.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, export_layer(layer))
    return model


# ---- ONNX -------------------------------------------------------------------------------
def _onnx_symbolics():
    from torch.onnx import symbolic_helper as sh

    @sh.parse_args("v", "v", "v", "v", "v", "v", "is", "is", "is", "i", "s", "s")
    def conv(g, x, wb, alpha, beta, t, bias, stride, padding, dilation, groups, wbase, abase):
        ins = [x, wb, alpha, beta, t] + ([] if sh._is_none(bias) else [bias])
        return g.op(f"{ONNX_DOMAIN}::BinaryConv2d", *ins, strides_i=stride, pads_i=padding,
                    dilations_i=dilation, group_i=groups, weight_basis_s=wbase, act_basis_s=abase)

    @sh.parse_args("v", "v", "v", "v", "v", "v", "s", "s")
    def linear(g, x, wb, alpha, beta, t, bias, wbase, abase):
        ins = [x, wb, alpha, beta, t] + ([] if sh._is_none(bias) else [bias])
        return g.op(f"{ONNX_DOMAIN}::BinaryLinear", *ins, weight_basis_s=wbase, act_basis_s=abase)

    return conv, linear


def export_onnx(model: nn.Module, example_inputs: tuple, f, opset: int = 17) -> None:
    """Write `model` (a converted PA/ABC/sign model) as ONNX with edgecc-domain binary
    nodes to `f` (a path or a binary file object)."""
    conv, linear = _onnx_symbolics()
    torch.onnx.register_custom_op_symbolic("edgecc::binary_conv2d", conv, opset)
    torch.onnx.register_custom_op_symbolic("edgecc::binary_linear", linear, opset)
    torch.onnx.export(exportable(model), tuple(example_inputs), f, dynamo=False, opset_version=opset,
                      custom_opsets={ONNX_DOMAIN: ONNX_DOMAIN_VERSION}, do_constant_folding=False,
                      input_names=[f"input{i}" for i in range(len(example_inputs))])
