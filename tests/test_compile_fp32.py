"""`edgecc compile` of small fp32 CNNs (random weights): the compiled library must equal
the numpy reference interpreter, through the Python runtime, the CLI and a C program."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch
import torch.nn as nn

import edgecc
import edgecc.runtime
from edgecc.cli import main as cli
from edgecc.compiler.compile import compile as compile_model
from edgecc.compiler.ir import Graph, save
from edgecc.compiler.passes import default_pipeline
from tests.models import randomize_batch_norms

TOL = dict(rtol=1e-4, atol=1e-4)


class SmallCNN(nn.Module):
    """conv/bn/relu/max pool/conv/avg pool/clip/concat/add/global pool/gemm."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.c3 = nn.Conv2d(8, 8, 1, groups=2)
        self.fc = nn.Linear(24, 5)

    def forward(self, x):
        x = torch.relu(self.bn1(self.c1(x)))
        x = nn.functional.max_pool2d(x, 2, ceil_mode=True)          # 15x15 -> 8x8
        a = torch.relu(self.c2(x))                                   # 16 x 4x4
        b = nn.functional.avg_pool2d(torch.clamp(self.c3(x), -0.5, 0.5), 3, 2, 1)  # 8 x 4x4
        y = torch.cat([a, b], 1) + 0.25
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    torch.manual_seed(0)
    model = randomize_batch_norms(SmallCNN())
    x = torch.randn(2, 3, 15, 15)
    graph = edgecc.load(model, (x,))
    default_pipeline().run(graph)     # compile runs it too: the graph is what gets compiled
    out = tmp_path_factory.mktemp("fp32") / "cnn"
    meta = compile_model(graph, out, scheme="fp32")
    return graph, out, meta, model


def test_matches_interpreter_and_torch(cnn):
    graph, out, meta, model = cnn
    m = edgecc.runtime.load(out)
    rng = np.random.default_rng(1)
    for _ in range(3):
        x = rng.standard_normal((2, 3, 15, 15)).astype(np.float32)
        (y,) = m.run(x)
        np.testing.assert_allclose(y, edgecc.interpret(graph, x)[0], **TOL)
        with torch.no_grad():
            np.testing.assert_allclose(y, model(torch.from_numpy(x)).numpy(), **TOL)


def test_threads_and_descriptions(cnn):
    graph, out, meta, _ = cnn
    m = edgecc.runtime.load(out, threads=1)
    assert m.threads == 1
    assert m.inputs == [{"name": graph.inputs[0].name, "dtype": "f32", "shape": (2, 3, 15, 15)}]
    assert m.outputs[0]["shape"] == (2, 5)
    x = np.random.default_rng(2).standard_normal((2, 3, 15, 15)).astype(np.float32)
    y1 = m.run(x)[0]
    m.threads = 2
    np.testing.assert_array_equal(m.run(x)[0], y1)
    assert m.workspace_size == meta["memory_plan"]["arena_bytes"] > 0


def test_metadata_describes_layers_plan_and_summary(cnn):
    graph, out, meta, _ = cnn
    on_disk = json.loads((out / "model.json").read_text())
    assert on_disk["weights"]["sha256"] == meta["weights"]["sha256"]
    assert [(layer["node"], layer["op"]) for layer in on_disk["layers"]] == [(n.name, n.op) for n in graph.nodes]
    assert all(layer["kernel"] and layer["why"] for layer in on_disk["layers"])
    plan = on_disk["memory_plan"]
    assert plan["arena_bytes"] <= plan["unshared_bytes"]
    for a in plan["buffers"]:   # live buffers never overlap in the arena
        for b in plan["buffers"]:
            if a is not b and a["live_steps"][0] <= b["live_steps"][1] and b["live_steps"][0] <= a["live_steps"][1]:
                assert a["offset"] + a["bytes"] <= b["offset"] or b["offset"] + b["bytes"] <= a["offset"]
    s = on_disk["summary"]
    assert s["float_macs"] > 0 and s["binary_plane_macs"] == 0
    assert {f["op"] for f in s["float_layers"]} == {"conv2d", "gemm"}
    assert "EDGECC_MODEL_WORKSPACE_BYTES" in (out / "model.h").read_text()


def test_unfolded_batch_norm_generic_target(tmp_path):
    """Without passes BN stays a node; the generic (x86-64, scalar kernels) build agrees."""
    torch.manual_seed(3)
    model = randomize_batch_norms(nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU6(),
                                                nn.Flatten(), nn.Linear(4 * 4 * 4, 3)))
    x = torch.randn(1, 2, 6, 6)
    graph = edgecc.load(model, (x,))
    assert "batch_norm" in {n.op for n in graph.nodes}
    meta = compile_model(graph, tmp_path / "m", scheme="fp32", target="generic", run_passes=False)
    assert "batch_norm" in {layer["op"] for layer in meta["layers"]}
    assert meta["target"]["kernel_isa"] == "scalar" and meta["target"]["required_cpu_flags"] == []
    (y,) = edgecc.runtime.load(tmp_path / "m").run(x.numpy())
    np.testing.assert_allclose(y, edgecc.interpret(graph, x.numpy())[0], **TOL)


