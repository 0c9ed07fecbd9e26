"""Every zoo model through the whole pipeline: the torch.export frontend and the ONNX
frontend (torch.onnx.export -> edgecc.load) both import it, the reference interpreter
equals PyTorch eager, and `edgecc.compile(scheme="fp32")` builds a library that equals
the interpreter. ResNet-18 and Bi-Real ResNet-18 also go through scheme="pa".

Configs are the smallest the architectures allow (CIFAR stems, 16x16 inputs, fewer
classes) so the file stays within a few minutes on two cores.

Sign-binarized models (Bi-Real, NASB, UA): their sign(x) = where(x >= 0, 1, -1) sits on
float values computed by differently ordered sums (PyTorch's float32 conv, the
reference's float64 one, the compiled float32 kernels). An activation within rounding
of 0 can land on the other side, flipping one +-1 input of the next conv: a tie, not a
bug. For those models the outputs must agree on the prediction and within
SIGN_TIE_RTOL of the output scale; every other comparison uses RTOL.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest
import torch

import edgecc
import edgecc.runtime
import edgecc.zoo as zoo
from edgecc.compiler.compile import compile as compile_model
from edgecc.compiler.ir import Graph
from edgecc.compiler.passes import default_pipeline
from edgecc.compiler.passes.aw_conv_taps import lower_aw_conv_taps, recognize_aw_conv
from edgecc.compiler.passes.lower_indexed_conv import lower_indexed_conv, recognize_indexed_conv
from edgecc.compiler.quant.calibration import calibrate
from edgecc.compiler.quant.convert import pa_convert
from edgecc.compiler.quant.export import exportable

RTOL = 1e-4          # of the output scale (max |reference|)
SIGN_TIE_RTOL = 5e-2

# name -> (builder kwargs, input size)
CONFIGS = {
    "resnet18": (dict(stem="cifar", num_classes=10), 16),
    "resnet34": (dict(stem="cifar", num_classes=10), 16),
    "resnet50": (dict(stem="cifar", num_classes=10), 16),
    "bireal_resnet18": (dict(stem="cifar", num_classes=10), 16),
    "bireal_resnet34": (dict(stem="cifar", num_classes=10), 16),
    "nasb_resnet18": (dict(stem="cifar", num_classes=10), 16),
    **{f"ua_resnet{d}": (dict(dataset="cifar", num_classes=10), 16) for d in (21, 37, 41, 69, 77, 149)},
    "reaf_resnet50": (dict(stem="cifar", num_classes=10), 16),
    "reaf_plus_mobilenet_v2": (dict(stem="cifar", num_classes=10), 16),
    "mobilenet_v2": (dict(stem="cifar", num_classes=10), 16),
    # AW attention pools to the 3x3 kernel: every feature map a multiple of 3, so the
    # ONNX exporter can write the adaptive pool (24 -> 12 -> 6 -> 3)
    "aw_resnet50": (dict(stem="cifar", num_classes=10), 24),
    "dacnn_plain": (dict(depth=18, channels=32, num_classes=10, regulators=True), 16),
    "dacnn_mixed14": (dict(num_classes=10), 16),
    "dacnn_mixed18": (dict(num_classes=10, regulators=True), 16),
    "vgg11": (dict(dataset="cifar", num_classes=10), 32),
    "vgg16": (dict(dataset="cifar", num_classes=10), 32),
    "vgg19": (dict(dataset="cifar", num_classes=10), 32),
    "mobilenet_v1": (dict(stem="cifar", num_classes=10, width_mult=0.25, rpw=(4, 0.5)), 16),
}
SIGN_MODELS = {n for n in CONFIGS if n.startswith(("bireal", "nasb", "ua_"))}


def build(name):
    torch.manual_seed(0)
    kw, size = CONFIGS[name]
    model = zoo.get(name, **kw).eval()
    _randomize_batch_norms(model)
    x = torch.randn(1, 3, size, size)
    return model, x


def _randomize_batch_norms(model):
    """Non-trivial running statistics, so folding them is exercised."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))


