"""ONNX frontend on small hand-built models: shared constants, auto_pad, shape
subgraphs, legacy op semantics, and the errors users see for bad models and inputs.
ONNX Runtime is the reference for numerics."""
from __future__ import annotations

import zipfile

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import edgecc
from edgecc.compiler.frontends.onnx import import_onnx
from edgecc.compiler.ir import load as load_ecir
from edgecc.compiler.ir import save as save_ecir
from edgecc.compiler.ir import verify
from edgecc.errors import InputError, ModelLoadError, ShapeError, UnsupportedOpsError

F32 = TensorProto.FLOAT


def _model(nodes, inputs, outputs, inits=(), opset=17):
    """A model; outputs declared without a shape get the shape ONNX infers (the checker
    wants one)."""
    graph = helper.make_graph(nodes, "test", inputs, outputs,
                              [numpy_helper.from_array(v, k) for k, v in dict(inits).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    inferred = {vi.name: vi for vi in onnx.shape_inference.infer_shapes(model).graph.output}
    for vi in model.graph.output:
        if not vi.type.tensor_type.HasField("shape"):
            vi.CopyFrom(inferred[vi.name])
    return model


def _vi(name, shape, elem=F32):
    return helper.make_tensor_value_info(name, elem, shape)


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _check_vs_ort(model, feeds, ort_run, input_shapes=None):
    graph = import_onnx(model, input_shapes)
    verify(graph)
    ours = edgecc.interpret(graph, *[feeds[v.name] for v in graph.inputs])
    refs = ort_run(model, feeds)
    for y, r in zip(ours, refs):
        assert y.shape == r.shape and y.dtype == r.dtype
        np.testing.assert_allclose(y, r, rtol=1e-5, atol=1e-4 * max(1.0, float(np.abs(r).max())))
    return graph


# ---- shared initializers --------------------------------------------------------
def test_shared_initializer_is_one_constant(tmp_path, ort_run):
    w, b = _rand(4, 4, 3, 3, seed=1), _rand(4, seed=2)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w", "b"], ["y"], name="conv2", pads=[1, 1, 1, 1])]
    model = _model(nodes, [_vi("x", [1, 4, 6, 6])], [_vi("y", [1, 4, 6, 6])], {"w": w, "b": b})
    graph = _check_vs_ort(model, {"x": _rand(1, 4, 6, 6)}, ort_run)
    c1, c2 = graph.node("conv1"), graph.node("conv2")
    assert c1.inputs[1] is c2.inputs[1] and c1.inputs[2] is c2.inputs[2]
    assert [c.name for c in graph.constants()] == ["w", "b"]
    assert [v.name for v in graph.inputs] == ["x"] and graph.outputs[0].name == "y"

    path = tmp_path / "shared.ecir"
    save_ecir(graph, path)
    with zipfile.ZipFile(path) as z:
        assert len([n for n in z.namelist() if n.startswith("weights/")]) == 2
    loaded = load_ecir(path)
    l1, l2 = loaded.node("conv1"), loaded.node("conv2")
    assert l1.inputs[1] is l2.inputs[1]
    np.testing.assert_array_equal(l1.inputs[1].data, w)


# ---- auto_pad --------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(h=st.integers(3, 9), w=st.integers(3, 9), k=st.integers(1, 4), s=st.integers(1, 3),
       d=st.integers(1, 2), mode=st.sampled_from(["SAME_UPPER", "SAME_LOWER", "VALID"]))
def test_conv_auto_pad_matches_onnxruntime(ort_run, h, w, k, s, d, mode):
    if mode == "VALID" and (k - 1) * d + 1 > min(h, w):
        return
    node = helper.make_node("Conv", ["x", "w"], ["y"], auto_pad=mode, strides=[s, s],
                            dilations=[d, d], kernel_shape=[k, k])
    model = _model([node], [_vi("x", [1, 2, h, w])], [_vi("y", None)], {"w": _rand(3, 2, k, k)})
    feeds = {"x": _rand(1, 2, h, w, seed=h * w)}
    if d > 1 and mode != "VALID":  # ONNX Runtime rejects dilated SAME: use ONNX's reference
        ort_run = lambda m, f: ReferenceEvaluator(m).run(None, f)  # noqa: E731
    _check_vs_ort(model, feeds, ort_run)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("mode", ["SAME_UPPER", "SAME_LOWER"])
@pytest.mark.parametrize("size,k,s", [((7, 8), 3, 2), ((5, 5), 2, 1), ((6, 9), 3, 3)])
def test_pool_auto_pad_matches_onnxruntime(op, mode, size, k, s, ort_run):
    node = helper.make_node(op, ["x"], ["y"], auto_pad=mode, kernel_shape=[k, k], strides=[s, s])
    model = _model([node], [_vi("x", [1, 3, *size])], [_vi("y", None)])
    _check_vs_ort(model, {"x": _rand(1, 3, *size)}, ort_run)


# ---- shape subgraphs and op semantics ----------------------------------------------
def test_shape_subgraph_is_folded(ort_run):
    """x.view(x.size(0), -1) as PyTorch exports it: Shape -> Gather -> Unsqueeze -> Concat."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["y"], name="flatten_view")]
    inits = {"zero": np.array(0, np.int64), "axes": np.array([0], np.int64),
             "minus1": np.array([-1], np.int64)}
    model = _model(nodes, [_vi("x", [2, 3, 4, 5])], [_vi("y", None)], inits)
    graph = _check_vs_ort(model, {"x": _rand(2, 3, 4, 5)}, ort_run)
    assert [n.op for n in graph.nodes] == ["reshape"]
    assert graph.nodes[0].attrs["shape"] == (2, 60)


def test_softmax_before_opset13_coerces_to_2d(ort_run):
    node = helper.make_node("Softmax", ["x"], ["y"], axis=1)
    model = _model([node], [_vi("x", [2, 3, 4, 5])], [_vi("y", None)], opset=11)
    _check_vs_ort(model, {"x": _rand(2, 3, 4, 5)}, ort_run)


def test_legacy_clip_and_upsample(ort_run):
    nodes = [helper.make_node("Clip", ["x"], ["c"], min=-0.5, max=0.7),
             helper.make_node("Upsample", ["c", "scales"], ["y"], mode="nearest")]
    model = _model(nodes, [_vi("x", [1, 2, 3, 4])], [_vi("y", None)],
                   {"scales": np.array([1, 1, 2, 3], np.float32)}, opset=9)
    _check_vs_ort(model, {"x": _rand(1, 2, 3, 4)}, ort_run)


def test_resize_linear_with_scales(ort_run):
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear")
    model = _model([node], [_vi("x", [1, 2, 5, 7])], [_vi("y", None)],
                   {"scales": np.array([1, 1, 1.5, 0.6], np.float32)})
    graph = _check_vs_ort(model, {"x": _rand(1, 2, 5, 7)}, ort_run)
    # ONNX maps coordinates with the given (float32) scales, not with size / input size
    assert graph.nodes[0].attrs["scale"] == (1.5, float(np.float32(0.6)))


def test_scalar_constants_stay_scalars(ort_run):
    nodes = [helper.make_node("Add", ["x", "one"], ["a"]),
             helper.make_node("Mul", ["a", "two"], ["y"])]
    model = _model(nodes, [_vi("x", [3])], [_vi("y", None)],
                   {"one": np.array(1.0, np.float32), "two": np.array(2.0, np.float32)})
    graph = _check_vs_ort(model, {"x": _rand(3)}, ort_run)
    assert [c.shape for c in graph.constants()] == [(), ()]


def test_constant_output_and_dropout_mask():
    nodes = [helper.make_node("Dropout", ["x"], ["y", "mask"]),
             helper.make_node("Constant", [], ["k"], value_ints=[3, 4])]
    model = _model(nodes, [_vi("x", [2, 3])],
                   [_vi("y", None), _vi("mask", None, TensorProto.BOOL),
                    _vi("k", None, TensorProto.INT64)])
    graph = import_onnx(model)
    x = _rand(2, 3)
    y, mask, k = edgecc.interpret(graph, x)
    np.testing.assert_array_equal(y, x)
    assert mask.dtype == np.bool_ and mask.all()
    np.testing.assert_array_equal(k, [3, 4])
    assert [v.name for v in graph.outputs] == ["y", "mask", "k"]


# ---- errors ----------------------------------------------------------------------
def _small_model():
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    return _model([node], [_vi("x", [1, 2, 5, 5])], [_vi("y", None)], {"w": _rand(3, 2, 3, 3)})


def test_truncated_file_gives_model_load_error(tmp_path):
    data = _small_model().SerializeToString()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"truncated\.onnx.*truncated or corrupt"):
        import_onnx(path)
    with pytest.raises(ModelLoadError, match="truncated.onnx"):
        edgecc.load(str(path))
    with pytest.raises(ModelLoadError, match="no such file"):
        import_onnx(tmp_path / "missing.onnx")


def test_missing_initializer_is_reported():
    model = _small_model()
    del model.graph.initializer[:]
    with pytest.raises(ModelLoadError, match="'w'"):
        import_onnx(model)


def test_every_unsupported_op_is_listed_once():
    nodes = [helper.make_node("LRN", ["x"], ["a"], size=3, name="lrn1"),
             helper.make_node("Relu", ["a"], ["b"], name="relu"),
             helper.make_node("LRN", ["b"], ["c"], size=3, name="lrn2"),
             helper.make_node("Erf", ["c"], ["d"], name="erf"),
             helper.make_node("Resize", ["d", "", "scales"], ["e"], mode="cubic", name="up"),
             helper.make_node("Swizzle", ["e"], ["y"], domain="com.example", name="custom")]
    graph = helper.make_graph(nodes, "bad", [_vi("x", [1, 3, 4, 4])], [_vi("y", [1, 3, 8, 8])],
                              [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32),
                                                       "scales")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                    helper.make_opsetid("com.example", 1)])
    with pytest.raises(UnsupportedOpsError) as info:
        import_onnx(model)
    found = {op: (where, names) for op, where, names in info.value.unsupported}
    assert set(found) == {"LRN", "Erf", "Resize", "Swizzle"}
    assert found["LRN"][1] == ["lrn1", "lrn2"]
    assert "opset 13" in found["Erf"][0]
    assert "cubic" in found["Resize"][0] and found["Resize"][1] == ["up"]
    assert "com.example" in found["Swizzle"][0]
    msg = str(info.value)
    for name in ("lrn1", "lrn2", "erf", "up", "custom"):
        assert name in msg


def test_dynamic_reshape_is_reported():
    nodes = [helper.make_node("Relu", ["shape_in"], ["shape"]),
             helper.make_node("Reshape", ["x", "shape"], ["y"], name="dyn")]
    model = _model(nodes, [_vi("x", [2, 6]), _vi("shape_in", [2], TensorProto.INT64)],
                   [_vi("y", None)])
    with pytest.raises(UnsupportedOpsError, match=r"(?s)Reshape.*computed at run time.*dyn"):
        import_onnx(model)


def test_symbolic_dims_need_input_shapes(ort_run):
    node = helper.make_node("Relu", ["x"], ["y"])
    model = _model([node], [_vi("x", ["batch", 3, 4])], [_vi("y", ["batch", 3, 4])])
    with pytest.raises(ShapeError, match=r"'x' has symbolic dim 'batch' at axis 0.*input_shapes"):
        import_onnx(model)
    graph = _check_vs_ort(model, {"x": _rand(5, 3, 4)}, ort_run, input_shapes={"x": (5, 3, 4)})
    assert graph.inputs[0].shape == (5, 3, 4) and graph.outputs[0].shape == (5, 3, 4)
    with pytest.raises(ShapeError, match=r"unknown input\(s\) \['y'\]"):
        import_onnx(model, {"y": (1, 3, 4)})
    with pytest.raises(ShapeError, match="rank 2"):
        import_onnx(model, {"x": (5, 3)})
    with pytest.raises(ShapeError, match="dim 7 at axis 1.*fixes it to 3"):
        import_onnx(model, {"x": (5, 7, 4)})


def test_declared_type_that_disagrees_is_reported():
    node = helper.make_node("Relu", ["x"], ["y"])
    model = _model([node], [_vi("x", [1, 2, 4, 4])], [_vi("y", [1, 2, 3, 3])])
    with pytest.raises(ShapeError, match=r"'y'.*f32\[1,2,4,4\].*\[1,2,3,3\]"):
        import_onnx(model)


def test_unsupported_input_dtype_is_named():
    node = helper.make_node("Relu", ["x"], ["y"])
    model = _model([node], [_vi("x", [2], TensorProto.FLOAT16)],
                   [_vi("y", None, TensorProto.FLOAT16)])
    with pytest.raises(ModelLoadError, match="'x' has element type FLOAT16"):
        import_onnx(model)


def test_wrong_input_to_interpreter():
    graph = import_onnx(_small_model())
    with pytest.raises(InputError, match=r"'x': expected shape \[1, 2, 5, 5\], got \[1, 2, 5, 4\]"):
        edgecc.interpret(graph, _rand(1, 2, 5, 4))
    with pytest.raises(InputError, match="dtype"):
        edgecc.interpret(graph, _rand(1, 2, 5, 5).astype(np.float64))
