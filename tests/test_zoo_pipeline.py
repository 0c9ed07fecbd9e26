"""Every zoo model through the whole pipeline: the torch.export frontend and the ONNX
frontend (torch.onnx.export -> edgecc.load) both import it, the reference interpreter
equals PyTorch eager, and `edgecc.compile` builds an fp32 and an int8 library that equal
the interpreter (the int8 one on the quantized graph the compiler recorded). ResNet-18
and Bi-Real ResNet-18 also go through scheme="pa".

Configs are the smallest the architectures allow (CIFAR stems, 16x16 inputs, fewer
classes) so the file stays within a few minutes on two cores.

Sign-binarized models (Bi-Real, NASB, UA): sign(x) = where(x >= 0, 1, -1) sits on float
values that PyTorch (float32 conv), the reference (float64 sums) and the compiled kernels
(float32, other orders) round differently. A value within rounding of 0 can land on the
other side: a tie, not a bug, but in a deep random sign net one flipped +-1 grows through
the layers (UA-ResNet-77 outputs differ by ~40% after one). So these models are imported
in float64, where the interpreter equals eager to ~1e-12 (no ties), and their compiled
float32 form is checked tie-aware: every sign of the library must equal the
interpreter's until the first sign layer where they differ, and there they may differ
only where the interpreter's input to the sign is within rounding (TIE_ATOL of its
scale) of 0; with no tie the outputs must agree within RTOL.
"""
from __future__ import annotations

import io
import json
import warnings

import numpy as np
import onnx
import pytest
import torch

import edgecc
import edgecc.runtime
import edgecc.zoo as zoo
from edgecc.compiler.compile import compile as compile_model
from edgecc.compiler.ir import DType, Graph, TensorType
from edgecc.compiler.ir import load as load_ecir
from edgecc.compiler.passes import default_pipeline
from edgecc.compiler.passes.aw_conv_taps import lower_aw_conv_taps, recognize_aw_conv
from edgecc.compiler.passes.lower_indexed_conv import lower_indexed_conv, recognize_indexed_conv
from edgecc.compiler.quant.calibration import calibrate
from edgecc.compiler.quant.convert import pa_convert
from edgecc.compiler.quant.export import exportable

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # tiny kernels: extra threads only thrash

RTOL = 1e-4          # of the output scale (max |reference|)
TIE_ATOL = 1e-5      # a sign input this close to 0 (relative to the layer's scale) is a tie

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
    """(model, input); sign models in float64 (see the module docstring)."""
    torch.manual_seed(0)
    kw, size = CONFIGS[name]
    model = zoo.get(name, **kw).eval()
    _randomize_batch_norms(model)
    x = torch.randn(1, 3, size, size)
    if name in SIGN_MODELS:
        model, x = model.double(), x.double()
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
    assert d <= RTOL, f"{name} {what}: max rel diff {d:.2e}"
    return d


def as_float32(graph: Graph) -> Graph:
    """The float64 graph of a sign model in float32, the compiled dtype (same nodes)."""
    g = graph.copy()
    values = {id(v): v for v in g.inputs}
    for n in g.nodes:
        values.update((id(v), v) for v in n.inputs + n.outputs)
    for v in values.values():
        if v.dtype == DType.f64:
            v.type = TensorType(v.shape, DType.f32)
            if v.is_constant:
                v.data = v.data.astype(np.float32)
    return g


def sign_nodes(graph: Graph) -> list:
    """select nodes with constant branches: the sign activations (outputs exactly +-1)."""
    return [n for n in graph.nodes if n.op == "select" and n.inputs[2].is_constant and n.inputs[3].is_constant]


def assert_same_signs_up_to_a_tie(name, signs, lib_outs, ref_outs) -> int:
    """lib_outs / ref_outs: per sign node (input, output). Returns the number of layers
    that agree before the first tie (all of them when there is none)."""
    for k, (n, (x_lib, y_lib), (x_ref, y_ref)) in enumerate(zip(signs, lib_outs, ref_outs)):
        flipped = y_lib != y_ref
        if flipped.any():
            scale = max(float(np.abs(x_ref).max()), 1e-30)
            worst = float(np.abs(x_ref[flipped]).max()) / scale
            assert worst <= TIE_ATOL, (f"{name}: sign {n.name} differs at {int(flipped.sum())} element(s), "
                                       f"input up to {worst:.1e} of its scale from 0: not a tie")
            return k
    return len(signs)


def compile_ready(graph: Graph) -> Graph:
    """The opt-in lowerings the compiler needs: indexed convs (REAF, RPW) and AW-convs
    become conv2d / slice / pad / concat / add / mul; then the default clean-up."""
    for p in (recognize_indexed_conv, lower_indexed_conv, recognize_aw_conv, lower_aw_conv_taps):
        p(graph)
    default_pipeline().run(graph)
    return graph


