"""Seed inputs and hypothesis strategies that mutate them (run in the test process)."""
from __future__ import annotations

import io
import json
import os
import zipfile
from functools import lru_cache

import numpy as np
import onnx
from hypothesis import settings, strategies as st
from onnx import TensorProto, helper, numpy_helper

EXAMPLES = int(os.environ.get("EDGECC_FUZZ_EXAMPLES", "200"))
FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
                         suppress_health_check=list(settings.default.suppress_health_check) +
                         [__import__("hypothesis").HealthCheck.too_slow,
                          __import__("hypothesis").HealthCheck.data_too_large])
HUGE = [0, 1, 2, 7, 64, 2**31 - 1, 2**31, 2**40, 2**63 - 1]


# ---- ONNX seeds ---------------------------------------------------------------------
def _seed_conv_net() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"),
             numpy_helper.from_array(rng.standard_normal((2, 16)).astype(np.float32), "fw"),
             numpy_helper.from_array(np.array([1, 16], np.int64), "shape")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], "conv", pads=[1, 1, 1, 1], strides=[1, 1]),
             helper.make_node("Relu", ["c"], ["r"], "relu"),
             helper.make_node("MaxPool", ["r"], ["p"], "pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["p"], ["g"], "gap"),
             helper.make_node("Add", ["g", "g"], ["a"], "add"),
             helper.make_node("Flatten", ["a"], ["f"], "flat"),
             helper.make_node("Concat", ["f", "f", "f", "f"], ["cat"], "cat", axis=1),
             helper.make_node("Reshape", ["cat", "shape"], ["rs"], "reshape"),
             helper.make_node("Gemm", ["rs", "fw"], ["y"], "fc", transB=1)]
    graph = helper.make_graph(nodes, "seed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _seed_light() -> onnx.ModelProto | None:
    """The smallest of the onnx wheel's 'light' real models."""
    folder = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    if not os.path.isdir(folder):
        return None
    files = sorted((os.path.getsize(os.path.join(folder, f)), f) for f in os.listdir(folder) if f.endswith(".onnx"))
    return onnx.load(os.path.join(folder, files[0][1])) if files else None


@lru_cache(maxsize=None)
def onnx_seeds() -> tuple[bytes, ...]:
    seeds = [_seed_conv_net()]
    light = _seed_light()
    if light is not None:
        seeds.append(light)
    return tuple(m.SerializeToString() for m in seeds)


def _byte_mutation(draw, data: bytes) -> bytes:
    kind = draw(st.sampled_from(["truncate", "flip", "splice"]))
    if kind == "truncate":
        return data[:draw(st.integers(0, len(data) - 1))]
    if kind == "flip":
        buf = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            buf[draw(st.integers(0, len(buf) - 1))] = draw(st.integers(0, 255))
        return bytes(buf)
    i = draw(st.integers(0, len(data)))
    return data[:i] + draw(st.binary(max_size=32)) + data[i + draw(st.integers(0, 16)):]


def _proto_mutation(draw, m: onnx.ModelProto) -> None:
    g = m.graph
    kind = draw(st.sampled_from(["elem_type", "dims", "drop_init", "cycle", "attr", "op_type", "rename",
                                 "raw_data", "opset", "dup_output", "drop_node", "init_dims"]))
    nodes, inits = g.node, g.initializer
    if kind == "elem_type":
        vi = draw(st.sampled_from(list(g.input) + list(g.output)))
        vi.type.tensor_type.elem_type = draw(st.integers(0, 16))
    elif kind == "dims":
        vi = draw(st.sampled_from(list(g.input) + list(g.output)))
        dims = vi.type.tensor_type.shape.dim
        del dims[:]
        for d in draw(st.lists(st.sampled_from(HUGE + [-1, 3, 8]), max_size=5)):
            dims.add().dim_value = d
    elif kind == "drop_init" and len(inits):
        del inits[draw(st.integers(0, len(inits) - 1))]
    elif kind == "cycle" and len(nodes) > 1:
        i = draw(st.integers(0, len(nodes) - 1))
        j = draw(st.integers(i, len(nodes) - 1))
        if len(nodes[i].input):
            nodes[i].input[draw(st.integers(0, len(nodes[i].input) - 1))] = nodes[j].output[0]
    elif kind == "attr":
        with_attrs = [n for n in nodes if len(n.attribute)]
        if with_attrs:
            a = draw(st.sampled_from([a for a in draw(st.sampled_from(with_attrs)).attribute]))
            if a.ints:
                a.ints[draw(st.integers(0, len(a.ints) - 1))] = draw(st.sampled_from(HUGE + [-5, -1]))
            elif a.type == onnx.AttributeProto.INT:
                a.i = draw(st.sampled_from(HUGE + [-5, -1]))
            elif a.type == onnx.AttributeProto.FLOAT:
                a.f = draw(st.sampled_from([0.0, -1.0, float("nan"), float("inf"), 1e30]))
            else:
                a.type = onnx.AttributeProto.INTS
    elif kind == "op_type":
        draw(st.sampled_from(list(nodes))).op_type = draw(st.sampled_from(
            ["Conv", "Relu", "Add", "Gemm", "Reshape", "Concat", "MaxPool", "Split", "Transpose", "Foo"]))
    elif kind == "rename":
        n = draw(st.sampled_from(list(nodes)))
        if len(n.input):
            n.input[0] = draw(st.sampled_from(["", "nope", "x", "w", "shape"]))
    elif kind == "raw_data" and len(inits):
        t = draw(st.sampled_from(list(inits)))
        try:
            raw = t.raw_data or numpy_helper.to_array(t).tobytes()
        except ValueError:  # already truncated by an earlier mutation
            raw = b""
        t.ClearField("float_data"), t.ClearField("int64_data")
        t.raw_data = raw[:draw(st.integers(0, len(raw)))]
    elif kind == "opset":
        m.opset_import[0].version = draw(st.sampled_from([1, 6, 9, 11, 13, 18, 21, 99]))
    elif kind == "dup_output" and len(nodes) > 1:
        nodes[draw(st.integers(1, len(nodes) - 1))].output[0] = nodes[0].output[0]
    elif kind == "drop_node" and len(nodes):
        del nodes[draw(st.integers(0, len(nodes) - 1))]
    elif kind == "init_dims" and len(inits):
        t = draw(st.sampled_from(list(inits)))
        t.dims[:] = draw(st.lists(st.sampled_from(HUGE[:6] + [3, 4]), max_size=4))


@st.composite
def onnx_inputs(draw) -> bytes:
    data = draw(st.sampled_from(onnx_seeds()))
    if draw(st.booleans()):
        return _byte_mutation(draw, data)
    m = onnx.ModelProto()
    m.ParseFromString(data)
    for _ in range(draw(st.integers(1, 3))):
        _proto_mutation(draw, m)
    return m.SerializeToString()


# ---- .ecir seeds ----------------------------------------------------------------------
@lru_cache(maxsize=None)
def ecir_seed() -> bytes:
    import tempfile
    import edgecc
    from edgecc.compiler.ir import save
    g = edgecc.load(_seed_conv_net())
    with tempfile.TemporaryDirectory() as d:
        save(g, os.path.join(d, "seed.ecir"))
        with open(os.path.join(d, "seed.ecir"), "rb") as f:
            return f.read()


_JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64) | st.sampled_from(
    ["", "f32", "i64", "conv2d", "relu", "x", "nan", "b1"]) | st.floats(allow_nan=True),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(
        ["__tuple__", "const", "shape", "dtype", "name", "op", "inputs"]), c, max_size=3), max_leaves=8)


