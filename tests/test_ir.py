"""Graph IR: shape rules against PyTorch/numpy, verifier messages, printer text, and
.ecir save/load (shared constants stored once, damaged files rejected)."""
import json
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import edgecc
from edgecc.compiler.ir import DType, Graph, TensorType, format_graph, load, save, verify
from edgecc.compiler.ir.ops import infer_node_types
from edgecc.errors import ModelLoadError, ShapeError, VerifyError

RNG = np.random.default_rng(6)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def f32(*shape):
    return TensorType(shape, DType.f32)


def out_shape(op, in_types, **attrs):
    return infer_node_types(op, list(in_types), attrs, "n")[0][0].shape


# ---- shape rules ----------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(h=st.integers(3, 12), w=st.integers(3, 12), k=st.integers(1, 3), s=st.integers(1, 3),
       p=st.integers(0, 2), d=st.integers(1, 2), g=st.sampled_from([1, 2]))
def test_conv2d_shape_matches_torch(h, w, k, s, p, d, g):
    x, wt = torch.zeros(1, 4, h, w), torch.zeros(6, 4 // g, k, k)
    if d * (k - 1) + 1 > min(h, w) + 2 * p:
        with pytest.raises(ShapeError, match="node 'n' \\(op conv2d\\)"):
            out_shape("conv2d", [f32(*x.shape), f32(*wt.shape)], strides=s, pads=p,
                      dilations=d, groups=g)
        return
    want = F.conv2d(x, wt, stride=s, padding=p, dilation=d, groups=g).shape
    assert out_shape("conv2d", [f32(*x.shape), f32(*wt.shape)], strides=s, pads=p,
                     dilations=d, groups=g) == tuple(want)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(2, 11), k=st.integers(1, 4), s=st.integers(1, 3), p=st.integers(0, 2),
       ceil=st.booleans(), d=st.integers(1, 2))