def onnx_graph(model, x) -> Graph:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buf, dynamo=False, input_names=["x"], output_names=["y"])
    return edgecc.load(onnx.load_from_string(buf.getvalue()))


def rel_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1e-30))


def assert_close(name, what, got, want):
    d = rel_diff(got, want)
    if name in SIGN_MODELS:
        assert np.array_equal(got.argmax(-1), want.argmax(-1)), f"{name} {what}: predictions differ"
        assert d <= SIGN_TIE_RTOL, f"{name} {what}: max rel diff {d:.2e}"
    else:
        assert d <= RTOL, f"{name} {what}: max rel diff {d:.2e}"
    return d


def compile_ready(graph: Graph) -> Graph:
    """The opt-in lowerings the compiler needs: indexed convs (REAF, RPW) and AW-convs
    become conv2d / slice / pad / concat / add / mul; then the default clean-up."""
    for p in (recognize_indexed_conv, lower_indexed_conv, recognize_aw_conv, lower_aw_conv_taps):
        p(graph)
    default_pipeline().run(graph)
    return graph


def test_every_zoo_model_has_a_config():
    assert set(zoo.names()) == set(CONFIGS)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_zoo_model_imports_interprets_and_compiles(name, tmp_path):
    model, x = build(name)
    with torch.no_grad():
        eager = model(x).numpy()
    xn = x.numpy()

    g_torch = edgecc.load(model, (x,))
    (y_torch,) = edgecc.interpret(g_torch, xn)
    assert_close(name, "torch.export import vs eager", y_torch, eager)

    g_onnx = onnx_graph(model, x)
    (y_onnx,) = edgecc.interpret(g_onnx, xn)
    assert_close(name, "ONNX import vs eager", y_onnx, eager)

    graph = compile_ready(g_torch)
    assert not {"indexed_conv2d", "aw_conv2d"} & {n.op for n in graph.nodes}
    (y_ref,) = edgecc.interpret(graph, xn)
    assert_close(name, "lowered graph vs eager", y_ref, eager)
    compile_model(graph, tmp_path / name, scheme="fp32")
    (y_lib,) = edgecc.runtime.load(tmp_path / name).run(xn)
    assert_close(name, "compiled fp32 vs interpreter", y_lib, y_ref)


# ---- scheme="pa": binary kernels ------------------------------------------------------------
def _pa_graph(name):
    """The zoo model with its plain convs PA(2, 3)-binarized (first conv and classifier
    stay float), activation quantizers calibrated on random batches, exported."""
    model, x = build(name)
    pa = pa_convert(model, 2, 3).eval()
    calibrate(pa, [torch.randn(4, *x.shape[1:], generator=torch.Generator().manual_seed(i)) for i in range(2)])
    pa.eval()
    return edgecc.load(exportable(pa), (x,)), x.numpy()


@pytest.mark.parametrize("name", ["resnet18", "bireal_resnet18"])
def test_zoo_model_compiles_with_pa_scheme(name, tmp_path):
    """ResNet-18: every conv but the first binarized. Bi-Real ResNet-18: its float
    downsample convs binarized, its own sign convs compile as float convs on +-1 inputs
    (select kernel). The library runs the binary engine and equals the interpreter."""
    graph, x = _pa_graph(name)
    binary = [n.name for n in graph.nodes if n.op == "binary_conv2d"]
    assert len(binary) == (19 if name == "resnet18" else 3)
    meta = compile_model(graph, tmp_path / name, scheme="pa")
    engine_layers = [layer for layer in meta["layers"] if layer["kernel"].startswith("binary engine")]
    assert len(engine_layers) == len(binary)
    (y_ref,) = edgecc.interpret(graph, x)
    (y_lib,) = edgecc.runtime.load(tmp_path / name).run(x)
    assert_close(name, "compiled pa vs interpreter", y_lib, y_ref)