def _json_mutation(draw, doc):
    """Replace or delete one value somewhere in the JSON document."""
    path, node = [], doc
    while isinstance(node, (dict, list)) and node and draw(st.integers(0, 3)):
        key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else list(range(len(node)))))
        path.append((node, key))
        node = node[key]
    if not path:
        return draw(_JSON_VALUES)
    parent, key = path[-1]
    if draw(st.booleans()):
        parent[key] = draw(_JSON_VALUES)
    elif isinstance(parent, dict):
        del parent[key]
    else:
        parent.pop(key)
    return doc


@st.composite
def ecir_inputs(draw) -> bytes:
    data = ecir_seed()
    kind = draw(st.sampled_from(["bytes", "json", "npy", "drop_entry"]))
    if kind == "bytes":
        return _byte_mutation(draw, data)
    zin = zipfile.ZipFile(io.BytesIO(data))
    entries = {n: zin.read(n) for n in zin.namelist()}
    if kind == "json":
        doc = json.loads(entries["graph.json"])
        for _ in range(draw(st.integers(1, 3))):
            doc = _json_mutation(draw, doc)
        entries["graph.json"] = json.dumps(doc).encode()
    elif kind == "npy":
        name = draw(st.sampled_from(sorted(n for n in entries if n.endswith(".npy"))))
        arr = draw(st.sampled_from([np.zeros((2, 2), np.float32), np.zeros(0, np.int64), np.array(3.0),
                                    np.zeros((4, 3, 3, 3), np.float64), np.array(["a"]), np.zeros(5, np.int8)]))
        buf = io.BytesIO()
        np.save(buf, arr)
        entries[name] = buf.getvalue() if draw(st.booleans()) else _byte_mutation(draw, buf.getvalue())
    else:
        del entries[draw(st.sampled_from(sorted(entries)))]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for n, b in entries.items():
            z.writestr(n, b)
    return out.getvalue()