def test_pool_shapes_match_torch(h, k, s, p, ceil, d):
    p = min(p, k // 2)
    x = torch.zeros(1, 2, h, h + 1)
    t = [f32(*x.shape)]
    if d * (k - 1) + 1 <= h + 2 * p:
        want = F.max_pool2d(x, k, s, p, dilation=d, ceil_mode=ceil).shape
        assert out_shape("max_pool2d", t, kernel=k, strides=s, pads=p, dilations=d,
                         ceil_mode=ceil) == tuple(want)
    if k <= h + 2 * p:
        want = F.avg_pool2d(x, k, s, p, ceil_mode=ceil).shape
        assert out_shape("avg_pool2d", t, kernel=k, strides=s, pads=p,
                         ceil_mode=ceil) == tuple(want)


def test_other_shape_rules_match_numpy():
    a = np.zeros((2, 3, 4, 5))
    assert out_shape("flatten", [f32(2, 3, 4, 5)], axis=2) == (6, 20)
    assert out_shape("transpose", [f32(2, 3, 4, 5)], perm=(0, 2, 3, 1)) == (2, 4, 5, 3)
    assert out_shape("slice", [f32(2, 3, 4, 5)], starts=(-1, 1), ends=(-100, 99), axes=(3, 2),
                     steps=(-2, 1)) == a[:, :, 1:99, -1:-100:-2].shape
    assert out_shape("pad", [f32(2, 3, 4, 5)], pads=(0, 0, 1, 2, 0, 0, 3, -1)) == (2, 3, 8, 6)
    assert out_shape("concat", [f32(2, 3, 4, 5), f32(2, 1, 4, 5)], axis=-3) == (2, 4, 4, 5)
    assert out_shape("gemm", [f32(7, 3), f32(5, 7)], trans_a=True, trans_b=True) == (3, 5)
    for sa, sb in [((4,), (4, 2)), ((3, 4), (4,)), ((2, 1, 3, 4), (5, 4, 6)), ((4,), (4,))]:
        want = np.matmul(np.zeros(sa), np.zeros(sb)).shape
        assert out_shape("matmul", [f32(*sa), f32(*sb)]) == want
    assert out_shape("add", [f32(2, 1, 4), f32(3, 1)]) == (2, 3, 4)
    assert out_shape("adaptive_avg_pool2d", [f32(1, 2, 7, 9)], output_size=3) == (1, 2, 3, 3)
    outs = infer_node_types("split", [f32(2, 6)], {"axis": 1, "sizes": (1, 5)})[0]
    assert [t.shape for t in outs] == [(2, 1), (2, 5)]
    assert infer_node_types("conv2d", [TensorType((1, 1, 3, 3), DType.i8),
                                       TensorType((1, 1, 1, 1), DType.i8)], {})[0][0].dtype \
        is DType.i32


@pytest.mark.parametrize("op,types,attrs,msg", [
    ("conv2d", [f32(1, 3, 8, 8), f32(4, 2, 3, 3)], {}, "expects 2 input channels"),
    ("conv2d", [f32(1, 4, 8, 8), f32(6, 2, 3, 3)], {"groups": 3}, "groups=3 must divide"),
    ("batch_norm", [f32(1, 3, 2, 2)] + [f32(4)] * 4, {}, "scale shape \\[4\\] != \\[3\\]"),
    ("reshape", [f32(2, 3)], {"shape": (4, 2)}, "cannot reshape \\[2, 3\\]"),
    ("max_pool2d", [f32(1, 1, 4, 4)], {}, "missing required attribute 'kernel'"),
    ("relu", [f32(3)], {"alpha": 1}, "unknown attribute"),
    ("add", [f32(3)], {}, "takes 2 inputs, got 1"),
    ("nonsense", [f32(3)], {}, "unknown op 'nonsense'"),
    ("gemm", [f32(2, 3), f32(4, 5)], {}, "inner dims differ"),
])
def test_shape_errors_name_the_node(op, types, attrs, msg):
    with pytest.raises(ShapeError, match=f"node 'bad' \\(op {op}\\).*{msg}"):
        infer_node_types(op, types, attrs, "bad")


# ---- verifier -------------------------------------------------------------------
def two_layer():
    g = Graph("two")
    x = g.add_input("x", (1, 2, 4, 4))
    w = Graph.constant("w", rand(3, 2, 1, 1))
    c = g.add_node("conv2d", [x, w], name="conv").outputs[0]
    g.outputs = [g.add_node("relu", [c], name="act").outputs[0]]
    return g


def test_verifier_accepts_built_graph():
    verify(two_layer())


def test_verifier_names_node_with_wrong_type():
    g = two_layer()
    g.nodes[1].outputs[0].type = f32(1, 3, 4, 5)
    with pytest.raises(VerifyError, match="node 'act' \\(op relu\\): output 'act' is recorded "
                                          "as f32\\[1,3,4,5\\], shape rule gives f32\\[1,3,4,4\\]"):
        verify(g)


def test_verifier_names_node_used_before_defined():
    g = two_layer()
    g.nodes.reverse()
    with pytest.raises(VerifyError, match="node 'act' \\(op relu\\): input 0 \\('conv'\\) is "
                                          "used before it is defined"):
        verify(g)


def test_verifier_duplicate_names_and_bad_attrs():
    g = two_layer()
    g.nodes[1].name = "conv"
    with pytest.raises(VerifyError, match="node 'conv' \\(op relu\\): duplicate node name"):
        verify(g)
    g = two_layer()
    g.nodes[1].outputs[0].name = "x"
    with pytest.raises(VerifyError, match="value name 'x' already used by graph input 'x'"):
        verify(g)
    g = two_layer()
    g.nodes[0].attrs["groups"] = 2
    with pytest.raises(VerifyError, match="node 'conv' \\(op conv2d\\).*groups=2"):
        verify(g)


def test_verifier_constant_data_and_missing_output():
    g = two_layer()
    g.nodes[0].inputs[1].data = np.zeros((3, 2, 1, 1), np.float64)
    with pytest.raises(VerifyError, match="node 'conv' \\(op conv2d\\): constant 'w' data float64"):
        verify(g)
    g = two_layer()
    g.outputs.append(Graph().add_input("ghost", (1,)))  # a value from another graph
    with pytest.raises(VerifyError, match="graph output 'ghost' is not produced"):
        verify(g)


# ---- printer --------------------------------------------------------------------
def test_printer_text():
    g = Graph("tiny")
    x = g.add_input("x", (1, 2, 4, 4))
    w = Graph.constant("w", np.ones((2, 2, 1, 1), np.float32))
    a = g.add_node("conv2d", [x, w], name="c1").outputs[0]
    b = g.add_node("conv2d", [a, w], {"strides": 2}, name="c2").outputs[0]
    g.outputs = [g.add_node("clip", [b], {"max": 6}, name="act").outputs[0]]
    assert format_graph(g) == "\n".join([
        "graph tiny(%x: f32[1,2,4,4]) -> (%act) {",
        "  const @w: f32[2,2,1,1]  # shared by 2 nodes",
        "  %c1: f32[1,2,4,4] = conv2d(%x, @w) {strides=[1,1], pads=[0,0,0,0], "
        "dilations=[1,1], groups=1}  # c1",
        "  %c2: f32[1,2,2,2] = conv2d(%c1, @w) {strides=[2,2], pads=[0,0,0,0], "
        "dilations=[1,1], groups=1}  # c2",
        "  %act: f32[1,2,2,2] = clip(%c2) {min=None, max=6}  # act",
        "}"])
    assert str(g) == format_graph(g)


# ---- .ecir serialization ----------------------------------------------------------
def shared_weight_graph():
    g = Graph("shared", meta={"source": "test", "tags": ("a", 1)})
    x = g.add_input("x", (1, 3, 5, 5))
    w = Graph.constant("anchor", rand(3, 3, 3, 3))
    w.meta["note"] = "shared"
    v = x
    for i in range(3):
        v = g.add_node("conv2d", [v, w, Graph.constant(f"b{i}", rand(3))], {"pads": 1},
                       name=f"conv{i}", meta={"stats": np.arange(3, dtype=np.float32),
                                              "i": i}).outputs[0]
        v = g.add_node("relu", [v], name=f"relu{i}").outputs[0]
    parts = g.add_node("split", [v], {"axis": 1, "sizes": (1, 2)}, name="sp").outputs
    g.outputs = [parts[1], parts[0]]
    return g


def test_ecir_round_trip_stores_shared_constant_once(tmp_path):
    g = shared_weight_graph()
    path = tmp_path / "m.ecir"
    save(g, path)
    with zipfile.ZipFile(path) as z:
        weights = [n for n in z.namelist() if n.startswith("weights/")]
    assert len(weights) == 4  # anchor once + three biases
    g2 = load(path)
    assert format_graph(g2) == format_graph(g)
    convs = [n for n in g2.nodes if n.op == "conv2d"]
    assert convs[0].inputs[1] is convs[1].inputs[1] is convs[2].inputs[1]
    assert convs[0].inputs[1].meta == {"note": "shared"}
    assert g2.meta == {"source": "test", "tags": ("a", 1)}
    assert convs[2].meta["i"] == 2 and convs[2].meta["stats"].dtype == np.float32
    x = rand(1, 3, 5, 5)
    for a, b in zip(edgecc.interpret(g2, x), edgecc.interpret(g, x)):
        np.testing.assert_array_equal(a, b)
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_ecir_truncated_file(tmp_path):
    path = tmp_path / "m.ecir"
    save(shared_weight_graph(), path)
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 5):
        path.write_bytes(data[:cut])
        with pytest.raises(ModelLoadError, match="corrupt or truncated"):
            load(path)


