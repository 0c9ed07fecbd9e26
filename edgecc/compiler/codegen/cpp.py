"""IR graph -> one C++ translation unit per model (plus a small entry file).

model.cpp (compiled with the target's flags) holds one step function per node, with
static shapes, pointers into the weights section (embedded with .incbin, binary weight
bases pre-packed here at compile time, float weights raw) and fixed offsets into the
activation arena (memory_plan). entry.cpp (compiled for plain x86-64) implements the
exported C API of edgecc/model_api.h and checks the CPU features before any
target-specific instruction runs.

Supported ops are the `EMITTERS` below; `check_supported` lists every node that has no
emitter (or that an emitter cannot take, with the reason) so the compiler fails once.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from ...errors import UnsupportedOpsError
from ..analysis import node_macs
from ..ir import DType, Graph, Node, Value
from .memory_plan import ALIGN, Buffer, MemoryPlan, plan_memory

BINARY_OPS = ("binary_conv2d", "binary_linear")
ONEDNN_HEADER = "edgecc/model_onednn.h"
MAX_PLANES = 16


# ---- the weights section ------------------------------------------------------------
class Weights:
    """Constants laid out in one blob, each entry 64-byte aligned; entries are keyed so
    a shared constant (or the same transformed form of it) is stored once."""

    def __init__(self):
        self.chunks: list[bytes] = []
        self.size = 0
        self.offsets: dict[tuple, int] = {}

    def add(self, key: tuple, array: np.ndarray) -> int:
        if key in self.offsets:
            return self.offsets[key]
        pad = (-self.size) % ALIGN
        self.chunks.append(b"\0" * pad)
        self.size += pad
        data = np.ascontiguousarray(array).tobytes()
        self.offsets[key] = self.size
        self.chunks.append(data)
        self.size += len(data)
        return self.offsets[key]

    def blob(self) -> bytes:
        return b"".join(self.chunks) or b"\0" * ALIGN   # never an empty section


def _f(x: float) -> str:
    """A float32 C++ literal that round-trips exactly."""
    v = float(np.float32(x))
    if math.isinf(v):
        return ("-" if v < 0 else "") + "std::numeric_limits<float>::infinity()"
    return f"{v.hex()}f"


def _d(x: float) -> str:
    return float(x).hex()


def _cstr(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---- per-node emission ---------------------------------------------------------------
@dataclass
class Step:
    node: Node
    kernel: str
    why: str
    body: list[str]                                    # statements of the step function
    prepare: list[str] = field(default_factory=list)   # statements run at open
    members: list[str] = field(default_factory=list)   # fields of the model handle
    scratch_bytes: int = 0                             # arena scratch for this step only
    params: int = 0
    macs: int = 0
    binary_macs: int = 0
    fp32_bytes: int = 0     # the layer's constants stored as fp32
    stored_bytes: int = 0   # the layer's constants as embedded
    includes: tuple[str, ...] = ()   # headers of cpp/include/ the step's code calls (beyond model_ops.h)


@dataclass
class CodegenOptions:
    """Choices of `edgecc compile` that reach the emitters."""
    isa_request: str = ""    # "" = EDGECC_ISA or the best the CPU has
    onednn: bool = False     # float conv / gemm through oneDNN instead of edgecc's own kernels
    tune: bool = False       # integer convs: time DFNT and direct on this machine, keep the faster
    plane_outputs: bool = True   # binary layers write their binary readers' bit-planes directly
    layer_kernels: dict[str, str] = field(default_factory=dict)   # node name -> forced kernel


class Emitter:
    def __init__(self, graph: Graph, options: CodegenOptions):
        self.graph = graph
        self.options = options
        self.isa_request = options.isa_request
        self.weights = Weights()
        self.input_index = {id(v): i for i, v in enumerate(graph.inputs)}
        self.output_index = {}
        for j, v in enumerate(graph.outputs):   # first occurrence is written in place
            if not v.is_constant and id(v) not in self.input_index:
                self.output_index.setdefault(id(v), j)
        self.plan: MemoryPlan | None = None
        self.offsets: dict[int, int] = {}   # id(value) or ("scratch", step) -> arena offset

    # pointers -----------------------------------------------------------------
    def ptr(self, v: Value, writable: bool = False) -> str:
        if v.is_constant:
            return f"W<float>({self.weights.add(('raw', id(v)), v.data.astype(np.float32))})"
        if id(v) in self.input_index:
            return f"static_cast<const float*>(in[{self.input_index[id(v)]}])"
        if id(v) in self.output_index:
            return f"static_cast<float*>(out[{self.output_index[id(v)]}])"
        return f"reinterpret_cast<float*>(m->arena + {self.offsets[id(v)]})"

    def scratch(self, step: int, ctype: str) -> str:
        return f"reinterpret_cast<{ctype}*>(m->arena + {self.offsets[('scratch', step)]})"


def _const_bytes(n: Node) -> tuple[int, int]:
    """(parameter elements, fp32 bytes) of the constants a node reads."""
    seen, params = set(), 0
    for v in n.inputs:
        if v.is_constant and id(v) not in seen:
            seen.add(id(v))
            params += v.type.numel
    return params, 4 * params


def _unsupported_reason(n: Node) -> str | None:
    """Why the compiler cannot take this node (None: it can)."""
    if n.op not in EMITTERS:
        return "no compiled kernel for this op yet"
    if n.op == "qconv2d":
        from .emit_qconv import qconv_unsupported_reason
        return qconv_unsupported_reason(n)
    for v in n.outputs:
        if v.dtype != DType.f32:
            return f"output {v.name!r} is {v.dtype}; compiled models take f32 activations only"
    for i, v in enumerate(n.inputs):
        if v.is_constant:
            if n.op in BINARY_OPS and i == 1:
                continue
            if v.dtype != DType.f32:
                return f"constant {v.name!r} is {v.dtype}, expected f32"
        elif v.dtype != DType.f32:
            return f"input {v.name!r} is {v.dtype}; compiled models take f32 activations only"
    if n.op == "conv2d" and not n.inputs[1].is_constant:
        return "conv2d weights must be constants"
    if n.op == "batch_norm" and not all(v.is_constant for v in n.inputs[1:]):
        return "batch_norm parameters must be constants"
    if n.op in ("add", "sub", "mul", "div") and n.outputs[0].type.rank > 8:
        return "rank above 8"
    if n.op in BINARY_OPS:
        return _binary_reason(n)
    return None


def _binary_reason(n: Node) -> str | None:
    a = n.attrs
    if not all(v.is_constant for v in n.inputs[1:]):
        return "weight bases, phi, thresholds and bias must be constants"
    wb, t = n.inputs[1].data, n.inputs[3].data
    allowed = (-1, 1) if a["weight_basis"] == "pm1" else (0, 1)
    if not np.isin(wb, allowed).all():
        return f"weight bases hold values outside {set(allowed)} (weight_basis {a['weight_basis']!r})"
    m, p = wb.shape[0], t.shape[1]
    if m > MAX_PLANES or p > MAX_PLANES:
        return f"{m} weight / {p} activation planes; the binary engine takes at most {MAX_PLANES}"
    if a["act_basis"] == "pm1" and p > 1:
        return "+-1 activations with more than one threshold are not compiled yet"
    t32 = t.astype(np.float32)
    if np.isnan(t32).any() or (p > 1 and not (np.diff(t32, axis=1) > 0).all()):
        return "thresholds must be strictly increasing per channel once cast to float32"
    if n.op == "binary_conv2d":
        groups, cg = a["groups"], wb.shape[2]
        if groups > 1 and cg % 32:
            return f"groups={groups} with {cg} channels per group (not a multiple of 32)"
    return None


def check_supported(graph: Graph) -> None:
    """Raise UnsupportedOpsError listing every node the compiler cannot take."""
    bad: dict[tuple[str, str], list[str]] = {}
    for n in graph.nodes:
        why = _unsupported_reason(n)
        if why is not None:
            bad.setdefault((n.op, why), []).append(n.name)
    for v in graph.inputs:
        if v.dtype != DType.f32:
            bad.setdefault(("<input>", f"graph input is {v.dtype}; only f32 is compiled"), []).append(v.name)
    for v in graph.outputs:
        if v.is_constant:
            bad.setdefault(("<output>", "a constant graph output"), []).append(v.name)
    if bad:
        raise UnsupportedOpsError([(op, why, names) for (op, why), names in bad.items()])


# ---- emitters ------------------------------------------------------------------------
def _numel(v: Value) -> int:
    return v.type.numel


def conv2d_shape_struct(n: Node) -> list[str]:
    """Statements declaring `edgecc::Conv2dShape s` for a conv-like node (x, w[O, C/g, kh, kw])."""
    x, w, a = n.inputs[0], n.inputs[1], n.attrs
    N, C, H, Wd = x.shape
    O, _, kh, kw = w.shape
    pt, pl, pb, pr = a["pads"]
    return [
        "  edgecc::Conv2dShape s;",
        f"  s.batch = {N}; s.in_channels = {C}; s.in_h = {H}; s.in_w = {Wd};",
        f"  s.out_channels = {O}; s.kernel_h = {kh}; s.kernel_w = {kw};",
        f"  s.stride_h = {a['strides'][0]}; s.stride_w = {a['strides'][1]};",
        f"  s.dilation_h = {a['dilations'][0]}; s.dilation_w = {a['dilations'][1]};",
        f"  s.pad_top = {pt}; s.pad_left = {pl}; s.pad_bottom = {pb}; s.pad_right = {pr}; s.groups = {a['groups']};",
    ]


def _emit_conv2d(e: Emitter, n: Node, k: int) -> Step:
    x, w = n.inputs[0], n.inputs[1]
    b = n.inputs[2] if len(n.inputs) == 3 else None
    a = n.attrs
    N, C, H, Wd = x.shape
    O, cg, kh, kw = w.shape
    woff = e.weights.add(("raw", id(w)), w.data.astype(np.float32))
    bias = f"W<float>({e.weights.add(('raw', id(b)), b.data.astype(np.float32))})" if b is not None else "nullptr"
    shape = conv2d_shape_struct(n)
    params, fp32 = _const_bytes(n)
    if e.options.onednn:   # model_onednn.h: primitive and weight layout picked by oneDNN at open
        from . import onednn
        lib = onednn.require()
        where = _cstr(f"node '{n.name}' (op {n.op})")   # named by oneDNN errors
        member = f"std::unique_ptr<edgecc::model::OnednnConvF32> conv_{k};"
        prepare = ["{", *shape,
                   f"  m->conv_{k} = std::make_unique<edgecc::model::OnednnConvF32>({where}, s, "
                   f"W<float>({woff}), {bias});", "}"]
        body = [f"m->conv_{k}->run({e.ptr(x)}, {e.ptr(n.outputs[0])}, m->threads);"]
        impl = onednn.conv_impl((N, C, H, Wd, O, kh, kw, *a["strides"], *a["dilations"], *a["pads"],
                                 a["groups"]), bias=b is not None)
        return Step(n, f"onednn f32 conv ({impl or 'implementation unknown'} on the build CPU; oneDNN "
                       f"{lib.version}, {lib.threading}; weights reordered at open)",
                    "float weights in the model: runs in fp32 (oneDNN)",
                    body, prepare, [member], params=params, macs=node_macs(n), fp32_bytes=fp32, stored_bytes=fp32,
                    includes=(ONEDNN_HEADER,))
    member = f"std::unique_ptr<edgecc::DirectConv2dF32> conv_{k};"
    prepare = ["{", *shape,
               f"  m->conv_{k} = std::make_unique<edgecc::DirectConv2dF32>(s, W<float>({woff}), {bias}, m->isa);",
               "}"]
    body = [f"m->conv_{k}->run({e.ptr(x)}, {N}, {H}, {Wd}, {e.ptr(n.outputs[0])}, m->threads);"]
    return Step(n, "f32 direct conv (DirectConv2dF32, weights packed at open)",
                "float weights in the model: runs in fp32", body, prepare, [member],
                params=params, macs=node_macs(n), fp32_bytes=fp32, stored_bytes=fp32)


def _emit_binary(e: Emitter, n: Node, k: int) -> Step:
    from ...kernels import binary as B   # weight packing of the binary engine

    x, wbv, phiv, tv = n.inputs[:4]
    bv = n.inputs[4] if len(n.inputs) == 5 else None
    a = n.attrs
    conv = n.op == "binary_conv2d"
    wb = wbv.data if conv else wbv.data[..., None, None]
    groups = a["groups"] if conv else 1
    signed_w, signed_x = a["weight_basis"] == "pm1", a["act_basis"] == "pm1"
    packed = B.pack_weights(wb, signed=signed_w, groups=groups)
    m_planes, O, cg, kh, kw = wb.shape
    xs = x.shape if conv else (x.shape[0], x.shape[1], 1, 1)
    N, C, H, Wd = xs
    ys = n.outputs[0].shape if conv else (n.outputs[0].shape[0], O, 1, 1)
    oh, ow = ys[2], ys[3]
    P = tv.shape[1]
    t = np.ascontiguousarray(tv.data.astype(np.float32).T)          # [C, P] -> [P, C]
    phi = np.ascontiguousarray(phiv.data.astype(np.float64).astype(np.float32))   # [O, M, P]
    words64 = -(-C // 64)
    x_words = 2 * words64
    group_words = cg // 32
    woff = e.weights.add(("binary_words", id(wbv)), packed.words.view(np.uint32))
    toff = e.weights.add(("thresholds_T", id(tv)), t)
    poff = e.weights.add(("phi", id(phiv)), phi)
    boff = e.weights.add(("raw", id(bv)), bv.data.astype(np.float32)) if bv is not None else None
    stride = a["strides"] if conv else (1, 1)
    pads = a["pads"] if conv else (0, 0, 0, 0)
    dil = a["dilations"] if conv else (1, 1)
    prepare = [
        "{",
        f"  edgecc::model::BinaryLayer& L = m->binary_{k};",
        f"  L.pack.n = {N}; L.pack.c = {C}; L.pack.h = {H}; L.pack.w = {Wd}; L.pack.nchw = true;",
        f"  L.pack.planes = {P}; L.pack.words = {x_words}; L.thresholds = W<float>({toff});",
        "  edgecc::binary::ConvProblem& p = L.problem;",
        f"  p.n = {N}; p.h = {H}; p.w = {Wd}; p.in_planes = {P}; p.x_words = {x_words};",
        f"  p.x_group_words = {group_words}; p.x_signed = {'true' if signed_x else 'false'};",
        f"  p.wts = W<uint32_t>({woff}); p.groups = {groups}; p.cin_g = {cg}; p.cout_g = {O // groups};",
        f"  p.m_planes = {m_planes}; p.kh = {kh}; p.kw = {kw}; p.w_signed = {'true' if signed_w else 'false'};",
        f"  p.stride_h = {stride[0]}; p.stride_w = {stride[1]}; p.pad_top = {pads[0]}; p.pad_left = {pads[1]};",
        f"  p.dil_h = {dil[0]}; p.dil_w = {dil[1]}; p.oh = {oh}; p.ow = {ow};",
        f"  p.phi = W<float>({poff}); p.bias = {f'W<float>({boff})' if boff is not None else 'nullptr'};",
    ]
    # Plane links (passes/plane_outputs.py): read the planes the producer's epilogue wrote,
    # and/or write the readers' planes with their thresholds instead of a float output.
    planes = getattr(e, "planes", None)
    link_in = planes.input_link(n) if planes else None
    link_out = planes.output_link(n) if planes else None
    if link_in:
        prepare.append("  L.planes_in = true;")
        x_planes = f"reinterpret_cast<const uint32_t*>(m->arena + {e.offsets[id(x)]})"
    else:
        x_planes = (f"edgecc::model::binary_layer_pack(m->binary_{k}, {e.ptr(x)}, {e.scratch(k, 'uint32_t')}, "
                    "m->threads, m->isa_name)")
    if link_out:
        t_next = np.ascontiguousarray(link_out.thresholds.data.astype(np.float32).T)    # [P', O]
        t_next_off = e.weights.add(("thresholds_T", id(link_out.thresholds)), t_next)
        prepare.append(f"  L.planes_out = true; p.out_planes = {link_out.planes}; p.out_words = {link_out.words}; "
                       f"p.out_thresholds = W<float>({t_next_off});")
        y, y_planes = "nullptr", f"reinterpret_cast<uint32_t*>(m->arena + {e.offsets[id(n.outputs[0])]})"
    else:
        y, y_planes = e.ptr(n.outputs[0]), "nullptr"
    prepare += ["  edgecc::model::binary_layer_prepare(L);", "}"]
    body = [f"edgecc::model::binary_layer_conv(m->binary_{k}, {x_planes}, {y}, {y_planes}, m->threads, "
            "m->isa_name);"]
    conv_macs = N * O * oh * ow * cg * kh * kw
    params, fp32_all = _const_bytes(n)
    # fp32 equivalent: one float weight per weight position, plus the float side tables.
    fp32 = 4 * (O * cg * kh * kw + phiv.type.numel + tv.type.numel + (bv.type.numel if bv is not None else 0))
    stored = packed.words.nbytes + t.nbytes + phi.nbytes + (4 * bv.type.numel if bv is not None else 0)
    kind = "+-1" if signed_w else "{0,1}"
    source = f"read {P} activation plane(s) written by {link_in.producer.name}" if link_in else \
        f"pack {P} activation plane(s)"
    if link_out:
        readers = ", ".join(u.name for u in link_out.consumers)
        sink = f" -> {link_out.planes} plane(s) of {readers}"
        why = (f"binary weight bases; output read only by binary layer(s) {readers} with equal thresholds: "
               "the epilogue writes their planes (no float tensor, no pack step there)")
    else:
        sink = " -> float"
        why = "binary weight bases" + (f"; float output: {planes.kept[n.name]}" if planes else "")
    return Step(n, f"binary engine: {source}, {m_planes} {kind} weight plane(s) "
                   f"(pre-packed), AND/XOR-popcount conv, fused phi/bias epilogue{sink}",
                why, body, prepare, [f"edgecc::model::BinaryLayer binary_{k};"],
                scratch_bytes=0 if link_in else N * H * Wd * P * x_words * 4, params=params, macs=0,
                binary_macs=conv_macs * m_planes * P, fp32_bytes=fp32, stored_bytes=stored)


def _simple(n: Node, kernel: str, body: list[str]) -> Step:
    params, fp32 = _const_bytes(n)
    return Step(n, kernel, "float op", body, params=params, macs=node_macs(n), fp32_bytes=fp32,
                stored_bytes=fp32)


def _emit_relu(e, n, k):
    return _simple(n, "model_ops relu_f32",
                   [f"edgecc::model::relu_f32({e.ptr(n.inputs[0])}, {e.ptr(n.outputs[0])}, {_numel(n.outputs[0])});"])


def _emit_clip(e, n, k):
    lo = -np.inf if n.attrs["min"] is None else n.attrs["min"]
    hi = np.inf if n.attrs["max"] is None else n.attrs["max"]
    return _simple(n, "model_ops clip_f32",
                   [f"edgecc::model::clip_f32({e.ptr(n.inputs[0])}, {e.ptr(n.outputs[0])}, "
                    f"{_numel(n.outputs[0])}, {_f(lo)}, {_f(hi)});"])


def _emit_batch_norm(e, n, k):
    x, scale, bias, mean, var = n.inputs
    inv = scale.data.astype(np.float64) / np.sqrt(var.data.astype(np.float64) + n.attrs["eps"])
    ioff = e.weights.add(("bn_inv", id(scale), id(var), n.attrs["eps"]), inv)
    shape = x.shape
    inner = math.prod(shape[2:])
    step = _simple(n, "model_ops batch_norm_f32 (float64 scale, like the reference)",
                   [f"edgecc::model::batch_norm_f32({e.ptr(x)}, {e.ptr(n.outputs[0])}, {shape[0]}, {shape[1]}, "
                    f"{inner}, {e.ptr(mean)}, W<double>({ioff}), {e.ptr(bias)});"])
    step.why = "float op (batch norm not folded: no producer to fold into)"
    return step


def _broadcast_strides(v: Value, out_shape) -> list[int]:
    r = len(out_shape)
    shape = (1,) * (r - v.type.rank) + tuple(v.shape)
    strides, acc = [0] * r, 1
    for d in range(r - 1, -1, -1):
        strides[d] = acc if shape[d] == out_shape[d] and shape[d] != 1 else 0
        acc *= shape[d]
    return strides


def _emit_elementwise(e, n, k):
    out = n.outputs[0]
    shape = list(out.shape) or [1]
    a_s = _broadcast_strides(n.inputs[0], out.shape) or [0]
    b_s = _broadcast_strides(n.inputs[1], out.shape) or [0]
    op = {"add": "kAdd", "sub": "kSub", "mul": "kMul", "div": "kDiv"}[n.op]
    arr = lambda xs: "{" + ", ".join(str(x) for x in xs) + "}"  # noqa: E731
    body = [f"static const int64_t shape[] = {arr(shape)}, sa[] = {arr(a_s)}, sb[] = {arr(b_s)};",
            f"edgecc::model::broadcast_f32(edgecc::model::Binary::{op}, {e.ptr(n.inputs[0])}, sa, "
            f"{e.ptr(n.inputs[1])}, sb, {e.ptr(out)}, shape, {len(shape)});"]
    return _simple(n, f"model_ops broadcast_f32 ({n.op})", body)


def _pool_struct(n: Node, with_dil: bool, count_include_pad: bool = False) -> str:
    x, y = n.inputs[0], n.outputs[0]
    a = n.attrs
    (kh, kw), (sh, sw) = a["kernel"], a["strides"]
    dh, dw = a["dilations"] if with_dil else (1, 1)
    pt, pl, pb, pr = a["pads"]
    return (f"edgecc::model::Pool2d p{{{x.shape[0]}, {x.shape[1]}, {x.shape[2]}, {x.shape[3]}, {y.shape[2]}, "
            f"{y.shape[3]}, {kh}, {kw}, {sh}, {sw}, {dh}, {dw}, {pt}, {pl}, {pb}, {pr}, "
            f"{'true' if count_include_pad else 'false'}}};")


def _emit_max_pool(e, n, k):
    return _simple(n, "model_ops max_pool2d_f32",
                   [_pool_struct(n, True),
                    f"edgecc::model::max_pool2d_f32(p, {e.ptr(n.inputs[0])}, {e.ptr(n.outputs[0])}, m->threads);"])


def _emit_avg_pool(e, n, k):
    return _simple(n, "model_ops avg_pool2d_f32",
                   [_pool_struct(n, False, n.attrs["count_include_pad"]),
                    f"edgecc::model::avg_pool2d_f32(p, {e.ptr(n.inputs[0])}, {e.ptr(n.outputs[0])});"])


def _emit_global_pool(e, n, k):
    x = n.inputs[0]
    outer, inner = x.shape[0] * x.shape[1], math.prod(x.shape[2:])
    return _simple(n, "model_ops global_avg_pool_f32",
                   [f"edgecc::model::global_avg_pool_f32({e.ptr(x)}, {e.ptr(n.outputs[0])}, {outer}, {inner});"])


def _emit_gemm(e, n, k):
    A, Bv = n.inputs[0], n.inputs[1]
    if e.options.onednn and Bv.is_constant and not A.is_constant and all(v.is_constant for v in n.inputs[2:]):
        # oneDNN matmul: alpha and beta folded into the embedded B and C (float64, rounded once)
        from . import onednn
        lib = onednn.require()
        a = n.attrs
        m_, n_ = n.outputs[0].shape
        kk = A.shape[0] if a["trans_a"] else A.shape[1]
        bmat = Bv.data.astype(np.float64)
        bmat = (bmat.T if a["trans_b"] else bmat) * a["alpha"]
        boff = e.weights.add(("onednn_gemm_b", id(Bv), a["trans_b"], a["alpha"]), bmat.astype(np.float32))
        cptr, c_rows, c_cols = "nullptr", 0, 0
        if len(n.inputs) == 3:
            c = n.inputs[2]
            c_rows, c_cols = (1,) * (2 - c.type.rank) + tuple(c.shape)
            cval = (c.data.astype(np.float64) * a["beta"]).reshape(c_rows, c_cols)
            cptr = f"W<float>({e.weights.add(('onednn_gemm_c', id(c), a['beta']), cval.astype(np.float32))})"
        where = _cstr(f"node '{n.name}' (op {n.op})")   # named by oneDNN errors
        prepare = [f"m->gemm_{k} = std::make_unique<edgecc::model::OnednnGemmF32>({where}, {m_}, {n_}, {kk}, "
                   f"{'true' if a['trans_a'] else 'false'}, W<float>({boff}), {cptr}, {c_rows}, {c_cols});"]
        body = [f"m->gemm_{k}->run({e.ptr(A)}, {e.ptr(n.outputs[0])}, m->threads);"]
        params, fp32 = _const_bytes(n)
        impl = onednn.matmul_impl(m_, n_, kk, a["trans_a"], c_rows, c_cols)
        return Step(n, f"onednn f32 matmul ({impl or 'implementation unknown'} on the build CPU; oneDNN "
                       f"{lib.version}, {lib.threading}; alpha/beta folded into B/C, B reordered at open)",
                    "float weights in the model: runs in fp32 (oneDNN)", body, prepare,
                    [f"std::unique_ptr<edgecc::model::OnednnGemmF32> gemm_{k};"],
                    params=params, macs=node_macs(n), fp32_bytes=fp32, stored_bytes=fp32,
                    includes=(ONEDNN_HEADER,))
    a = n.attrs
    m_, n_ = n.outputs[0].shape
    kk = A.shape[0] if a["trans_a"] else A.shape[1]
    a_rs, a_ks = (1, A.shape[1]) if a["trans_a"] else (A.shape[1], 1)
    b_ks, b_ns = (1, Bv.shape[1]) if a["trans_b"] else (Bv.shape[1], 1)
    c_rs = c_ns = 0
    cptr = "nullptr"
    if len(n.inputs) == 3:
        c = n.inputs[2]
        cs = (1,) * (2 - c.type.rank) + tuple(c.shape)
        c_ns = 1 if cs[1] == n_ and n_ != 1 else 0
        c_rs = cs[1] if cs[0] == m_ and m_ != 1 else 0
        cptr = e.ptr(c)
    body = [f"edgecc::model::Gemm g{{{m_}, {n_}, {kk}, {a_rs}, {a_ks}, {b_ks}, {b_ns}, {c_rs}, {c_ns}, "
            f"{_d(a['alpha'])}, {_d(a['beta'])}}};",
            f"edgecc::model::gemm_f32(g, {e.ptr(A)}, {e.ptr(Bv)}, {cptr}, {e.ptr(n.outputs[0])}, m->threads);"]
    step = _simple(n, "model_ops gemm_f32 (float64 accumulation)", body)
    step.why = "float weights in the model: runs in fp32" if Bv.is_constant else "float op"
    return step


def _emit_copy(e, n, k):
    return _simple(n, "model_ops copy (static shape)",
                   [f"edgecc::model::copy_bytes({e.ptr(n.inputs[0])}, {e.ptr(n.outputs[0])}, "
                    f"{4 * _numel(n.outputs[0])});"])


def _emit_concat(e, n, k):
    out = n.outputs[0]
    ax = n.attrs["axis"]
    outer, inner = math.prod(out.shape[:ax]), math.prod(out.shape[ax + 1:])
    body, offset = [], 0
    for v in n.inputs:
        body.append(f"edgecc::model::concat_part_f32({e.ptr(v)}, {e.ptr(out)}, {outer}, {v.shape[ax]}, "
                    f"{out.shape[ax]}, {offset}, {inner});")
        offset += v.shape[ax]
    return _simple(n, "model_ops concat_part_f32", body)


EMITTERS = {
    "conv2d": _emit_conv2d, "binary_conv2d": _emit_binary, "binary_linear": _emit_binary,
    "relu": _emit_relu, "clip": _emit_clip, "batch_norm": _emit_batch_norm,
    "add": _emit_elementwise, "sub": _emit_elementwise, "mul": _emit_elementwise, "div": _emit_elementwise,
    "max_pool2d": _emit_max_pool, "avg_pool2d": _emit_avg_pool, "global_avg_pool": _emit_global_pool,
    "gemm": _emit_gemm, "reshape": _emit_copy, "flatten": _emit_copy, "identity": _emit_copy,
    "concat": _emit_concat,
}


# ---- the whole model -------------------------------------------------------------------
@dataclass
class GeneratedModel:
    model_cpp: str
    entry_cpp: str
    model_h: str
    weights: bytes
    weights_sha256: str
    steps: list[Step]
    plan: MemoryPlan


def _plan(graph: Graph, e: Emitter, scratch: dict[int, int]) -> MemoryPlan:
    """Arena buffers: node outputs that are not written to a caller's output buffer,
    and per-step scratch. A binary layer that writes its binary readers' planes
    (passes/plane_outputs.py) gets a plane buffer instead of its float output, and the
    readers need no pack scratch."""
    from ..passes.plane_outputs import plan_plane_outputs
    e.planes = plan_plane_outputs(
        graph, enabled=getattr(e.options, "plane_outputs", True),
        compiled_binary=lambda n: EMITTERS.get(n.op) is _emit_binary and n.name not in e.options.layer_kernels)
    last = {}
    for i, n in enumerate(graph.nodes):
        for v in n.inputs:
            last[id(v)] = i
    n_steps = len(graph.nodes)
    for v in graph.outputs:   # read by the output copies at the end
        last[id(v)] = n_steps
    buffers, keys = [], []
    for i, n in enumerate(graph.nodes):
        for v in n.outputs:
            if id(v) in e.output_index:
                continue
            link = e.planes.links.get(id(v))
            name, nbytes = (f"{v.name}:planes", link.nbytes) if link else (v.name, 4 * _numel(v))
            buffers.append(Buffer(name, nbytes, i, max(i, last.get(id(v), i))))
            keys.append(id(v))
        if scratch.get(i) and not e.planes.input_link(n):
            buffers.append(Buffer(f"{n.name}:packed_planes", scratch[i], i, i))
            keys.append(("scratch", i))
    plan = plan_memory(buffers)
    for key, b in zip(keys, buffers):
        e.offsets[key] = b.offset
    return plan


def _scratch_sizes(graph: Graph) -> dict[int, int]:
    sizes = {}
    for i, n in enumerate(graph.nodes):
        if n.op in BINARY_OPS:
            x = n.inputs[0]
            spatial = math.prod(x.shape[2:]) if n.op == "binary_conv2d" else 1
            sizes[i] = x.shape[0] * spatial * n.inputs[3].shape[1] * 2 * -(-x.shape[1] // 64) * 4
    return sizes


def _desc_table(prefix: str, values: list[Value]) -> list[str]:
    lines = []
    for i, v in enumerate(values):
        dims = ", ".join(str(d) for d in v.shape) or "1"
        lines.append(f"static const int64_t k{prefix}Shape{i}[] = {{{dims}}};")
    entries = [f"  {{{_cstr(v.name)}, EDGECC_DTYPE_F32, {v.type.rank}, k{prefix}Shape{i}, {4 * _numel(v)}}}"
               for i, v in enumerate(values)]
    lines.append(f"static const edgecc_tensor_desc k{prefix}s[] = {{\n" + ",\n".join(entries) + "\n};")
    return lines


def generate(graph: Graph, *, options: CodegenOptions, required_flags: list[str], build_info: str,
             weights_path: str) -> GeneratedModel:
    """Emit the sources of `graph` (check_supported must have passed)."""
    isa_request = options.isa_request
    e = Emitter(graph, options)
    scratch = _scratch_sizes(graph)
    plan = _plan(graph, e, scratch)
    e.plan = plan
    steps = [EMITTERS[n.op](e, n, k) for k, n in enumerate(graph.nodes)]
    # Graph outputs not written in place: a graph input, or a value listed twice.
    copies = []
    for j, v in enumerate(graph.outputs):
        if e.output_index.get(id(v)) != j:
            copies.append(f"edgecc::model::copy_bytes({e.ptr(v)}, out[{j}], {4 * _numel(v)});")
    weights = e.weights.blob()
    sha = hashlib.sha256(weights).hexdigest()
    model_cpp = _model_source(graph, steps, copies, plan, sha, isa_request, weights_path)
    entry_cpp = _entry_source(graph, plan, sha, required_flags, build_info)
    model_h = _model_header(graph, plan, sha, build_info)
    return GeneratedModel(model_cpp, entry_cpp, model_h, weights, sha, steps, plan)


def _model_source(graph, steps, copies, plan, sha, isa_request, weights_path) -> str:
    members = [m for s in steps for m in s.members]
    includes = sorted({h for s in steps for h in s.includes})
    L = [
        f"// Generated by edgecc from model {graph.name!r}: {len(graph.nodes)} node(s). Do not edit.",
        "// Compiled with the target's flags; entry.cpp checks the CPU before any of this runs.",
        "#include <chrono>", "#include <cstdint>", "#include <cstdlib>", "#include <exception>",
        "#include <limits>", "#include <memory>", "#include <mutex>", "#include <new>", "#include <string>", "",
        '#include "edgecc/cpu.h"', '#include "edgecc/direct_conv.h"', '#include "edgecc/model_api.h"',
        '#include "edgecc/model_ops.h"', *[f'#include "{h}"' for h in includes], "",
        "// The weights section: every constant, 64-byte aligned entries, binary bases pre-packed.",
        'extern "C" const unsigned char edgecc_weights_begin[] __attribute__((visibility("hidden")));',
        'extern "C" const unsigned char edgecc_weights_end[] __attribute__((visibility("hidden")));',
        '__asm__(".section .rodata.edgecc_weights,\\"a\\",@progbits\\n"',
        '        ".balign 64\\n"',
        '        "edgecc_weights_begin:\\n"',
        f'        ".incbin \\"{weights_path}\\"\\n"',
        '        "edgecc_weights_end:\\n"',
        '        ".previous\\n");', "",
        "namespace {",
        f"constexpr size_t kArenaBytes = {plan.arena_bytes};",
        f"constexpr const char* kWeightsSha256 = {_cstr(sha)};",
        f"constexpr const char* kIsaRequest = {_cstr(isa_request)};  // \"\" = EDGECC_ISA or the best",
        f"constexpr size_t kNumSteps = {len(steps) + 1};  // one per layer, then the output copies",
        "template <class T>",
        "const T* W(size_t offset) { return reinterpret_cast<const T*>(edgecc_weights_begin + offset); }",
        "}  // namespace", "",
        "struct edgecc_model {",
        "  mutable std::mutex call_mutex;  // one call at a time per handle (the arena is shared)",
        "  unsigned char* arena = nullptr;",
        "  bool owns_arena = false;",
        "  int threads = 0;",
        "  edgecc::Isa isa = edgecc::Isa::kScalar;",
        "  const char* isa_name = \"scalar\";",
        "  std::string error;",
        "  bool profiling = false;",
        "  uint64_t profile_runs = 0;",
        "  double profile_last_ms[kNumSteps] = {};",
        "  double profile_total_ms[kNumSteps] = {};",
    ] + [f"  {m}" for m in members] + ["};", "", "namespace {"]
    for k, s in enumerate(steps):
        L.append(f"// {s.node.name} ({s.node.op}) -> {', '.join(str(v.type) for v in s.node.outputs)}: {s.kernel}")
        L.append(f"void step_{k}(edgecc_model* m, const void* const* in, void* const* out) {{")
        L.append("  (void)m; (void)in; (void)out;")
        L += [f"  {line}" for line in s.body]
        L.append("}")
    L.append("void copy_outputs(edgecc_model* m, const void* const* in, void* const* out) {")
    L.append("  (void)m; (void)in; (void)out;")
    L += [f"  {c}" for c in copies]
    L.append("}")
    L.append("using StepFn = void (*)(edgecc_model*, const void* const*, void* const*);")
    L.append("const StepFn kSteps[] = {" + ", ".join(f"step_{k}" for k in range(len(steps))) + ", copy_outputs};")
    names = [f"node '{s.node.name}' (op {s.node.op})" for s in steps] + ["output copies"]
    L.append("const char* const kStepNames[] = {" + ", ".join(_cstr(x) for x in names) + "};")
    L.append("const char* const kStepNodes[] = {" + ", ".join(_cstr(s.node.name) for s in steps) + ', ""};')
    L.append("const char* const kStepOps[] = {" + ", ".join(_cstr(s.node.op) for s in steps) + ', "copy_outputs"};')
    L.append("void prepare(edgecc_model* m) {")
    for s in steps:
        if s.prepare:
            L.append(f"  // {s.node.name} ({s.node.op})")
            L += [f"  {line}" for line in s.prepare]
    L.append("}")
    L.append("}  // namespace")
    L.append(_MODEL_IMPL)
    return "\n".join(L) + "\n"


_MODEL_IMPL = r'''
// Hidden entry points that entry.cpp forwards to once the CPU check has passed.
extern "C" __attribute__((visibility("hidden"))) edgecc_status edgecc_impl_open(
    edgecc_model** out, void* workspace, size_t workspace_bytes, std::string* error) {
  edgecc::model::Sha256 sha;
  sha.update(edgecc_weights_begin, static_cast<size_t>(edgecc_weights_end - edgecc_weights_begin));
  if (sha.hex() != kWeightsSha256) {
    *error = "weights section fails its SHA-256 check (expected " + std::string(kWeightsSha256) +
             "): the library file was modified or damaged";
    return EDGECC_ERROR_CORRUPT;
  }
  if (workspace && workspace_bytes < kArenaBytes) {
    *error = "workspace of " + std::to_string(workspace_bytes) + " bytes is smaller than the " +
             std::to_string(kArenaBytes) + " the model needs";
    return EDGECC_ERROR_INVALID_ARGUMENT;
  }
  if (workspace && reinterpret_cast<uintptr_t>(workspace) % 64) {
    *error = "workspace must be 64-byte aligned";
    return EDGECC_ERROR_INVALID_ARGUMENT;
  }
  std::unique_ptr<edgecc_model> m(new (std::nothrow) edgecc_model());
  if (!m) return *error = "out of memory", EDGECC_ERROR_OUT_OF_MEMORY;
  try {
    m->isa = edgecc::select_isa(kIsaRequest);
    m->isa_name = edgecc::isa_name(m->isa);
    if (workspace) {
      m->arena = static_cast<unsigned char*>(workspace);
    } else {
      m->arena = static_cast<unsigned char*>(std::aligned_alloc(64, kArenaBytes ? (kArenaBytes + 63) / 64 * 64 : 64));
      if (!m->arena) return *error = "out of memory for the arena", EDGECC_ERROR_OUT_OF_MEMORY;
      m->owns_arena = true;
    }
    prepare(m.get());
  } catch (const std::bad_alloc&) {
    if (m->owns_arena) std::free(m->arena);
    return *error = "out of memory while preparing layers", EDGECC_ERROR_OUT_OF_MEMORY;
  } catch (const std::exception& ex) {
    if (m->owns_arena) std::free(m->arena);
    *error = std::string("preparing layers: ") + ex.what();
    return EDGECC_ERROR_INVALID_ARGUMENT;
  }
  *out = m.release();
  return EDGECC_OK;
}

extern "C" __attribute__((visibility("hidden"))) void edgecc_impl_close(edgecc_model* m) {
  if (!m) return;
  if (m->owns_arena) std::free(m->arena);
  delete m;
}

extern "C" __attribute__((visibility("hidden"))) edgecc_status edgecc_impl_run(
    edgecc_model* m, const void* const* in, void* const* out) {
  std::lock_guard<std::mutex> hold(m->call_mutex);
  size_t step = 0;
  try {
    if (!m->profiling) {
      for (; step < kNumSteps; ++step) kSteps[step](m, in, out);
    } else {  // profiling: wall time per step, added to the totals once the run succeeded
      using Clock = std::chrono::steady_clock;
      for (; step < kNumSteps; ++step) {
        const Clock::time_point t0 = Clock::now();
        kSteps[step](m, in, out);
        m->profile_last_ms[step] = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      }
      for (size_t i = 0; i < kNumSteps; ++i) m->profile_total_ms[i] += m->profile_last_ms[i];
      ++m->profile_runs;
    }
  } catch (const std::exception& ex) {
    m->error = std::string(kStepNames[step]) + ": " + ex.what();
    return EDGECC_ERROR_KERNEL;
  }
  m->error.clear();
  return EDGECC_OK;
}

extern "C" __attribute__((visibility("hidden"))) void edgecc_impl_set_threads(edgecc_model* m, int t) {
  std::lock_guard<std::mutex> hold(m->call_mutex);
  m->threads = t;
}
extern "C" __attribute__((visibility("hidden"))) int edgecc_impl_threads(const edgecc_model* m) {
  std::lock_guard<std::mutex> hold(m->call_mutex);
  return m->threads;
}
extern "C" __attribute__((visibility("hidden"))) const char* edgecc_impl_last_error(const edgecc_model* m) {
  return m->error.c_str();
}
extern "C" __attribute__((visibility("hidden"))) void edgecc_impl_set_error(edgecc_model* m, const char* e) {
  std::lock_guard<std::mutex> hold(m->call_mutex);
  m->error = e;
}
extern "C" __attribute__((visibility("hidden"))) void edgecc_impl_set_profiling(edgecc_model* m, bool on) {
  std::lock_guard<std::mutex> hold(m->call_mutex);
  m->profiling = on;
  m->profile_runs = 0;
  for (size_t i = 0; i < kNumSteps; ++i) m->profile_last_ms[i] = m->profile_total_ms[i] = 0.0;
}
// index is checked by the caller (entry.cpp).
extern "C" __attribute__((visibility("hidden"))) void edgecc_impl_step_profile(const edgecc_model* m, int index,
                                                                               edgecc_step_profile* out) {
  std::lock_guard<std::mutex> hold(m->call_mutex);
  out->node = kStepNodes[index];
  out->op = kStepOps[index];
  out->runs = m->profile_runs;
  out->last_ms = m->profile_last_ms[index];
  out->total_ms = m->profile_total_ms[index];
}
'''


def _entry_source(graph, plan, sha, required_flags, build_info) -> str:
    checks = "\n".join(f'  need(f.{flag}, "{flag}");' for flag in required_flags)
    L = [
        f"// Generated by edgecc for model {graph.name!r}: the exported C API (edgecc/model_api.h).",
        "// Compiled for plain x86-64 so that the CPU check runs on any x86-64 CPU.",
        "#include <cstdlib>", "#include <mutex>", "#include <shared_mutex>", "#include <string>",
        "#include <unordered_set>", "",
        '#include "edgecc/cpu.h"', '#include "edgecc/model_api.h"', "",
        'extern "C" {',
        "edgecc_status edgecc_impl_open(edgecc_model**, void*, size_t, std::string*);",
        "void edgecc_impl_close(edgecc_model*);",
        "edgecc_status edgecc_impl_run(edgecc_model*, const void* const*, void* const*);",
        "void edgecc_impl_set_threads(edgecc_model*, int);",
        "int edgecc_impl_threads(const edgecc_model*);",
        "const char* edgecc_impl_last_error(const edgecc_model*);",
        "void edgecc_impl_set_error(edgecc_model*, const char*);",
        "void edgecc_impl_set_profiling(edgecc_model*, bool);",
        "void edgecc_impl_step_profile(const edgecc_model*, int, edgecc_step_profile*);",
        "}", "",
        "namespace {",
        f"const char* const kBuildInfo = {_cstr(build_info)};",
        f"const char* const kWeightsSha256 = {_cstr(sha)};",
        f"constexpr size_t kArenaBytes = {plan.arena_bytes};",
        f"constexpr int32_t kNumInputs = {len(graph.inputs)};",
        f"constexpr int32_t kNumOutputs = {len(graph.outputs)};",
        f"constexpr int32_t kNumSteps = {len(graph.nodes) + 1};  // one per layer, then the output copies",
    ]
    L += _desc_table("Input", graph.inputs)
    L += _desc_table("Output", graph.outputs)
    L += [
        "thread_local std::string open_error;",
        "",
        "// The CPU flags the library was compiled for that this CPU lacks (\"\" = none).",
        "std::string missing_cpu_flags() {",
        "  const edgecc::CpuFeatures& f = edgecc::cpu_features();",
        "  std::string missing;",
        "  // Testing hook (model_api.h): flags listed here count as missing.",
        "  const char* pretend = std::getenv(\"EDGECC_MODEL_PRETEND_MISSING_CPU_FLAGS\");",
        "  const std::string absent = \",\" + std::string(pretend ? pretend : \"\") + \",\";",
        "  auto need = [&](bool have, const char* name) {",
        "    if (absent.find(\",\" + std::string(name) + \",\") != std::string::npos) have = false;",
        "    if (!have) missing += (missing.empty() ? \"\" : \", \") + std::string(name);",
        "  };",
        "  (void)f; (void)need; (void)absent;",
        checks,
        "  return missing;",
        "}",
        "}  // namespace",
        "",
        'extern "C" {',
        "uint32_t edgecc_model_abi_version(void) { return EDGECC_MODEL_ABI_VERSION; }",
        "const char* edgecc_model_build_info(void) { return kBuildInfo; }",
        "const char* edgecc_model_weights_sha256(void) { return kWeightsSha256; }",
        "size_t edgecc_model_workspace_size(void) { return kArenaBytes; }",
        "int32_t edgecc_model_num_inputs(void) { return kNumInputs; }",
        "int32_t edgecc_model_num_outputs(void) { return kNumOutputs; }",
        "int32_t edgecc_model_num_steps(void) { return kNumSteps; }",
        "const edgecc_tensor_desc* edgecc_model_input(int32_t i) {",
        "  return i >= 0 && i < kNumInputs ? &kInputs[i] : nullptr;",
        "}",
        "const edgecc_tensor_desc* edgecc_model_output(int32_t i) {",
        "  return i >= 0 && i < kNumOutputs ? &kOutputs[i] : nullptr;",
        "}",
        "const char* edgecc_model_open_error(void) { return open_error.c_str(); }",
        _ENTRY_IMPL,
        "}  // extern \"C\"",
    ]
    return "\n".join(L) + "\n"


_ENTRY_IMPL = r'''
}  // extern "C"

namespace {
// The open handles. Every call taking a handle holds this registry shared while it uses
// the handle, so NULL, closed or made-up handles are refused and close (exclusive) waits
// for calls in flight.
std::shared_mutex& handles_mutex() {
  static std::shared_mutex mutex;
  return mutex;
}
std::unordered_set<const edgecc_model*>& handles() {
  static std::unordered_set<const edgecc_model*> set;
  return set;
}
class OpenHandle {
 public:
  explicit OpenHandle(const edgecc_model* m) : lock_(handles_mutex()), open_(m && handles().count(m)) {}
  explicit operator bool() const { return open_; }

 private:
  std::shared_lock<std::shared_mutex> lock_;
  bool open_;
};
const char* const kNotOpen = "not an open model handle (NULL, closed, or not returned by edgecc_model_open)";

edgecc_status fail(edgecc_model* m, const std::string& what) {
  edgecc_impl_set_error(m, what.c_str());
  return EDGECC_ERROR_INVALID_ARGUMENT;
}

// edgecc_model_run on a handle known to be open (registry held).
edgecc_status run_open(edgecc_model* model, const void* const* inputs, void* const* outputs) {
  if (!inputs || !outputs) return fail(model, "edgecc_model_run: inputs or outputs array is NULL");
  for (int32_t i = 0; i < kNumInputs; ++i)
    if (!inputs[i]) return fail(model, std::string("edgecc_model_run: input '") + kInputs[i].name + "' is NULL");
  for (int32_t i = 0; i < kNumOutputs; ++i)
    if (!outputs[i]) return fail(model, std::string("edgecc_model_run: output '") + kOutputs[i].name + "' is NULL");
  return edgecc_impl_run(model, inputs, outputs);
}

bool overlap(const void* a, size_t na, const void* b, size_t nb) {
  const auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return x < y + nb && y < x + na;
}
}  // namespace

extern "C" {
edgecc_status edgecc_model_open(edgecc_model** out, void* workspace, size_t workspace_bytes) {
  open_error.clear();
  if (!out) return open_error = "edgecc_model_open: out is NULL", EDGECC_ERROR_INVALID_ARGUMENT;
  *out = nullptr;
  const std::string missing = missing_cpu_flags();
  if (!missing.empty()) {
    open_error = std::string("this CPU lacks flags the model was compiled for: ") + missing +
                 " (build info: " + kBuildInfo + "); recompile with --target generic or avx2";
    return EDGECC_ERROR_UNSUPPORTED_CPU;
  }
  edgecc_model* m = nullptr;
  const edgecc_status s = edgecc_impl_open(&m, workspace, workspace_bytes, &open_error);
  if (s != EDGECC_OK) {
    open_error = "edgecc_model_open: " + open_error;
    return s;
  }
  try {
    std::unique_lock<std::shared_mutex> lock(handles_mutex());
    handles().insert(m);
  } catch (const std::exception&) {
    edgecc_impl_close(m);
    return open_error = "edgecc_model_open: out of memory", EDGECC_ERROR_OUT_OF_MEMORY;
  }
  *out = m;
  return EDGECC_OK;
}

void edgecc_model_close(edgecc_model* model) {
  {
    std::unique_lock<std::shared_mutex> lock(handles_mutex());
    if (!model || !handles().erase(model)) return;   // NULL, or already closed: nothing to do
  }
  edgecc_impl_close(model);
}

edgecc_status edgecc_model_set_threads(edgecc_model* model, int32_t threads) {
  OpenHandle open(model);
  if (!open) return EDGECC_ERROR_INVALID_ARGUMENT;
  if (threads < 0 || threads > EDGECC_MODEL_MAX_THREADS)
    return fail(model, "edgecc_model_set_threads: threads=" + std::to_string(threads) + ", expected 0 (OpenMP "
                       "default) to " + std::to_string(EDGECC_MODEL_MAX_THREADS));
  edgecc_impl_set_threads(model, threads);
  return EDGECC_OK;
}

int32_t edgecc_model_threads(const edgecc_model* model) {
  OpenHandle open(model);
  return open ? edgecc_impl_threads(model) : -1;
}

edgecc_status edgecc_model_run(edgecc_model* model, const void* const* inputs, void* const* outputs) {
  OpenHandle open(model);
  if (!open) return EDGECC_ERROR_INVALID_ARGUMENT;
  return run_open(model, inputs, outputs);
}

edgecc_status edgecc_model_run_checked(edgecc_model* model, const void* const* inputs, const size_t* input_bytes,
                                       void* const* outputs, const size_t* output_bytes) {
  OpenHandle open(model);
  if (!open) return EDGECC_ERROR_INVALID_ARGUMENT;
  if (!inputs || !outputs || !input_bytes || !output_bytes)
    return fail(model, "edgecc_model_run_checked: a buffer or size array is NULL");
  for (int32_t i = 0; i < kNumInputs; ++i)
    if (input_bytes[i] != kInputs[i].bytes)
      return fail(model, std::string("edgecc_model_run_checked: input '") + kInputs[i].name + "' is " +
                             std::to_string(input_bytes[i]) + " bytes, expected " + std::to_string(kInputs[i].bytes));
  for (int32_t i = 0; i < kNumOutputs; ++i)
    if (output_bytes[i] != kOutputs[i].bytes)
      return fail(model, std::string("edgecc_model_run_checked: output '") + kOutputs[i].name + "' is " +
                             std::to_string(output_bytes[i]) + " bytes, expected " + std::to_string(kOutputs[i].bytes));
  for (int32_t i = 0; i < kNumOutputs; ++i) {
    for (int32_t j = 0; j < kNumInputs; ++j)
      if (outputs[i] && inputs[j] && overlap(outputs[i], output_bytes[i], inputs[j], input_bytes[j]))
        return fail(model, std::string("edgecc_model_run_checked: output '") + kOutputs[i].name +
                               "' overlaps input '" + kInputs[j].name + "'");
    for (int32_t j = 0; j < i; ++j)
      if (outputs[i] && outputs[j] && overlap(outputs[i], output_bytes[i], outputs[j], output_bytes[j]))
        return fail(model, std::string("edgecc_model_run_checked: output '") + kOutputs[i].name +
                               "' overlaps output '" + kOutputs[j].name + "'");
  }
  return run_open(model, inputs, outputs);
}

const char* edgecc_model_last_error(const edgecc_model* model) {
  OpenHandle open(model);
  return open ? edgecc_impl_last_error(model) : kNotOpen;
}

edgecc_status edgecc_model_set_profiling(edgecc_model* model, int32_t enabled) {
  OpenHandle open(model);
  if (!open) return EDGECC_ERROR_INVALID_ARGUMENT;
  edgecc_impl_set_profiling(model, enabled != 0);
  return EDGECC_OK;
}

edgecc_status edgecc_model_step_profile(const edgecc_model* model, int32_t index, edgecc_step_profile* out) {
  OpenHandle open(model);
  if (!open) return EDGECC_ERROR_INVALID_ARGUMENT;
  if (!out || index < 0 || index >= kNumSteps) {
    edgecc_impl_set_error(const_cast<edgecc_model*>(model),
                          ("edgecc_model_step_profile: index " + std::to_string(index) + " outside [0, " +
                           std::to_string(kNumSteps) + ") or out is NULL").c_str());
    return EDGECC_ERROR_INVALID_ARGUMENT;
  }
  edgecc_impl_step_profile(model, index, out);
  return EDGECC_OK;
}
'''


def _c_ident(name: str) -> str:
    s = "".join(ch if ch.isalnum() else "_" for ch in name).upper()
    return s if s and not s[0].isdigit() else "_" + s


def _model_header(graph, plan, sha, build_info) -> str:
    L = [
        f"/* Generated by edgecc for model {graph.name!r}. Static facts of this model.so; the functions",
        " * are declared in model_api.h (EDGECC_MODEL_ABI_VERSION). */",
        "#ifndef EDGECC_GENERATED_MODEL_H", "#define EDGECC_GENERATED_MODEL_H", "",
        '#include "model_api.h"', "",
        f"/* {build_info} */",
        f"#define EDGECC_MODEL_WORKSPACE_BYTES {plan.arena_bytes}u  /* activation arena, 64-byte aligned */",
        f'#define EDGECC_MODEL_WEIGHTS_SHA256 "{sha}"',
        f"#define EDGECC_MODEL_NUM_INPUTS {len(graph.inputs)}",
        f"#define EDGECC_MODEL_NUM_OUTPUTS {len(graph.outputs)}",
    ]
    for kind, values in (("INPUT", graph.inputs), ("OUTPUT", graph.outputs)):
        for i, v in enumerate(values):
            ident = _c_ident(v.name)
            L.append(f"/* {kind.lower()} {i}: {v.name!r} f32{list(v.shape)} */")
            L.append(f"#define EDGECC_MODEL_{kind}_{i}_ELEMENTS {_numel(v)}u")
            L.append(f"#define EDGECC_MODEL_{kind}_{ident}_INDEX {i}")
    L += ["", "#endif"]
    return "\n".join(L) + "\n"


from .emit_qconv import emit_qconv2d  # noqa: E402
EMITTERS["qconv2d"] = emit_qconv2d
from .emit_extra import EXTRA_EMITTERS  # noqa: E402
EMITTERS.update(EXTRA_EMITTERS)
