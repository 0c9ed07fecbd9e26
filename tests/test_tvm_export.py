"""TVM-built artifacts (edgecc.compiler.codegen.tvm_export) loaded by edgecc.runtime
(runtime.compiled.load dispatches "backend": "tvm" to runtime.tvm_artifact)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

tvm = pytest.importorskip("tvm", reason="apache-tvm is not installed (pip install apache-tvm==0.27.0.post1)")

from edgecc.compiler.codegen.tvm_export import export  # noqa: E402
from edgecc.compiler.ir import Graph  # noqa: E402
from edgecc.errors import EdgeccError, InputError, ModelLoadError  # noqa: E402
from edgecc.runtime.compiled import load  # noqa: E402
from edgecc.runtime.engine import Engine  # noqa: E402
from edgecc.runtime.tvm_artifact import TvmArtifactModel  # noqa: E402
from test_tvm_binary import digits_graph  # noqa: E402,F401  (module fixture: the PA(4,5) digits model)

NVCC = shutil.which("nvcc")


def _one_plane_graph(wbasis: str, abasis: str, plane: tuple[int, int], seed: int = 5):
    """A binary conv whose phi selects one (basis, plane) pair and no bias: its float
    output is that pair's integer counts, so the whole artifact path compares exactly."""
    rng = np.random.default_rng(seed)
    m, p, c, o = 2, 3, 45, 10
    wb = rng.integers(0, 2, size=(m, o, c, 3, 3)).astype(np.int8)
    if wbasis == "pm1":
        wb = (2 * wb - 1).astype(np.int8)
    phi = np.zeros((o, m, p), np.float32)
    phi[:, plane[0], plane[1]] = 1.0
    t = np.sort(rng.normal(size=(c, p)), axis=1).astype(np.float32)
    g = Graph(f"plane_{wbasis}_{abasis}")
    x = g.add_input("x", (2, c, 7, 6))
    attrs = dict(strides=(1, 2), pads=(1, 1, 1, 0), weight_basis=wbasis, act_basis=abasis)
    y = g.add_node("binary_conv2d", [x, Graph.constant("wb", wb), Graph.constant("phi", phi),
                                     Graph.constant("t", t)], attrs, name="bconv").outputs[0]
    g.outputs = [y]
    return g, rng.normal(size=(2, c, 7, 6)).astype(np.float32)


@pytest.mark.parametrize("schedule", ["llvm", "tensorcore", "wgmma"])
@pytest.mark.parametrize("wbasis,abasis,plane", [("01", "01", (1, 2)), ("pm1", "pm1", (0, 1))])
def test_artifact_counts_bit_exact_vs_engine(tmp_path, schedule, wbasis, abasis, plane):
    g, x = _one_plane_graph(wbasis, abasis, plane)
    meta = export(g, tmp_path / "m", "llvm", binary_schedule=schedule)
    assert meta["layers"][0]["schedule"] == {"llvm": "llvm", "tensorcore": "llvm tensor-core emulation",
                                             "wgmma": "llvm wgmma emulation"}[schedule]
    got = load(tmp_path / "m")(x)[0]
    want = Engine(g, threads=1)(x)[0]
    assert np.all(got == np.round(got)) and np.abs(got).max() > 0
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("schedule", ["llvm", "tensorcore"])
def test_pa_digits_llvm_artifact_matches_engine(digits_graph, tmp_path, schedule):  # noqa: F811
    """The bundled PA(4,5) digits model; "tensorcore" runs every binary layer through the
    CPU emulation of the tensor-core kernel."""
    graph, x = digits_graph
    meta = export(graph, tmp_path / "digits", "llvm", binary_schedule=schedule)
    on_disk = json.loads((tmp_path / "digits" / "model.json").read_text())
    assert on_disk == json.loads(json.dumps(meta))
    assert meta["backend"] == "tvm" and meta["target"] == "llvm"
    binary = [d for d in meta["layers"] if d["op"] == "binary_conv2d"]
    want = {"llvm": "llvm", "tensorcore": "llvm tensor-core emulation"}[schedule]
    assert len(binary) >= 6 and {d["schedule"] for d in binary} == {want}
    model = load(tmp_path / "digits")
    assert isinstance(model, TvmArtifactModel)
    assert [d["shape"] for d in model.inputs] == [x.shape]
    logits = model.run(x)[0]
    ref = Engine(graph, threads=1)(x)[0]
    np.testing.assert_array_equal(logits.argmax(1), ref.argmax(1))    # all 450 test images
    np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    with pytest.raises(InputError, match="shape"):
        model.run(x[:3])
    with pytest.raises(InputError, match="dtype"):
        model.run(x.astype(np.float64))
    # a second export replaces the artifact; a damaged library is refused at load time
    export(graph, tmp_path / "digits", "llvm")
    lib = tmp_path / "digits" / "lib.so"
    lib.write_bytes(lib.read_bytes()[:-100])
    with pytest.raises(ModelLoadError, match="SHA-256"):
        load(tmp_path / "digits")


