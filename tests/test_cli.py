"""The edgecc CLI: inspect/import on .onnx and .ecir, exit codes and error messages."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import edgecc
from edgecc.cli import main
from edgecc.compiler.analysis import analyze
from edgecc.compiler.ir import Graph, load, save

RNG = np.random.default_rng(7)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.fixture
def ecir_model(tmp_path):
    """conv(3->4, 3x3, pad 1) + BN + relu + flatten + linear(4*6*6 -> 5); the conv weight
    is also read by a second conv (shared)."""
    g = Graph("net")
    x = g.add_input("x", (1, 3, 6, 6))
    v = g.add_node("conv2d", [x, Graph.constant("w", rand(4, 3, 3, 3))], {"pads": 1},
                   name="conv").outputs[0]
    v = g.add_node("batch_norm", [v] + [Graph.constant(f"bn.{k}", rand(4) if k != "var" else
                                                       np.full(4, 2.0, np.float32))
                                        for k in ("scale", "bias", "mean", "var")],
                   name="bn").outputs[0]
    v = g.add_node("relu", [v], name="relu").outputs[0]
    v = g.add_node("flatten", [v], name="flat").outputs[0]
    v = g.add_node("gemm", [v, Graph.constant("fc.w", rand(5, 144)), Graph.constant("fc.b", rand(5))],
                   {"trans_b": True}, name="fc").outputs[0]
    g.outputs = [v]
    path = tmp_path / "net.ecir"
    save(g, path)
    return path


def test_inspect_table(ecir_model, capsys):
    assert main(["inspect", str(ecir_model)]) == 0
    out = capsys.readouterr().out
    conv_macs = 1 * 4 * 6 * 6 * 3 * 3 * 3
    lines = out.splitlines()
    assert lines[0] == "model net: inputs x[1,3,6,6]; outputs fc[1,5]"
    assert lines[1].split() == ["#", "name", "op", "output", "params", "MACs"]
    assert lines[2].split() == ["0", "conv", "conv2d", "[1,4,6,6]", "108", f"{conv_macs:,}"]
    assert lines[6].split() == ["4", "fc", "gemm", "[1,5]", "725", f"{5 * 144:,}"]
    params = 108 + 16 + 725
    assert f"params: {params:,}" in out
    assert f"MACs: {conv_macs + 720:,}" in out


def test_inspect_json_and_passes(ecir_model, capsys):
    assert main(["inspect", str(ecir_model), "--json", "--passes"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [layer["op"] for layer in doc["layers"]] == ["conv2d", "relu", "flatten", "gemm"]
    assert doc["total_params"] == 108 + 4 + 725
    assert doc["total_macs"] == 1 * 4 * 36 * 27 + 720
    assert doc["pass_log"] == [{"pass": "fold_batchnorm", "message": "folded bn into conv"}]
    assert main(["inspect", str(ecir_model), "--passes"]) == 0
    assert "[fold_batchnorm] folded bn into conv" in capsys.readouterr().out


def test_import_runs_passes_and_keeps_numerics(ecir_model, tmp_path, capsys):
    out = tmp_path / "out.ecir"
    assert main(["import", str(ecir_model), "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    g0, g1 = load(ecir_model), load(out)
    assert "batch_norm" not in [n.op for n in g1.nodes]
    x = rand(1, 3, 6, 6)
    want = edgecc.interpret(g0, x)[0]
    np.testing.assert_allclose(edgecc.interpret(g1, x)[0], want, rtol=1e-5,
                               atol=1e-5 * np.abs(want).max())
    assert main(["import", str(ecir_model), "-o", str(out), "--no-passes"]) == 0
    assert [n.op for n in load(out).nodes] == [n.op for n in g0.nodes]


def onnx_model(path, batch="N"):
    """Conv+BN+Relu+GlobalAveragePool+Flatten+Gemm with a symbolic batch dim."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(a, n) for n, a in [
        ("w", rand(8, 3, 3, 3)), ("b", rand(8)), ("s", rand(8)), ("bb", rand(8)),
        ("m", rand(8)), ("v", RNG.uniform(0.5, 2, 8).astype(np.float32)),
        ("fw", rand(10, 8)), ("fb", rand(10))]]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1],
                         strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"], name="bn"),
        helper.make_node("Relu", ["n"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "onnxnet", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, str(path))
    return path


def test_onnx_inspect_and_import_match_onnxruntime(tmp_path, capsys):
    pytest.importorskip("edgecc.compiler.frontends.onnx")
    ort = pytest.importorskip("onnxruntime")
    path = onnx_model(tmp_path / "m.onnx")
    assert main(["inspect", str(path)]) == 1  # batch dim 'N' is symbolic
    err = capsys.readouterr().err
    assert "symbolic dim 'N'" in err and "--input-shape NAME=D1,D2" in err
    assert main(["inspect", str(path), "--json", "--input-shape", "x=2,3,8,8"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["inputs"] == {"x": [2, 3, 8, 8]}
    assert doc["total_macs"] == 2 * 8 * 4 * 4 * 27 + 2 * 10 * 8

    out = tmp_path / "m.ecir"
    assert main(["import", str(path), "-o", str(out), "--input-shape", "x=2,3,8,8"]) == 0
    g = load(out)
    assert "batch_norm" not in [n.op for n in g.nodes]
    x = rand(2, 3, 8, 8)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    np.testing.assert_allclose(edgecc.interpret(g, x)[0], want, rtol=1e-4, atol=1e-5)


def test_subprocess_python_m_edgecc(ecir_model):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(edgecc.__file__)))
    r = subprocess.run([sys.executable, "-m", "edgecc", "inspect", str(ecir_model)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "conv2d" in r.stdout and "MACs:" in r.stdout
    r = subprocess.run([sys.executable, "-m", "edgecc", "inspect", "missing.ecir"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1
    assert r.stderr == "edgecc: error: missing.ecir: no such file\n"


@pytest.mark.parametrize("argv,msg", [
    ([], "the following arguments are required: COMMAND"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["inspect"], "the following arguments are required: MODEL"),
    (["inspect", "m.onnx", "--input-shape", "x=1,a"], "--input-shape 'x=1,a': expected NAME="),
    (["inspect", "m.onnx", "--input-shape", "1,3"], "expected NAME=D1,D2"),
    (["inspect", "m.onnx", "--input-shape", "x=1", "--input-shape", "x=2"], "given twice"),
    (["inspect", "m.ecir", "--input-shape", "x=1"], "applies to .onnx models only"),
    (["import", "m.ecir"], "the following arguments are required: -o"),
    (["import", "m.ecir", "-o", "/nonexistent_dir_xyz/o.ecir"], "does not exist"),
])
def test_usage_errors_exit_2(argv, msg, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "edgecc: error: " in err and msg in err
    assert "Traceback" not in err


def test_model_errors_exit_1_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.ecir"
    bad.write_bytes(b"garbage")
    assert main(["inspect", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("edgecc: error: ") and "corrupt or truncated" in err
    assert "Traceback" not in err
    assert main(["inspect", str(tmp_path / "m.txt")]) == 1
    assert "no such file" in capsys.readouterr().err
    other = tmp_path / "m.txt"
    other.write_text("x")
    assert main(["inspect", str(other)]) == 1
    assert "unknown model file type '.txt'" in capsys.readouterr().err
    assert main(["inspect", str(bad), "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("edgecc: error: ")


def test_help_and_version(capsys):
    assert main(["--help"]) == 0
    assert "inspect" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"edgecc {edgecc.__version__}"


def test_analysis_counts_shared_constant_once():
    g = Graph("s")
    x = g.add_input("x", (1, 2, 3, 3))
    w = Graph.constant("w", rand(2, 2, 1, 1))
    v = g.add_node("conv2d", [x, w], name="c1").outputs[0]
    g.outputs = [g.add_node("conv2d", [v, w], name="c2").outputs[0]]
    a = analyze(g)
    assert [layer.params for layer in a.layers] == [4, 4]
    assert [layer.shared_params for layer in a.layers] == [["w"], ["w"]]
    assert a.total_params == 4 and a.total_macs == 2 * (2 * 9 * 2)
    assert "4 (shared)" in str(a)
    b = Graph("mm")
    p = b.add_input("p", (2, 3, 4))
    q = b.add_input("q", (4, 5))
    b.outputs = [b.add_node("matmul", [p, q], name="mm").outputs[0]]
    assert analyze(b).total_macs == 2 * 3 * 5 * 4
