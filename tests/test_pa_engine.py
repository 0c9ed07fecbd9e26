"""The digits PA models (bundled), an ABC-Net and a sign-binarized model (fine-tuned
briefly here) on EVERY digits test image (split of benchmarks/pa_digits.py): edgecc's
binary engine (edgecc.runtime.engine.run) and the reference interpreter give the
PyTorch eval-mode predictions and logits, through torch.export and through ONNX.

Logits are compared at 1e-4 of each image's logit scale. The float layers feeding a
binary layer round differently from PyTorch (summation order), so an activation that
lies within float noise of a threshold (a "tie") can land in the neighbouring plane;
images with a tie must still give the same prediction, and ties must be rare."""
import io

import numpy as np
import onnx
import pytest
import torch

import edgecc
from edgecc.compiler.quant.calibration import calibrate, constrain_
from edgecc.compiler.quant.convert import abc_convert, binary_layers, sign_convert
from edgecc.compiler.quant.export import BinaryConv2dExport, BinaryLinearExport, export_onnx, exportable
from edgecc.errors import EdgeccError, InputError
from edgecc.runtime.engine import Engine, run
from edgecc.zoo import digits as D

TIE_BAND = 1e-5          # |x - t| below this: float noise may move x across t
MAX_TIE_IMAGES = 5       # of 450 (about 1%)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    return D.load_digits_split()


def _finetuned(kind, data):
    xtr, ytr, xte, _ = data
    f = D.load_bundled("float")
    torch.manual_seed(1)
    q = abc_convert(f, 2, 3) if kind == "abc23" else sign_convert(f)
    calibrate(q, [xtr[:512]])
    D.train(q, xtr, ytr, epochs=3, lr=1e-3, seed=1, after_step=constrain_)
    return _untie(q.eval(), xte)


@torch.no_grad()
def _untie(q, x):
    """Move activation thresholds up in steps of 4 * TIE_BAND until no test activation
    lies within TIE_BAND of one (layer by layer, in execution order), so the comparison
    of these fine-tuned models needs no tie allowance. Still a valid ABC / sign model."""
    for layer in binary_layers(q).values():
        seen = []
        hook = layer.register_forward_hook(lambda m, i, o: seen.append(i[0]))
        q(x)
        hook.remove()
        a = seen[0]
        thr = layer.aq.theta if hasattr(layer.aq, "theta") else layer.aq.threshold
        flat = thr.view(-1)
        per_channel = flat.numel() == a.shape[1] and not hasattr(layer.aq, "theta")
        for k in range(flat.numel()):
            vals = a[:, k] if per_channel else a
            while bool(((vals - flat[k]).abs() <= TIE_BAND).any()):
                flat[k] += 4 * TIE_BAND
    return q


MODELS = ["pa45", "pa23", "abc23", "sign"]


@pytest.fixture(scope="module")
def models(data):
    torch.set_num_threads(1)   # module fixtures run before the per-test one_torch_thread
    return {"pa45": D.load_bundled("pa45"), "pa23": D.load_bundled("pa23"),
            "abc23": _finetuned("abc23", data), "sign": _finetuned("sign", data)}


def torch_layer_inputs(exported, x) -> dict:
    """module path -> (input of that binary layer in PyTorch, its thresholds t [C, P])."""
    seen, hooks = {}, []
    for name, mod in exported.named_modules():
        if isinstance(mod, (BinaryConv2dExport, BinaryLinearExport)):
            hooks.append(mod.register_forward_hook(
                lambda m, i, o, name=name: seen.__setitem__(name, (i[0].numpy(), m.t.numpy()))))
    with torch.no_grad():
        exported(x)
    for h in hooks:
        h.remove()
    return seen


def run_with_layer_inputs(execute, g, x):
    """(logits, module path -> input of that binary node) from one run of `execute`."""
    binary = [n for n in g.nodes if n.op.startswith("binary_")]
    outputs = g.outputs
    g.outputs = outputs + [n.inputs[0] for n in binary]
    try:
        res = execute(g, x)
    finally:
        g.outputs = outputs
    return res[0], {n.meta["module"]: a for n, a in zip(binary, res[len(outputs):])}


