"""DACNN compiled: the one conv weight shared by L layers is stored once in the weights
section, about L times less than a twin whose layers each have their own copy, and the
compile summary says so. From the torch.export import (the shared parameter is one
constant) and from the ONNX import (the exporter bakes each layer's BN into its own
rescaled copy; discover_shared_weights, in the default pipeline, finds them again).
"""
from __future__ import annotations

import copy
import io
import warnings

import numpy as np
import onnx
import pytest
import torch

import edgecc
import edgecc.runtime
from edgecc.compiler.compile import compile as compile_model
from edgecc.compiler.compile import format_summary
from edgecc.zoo import dacnn

DEPTH, CHANNELS = 10, 48
L = DEPTH - 2                                    # plain DACNN: conv, L shared layers, FC
W_BYTES = CHANNELS * CHANNELS * 3 * 3 * 4        # the shared 3x3 weight in fp32
# Everything else in the section: the stem conv and its bias, the FC, and one epilogue
# per layer (shared: scale + shift vectors; unshared: the folded bias), each entry
# padded to 64 bytes.
OTHER_MAX = 3 * CHANNELS * 9 * 4 + 64 + CHANNELS * 10 * 4 + 64 + L * 2 * CHANNELS * 4 + 64 * (2 * L + 6)


def plain_dacnn():
    torch.manual_seed(0)
    model = dacnn.dacnn_plain(depth=DEPTH, channels=CHANNELS, num_classes=10)
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
    return model.eval()


def unshared_twin(model):
    """Each layer gets its own copy of the shared conv. A copy must really differ (a
    little noise, not a per-channel rescaling), otherwise discover_shared_weights
    would rightly merge the copies again."""
    twin = copy.deepcopy(model)
    layers = [m for m in twin.modules() if isinstance(m, dacnn.SharedConvBNReLU)]
    assert len(layers) == L
    g = torch.Generator().manual_seed(2)
    for layer in layers:
        conv = copy.deepcopy(layer._shared[0])
        with torch.no_grad():
            conv.weight.add_(1e-2 * torch.randn(conv.weight.shape, generator=g))
        layer.own_conv = conv          # registered: a parameter of the twin, as for a real model
        layer._shared = [conv]
    return twin


def onnx_model(model, x):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buf, dynamo=False)
    return onnx.load_from_string(buf.getvalue())


def compiled(model, x, frontend, out):
    graph = edgecc.load(model, (x,)) if frontend == "torch" else edgecc.load(onnx_model(model, x))
    meta = compile_model(graph, out, scheme="fp32")
    (y,) = edgecc.runtime.load(out).run(x.numpy())
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    return meta


@pytest.mark.parametrize("frontend", ["torch", "onnx"])
def test_shared_weight_stored_once(frontend, tmp_path):
    model = plain_dacnn()
    x = torch.randn(1, 3, 16, 16)
    shared = compiled(model, x, frontend, tmp_path / "shared")
    unshared = compiled(unshared_twin(model), x, frontend, tmp_path / "unshared")

    s, u = shared["summary"], unshared["summary"]
    assert s["weights_section_bytes"] == shared["weights"]["bytes"]
    # one copy of the shared weight vs L copies, the rest bounded by OTHER_MAX
    assert W_BYTES <= s["weights_section_bytes"] <= W_BYTES + OTHER_MAX
    assert L * W_BYTES <= u["weights_section_bytes"] <= L * W_BYTES + OTHER_MAX
    ratio = u["weights_section_bytes"] / s["weights_section_bytes"]
    assert 0.8 * L <= ratio <= L, f"unshared / shared weights = {ratio:.2f}, L = {L}"

    (sw,) = s["shared_weights"]
    assert sw["layers"] == L and sw["shape"] == [CHANNELS, CHANNELS, 3, 3] and sw["bytes"] == W_BYTES
    assert u["shared_weights"] == []
    text = format_summary(s)
    assert f"1 constant(s) stored once for {L} layers" in text
    assert f"by {L} layers" in text
    assert "none (every layer has its own weights)" in format_summary(u)
    print(f"\n{frontend}: weights section shared {s['weights_section_bytes']:,} B, unshared "
          f"{u['weights_section_bytes']:,} B, ratio {ratio:.2f} (L = {L})\n{text}")
