"""DACNN: a conv weight shared by L layers stays ONE constant after BN folding (per-layer
scale/shift epilogue), and the sharing is re-discovered in an ONNX export whose constant
folding baked each BN into its own copy of the weight."""
import io

import numpy as np
import onnx
import pytest
import torch

import edgecc
from edgecc.compiler.passes import PassManager, default_pipeline, eliminate_dead_code
from edgecc.compiler.passes.discover_shared_weights import discover_shared_weights, row_scales
from edgecc.compiler.passes.fold_batchnorm_shared import fold_batchnorm_shared_weight
from edgecc.zoo import dacnn


def randomize_bns(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) * 1.5 + 0.25)
                m.bias.copy_(torch.rand(c, generator=g) - 0.5)
    return model.eval()


def assert_close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))


def conv_weights(g, shape):
    """{id: (constant, number of conv2d users)} of conv weights with this shape."""
    out = {}
    for n in g.nodes:
        if n.op == "conv2d" and n.inputs[1].shape == shape:
            w = n.inputs[1]
            out[id(w)] = (w, out.get(id(w), (w, 0))[1] + 1)
    return list(out.values())


MODELS = [("plain10", lambda: dacnn.dacnn_plain(depth=10, channels=8, num_classes=5), 8),
          ("residual18", lambda: dacnn.dacnn_plain(depth=18, channels=8, num_classes=5), 16)]


@pytest.mark.parametrize("name,build,layers", MODELS)
def test_shared_weight_kept_once_with_epilogue(name, build, layers):
    torch.manual_seed(1)
    m = randomize_bns(build(), seed=2)
    x = torch.randn(2, 3, 16, 16)
    want = m(x).detach().numpy()
    g = edgecc.load(m, (x,))
    default_pipeline().run(g)
    # plain folding refuses the shared weight (and says why) ...
    log = [r["message"] for r in g.meta["pass_log"]]
    assert any("is shared by" in msg for msg in log)
    PassManager([fold_batchnorm_shared_weight, eliminate_dead_code]).run(g)
    assert "batch_norm" not in [n.op for n in g.nodes]
    # ... and the shared weight is one constant with L users, each followed by its epilogue
    [(w, users)] = conv_weights(g, (8, 8, 3, 3))
    assert users == layers and w.name == "sections.0.shared.weight"
    epilogues = [n for n in g.nodes if n.meta.get("bn_epilogue")]
    assert len(epilogues) == 2 * layers and {n.op for n in epilogues} == {"mul", "add"}
    assert sum(c.is_constant and c.shape == (8, 8, 3, 3) for c in g.constants()) == 1
    assert_close(edgecc.interpret(g, x.numpy())[0], want)


@pytest.mark.parametrize("name,build,layers", MODELS)
def test_sharing_rediscovered_in_folded_onnx(name, build, layers, ort_run):
    torch.manual_seed(3)
    m = randomize_bns(build(), seed=4)
    x = torch.randn(1, 3, 16, 16)
    f = io.BytesIO()
    torch.onnx.export(m, (x,), f, dynamo=False, do_constant_folding=True)
    model = onnx.load_from_string(f.getvalue())
    assert "BatchNormalization" not in [n.op_type for n in model.graph.node]  # folded copies
    g = edgecc.load(model)
    copies = conv_weights(g, (8, 8, 3, 3))
    assert len(copies) == layers and all(u == 1 for _, u in copies)
    assert PassManager([discover_shared_weights, eliminate_dead_code]).run(g)
    [(w, users)] = conv_weights(g, (8, 8, 3, 3))
    assert users == layers
    g = edgecc.load(model)
    default_pipeline().run(g)          # the default pipeline re-discovers sharing too
    [(w, users)] = conv_weights(g, (8, 8, 3, 3))
    assert users == layers
    assert sum(c.shape == (8, 8, 3, 3) for c in g.constants()) == 1
    want = ort_run(model, {model.graph.input[0].name: x.numpy()})[0]
    assert_close(edgecc.interpret(g, x.numpy())[0], want)
    assert_close(want, m(x).detach().numpy())


def test_unrelated_weights_not_merged():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 4, 3, 3))
    assert row_scales(rng.standard_normal((6, 4, 3, 3)), a) is None
    s = rng.uniform(0.1, 2.0, 6)
    b = (a * s[:, None, None, None]).astype(np.float32)
    np.testing.assert_allclose(row_scales(b, a.astype(np.float32)), s, rtol=1e-6)
    b[2, 1, 1, 1] *= 1.001  # one weight off: not a rescaled copy
    assert row_scales(b, a.astype(np.float32)) is None