def tie_images(torch_inputs, ours) -> np.ndarray:
    """bool [N]: images where some binary-layer input falls into another plane than in
    PyTorch. Walking the layers in execution order, every such element of an image
    without an earlier tie must be a tie itself (within TIE_BAND of a threshold); after
    a tie the image's later activations legitimately differ by more."""
    ties = None
    for name, (a, t) in torch_inputs.items():      # insertion order = execution order
        b = ours[name]
        if ties is None:
            ties = np.zeros(len(a), dtype=bool)
        shp = (1, -1) + (1,) * (a.ndim - 2)
        new = np.zeros(len(a), dtype=bool)
        for j in range(t.shape[1]):
            tj = t[:, j].reshape(shp)
            differ = ((a >= tj) != (b >= tj)) & ~ties.reshape((-1,) + (1,) * (a.ndim - 1))
            assert np.all(np.abs(a - tj)[differ] <= TIE_BAND), f"{name}: a plane differs far from a threshold"
            new |= differ.reshape(len(a), -1).any(1)
        ties |= new
    return ties


def assert_matches_pytorch(y, ref, ties):
    assert np.array_equal(y.argmax(1), ref.argmax(1)), "a prediction differs from PyTorch"
    scale = np.abs(ref).max(axis=1)
    err = np.abs(y - ref).max(axis=1) / scale
    assert ties.sum() <= MAX_TIE_IMAGES, f"{ties.sum()} images with threshold ties"
    assert np.all(err[~ties] <= 1e-4), f"max relative logit error {err[~ties].max():.2e}"


@pytest.mark.parametrize("name", MODELS)
def test_digits_engine_and_interpreter_match_pytorch(models, data, name):
    q = models[name]
    x = data[2]
    with torch.no_grad():
        ref = q(x).numpy()
    exported = exportable(q)
    expected = torch_layer_inputs(exported, x)
    g = edgecc.load(exported, (x,))
    assert sum(n.op == "binary_conv2d" for n in g.nodes) == 7
    for execute in (lambda g, x: run(g, x, threads=1), edgecc.interpret):
        y, inputs = run_with_layer_inputs(execute, g, x.numpy())
        ties = tie_images(expected, inputs)
        assert_matches_pytorch(y, ref, ties)
        if name in ("pa45", "abc23", "sign"):   # no activation near a threshold: no tie allowance
            assert not ties.any()


@pytest.mark.parametrize("name", ["pa23", "abc23"])
def test_digits_onnx_route_equals_torch_route(models, data, name):
    q = models[name]
    x = data[2]
    buf = io.BytesIO()
    export_onnx(q, (x[:1],), buf)
    model = onnx.load_from_string(buf.getvalue())
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "n"
    g_onnx = edgecc.load(model, input_shapes={"input0": tuple(x.shape)})
    g_torch = edgecc.load(exportable(q), (x,))
    a = run(g_onnx, x.numpy(), threads=1)[0]
    b = run(g_torch, x.numpy(), threads=1)[0]
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("isa", ["scalar", "avx2", ""])
def test_engine_isa_paths_agree(models, data, isa):
    g = edgecc.load(exportable(models["abc23"]), (data[2][:64],))
    x = data[2][:64].numpy()
    base = edgecc.interpret(g, x)[0]
    y = run(g, x, threads=1, isa=isa)[0]
    np.testing.assert_allclose(y, base, rtol=1e-5, atol=1e-5 * np.abs(base).max())


def test_engine_errors_name_the_node():
    g = edgecc.compiler.ir.Graph(name="bad")
    x = g.add_input("x", (1, 4))
    wb = g.constant("wb", np.zeros((1, 2, 4), np.int8))            # zeros are not +-1
    phi = g.constant("phi", np.ones((2, 1, 1), np.float32))
    t = g.constant("t", np.zeros((4, 1), np.float32))
    n = g.add_node("binary_linear", [x, wb, phi, t], {"weight_basis": "pm1", "act_basis": "pm1"}, name="fc")
    g.outputs = [n.outputs[0]]
    with pytest.raises(InputError, match="'fc'.*outside"):
        Engine(g)
    with pytest.raises(InputError, match="threads"):
        Engine(g, threads=-1)
    wb.data[...] = 1
    with pytest.raises(InputError, match="expected shape"):
        run(g, np.zeros((2, 4), np.float32))
    with pytest.raises(EdgeccError):
        run(g, np.zeros((1, 4), np.float32), isa="sse")
