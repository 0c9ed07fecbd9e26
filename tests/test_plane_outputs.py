"""Binary layers that write the next binary layer's bit-planes (passes/plane_outputs.py,
codegen `_emit_binary`): compiled with plane links == interpreter == compiled without,
and the cases that must stay float say why in model.json."""
from __future__ import annotations


import numpy as np
import pytest
import torch
import torch.nn as nn

import edgecc
import edgecc.runtime
from edgecc.compiler.codegen import cpp as C
from edgecc.compiler.compile import compile as compile_model
from edgecc.compiler.ir import Graph, Value
from edgecc.compiler.passes import default_pipeline
from edgecc.compiler.passes.plane_outputs import plan_plane_outputs
from edgecc.compiler.quant.convert import sign_convert
from edgecc.compiler.quant.export import exportable
from edgecc.runtime.engine import Engine
from edgecc.runtime.interpreter import interpret


def _compile(graph, path, monkeypatch, planes: bool = True, scheme: str = "pa") -> dict:
    """compile() with plane outputs on (the default) or off."""
    return compile_model(graph, path, scheme=scheme, run_passes=False, plane_outputs=planes)


def _run(path, x) -> np.ndarray:
    return edgecc.runtime.load(path).run(x)[0]


def _layers(meta) -> dict:
    return {layer["node"]: layer for layer in meta["layers"]}


class _Builder:
    """Random binary layers whose float results are exact in float32 (phi and bias are
    multiples of 1/4, thresholds sit half-way between them), so compiled, interpreter
    and reference agree bit for bit, and a threshold is never tied."""

    def __init__(self, name: str, x_shape, seed: int):
        self.rng = np.random.default_rng(seed)
        self.g = Graph(name)
        self.x = self.g.add_input("x", x_shape)

    def thresholds(self, c: int, p: int) -> np.ndarray:
        first = self.rng.integers(-6, 3, (c, 1)) + 0.125
        return (first + 1.5 * np.arange(p)[None, :]).astype(np.float32)

    def binary(self, x: Value, name: str, o: int, m: int, p: int, act="01", wt="01", k=3, t=None, float_phi=False,
               op="binary_conv2d", **attrs) -> Value:
        c = x.shape[1]
        cg = c // attrs.get("groups", 1)
        shape = (m, o, cg, k, k) if op == "binary_conv2d" else (m, o, c)
        wb = self.rng.integers(0, 2, shape).astype(np.int8)
        if wt == "pm1":
            wb = (2 * wb - 1).astype(np.int8)
        if float_phi:
            phi = self.rng.standard_normal((o, m, p)).astype(np.float32)
        else:
            phi = (self.rng.integers(-3, 4, (o, m, p)) / 4).astype(np.float32)
        t = self.thresholds(c, p) if t is None else t
        ins = [x, Graph.constant(f"{name}.wb", wb), Graph.constant(f"{name}.phi", phi),
               Graph.constant(f"{name}.t", t), Graph.constant(f"{name}.bias", (self.rng.integers(-4, 5, o) / 4)
                                                              .astype(np.float32))]
        if op == "binary_conv2d":
            attrs.setdefault("pads", (1, 1, 1, 1) if k == 3 else (0, 0, 0, 0))
        return self.g.add_node(op, ins, dict(attrs, act_basis=act, weight_basis=wt), name=name).outputs[0]

    def input(self) -> np.ndarray:
        return (3 * self.rng.standard_normal(self.x.shape)).astype(np.float32)


# (act, weight, M/P per layer, strides, pads, groups): every layer feeds the next one only.
CHAINS = {
    "01_01_mp": ("01", "01", [(1, 1), (2, 3), (3, 2)], [(1, 1), (2, 1), (1, 1)], None, 1),
    "pm1_pm1": ("pm1", "pm1", [(1, 1), (2, 1), (3, 1)], [(1, 1), (1, 2), (1, 1)], None, 1),
    "01x_pm1w": ("01", "pm1", [(2, 2), (1, 3), (3, 1)], [(2, 2), (1, 1), (1, 1)], (1, 0, 2, 1), 1),
    "pm1x_01w_groups": ("pm1", "01", [(1, 1), (2, 1), (1, 1)], [(1, 1), (1, 1), (2, 2)], None, 2),
}


