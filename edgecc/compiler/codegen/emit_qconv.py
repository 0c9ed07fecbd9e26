"""Code generation for `qconv2d` (int8 / int16 integer convolution) in compiled models.

One step = quantize the float input (model_ops_int.h, exactly the reference's float32
multiply, round half to even, clip, NaN -> 0), the integer convolution, then the
requantizing epilogue y = float32(double(acc) * double(scale[o]) + double(bias[o]))
(+ relu) into the float output. The integer convolution is one of:

  direct  edgecc's direct kernel (int8: VNNI / maddwd into int32; int16: into int64),
          weights stored raw and packed once at open. An int8 layer whose reduction
          C/groups*kh*kw is too long for exact int32 sums runs the int16 kernel (int64).
  dfnt    the DFNT convolution: weights stored dilated and split into stride phases,
          transformed once at open; the ring (F5 for int8; F5, 2^48+1 or F6 for
          int16) is the cheapest that holds the layer's overflow bound, checked here
          from the actual weights.
  onednn  int8 only (models compiled with oneDNN): oneDNN's s8 x s8 -> s32 conv
          (model_onednn.h, primitive built at open, NCHW reordered in and out per call).
          At open the model checks OnednnConvS8S32::exact_on_this_cpu() and, on a CPU
          without VNNI, prepares edgecc's direct kernel instead (same weights, same sums).

int_kernel_choice.choose picks the kernel per layer (forced, tuned, or the measured
crossover table); the Step's `kernel` names it and `why` says why. The quantized input
and the accumulators live in buffers allocated at open (no allocation per call).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import UnsupportedOpsError
from ..ir import DType, Node
from .cpp import ONEDNN_HEADER, Emitter, Step, _cstr, _f, conv2d_shape_struct
from .int_kernel_choice import QMAX, QS8_MAX_REDUCTION_I32, choose, dfnt_layer, onednn_shape, resolve_isa


def qconv_unsupported_reason(n: Node) -> str | None:
    """Why a qconv2d node cannot be compiled (None: it can)."""
    x, w, scale, bias = n.inputs
    if not (w.is_constant and scale.is_constant and bias.is_constant):
        return "qconv2d weights, scale and bias must be constants"
    if x.is_constant or x.dtype != DType.f32:
        return f"input {x.name!r} must be an f32 activation, got {x.dtype}"
    if w.dtype not in (DType.i8, DType.i16):
        return f"weights {w.name!r} are {w.dtype}; expected i8 or i16"
    return None


def _direct_kernel_name(dtype: str, n: Node, w_shape, isa: str) -> str:
    from ... import _native
    a, x = n.attrs, n.inputs[0]
    try:
        return _native.direct_conv2d_kernel_name(dtype, list(x.shape), list(w_shape), list(a["strides"]),
                                                 list(a["pads"]), list(a["dilations"]), a["groups"], isa)
    except ValueError:   # an ISA this machine cannot run (cross-compiling): the family name
        return f"{dtype}_conv2d_direct_{isa}"


@dataclass
class _IntConv:
    """The integer-convolution part of a qconv2d step."""
    name: str            # XNNPACK-style kernel name
    detail: str          # for the Step's kernel text
    q_type: str          # C type of the quantized input
    acc_type: str        # C type of the accumulators
    prepare: list[str]   # statements at open (inside the step's block)
    member: str
    run: str             # the call in the step body
    stored_bytes: int


def _direct(e: Emitter, n: Node, k: int, bits: int, isa: str) -> _IntConv:
    w = n.inputs[1]
    N, _, H, Wd = n.inputs[0].shape
    _, cg, kh, kw = w.shape
    wide = bits == 16 or cg * kh * kw > QS8_MAX_REDUCTION_I32
    q_t, acc_t = ("int16_t", "int64_t") if wide else ("int8_t", "int32_t")
    plan_t = "DirectConv2dQs16" if wide else "DirectConv2dQs8"
    wdata = w.data.astype(np.int16 if wide else np.int8)
    woff = e.weights.add(("qconv_direct", id(w), str(wdata.dtype)), wdata)
    if bits == 8 and wide:
        detail = (f"reduction {cg * kh * kw} > {QS8_MAX_REDUCTION_I32} (the int32 kernel's exact limit): "
                  "int8 values run the int16 kernel with int64 sums")
    else:
        detail = f"int{'64' if wide else '32'} sums, weights packed at open"
    return _IntConv(
        _direct_kernel_name("qs16" if wide else "qs8", n, w.shape, isa), detail, q_t, acc_t,
        conv2d_shape_struct(n) + [f"  m->qconv_{k} = std::make_unique<edgecc::{plan_t}>(s, W<{q_t}>({woff}), nullptr, "
                            "m->isa);"],
        f"std::unique_ptr<edgecc::{plan_t}> qconv_{k};",
        f"m->qconv_{k}->run(m->qin_{k}.data(), {N}, {H}, {Wd}, m->acc_{k}.data(), m->threads);",
        wdata.nbytes)


def _dfnt(e: Emitter, n: Node, k: int, bits: int, isa: str) -> _IntConv:
    layer, _ = dfnt_layer(n, bits)
    a, w = n.attrs, n.inputs[1]
    N, C, H, Wd = n.inputs[0].shape
    O = w.shape[0]
    OH, OW = n.outputs[0].shape[2:]
    q_t = "int8_t" if bits == 8 else "int16_t"
    woff = e.weights.add(("qconv_dfnt", id(w), a["strides"], a["dilations"]), layer.weights)
    _, cq, qh, qw = layer.weights.shape
    nt = layer.transform_size
    ring_tag = {"F5": "f5", "2^48+1": "f48", "F6": "f6"}[layer.ring]
    name = f"qs{bits}_conv2d_dfnt_{ring_tag}_{nt}x{nt}_{'avx512' if isa == 'avx512' else 'scalar'}"
    pt, pl, pb, pr = a["pads"]
    prepare = [
        f"  edgecc::model::QConvDfnt& L = m->dfnt_{k};",
        f"  L.batch = {N}; L.channels = {C}; L.in_h = {H}; L.in_w = {Wd};",
        f"  L.pads[0] = {pt}; L.pads[1] = {pl}; L.pads[2] = {pb}; L.pads[3] = {pr};",
        f"  L.stride_h = {a['strides'][0]}; L.stride_w = {a['strides'][1]};",
        f"  L.phase_h = {OH + qh - 1}; L.phase_w = {OW + qw - 1};",
        f"  edgecc::model::qconv_dfnt_prepare(L, W<{q_t}>({woff}), {O}, {cq}, {qh}, {qw}, {layer.bits}, {nt}, m->isa);",
    ]
    # transformed weights: n^2 bins x channels rounded up to 8, one uint64 (two on F6) each
    mib = nt * nt * -(-cq // 8) * 8 * -(-O // 8) * 8 * 8 * (2 if layer.ring == "F6" else 1) / 2**20
    detail = (f"DFNT ring {layer.ring} (|acc| <= {layer.bound}), {nt}x{nt} tiles, "
              f"{'stride phases, ' if a['strides'] != (1, 1) else ''}weights transformed at open ({mib:.1f} MiB)")
    return _IntConv(name, detail, q_t, "int32_t" if layer.ring == "F5" else "int64_t", prepare,
                    f"edgecc::model::QConvDfnt dfnt_{k};",
                    f"edgecc::model::qconv_dfnt_run(m->dfnt_{k}, m->qin_{k}.data(), m->acc_{k}.data(), m->threads);",
                    layer.weights.nbytes)


def _onednn(e: Emitter, n: Node, k: int, bits: int, isa: str) -> _IntConv:
    from . import onednn
    lib = onednn.require()
    direct = _direct(e, n, k, bits, isa)   # the fallback at open: same int8 weights (shared entry)
    N, _, H, Wd = n.inputs[0].shape
    woff = e.weights.add(("qconv_direct", id(n.inputs[1]), "int8"), n.inputs[1].data.astype(np.int8))
    where = _cstr(f"node '{n.name}' (op {n.op})")   # named by oneDNN errors
    impl = onednn.conv_impl(onednn_shape(n), int8=True)
    prepare = conv2d_shape_struct(n) + [
        "  if (edgecc::model::OnednnConvS8S32::exact_on_this_cpu())",
        f"    m->qconv_onednn_{k} = std::make_unique<edgecc::model::OnednnConvS8S32>({where}, s, W<int8_t>({woff}));",
        "  else  // no VNNI: oneDNN int8 would round; edgecc's direct kernel is exact",
        f"    m->qconv_{k} = std::make_unique<edgecc::DirectConv2dQs8>(s, W<int8_t>({woff}), nullptr, m->isa);",
    ]
    run = (f"if (m->qconv_onednn_{k}) m->qconv_onednn_{k}->run(m->qin_{k}.data(), m->acc_{k}.data(), m->threads); "
           f"else {direct.run}")
    return _IntConv(f"qs8_conv2d_onednn ({impl or 'implementation unknown'} on the build CPU)",
                    f"oneDNN {lib.version} s8 x s8 -> s32, weights reordered at open, NCHW reordered per call; "
                    "edgecc direct instead on CPUs without VNNI", "int8_t", "int32_t", prepare,
                    f"std::unique_ptr<edgecc::model::OnednnConvS8S32> qconv_onednn_{k}; {direct.member}",
                    run, direct.stored_bytes)


def emit_qconv2d(e: Emitter, n: Node, k: int) -> Step:
    reason = qconv_unsupported_reason(n)
    if reason is not None:
        raise UnsupportedOpsError([(n.op, reason, [n.name])])
    x, w, scale, bias = n.inputs
    y = n.outputs[0]
    a = n.attrs
    bits = 8 if w.dtype == DType.i8 else 16
    kernel, why = choose(n, bits, e.options)
    conv = {"dfnt": _dfnt, "onednn": _onednn}.get(kernel, _direct)(e, n, k, bits, resolve_isa(e.isa_request))
    in_elems, acc_elems = x.type.numel, y.type.numel
    prepare = ["{", *conv.prepare, f"  m->qin_{k}.resize({in_elems});", f"  m->acc_{k}.resize({acc_elems});", "}"]
    members = [conv.member, f"std::vector<{conv.q_type}> qin_{k};", f"std::vector<{conv.acc_type}> acc_{k};"]
    inv = np.float32(1) / np.float32(a["x_scale"])   # the reference's float32 reciprocal
    N, O, OH, OW = y.shape
    body = [
        f"edgecc::model::quantize_qconv_input({e.ptr(x)}, m->qin_{k}.data(), {in_elems}, {_f(inv)}, "
        f"{QMAX[bits]}.0f, m->threads);",
        conv.run,
        f"edgecc::model::requantize_qconv_output(m->acc_{k}.data(), {e.ptr(y)}, {N}, {O}, {OH * OW}, "
        f"{e.ptr(scale)}, {e.ptr(bias)}, {'true' if a['relu'] else 'false'}, m->threads);",
    ]
    params = w.type.numel + scale.type.numel + bias.type.numel
    kernel_text = f"{conv.name} (int{bits} qconv: quantize, {conv.detail}, requantize epilogue" + \
        (" + relu)" if a["relu"] else ")")
    _, cg, kh, kw = w.shape
    headers = ("edgecc/model_ops_int.h",) + ((ONEDNN_HEADER,) if "Onednn" in "".join(prepare + members) else ())
    return Step(n, kernel_text, why, body, prepare, members, params=params, macs=y.type.numel * cg * kh * kw,
                fp32_bytes=4 * params, stored_bytes=conv.stored_bytes + 4 * (scale.type.numel + bias.type.numel),
                includes=headers)
