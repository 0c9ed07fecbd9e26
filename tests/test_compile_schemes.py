"""`edgecc compile` schemes and options end to end through the CLI: int8 with calibration
data from an .npz, per-layer overrides, a torch.export archive as input, post-training
PA of a float model, and `edgecc run --profile`. Compiled results are checked against the
reference interpreter on the graph the compiler recorded (src/model.ecir)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

import edgecc
import edgecc.runtime
from edgecc.cli import main as cli
from edgecc.compiler.ir import load as load_ecir
from edgecc.errors import InputError
from tests.models import randomize_batch_norms


class BnNet(nn.Module):
    """conv-bn-relu x3 with a residual add, then the classifier."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.c2, self.b2 = nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.c3, self.b3 = nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        x = torch.relu(self.b2(self.c2(x)) + x)
        x = torch.relu(self.b3(self.c3(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    torch.manual_seed(0)
    model = randomize_batch_norms(BnNet()).eval()
    d = tmp_path_factory.mktemp("schemes")
    x = torch.randn(2, 3, 12, 12)
    torch.export.save(torch.export.export(model, (x,)), str(d / "net.pt2"))
    calib = torch.randn(8, 3, 12, 12).numpy()
    np.savez(d / "calib.npz", x=calib)
    return d, model, x.numpy()


def _compiled_vs_recorded_graph(out, x):
    """The library equals the interpreter on the exact graph it was generated from."""
    graph = load_ecir(out / "src" / "model.ecir")
    got = edgecc.runtime.load(out).run(x)[0]
    want = edgecc.interpret(graph, x)[0]
    return got, want, graph


def test_int8_from_archive_with_npz_calibration_and_overrides(archive, capsys):
    d, model, x = archive
    overrides = {"layers": {"conv2d_1": {"kernel": "dfnt"}, "conv2d_2": {"precision": "fp32"}}}
    (d / "over.json").write_text(json.dumps(overrides))
    out = d / "int8"
    assert cli(["compile", str(d / "net.pt2"), "--scheme", "int8", "--calib", str(d / "calib.npz"),
                "--override", str(d / "over.json"), "--no-onednn", "-o", str(out)]) == 0
    got, want, graph = _compiled_vs_recorded_graph(out, x)
    # qconv layers are bit-exact (tests/test_compile_int.py); the fp32 conv and classifier
    # sum in another order than the float64 reference
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    ops = {n.name: n.op for n in graph.nodes}
    assert ops["conv2d"] == ops["conv2d_1"] == "qconv2d" and ops["conv2d_2"] == "conv2d"
    meta = json.loads((out / "model.json").read_text())
    layers = {layer["node"]: layer for layer in meta["layers"]}
    assert "dfnt" in layers["conv2d_1"]["kernel"].lower() or "fall" in layers["conv2d_1"]["why"]
    assert meta["source"]["format"] == "pt" and meta["options"]["overrides"]["fp32"] == ["conv2d_2"]
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.5 and np.abs(got - ref).max() < 0.5 * np.abs(ref).max()


def test_unknown_override_names_are_listed(archive, capsys):
    d, _, _ = archive
    (d / "bad.json").write_text(json.dumps({"layers": {"nope": {"precision": "fp32"}}}))
    assert cli(["compile", str(d / "net.pt2"), "--scheme", "int8", "--calib", str(d / "calib.npz"),
                "--override", str(d / "bad.json"), "-o", str(d / "never")]) == 1
    err = capsys.readouterr().err
    assert "nope" in err and "conv2d" in err
    assert not (d / "never").exists()
    (d / "bad.json").write_text(json.dumps({"layers": {"conv2d": {"kernel": "winograd"}}}))
    assert cli(["compile", str(d / "net.pt2"), "--scheme", "int8", "--calib", str(d / "calib.npz"),
                "--override", str(d / "bad.json"), "-o", str(d / "never")]) == 1
    assert "winograd" in capsys.readouterr().err


def test_calibration_data_is_checked(archive):
    d, _, _ = archive
    np.savez(d / "wrong.npz", x=np.zeros((8, 3, 10, 10), np.float32))
    with pytest.raises(InputError, match=r"\[N, 3, 12, 12\]"):
        edgecc.compile(str(d / "net.pt2"), d / "never", scheme="int8", calib=str(d / "wrong.npz"))
    with pytest.raises(InputError, match="at least one batch"):
        edgecc.compile(str(d / "net.pt2"), d / "never", scheme="int8", calib=np.zeros((1, 3, 12, 12)))


def test_post_training_pa_of_a_float_model_and_profile(archive, capsys):
    d, _, x = archive
    out = d / "pa"
    assert cli(["compile", str(d / "net.pt2"), "--scheme", "pa", "--pa", "2,3", "--calib",
                str(d / "calib.npz"), "--no-onednn", "-o", str(out)]) == 0
    got, want, graph = _compiled_vs_recorded_graph(out, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    binary = [n for n in graph.nodes if n.op == "binary_conv2d"]
    assert len(binary) == 2 and all(n.inputs[1].shape[0] == 2 for n in binary)   # first conv stays float
    np.save(d / "x.npy", x)
    capsys.readouterr()
    assert cli(["run", str(out), "--input", str(d / "x.npy"), "--profile", "3"]) == 0
    text = capsys.readouterr().out
    assert "binary_conv2d" in text and "total of medians" in text


def test_digits_int8_compiled_keeps_float_accuracy(tmp_path):
    """The bundled float digits CNN compiled int8 (calibrated on 300 training images):
    test-set accuracy within 1 point of the float model."""
    from edgecc.zoo import digits as D
    xtr, _, xte, yte = D.load_digits_split()
    model = D.load_bundled("float")
    graph = edgecc.load(model, (xte[:150],))
    edgecc.compile(graph, tmp_path / "int8", scheme="int8", calib=xtr[:300].numpy(), onednn=False)
    lib = edgecc.runtime.load(tmp_path / "int8")
    logits = np.concatenate([lib.run(xte[i:i + 150].numpy())[0] for i in range(0, 450, 150)])
    with torch.no_grad():
        ref = model(xte).numpy()
    y = yte.numpy()
    acc_int8, acc_float = (logits.argmax(1) == y).mean(), (ref.argmax(1) == y).mean()
    assert acc_float > 0.95 and acc_int8 >= acc_float - 0.01, (acc_int8, acc_float)