@pytest.mark.parametrize("case", sorted(CHAINS))
def test_chain_fused_equals_interpreter_and_unfused(case, tmp_path, monkeypatch):
    act, wt, mps, strides, pads, groups = CHAINS[case]
    b = _Builder(f"chain_{case}", (2, 64, 9, 10), seed=len(case))
    y = b.x
    channels = [64, 64, 33 if groups == 1 else 64]
    for i, ((m, p), s, c_out) in enumerate(zip(mps, strides, channels)):
        kw = dict(strides=s, groups=groups if i < 2 else 1)
        if pads is not None:
            kw["pads"] = pads
        y = b.binary(y, f"l{i}", c_out, m, p if act == "01" else 1, act, wt, **kw)
    # two readers of l2 with one threshold table: an exact one (integer part, bit-exact
    # against the interpreter) and one with a float phi epilogue (within float rounding)
    t = b.thresholds(y.shape[1], 1)
    exact = b.binary(y, "exact", 20, 2, 1, act, wt, t=t)
    y = b.binary(y, "last", 20, 2, 1, act, wt, t=t.copy(), float_phi=True)
    b.g.outputs = [exact, y]
    x = b.input()
    fused = _compile(b.g, tmp_path / "fused", monkeypatch)
    plain = _compile(b.g, tmp_path / "plain", monkeypatch, planes=False)
    got, got_plain = edgecc.runtime.load(tmp_path / "fused").run(x), edgecc.runtime.load(tmp_path / "plain").run(x)
    ref = interpret(b.g, x)
    for a, b_, r in zip(got, got_plain, ref):
        np.testing.assert_array_equal(a, b_)            # the same bits reach every layer
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-5, atol=1e-5 * np.abs(ref[1]).max())
    for isa, threads in (("scalar", 1), ("avx2", 2), ("", 2)):   # every epilogue, threads sharing words
        monkeypatch.setenv("EDGECC_ISA", isa)
        got_isa = edgecc.runtime.load(tmp_path / "fused", threads=threads).run(x)
        np.testing.assert_array_equal(got_isa[0], ref[0])
        np.testing.assert_allclose(got_isa[1], ref[1], rtol=1e-5, atol=1e-5 * np.abs(ref[1]).max())
    monkeypatch.delenv("EDGECC_ISA")
    engine = Engine(b.g)                 # the Python engine takes the same links
    assert len(engine.planes.links) == 3
    for a, b_ in zip(engine(x), Engine(b.g, plane_outputs=False)(x)):
        np.testing.assert_array_equal(a, b_)
    layers = _layers(fused)
    for name, nxt in (("l0", "l1"), ("l1", "l2"), ("l2", "exact, last")):
        assert layers[name]["kernel"].endswith(f"of {nxt}"), layers[name]["kernel"]
        assert "writes their planes" in layers[name]["why"]
    for name, prev in (("l1", "l0"), ("l2", "l1"), ("exact", "l2"), ("last", "l2")):
        assert f"written by {prev}" in layers[name]["kernel"]
    assert "graph output" in layers["last"]["why"]
    assert all("-> float" in layer["kernel"] for layer in plain["layers"])
    assert all("plane outputs disabled" in layer["why"] for layer in plain["layers"])
    assert fused["memory_plan"]["arena_bytes"] < plain["memory_plan"]["arena_bytes"]   # no float tensors


def test_linear_chain(tmp_path, monkeypatch):
    b = _Builder("linear_chain", (3, 70), seed=5)
    h = b.binary(b.x, "fc1", 40, 2, 3, op="binary_linear")
    h = b.binary(h, "fc2", 17, 1, 2, wt="pm1", op="binary_linear")
    y = b.binary(h, "fc3", 5, 3, 1, act="pm1", wt="pm1", op="binary_linear")
    b.g.outputs = [y]
    x = b.input()
    meta = _compile(b.g, tmp_path / "m", monkeypatch)
    ref = interpret(b.g, x)[0]
    np.testing.assert_array_equal(_run(tmp_path / "m", x), ref)
    np.testing.assert_array_equal(Engine(b.g)(x)[0], ref)
    layers = _layers(meta)
    assert layers["fc1"]["kernel"].endswith("of fc2") and layers["fc2"]["kernel"].endswith("of fc3")


def test_refused_links_say_why(tmp_path, monkeypatch):
    """A residual add, readers with different thresholds, a graph output that a binary
    layer also reads: float output, and model.json says why. Readers that share one
    threshold table are fed from one set of planes."""
    b = _Builder("refused", (2, 40, 8, 8), seed=11)
    a = b.binary(b.x, "a", 40, 2, 2)
    r1 = b.binary(a, "r1", 40, 1, 2)                       # a: read by r1 and by the add
    added = b.g.add_node("add", [a, r1], {}, name="res").outputs[0]
    t_shared = b.thresholds(40, 2)
    s = b.binary(added, "s", 24, 2, 1)
    u1 = b.binary(s, "u1", 16, 1, 2, t=t_shared[:24])      # s: two readers, equal thresholds
    u2 = b.binary(s, "u2", 16, 2, 2, t=t_shared[:24].copy(), act="01", wt="pm1", k=1)
    d1 = b.binary(u1, "d1", 16, 1, 1)                      # u1: two readers, different thresholds
    d2 = b.binary(u1, "d2", 16, 1, 1)
    out = b.binary(u2, "o", 16, 1, 1)                      # u2 -> o, but u2 is also a graph output
    b.g.outputs = [d1, d2, out, u2]
    x = b.input()
    meta = _compile(b.g, tmp_path / "m", monkeypatch)
    got = edgecc.runtime.load(tmp_path / "m").run(x)
    for g_out, e_out, ref in zip(got, Engine(b.g)(x), interpret(b.g, x)):
        np.testing.assert_array_equal(g_out, ref)
        np.testing.assert_array_equal(e_out, ref)
    layers = _layers(meta)
    assert "read as floats by res (add)" in layers["a"]["why"]
    assert "read as floats by res (add)" in layers["r1"]["why"]
    assert layers["s"]["kernel"].endswith("of u1, u2") and "written by s" in layers["u2"]["kernel"]
    assert "different thresholds" in layers["u1"]["why"]
    assert "graph output" in layers["u2"]["why"]
    plan = plan_plane_outputs(b.g)
    assert [n.name for n in (link.producer for link in plan.links.values())] == ["s"]


