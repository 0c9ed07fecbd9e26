"""Whole models through both frontends: torch.export -> edgecc and torch.onnx.export ->
edgecc's ONNX import. The interpreter must match PyTorch eager and ONNX Runtime to
max|diff| <= 1e-4 * max|ref|."""
from __future__ import annotations

import io
import warnings
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import edgecc
from edgecc.compiler.frontends.onnx import import_onnx
from edgecc.compiler.frontends.torch import import_torch

from models import MODELS


def export_onnx(module, inputs) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated, still works
        # TorchScript-based exporter: the dynamo one needs onnxscript. No constant folding,
        # so BN is not folded into the convs and a shared weight stays one initializer.
        torch.onnx.export(module, inputs, buf, dynamo=False, do_constant_folding=False,
                          input_names=["x"], output_names=["y"])
    return buf.getvalue()


def run_ort(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def assert_close(got, ref, what):
    assert got.shape == ref.shape and got.dtype == ref.dtype, (what, got.shape, got.dtype, ref.shape, ref.dtype)
    err, scale = float(np.abs(got - ref).max()), float(np.abs(ref).max())
    assert scale > 0 and err <= 1e-4 * scale, f"{what}: max|diff| {err:.3g} > 1e-4 * max|ref| {scale:.3g}"


@pytest.fixture(scope="module", params=list(MODELS))
def model(request):
    module, inputs = MODELS[request.param]()
    with torch.no_grad():
        eager = module(*inputs).numpy()
    onnx_bytes = export_onnx(module, inputs)
    x = inputs[0].numpy()
    return SimpleNamespace(name=request.param, module=module, inputs=inputs, x=x, eager=eager,
                           onnx=onnx.load_from_string(onnx_bytes), ort=run_ort(onnx_bytes, x))


def test_onnx_runtime_agrees_with_eager(model):
    assert_close(model.ort, model.eager, f"{model.name}: ONNX Runtime vs eager")


def test_torch_frontend_matches_eager(model):
    graph = import_torch(model.module, model.inputs)
    assert_close(edgecc.interpret(graph, model.x)[0], model.eager, f"{model.name}: torch import vs eager")
    # Constants keep their module paths: one per parameter and per BN running statistic.
    names = {c.name for c in graph.constants()}
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.module.modules())
    assert len(names) == len(list(model.module.parameters())) + 2 * n_bn
    if model.name == "resnet18":
        assert {"conv1.weight", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
                "layer4.1.bn2.running_var", "fc.bias"} <= names


def test_onnx_frontend_matches_eager_and_ort(model):
    graph = import_onnx(model.onnx)
    got = edgecc.interpret(graph, model.x)[0]
    assert_close(got, model.eager, f"{model.name}: ONNX import vs eager")
    assert_close(got, model.ort, f"{model.name}: ONNX import vs ONNX Runtime")


def test_shared_weight_is_one_constant_in_both_frontends():
    module, inputs = MODELS["shared_conv"]()
    weight = module.shared.weight.detach().numpy()
    graphs = {"torch": import_torch(module, inputs),
              "onnx": import_onnx(onnx.load_from_string(export_onnx(module, inputs)))}
    for frontend, graph in graphs.items():
        copies = [c for c in graph.constants() if c.shape == weight.shape and np.array_equal(c.data, weight)]
        assert len(copies) == 1, f"{frontend}: {len(copies)} copies of the shared weight"
        users = [n for n in graph.nodes if n.op == "conv2d" and n.inputs[1] is copies[0]]
        assert len(users) == 3, f"{frontend}: {len(users)} convs read the shared weight"
    assert [c.name for c in graphs["torch"].constants()].count("shared.weight") == 1