def test_cli_compile_ecir_and_run_with_expected(cnn, tmp_path, capsys):
    graph, _, _, _ = cnn
    save(graph, tmp_path / "cnn.ecir")
    out = tmp_path / "cli_out"
    assert cli(["compile", str(tmp_path / "cnn.ecir"), "--scheme", "fp32", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "[1/5] import" in text and "[5/5] metadata" in text and "compression" in text
    x = np.random.default_rng(4).standard_normal((2, 3, 15, 15)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", edgecc.interpret(graph, x)[0])
    np.save(tmp_path / "bad.npy", edgecc.interpret(graph, x)[0] + 1.0)
    run = ["run", str(out), "--input", str(tmp_path / "x.npy"), "--atol", "1e-4", "--rtol", "1e-4"]
    assert cli(run + ["--expected", str(tmp_path / "y.npy")]) == 0
    assert "-> ok" in capsys.readouterr().out
    assert cli(run + ["--expected", str(tmp_path / "bad.npy")]) == 1
    assert "MISMATCH" in capsys.readouterr().out
    assert cli(["compile", str(tmp_path / "cnn.ecir"), "--scheme", "int8", "-o", str(out)]) == 1
    assert "needs calibration data" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs a C compiler")
def test_c_program_with_caller_workspace(cnn, tmp_path):
    """The C99 API as an application uses it: model.h sizes the arena, caller-owned buffers."""
    graph, out, _, _ = cnn
    (tmp_path / "main.c").write_text(r'''
#include <stdio.h>
#include <stdlib.h>
#include "model.h"
int main(int argc, char** argv) {
  static float x[EDGECC_MODEL_INPUT_0_ELEMENTS], y[EDGECC_MODEL_OUTPUT_0_ELEMENTS];
  FILE* f = fopen(argv[1], "rb");
  if (fread(x, sizeof x, 1, f) != 1) return 3;
  fclose(f);
  if (edgecc_model_abi_version() != EDGECC_MODEL_ABI_VERSION) return 4;
  void* arena = aligned_alloc(64, (EDGECC_MODEL_WORKSPACE_BYTES + 63) / 64 * 64);
  edgecc_model* m = NULL;
  if (edgecc_model_open(&m, arena, 16) == EDGECC_OK) return 5;          /* too small: refused */
  if (edgecc_model_open(&m, arena, EDGECC_MODEL_WORKSPACE_BYTES) != EDGECC_OK) {
    puts(edgecc_model_open_error()); return 6; }
  const void* in[1] = {x}; void* outs[1] = {y};
  if (edgecc_model_run(m, in, outs) != EDGECC_OK) { puts(edgecc_model_last_error(m)); return 7; }
  void* none[1] = {NULL};
  if (edgecc_model_run(m, in, none) != EDGECC_ERROR_INVALID_ARGUMENT) return 8;
  f = fopen(argv[2], "wb");
  fwrite(y, sizeof y, 1, f);
  fclose(f);
  edgecc_model_close(m);
  free(arena);
  return 0;
}
''')
    (tmp_path / "header.c").write_text('#include "model.h"\n')   # the API itself is C99
    subprocess.run(["gcc", "-std=c99", "-pedantic", "-Wall", "-Werror", "-fsyntax-only", f"-I{out}",
                    str(tmp_path / "header.c")], check=True)
    exe = tmp_path / "app"
    subprocess.run(["gcc", "-std=c11", "-Wall", "-Werror", f"-I{out}", str(tmp_path / "main.c"), str(out / "model.so"),
                    f"-Wl,-rpath,{out}", "-o", str(exe)], check=True)
    x = np.random.default_rng(5).standard_normal((2, 3, 15, 15)).astype(np.float32)
    x.tofile(tmp_path / "x.bin")
    r = subprocess.run([str(exe), str(tmp_path / "x.bin"), str(tmp_path / "y.bin")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    y = np.fromfile(tmp_path / "y.bin", dtype=np.float32).reshape(2, 5)
    np.testing.assert_allclose(y, edgecc.interpret(graph, x)[0], **TOL)


def test_api_rejects_bad_arguments(tmp_path):
    g = Graph("g")
    x = g.add_input("x", (1, 4))
    g.outputs = [g.add_node("relu", [x]).outputs[0]]
    with pytest.raises(edgecc.errors.InputError, match="scheme"):
        compile_model(g, tmp_path / "a", scheme="int4")
    with pytest.raises(edgecc.errors.InputError, match="target"):
        compile_model(g, tmp_path / "a", target="arm")