def test_export_refuses_foreign_directory_and_bad_target(tmp_path):
    g, _ = _one_plane_graph("01", "01", (0, 0))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(EdgeccError, match="not empty"):
        export(g, tmp_path / "notes", "llvm")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"
    with pytest.raises(InputError, match="target"):
        export(g, tmp_path / "m", "vulkan")
    with pytest.raises(InputError, match="binary_schedule"):
        export(g, tmp_path / "m", "llvm", binary_schedule="popc")


@pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH: building for CUDA needs it")
def test_pa_digits_cuda_export_builds_with_tensor_cores(digits_graph, tmp_path):  # noqa: F811
    graph, x = digits_graph
    meta = export(graph, tmp_path / "cuda", "cuda")
    assert meta["target"] == "cuda" and meta["binary_schedule"] == "tensorcore"
    binary = [d for d in meta["layers"] if d["op"] == "binary_conv2d"]
    assert {d["schedule"] for d in binary} == {"cuda tensor-core b1"}
    src = (tmp_path / "cuda" / "device.cu").read_text()
    assert src.count("mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc") >= len(binary)
    model = load(tmp_path / "cuda")      # loads without a GPU; the device is checked at run time
    if tvm.cuda(0).exist:
        np.testing.assert_array_equal(model.run(x)[0].argmax(1), Engine(graph, threads=1)(x)[0].argmax(1))
    else:
        with pytest.raises(EdgeccError, match="no CUDA GPU"):
            model.run(x)


@pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH: building for CUDA needs it")
@pytest.mark.parametrize("schedule,name,instruction", [
    ("popc", "cuda popc", "__popc("),
    ("wgmma", "cuda tensor-core b1 wgmma", "wgmma.mma_async.sync.aligned.m64n64k256.s32.b1.b1.and.popc")])
def test_cuda_export_other_schedules(tmp_path, schedule, name, instruction):
    g, _ = _one_plane_graph("pm1", "01", (1, 0))
    meta = export(g, tmp_path / schedule, "cuda", binary_schedule=schedule)
    assert meta["layers"][0]["schedule"] == name
    assert instruction in (tmp_path / schedule / "device.cu").read_text()
    if schedule == "wgmma":
        assert "sm_90a" in meta["tvm_target"]


def test_cli_compile_target_tvm_llvm(tmp_path, capsys):
    """`edgecc compile --target tvm-llvm` writes a TVM artifact that edgecc.runtime runs."""
    from edgecc.cli import main as cli
    from edgecc.compiler.ir import save
    g, x = _one_plane_graph("01", "01", (0, 0))
    save(g, str(tmp_path / "m.ecir"))
    assert cli(["compile", str(tmp_path / "m.ecir"), "--scheme", "pa", "--target", "tvm-llvm",
                "-o", str(tmp_path / "out")]) == 0
    assert "TVM, target llvm" in capsys.readouterr().out
    np.testing.assert_array_equal(load(tmp_path / "out").run(x)[0], Engine(g, threads=1)(x)[0])