# ---- PyTorch example input specs ------------------------------------------------------
_DTYPES = ["float32", "float64", "float16", "bfloat16", "int8", "uint8", "int32", "int64", "bool", "complex64"]


def _tensor_spec():
    shapes = st.one_of(st.just((1, 3, 8, 8)), st.just((2, 3, 5, 7)),
                       st.lists(st.integers(0, 9), min_size=0, max_size=5).map(tuple))
    return st.tuples(st.just("tensor"), shapes, st.sampled_from(_DTYPES))


_PLAIN = st.tuples(st.just("value"), st.one_of(st.none(), st.integers(-3, 3), st.floats(allow_nan=False),
                                               st.text(max_size=3)))


@st.composite
def torch_inputs(draw):
    item = st.one_of(_tensor_spec(), _tensor_spec().map(lambda t: ("tensor", t[1], "float32")), _PLAIN)
    kind = draw(st.sampled_from(["tuple", "tuple", "list", "single", "plain"]))
    if kind == "single":
        return draw(_tensor_spec())
    if kind == "plain":
        return draw(_PLAIN)
    return (kind, draw(st.lists(item, max_size=3)))


# ---- kernel calls ---------------------------------------------------------------------
_KDT = st.sampled_from([np.float32, np.float64, np.int8, np.int16, np.int32, np.uint8, np.bool_])
_GEOM = st.one_of(st.integers(-1, 3), st.tuples(st.integers(-1, 3), st.integers(-1, 3)),
                  st.tuples(*[st.integers(-1, 3)] * 4), st.just("same"), st.none(), st.just((1, 2, 3)),
                  st.floats(0, 2))


def _array(draw, rank_shape, dtype):
    shape = tuple(draw(s) if not isinstance(s, int) else s for s in rank_shape)
    if int(np.prod(shape)) > 4096:
        shape = tuple(min(d, 4) for d in shape)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    a = rng.integers(-128, 128, shape) if np.issubdtype(dtype, np.integer) else rng.standard_normal(shape)
    a = a.astype(dtype)
    if draw(st.integers(0, 5)) == 0 and a.ndim and a.shape[-1] > 1:  # non-contiguous view
        a = a[..., ::2]
    return a