def compile_and_check(name, graph: Graph, x: np.ndarray, out, scheme: str,
                      run_passes: bool = True) -> tuple[float, str]:
    """Compile `graph` and compare the library with the interpreter on the graph the
    compiler recorded (tie-aware when the graph has sign activations); returns (max rel
    diff, a note on the signs)."""
    signs = sign_nodes(graph)
    if signs:   # their inputs and outputs become graph outputs, to be compared too
        graph.outputs = graph.outputs[:1] + [v for n in signs for v in (n.inputs[0], n.outputs[0])]
    compile_model(graph, out, scheme=scheme, run_passes=run_passes,
                  calib=[x] if scheme in ("int8", "int16") else None)
    compiled = load_ecir(out / "src" / "model.ecir")   # after quantization, for int8
    y_lib, *lib_signs = edgecc.runtime.load(out).run(x)
    y_ref, *ref_signs = edgecc.interpret(compiled, x)
    if not signs:
        return assert_close(name, f"compiled {scheme} vs interpreter", y_lib, y_ref), ""
    pairs = lambda outs: list(zip(outs[0::2], outs[1::2]))  # noqa: E731
    agree = assert_same_signs_up_to_a_tie(name, signs, pairs(lib_signs), pairs(ref_signs))
    note = f", signs equal in {agree}/{len(signs)} layers" + ("" if agree == len(signs) else " (then a tie)")
    if agree < len(signs):   # past a tie the outputs legitimately differ
        assert np.isfinite(y_lib).all() and y_lib.shape == y_ref.shape
        return rel_diff(y_lib, y_ref), note
    return assert_close(name, f"compiled {scheme} vs interpreter", y_lib, y_ref), note


def test_every_zoo_model_has_a_config():
    assert set(zoo.names()) == set(CONFIGS)


@pytest.mark.parametrize("name", sorted(set(CONFIGS) - SIGN_MODELS))
def test_zoo_model_imports_interprets_and_compiles(name, tmp_path):
    check_pipeline(name, tmp_path)   # the sign models: test_zoo_pipeline_sign.py


def check_pipeline(name, tmp_path):
    model, x = build(name)
    with torch.no_grad():
        eager = model(x).numpy()
    xn = x.numpy()

    g_torch = edgecc.load(model, (x,))
    (y_torch,) = edgecc.interpret(g_torch, xn)
    d_torch = assert_close(name, "torch.export import vs eager", y_torch, eager)

    g_onnx = onnx_graph(model, x)
    (y_onnx,) = edgecc.interpret(g_onnx, xn)
    d_onnx = assert_close(name, "ONNX import vs eager", y_onnx, eager)

    graph = compile_ready(g_torch)
    assert not {"indexed_conv2d", "aw_conv2d"} & {n.op for n in graph.nodes}
    (y_ref,) = edgecc.interpret(graph, xn)
    d_lowered = assert_close(name, "lowered graph vs eager", y_ref, eager)
    if name in SIGN_MODELS:
        graph, xn = as_float32(graph), xn.astype(np.float32)
    # compile_ready ran the default pipeline already
    d_lib, note = compile_and_check(name, graph, xn, tmp_path / name, "fp32", run_passes=False)
    d_int8, note8 = compile_and_check(name, graph, xn, tmp_path / f"{name}_int8", "int8", run_passes=False)
    qconvs = sum(layer["op"] == "qconv2d" for layer in
                 json.loads((tmp_path / f"{name}_int8" / "model.json").read_text())["layers"])
    assert qconvs == sum(n.op == "conv2d" for n in graph.nodes)
    print(f"\n{name}: max rel diff torch-import {d_torch:.1e}, onnx-import {d_onnx:.1e}, "
          f"lowered {d_lowered:.1e}, compiled {d_lib:.1e}{note} ({len(graph.nodes)} nodes compiled), "
          f"int8 ({qconvs} qconv2d) {d_int8:.1e}{note8}")


# ---- scheme="pa": binary kernels ------------------------------------------------------------
def _pa_graph(name):
    """The zoo model with its plain convs PA(2, 3)-binarized (first conv and classifier
    stay float), activation quantizers calibrated on random batches, exported."""
    model, x = build(name)
    model, x = model.float(), x.float()
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
    d, note = compile_and_check(name, graph, x, tmp_path / name, "pa")
    meta = json.loads((tmp_path / name / "model.json").read_text())
    engine_layers = [layer for layer in meta["layers"] if layer["kernel"].startswith("binary engine")]
    assert len(engine_layers) == len(binary)
    print(f"\n{name} pa: {len(binary)} binary layers, max rel diff compiled vs interpreter {d:.1e}{note}")


