"""Fuzz targets, run inside the worker process (worker.py). Each takes one payload and
returns a short summary, raises an allowed error (a clear rejection), or raises anything
else (a finding). Accepted inputs are checked against an independent reference where
one exists (ONNX Runtime, PyTorch, numpy), so a silent wrong answer is a finding too."""
from __future__ import annotations

import os
import tempfile

import numpy as np

from edgecc.errors import EdgeccError

MAX_RUN_ELEMENTS = 1 << 21  # run accepted graphs only when every tensor is this small
_TMP = tempfile.mkdtemp(prefix="edgecc-fuzz-")


def _write(data: bytes, suffix: str) -> str:
    path = os.path.join(_TMP, "input" + suffix)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _small(graph) -> bool:
    values = list(graph.inputs) + [o for n in graph.nodes for o in n.outputs]
    return all(int(np.prod(v.shape, dtype=object)) <= MAX_RUN_ELEMENTS for v in values)


def _random_inputs(graph, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for v in graph.inputs:
        dt = v.dtype.numpy
        if np.issubdtype(dt, np.floating):
            out.append(rng.standard_normal(v.shape).astype(dt))
        elif dt == np.bool_:
            out.append(rng.integers(0, 2, v.shape).astype(bool))
        else:
            out.append(rng.integers(-3, 4, v.shape).astype(dt))
    return out


def _close(ours, ref, what):
    ours, ref = np.asarray(ours), np.asarray(ref)
    if ours.shape != ref.shape:
        raise AssertionError(f"{what}: shape {ours.shape}, reference {ref.shape}")
    if np.issubdtype(ref.dtype, np.floating):
        # A byte flip can make a weight ~1e37: float32 sums then overflow, and where the
        # reference went inf / nan both answers depend on summation order. Compare the rest.
        usable = np.isfinite(ref) & (np.abs(ref) < 1e30)
        ok = np.allclose(ours[usable], ref[usable], rtol=1e-3, atol=1e-4)
    else:
        ok = np.array_equal(ours, ref)
    if not ok:
        raise AssertionError(f"{what}: differs from the reference, max |diff| "
                             f"{np.nanmax(np.abs(ours.astype(np.float64) - ref.astype(np.float64)))}")


# ---- ONNX importer ---------------------------------------------------------------
def load_onnx(data: bytes) -> str:
    import edgecc
    g = edgecc.load(_write(data, ".onnx"))
    if not _small(g):
        return "loaded (too large to run)"
    xs = _random_inputs(g)
    ours = edgecc.interpret(g, *xs)
    try:
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.log_severity_level = 1, 4
        sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        ref = sess.run(None, {v.name: x for v, x in zip(g.inputs, xs)})
    except Exception:  # noqa: BLE001 - ORT refuses some models edgecc accepts
        return "loaded and ran (no ORT reference)"
    for o, a, b in zip(g.outputs, ours, ref):
        _close(a, b, f"output {o.name!r}")
    return "loaded, matches ORT"


# ---- .ecir loader ----------------------------------------------------------------
def load_ecir(data: bytes) -> str:
    import edgecc
    from edgecc.compiler.ir import verify
    g = edgecc.load(_write(data, ".ecir"))
    verify(g)
    if _small(g):
        edgecc.interpret(g, *_random_inputs(g))
    return f"loaded {len(g.nodes)} nodes"


# ---- PyTorch frontend input specs --------------------------------------------------
_TORCH_MODULE = None


def _torch_module():
    global _TORCH_MODULE
    if _TORCH_MODULE is None:
        import torch
        torch.manual_seed(0)
        _TORCH_MODULE = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                            torch.nn.Linear(4, 2))
    return _TORCH_MODULE


def _torch_value(spec):
    import torch
    kind = spec[0]
    if kind == "tensor":
        _, shape, dtype = spec
        return (torch.randn(shape) * 3).to(getattr(torch, dtype))
    if kind == "list":
        return [_torch_value(s) for s in spec[1]]
    if kind == "tuple":
        return tuple(_torch_value(s) for s in spec[1])
    return spec[1]  # a plain Python value