@st.composite
def kernel_calls(draw):
    fn = draw(st.sampled_from(["conv2d_f32", "conv2d_int", "conv2d_f32_naive", "conv2d_int_naive",
                               "dfnt", "binary_counts", "pack_activations"]))
    dim = st.integers(0, 7)
    valid_like = draw(st.integers(0, 2)) > 0  # mostly well-formed, so results get checked
    dt_x = {"conv2d_f32": np.float32, "conv2d_f32_naive": np.float32}.get(fn, np.int8)
    if not valid_like:
        dt_x = draw(_KDT)
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 4))
    groups = draw(st.sampled_from([1, 1, 2, 0, -1])) if fn.startswith("conv2d") else 1
    o = draw(st.integers(1, 4)) * (groups if groups > 0 else 1)
    cin = c * (groups if groups > 0 else 1)
    x_shape = (n, cin, draw(st.integers(1, 9)), draw(st.integers(1, 9))) if valid_like else \
        tuple(draw(st.lists(dim, max_size=5)))
    w_shape = (o, c, draw(st.integers(1, 3)), draw(st.integers(1, 3))) if valid_like else \
        tuple(draw(st.lists(dim, max_size=5)))
    dt_w = dt_x if valid_like else draw(_KDT)
    kw = {}
    if fn == "binary_counts":
        x = _array(draw, x_shape, np.float32)
        w = draw(st.sampled_from([np.int8, np.bool_, np.float32]))
        w = np.random.default_rng(1).integers(0, 2, w_shape).astype(w) if valid_like else _array(draw, w_shape, dt_w)
        t = draw(st.one_of(st.just([0.0]), st.just([[0.5]]), st.just([1.0, 0.0]), st.just([np.nan]),
                           st.just([]), st.just(None)))
        for k in ("stride", "padding", "dilation"):
            if draw(st.booleans()):
                kw[k] = draw(_GEOM)
        if draw(st.integers(0, 4)) == 0:
            kw["isa"] = draw(st.sampled_from(["avx512", "avx2", "scalar", "sse", 3]))
        if draw(st.integers(0, 4)) == 0:
            kw["threads"] = draw(st.sampled_from([0, 1, 2, -1, 1.5]))
        return {"fn": fn, "args": [x, t, w], "kwargs": kw}
    if fn == "pack_activations":
        x = _array(draw, x_shape, dt_x)
        t = draw(st.one_of(st.just([0.0]), st.just([-1.0, 0.0, 1.0]), st.just([1.0, 0.0]),
                           st.just([[0.0] * max(1, x_shape[1] if len(x_shape) > 1 else 1)]),
                           st.just([np.inf]), st.just(None)))
        kw = {"signed": draw(st.booleans()), "layout": draw(st.sampled_from(["NCHW", "NHWC", "HWC"]))}
        return {"fn": fn, "args": [x, t], "kwargs": kw}
    x, w = _array(draw, x_shape, dt_x), _array(draw, w_shape, dt_w)
    if fn == "dfnt":
        kw["padding"] = draw(st.one_of(st.sampled_from(["same", "valid", "full"]), _GEOM))
        kw["stride"] = draw(st.sampled_from([1, 1, 2, (1, 2), 0, -1]))
        kw["modulus"] = draw(st.sampled_from(["auto", "F5", "2^48+1", "F6", "F7"]))
        kw["input_dtype"] = draw(st.sampled_from([np.int8, np.int8, np.int16, np.float32]))
        kw["on_overflow"] = draw(st.sampled_from(["raise", "direct", "wrap"]))
        if draw(st.integers(0, 3)) == 0:
            kw["transform_size"] = draw(st.sampled_from([8, 16, 12, 4, 128, 0, -8]))
        return {"fn": fn, "args": [x, w], "kwargs": kw}
    for k in ("stride", "padding", "dilation"):
        if draw(st.booleans()):
            kw[k] = draw(_GEOM if not valid_like else st.integers(0 if k == "padding" else 1, 2))
    kw["groups"] = groups
    if draw(st.integers(0, 3)) == 0:
        kw["threads"] = draw(st.sampled_from([0, 1, 2, -1, 1.5, True]))
    if fn in ("conv2d_f32", "conv2d_int") and draw(st.integers(0, 3)) == 0:
        kw["isa"] = draw(st.sampled_from(["avx512", "avx2", "scalar", "neon", None]))
    if fn.startswith("conv2d_int") and draw(st.integers(0, 3)) == 0:
        kw["acc"] = draw(st.sampled_from(["i32", "i64", "auto", "i16"]))
    args = [x, w]
    if fn.startswith("conv2d_f32") and draw(st.booleans()):
        args.append(draw(st.one_of(st.just(np.ones(o, np.float32)), st.just(np.ones(o + 1, np.float32)),
                                   st.just(np.ones(o, np.float64)), st.just([1.0] * o))))
    return {"fn": fn, "args": args, "kwargs": kw}