def test_ecir_tampered_weight_bytes(tmp_path):
    g = shared_weight_graph()
    path = tmp_path / "m.ecir"
    save(g, path)
    data = bytearray(path.read_bytes())
    at = bytes(data).find(g.constants()[0].data.tobytes())
    assert at > 0
    data[at + 5] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="m.ecir"):
        load(path)


def rewrite_json(path, edit):
    with zipfile.ZipFile(path) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    doc = json.loads(entries["graph.json"])
    edit(doc)
    entries["graph.json"] = json.dumps(doc).encode()
    with zipfile.ZipFile(path, "w") as z:
        for n, b in entries.items():
            z.writestr(n, b)


@pytest.mark.parametrize("edit,msg", [
    (lambda d: d["nodes"][1]["inputs"].__setitem__(0, "nowhere"), "undefined value 'nowhere'"),
    (lambda d: d["nodes"][0]["outputs"][0].__setitem__("shape", [1, 3, 9, 9]),
     "does not verify: node 'conv0'"),
    (lambda d: d.__setitem__("version", 99), "IR version 99 is not supported"),
    (lambda d: d.__setitem__("format", "other"), "not an edgecc IR file"),
    (lambda d: d["nodes"][0].pop("op"), "malformed graph description"),
    (lambda d: d["constants"].append({"name": "extra", "meta": {}}), "corrupt or truncated"),
])
def test_ecir_tampered_description(tmp_path, edit, msg):
    path = tmp_path / "m.ecir"
    save(shared_weight_graph(), path)
    rewrite_json(path, edit)
    with pytest.raises(ModelLoadError, match=msg):
        load(path)


def test_ecir_not_a_zip_or_missing(tmp_path):
    path = tmp_path / "m.ecir"
    path.write_bytes(b"not a zip at all")
    with pytest.raises(ModelLoadError, match="corrupt or truncated"):
        load(path)
    with pytest.raises(ModelLoadError, match="no such file"):
        load(tmp_path / "absent.ecir")
    with pytest.raises(ModelLoadError, match="no such file"):
        edgecc.load(str(tmp_path / "absent.ecir"))