def torch_spec(spec) -> str:
    import torch
    from edgecc.compiler.frontends.torch import import_torch
    import edgecc
    torch.manual_seed(1)
    inputs = _torch_value(spec)
    module = _torch_module()
    g = import_torch(module, inputs)
    with torch.no_grad():
        ref = module(*inputs)
    ours = edgecc.interpret(g, *[t.numpy() for t in inputs])
    _close(ours[0], ref.numpy(), "torch output")
    return "imported, matches torch"


# ---- kernel entry points (edgecc.kernels) --------------------------------------------
def _geometry(kw):
    from edgecc.kernels.direct import _geometry as geo
    return geo(kw.get("stride", 1), kw.get("padding", 0), kw.get("dilation", 1), kw.get("groups", 1))


def kernel(call) -> str:
    from edgecc.kernels import direct, reference
    fn, args, kw = call["fn"], call["args"], call["kwargs"]
    if fn in ("conv2d_f32", "conv2d_int", "conv2d_f32_naive", "conv2d_int_naive"):
        out = getattr(direct, fn)(*args, **kw)
        x, w = np.asarray(args[0]), np.asarray(args[1])
        stride, pads, dil, groups = _geometry(kw)
        bias = args[2] if len(args) > 2 else kw.get("bias")
        if fn.startswith("conv2d_int"):
            x, w = x.astype(np.int64), w.astype(np.int64)
        ref = reference.conv2d(x, w, bias, strides=stride, pads=pads, dilations=dil, groups=groups)
        _close(out.astype(np.float64) if fn.startswith("conv2d_int") else out,
               ref.astype(np.float64) if fn.startswith("conv2d_int") else ref, fn)
        return f"{fn} ok {out.shape}"
    if fn == "dfnt":
        from edgecc.kernels.dfnt import DfntConv2d
        layer = DfntConv2d(args[1], **kw)
        x = np.asarray(args[0])
        out = layer(x)
        pads = _dfnt_pads(layer, x)
        ref = reference.conv2d(x.astype(np.int64), np.asarray(args[1]).astype(np.int64), strides=layer.stride,
                               pads=pads)
        if not np.array_equal(out.astype(np.int64), ref.astype(np.int64)):
            raise AssertionError("dfnt: differs from the direct reference")
        return f"dfnt ok {out.shape}"
    if fn == "binary_counts":
        from edgecc.kernels import binary
        x, t, w = args
        xa = binary.pack_activations(x, t, **call.get("pack_kwargs", {}))
        wp = binary.pack_weights(w)
        out = binary.binary_conv2d_counts(xa, wp, **kw)
        stride, pads, dil, _ = _geometry(kw)
        planes = (np.asarray(x, dtype=np.float64) >= float(np.asarray(t).reshape(-1)[0])).astype(np.int64)
        ref = reference.conv2d(planes, np.asarray(w).astype(np.int64), strides=stride, pads=pads, dilations=dil)
        _close(out[:, 0].astype(np.int64), ref.astype(np.int64), "binary counts")
        return f"binary ok {out.shape}"
    if fn == "pack_activations":
        from edgecc.kernels import binary
        packed = binary.pack_activations(*args, **kw)
        return f"packed {packed.words.shape}"
    raise KeyError(fn)


def _dfnt_pads(layer, x):
    from edgecc.kernels.dfnt import _resolve_pads
    o, c, kh, kw = layer.weight.shape
    return _resolve_pads(layer.padding, x.shape[2], x.shape[3], kh, kw, *layer.stride)


TARGETS = {
    "onnx": (load_onnx, (EdgeccError,)),
    "ecir": (load_ecir, (EdgeccError,)),
    "torch": (torch_spec, (EdgeccError,)),
    # Kernel argument errors: the documented contract is InputError, which the direct
    # kernels also make a ValueError; TypeError for arguments of the wrong kind.
    "kernel": (kernel, (EdgeccError, ValueError, TypeError)),
}
