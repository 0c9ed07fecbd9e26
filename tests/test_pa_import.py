"""PA / ABC-Net / sign layers through both frontends: the export form
(edgecc.compiler.quant.export) keeps the PyTorch forward, torch.export and the ONNX
custom-domain route each give one binary_conv2d / binary_linear node per layer with
the layer's bases, coefficients and thresholds, and the IR's reference kernels agree
with PyTorch."""
import io

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

import edgecc
from edgecc.compiler.quant.calibration import calibrate
from edgecc.compiler.quant.convert import abc_convert, binary_layers, pa_convert, sign_convert
from edgecc.compiler.quant.export import decomposition, export_onnx, exportable
from edgecc.errors import InputError, UnsupportedOpsError
from edgecc.zoo import digits as D

CONVERTS = {"pa": lambda m: pa_convert(m, 4, 5), "abc": lambda m: abc_convert(m, 3, 2),
            "sign": sign_convert}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Small(nn.Module):
    """Float stem, then binarized: a grouped dilated conv, a strided conv with bias and
    a linear layer; the last linear stays float (quant/convert.py rules)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 12, 3, stride=2, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(12)
        self.fc1 = nn.Linear(12 * 16, 24)
        self.bn3 = nn.BatchNorm1d(24)
        self.fc2 = nn.Linear(24, 10)

    def forward(self, x):
        x = torch.relu(self.bn0(self.stem(x)))
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = torch.relu(self.bn3(self.fc1(torch.flatten(x, 1))))
        return self.fc2(x)


def _random_bn(model, gen):
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(c, generator=gen) * 0.5)


def small_model(kind: str, seed: int = 0):
    """A calibrated Small of the given kind with random-but-valid parameters."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = Small()
    with torch.no_grad():
        _random_bn(model, gen)
    q = CONVERTS[kind](model)
    calibrate(q, [torch.rand(64, 1, 8, 8, generator=gen)])
    return q.eval()


def _close(y, ref, rtol=1e-4):
    """Logits equal up to float summation order, relative to each row's scale."""
    scale = np.abs(ref).max(axis=1, keepdims=True)
    assert np.all(np.abs(y - ref) <= rtol * scale), float(np.max(np.abs(y - ref) / scale))


@pytest.mark.parametrize("kind", ["pa", "abc", "sign"])
def test_export_form_keeps_the_forward(kind):
    q = small_model(kind)
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, out = q(x).numpy(), exportable(q)(x).numpy()
    if kind == "pa":
        assert np.array_equal(out, ref)      # one-hot bases: the same float values
    else:
        _close(out, ref, 1e-5)


@pytest.mark.parametrize("kind", ["pa", "abc", "sign"])
def test_torch_import_one_node_per_layer(kind):
    q = small_model(kind)
    x = torch.rand(4, 1, 8, 8)
    g = edgecc.load(exportable(q), (x,))
    nodes = {n.meta.get("module"): n for n in g.nodes if n.op.startswith("binary_")}
    layers = binary_layers(q)
    assert set(nodes) == set(layers)
    assert sum(n.op == "conv2d" for n in g.nodes) == 1 and sum(n.op == "gemm" for n in g.nodes) == 1
    pm1 = "pm1" if kind != "pa" else "01"
    for name, layer in layers.items():
        n, d = nodes[name], decomposition(layer)
        assert n.op == ("binary_linear" if isinstance(layer, nn.Linear) else "binary_conv2d")
        assert n.attrs["weight_basis"] == n.attrs["act_basis"] == pm1
        wb, phi, t = n.inputs[1], n.inputs[2], n.inputs[3]
        assert np.array_equal(wb.data, d["wb"]) and wb.data.dtype == np.int8
        assert np.array_equal(t.data, d["t"])
        # phi arrives as alpha x beta (one mul node), merged later by a pass
        assert phi.producer.op == "mul"
        a, b = phi.producer.inputs
        assert np.array_equal(a.data[:, :, 0], d["alpha"]) and np.array_equal(b.data[0, 0], d["beta"])
        assert (len(n.inputs) == 5) == (layer.bias is not None)
        if isinstance(layer, nn.Conv2d):
            assert n.attrs["strides"] == layer.stride and n.attrs["dilations"] == layer.dilation
            assert n.attrs["groups"] == layer.groups
            assert n.attrs["pads"] == layer.padding * 2