# ---- the emitters of emit_extra.py and the comparison / gather importers, op by op -------------
def _extra_ops_graph() -> Graph:
    """Every op of codegen/emit_extra.py, with broadcasting, a negative-step slice and
    negative (cropping) pads."""
    g = Graph("extra_ops")
    x = g.add_input("x", (2, 6, 5, 7))
    rng = np.random.default_rng(3)
    t = Graph.constant("t", rng.standard_normal((1, 6, 1, 1)).astype(np.float32))
    zero = Graph.constant("zero", np.zeros((), np.float32))
    neg = g.add_node("mul", [x, Graph.constant("m", np.asarray(-0.5, np.float32))], {}).outputs[0]
    specs = [("select", [x, t if i % 2 else zero, x, neg], {"cmp": c})
             for i, c in enumerate(("lt", "le", "gt", "ge", "eq", "ne"))]
    specs += [(op, [x], {}) for op in ("sigmoid", "tanh", "sign", "hardswish")]
    specs += [("leaky_relu", [x], {"alpha": 0.1}), ("hardsigmoid", [x], {"alpha": 0.3, "beta": 0.4}),
              ("softmax", [x], {"axis": 1}), ("softmax", [x], {"axis": -1}),
              ("adaptive_avg_pool2d", [x], {"output_size": (3, 4)}),
              ("slice", [x], {"starts": (5, 1), "ends": (-100, 6), "axes": (1, 3), "steps": (-2, 2)}),
              ("split", [x], {"axis": 1, "sizes": (1, 2, 3)}),
              ("transpose", [x], {"perm": (0, 2, 3, 1)}), ("channel_shuffle", [x], {"groups": 3})]
    specs += [("pad", [x], {"pads": (0, 1, 3, -2, 0, -1, 2, 4), "mode": m, "value": 1.5})
              for m in ("constant", "reflect", "edge")]
    outs = []
    for op, ins, attrs in specs:
        outs += g.add_node(op, ins, attrs).outputs
    g.outputs = outs
    return g


def test_extra_emitters_equal_the_interpreter(tmp_path):
    g = _extra_ops_graph()
    x = np.random.default_rng(0).standard_normal(g.inputs[0].shape).astype(np.float32)
    x[0, 0, 0, :3] = 0.0                     # comparison ties and sign(0)
    compile_model(g, tmp_path / "extra", scheme="fp32")
    got = edgecc.runtime.load(tmp_path / "extra").run(x)
    for v, want, y in zip(g.outputs, edgecc.interpret(g, x), got):
        exact = v.producer.op not in ("tanh", "hardsigmoid")   # libm / rounding-order ulps
        if exact:
            np.testing.assert_array_equal(y, want, err_msg=v.producer.op)
        else:
            np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-7, err_msg=v.producer.op)


class _Comparisons(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mask", torch.tensor([1.0, 0.0, 2.0]).reshape(1, 3, 1))
        self.w = torch.nn.Parameter(torch.randn(3, 1))

    def forward(self, x):
        s = torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))   # sign, sign(0) = +1
        c = torch.where(x.clamp(-1, 1) < 0.25, x * 2, x - 1)               # both branches run-time
        m = torch.where(self.mask > 0, x, -x)                              # a constant mask
        k = torch.where(self.w.abs().mean() > self.w, 1.0, 0.0)            # constants only: folded
        y = torch.where(x != s, s, c.neg()) + torch.where(x <= 0.5, 3.0, x)
        return s + c + m + k + y + x[:, [2, 0, 1]] + (x > 0.1).float()


def test_comparisons_import_as_select_in_both_frontends():
    x = torch.randn(2, 3, 5)
    x[0, 0, :2] = 0.0
    x[1, 1, 0] = 0.25
    model = _Comparisons().eval()
    with torch.no_grad():
        want = model(x).numpy()
    for graph in (edgecc.load(model, (x,)), onnx_graph(model, x)):
        ops = {n.op for n in graph.nodes}
        assert "select" in ops and not {v.dtype.name for n in graph.nodes for v in n.outputs} & {"bool"}
        np.testing.assert_array_equal(edgecc.interpret(graph, x.numpy())[0], want)


class _ComparisonOutput(torch.nn.Module):
    def forward(self, x):
        return (x > 0) * x


def test_comparison_outside_where_is_a_clear_error():
    from edgecc.errors import UnsupportedOpsError
    x = torch.randn(1, 4)
    with pytest.raises(UnsupportedOpsError, match="condition of torch.where"):
        edgecc.load(_ComparisonOutput(), (x,))