def test_digits_pa_same_logits_and_metadata(tmp_path, monkeypatch):
    """The bundled PA(4,5) digits network: plane links change no logit."""
    from edgecc.zoo import digits as D
    _, _, xte, _ = D.load_digits_split()
    pa = D.load_bundled("pa45")
    x = xte[:64]
    graph = edgecc.load(exportable(pa), (x,))
    default_pipeline().run(graph)
    x = x.numpy()
    fused = _compile(graph, tmp_path / "fused", monkeypatch)
    _compile(graph, tmp_path / "plain", monkeypatch, planes=False)
    logits = _run(tmp_path / "fused", x)
    np.testing.assert_array_equal(logits, _run(tmp_path / "plain", x))
    engine = Engine(graph)(x)[0]
    np.testing.assert_allclose(logits, engine, rtol=1e-5, atol=1e-5 * np.abs(engine).max())
    writers = [layer["node"] for layer in fused["layers"] if "writes their planes" in layer["why"]]
    readers = [layer["node"] for layer in fused["layers"] if "activation plane(s) written by" in layer["kernel"]]
    assert len(writers) == len(readers) == 3          # the three conv -> conv pairs of the residual blocks
    binary = [layer for layer in fused["layers"] if layer["op"] == "binary_conv2d"]
    assert all("float output: read as floats by" in layer["why"] for layer in binary
               if layer["node"] not in writers)


class _SignNet(nn.Module):
    """Bi-Real-style: float stem, sign convs (one grouped) with BN in between, a residual."""

    def __init__(self):
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64)
        self.c1, self.bn1 = nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64)
        self.c2, self.bn2 = nn.Conv2d(64, 64, 3, stride=2, padding=1, groups=2), nn.BatchNorm2d(64)
        self.c3, self.bn3 = nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64)
        self.fc1 = nn.Linear(64, 48)
        self.fc = nn.Linear(48, 10)

    def forward(self, x):
        x = self.bn0(self.stem(x))
        y = self.bn1(self.c1(x))
        z = self.c2(y)
        z = z + self.c3(self.bn2(z))
        h = self.fc1(torch.flatten(nn.functional.adaptive_avg_pool2d(self.bn3(z), 1), 1))
        return self.fc(h)


def test_sign_net_compiles_on_binary_kernels(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = _SignNet()
    with torch.no_grad():
        for bn in (net.bn0, net.bn1, net.bn2, net.bn3):   # positive scales: BN folds into thresholds
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_()
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
    sign = sign_convert(net)
    with torch.no_grad():
        for mod in sign.modules():
            if hasattr(mod, "aq"):
                mod.aq.threshold.normal_(0.0, 0.3)
    sign.eval()
    x = torch.randn(2, 3, 12, 12)
    graph = edgecc.load(exportable(sign), (x,))
    default_pipeline().run(graph)
    binary = [n for n in graph.nodes if n.op in C.BINARY_OPS]
    assert len(binary) == 4 and all(n.attrs["weight_basis"] == n.attrs["act_basis"] == "pm1" for n in binary)
    xn = x.numpy()
    fused = _compile(graph, tmp_path / "fused", monkeypatch, scheme="binary")
    _compile(graph, tmp_path / "plain", monkeypatch, planes=False, scheme="binary")
    y = _run(tmp_path / "fused", xn)
    np.testing.assert_array_equal(y, _run(tmp_path / "plain", xn))
    ref = interpret(graph, xn)[0]
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    with torch.no_grad():
        np.testing.assert_allclose(y, sign(x).numpy(), rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    layers = _layers(fused)
    kernels = [layers[n.name]["kernel"] for n in binary]
    assert all(k.startswith("binary engine") and "+-1 weight plane" in k for k in kernels)
    assert any("writes their planes" in layers[n.name]["why"] for n in binary)   # c1 -> c2