def test_pa_decomposition_tensors():
    """PA: {0,1} one-hot weight planes (no plane for the zero piece), per-layer
    endpoints repeated per input channel, alpha per plane, beta per activation level."""
    q = small_model("pa")
    layer = q.conv1
    d = decomposition(layer)
    m, o = 4, 8
    assert d["wb"].shape == (m, o, 4, 3, 3) and set(np.unique(d["wb"])) <= {0, 1}
    assert d["wb"].sum(0).max() <= 1                      # one piece per weight
    w_bar = np.tensordot(d["alpha"][0], d["wb"].astype(np.float32), 1)
    np.testing.assert_array_equal(w_bar, layer.wq(layer.weight).detach().numpy())
    assert d["t"].shape == (8, 5) and np.array_equal(d["t"][3], layer.aq.v.detach().numpy())
    assert np.array_equal(d["beta"], layer.aq.beta.detach().numpy())


@pytest.mark.parametrize("kind", ["pa", "abc", "sign"])
def test_reference_interpreter_matches_pytorch(kind):
    q = small_model(kind, seed=3)
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    g = edgecc.load(exportable(q), (x,))
    with torch.no_grad():
        ref = q(x).numpy()
    (y,) = edgecc.interpret(g, x.numpy())
    _close(y, ref)


@pytest.mark.parametrize("kind", ["pa", "abc", "sign"])
def test_onnx_route_gives_the_torch_route_ir(kind):
    q = small_model(kind, seed=5)
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    buf = io.BytesIO()
    export_onnx(q, (x,), buf)
    model = onnx.load_from_string(buf.getvalue())
    custom = [n for n in model.graph.node if n.domain == "edgecc"]
    assert sorted(n.op_type for n in custom) == ["BinaryConv2d", "BinaryConv2d", "BinaryLinear"]
    inits = {t.name for t in model.graph.initializer}
    # layer tensors are initializers (the exporter may alias equal ones through Identity)
    aliases = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Identity"}
    assert all({aliases.get(i, i) for i in n.input[1:]} <= inits for n in custom)
    g_onnx = edgecc.load(model)
    g_torch = edgecc.load(exportable(q), (x,))
    for g in (g_onnx, g_torch):
        assert sorted(n.op for n in g.nodes if n.op.startswith("binary_")) == \
            ["binary_conv2d", "binary_conv2d", "binary_linear"]
    by_op = lambda g: [(n.op, n.attrs, [v.shape for v in n.inputs]) for n in g.nodes
                       if n.op.startswith("binary_")]
    assert by_op(g_onnx) == by_op(g_torch)
    a = edgecc.interpret(g_onnx, x.numpy())[0]
    b = edgecc.interpret(g_torch, x.numpy())[0]
    np.testing.assert_array_equal(a, b)


def test_export_rejects_non_binary_models_and_bad_bases():
    with pytest.raises(InputError, match="no PA, ABC-Net or sign layer"):
        exportable(D.DigitsResNet())
    with pytest.raises(InputError, match="not a PA, ABC-Net or sign layer"):
        decomposition(nn.Conv2d(1, 1, 1))
    from edgecc.compiler.quant.export import BinaryLinearExport
    with pytest.raises(InputError, match="weight_basis"):
        BinaryLinearExport(np.ones((1, 2, 3)), np.ones((2, 1)), np.ones(1), np.zeros((3, 1)), None, "x", "01")
    with pytest.raises(InputError, match="increase strictly"):
        BinaryLinearExport(np.ones((1, 2, 3)), np.ones((2, 1)), np.ones(2), np.ones((3, 2)), None, "01", "01")


def test_onnx_unknown_edgecc_op_is_reported():
    q = small_model("sign")
    buf = io.BytesIO()
    export_onnx(q, (torch.rand(2, 1, 8, 8),), buf)
    model = onnx.load_from_string(buf.getvalue())
    for n in model.graph.node:
        if n.op_type == "BinaryLinear":
            n.op_type = "BinaryMystery"
    with pytest.raises(UnsupportedOpsError, match="BinaryMystery"):
        edgecc.load(model)
