"""examples/c_app: the C99 program built with its Makefile against the compiled PA
digits model prints the same logits as the Python runtime, bit for bit, and the same
class; it is clean under valgrind memcheck."""
from __future__ import annotations

import inspect
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import edgecc
import edgecc.runtime
from edgecc.compiler.compile import compile as compile_model
from edgecc.compiler.quant.export import exportable
from edgecc.zoo import digits as D

APP = Path(__file__).resolve().parents[1] / "examples" / "c_app"
IMAGES = (0, 1, 7)   # test-split indices


def _compile(graph, out, target):
    # Float layers on edgecc's own kernels: the test must not depend on the optional oneDNN.
    extra = {"onednn": False} if "onednn" in inspect.signature(compile_model).parameters else {}
    compile_model(graph, out, scheme="pa", target=target, **extra)


def _make(model_dir: Path, exe: Path) -> Path:
    r = subprocess.run(["make", "-s", "-C", str(APP), f"MODEL_DIR={model_dir}", f"OUT={exe}"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return exe


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    if not shutil.which("make") or not shutil.which("cc"):
        pytest.skip("needs make and a C compiler (cc)")
    tmp = tmp_path_factory.mktemp("c_app")
    _, _, xte, yte = D.load_digits_split()
    pa = D.load_bundled("pa45")
    graph = edgecc.load(exportable(pa), (xte[:1],))       # batch 1: one image per file
    _compile(graph, tmp / "digits", "host")
    exe = _make(tmp / "digits", tmp / "classify")
    files = []
    for i in IMAGES:
        path = tmp / f"image{i}.f32"
        xte[i:i + 1].numpy().astype("<f4").tofile(path)
        files.append(path)
    return dict(tmp=tmp, graph=graph, exe=exe, files=files, x=xte.numpy(), y=yte.numpy(), pa=pa)


def _parse(stdout: str) -> tuple[np.ndarray, int]:
    out = [line for line in stdout.splitlines() if line.startswith("output ")]
    assert len(out) == 1, stdout
    values = np.array([np.float32(v) for v in out[0].split(":", 1)[1].split()], np.float32)
    top = [line for line in stdout.splitlines() if line.startswith("top class[0]: ")]
    assert len(top) == 1, stdout
    return values, int(top[0].split()[2])


def test_logits_equal_python_runtime_bit_for_bit(digits):
    model = edgecc.runtime.load(digits["tmp"] / "digits")
    for i, path in zip(IMAGES, digits["files"]):
        r = subprocess.run([str(digits["exe"]), "-t", "2", str(path)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        logits, top = _parse(r.stdout)
        (expected,) = model.run(digits["x"][i:i + 1])
        assert logits.shape == (10,)
        assert np.array_equal(logits.view(np.uint32), expected.ravel().view(np.uint32))
        assert top == int(expected.argmax())
        with torch.no_grad():
            assert top == int(digits["pa"](torch.from_numpy(digits["x"][i:i + 1])).argmax())


def test_profile_rows(digits):
    import json
    r = subprocess.run([str(digits["exe"]), "-p", "-t", "1", str(digits["files"][0])], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    steps = [line for line in r.stdout.splitlines() if line.startswith("step ")]
    layers = json.loads((digits["tmp"] / "digits" / "model.json").read_text())["layers"]
    assert len(steps) == len(layers) + 1
    for line, layer in zip(steps, layers):
        assert line.startswith(f"step {layer['step']} {layer['node']} ({layer['op']}): ") and line.endswith(" ms")
    assert steps[-1].startswith(f"step {len(layers)} - (copy_outputs): ")
    logits, _ = _parse(r.stdout)      # profiling does not change the numbers
    (expected,) = edgecc.runtime.load(digits["tmp"] / "digits").run(digits["x"][IMAGES[0]:IMAGES[0] + 1])
    assert np.array_equal(logits.view(np.uint32), expected.ravel().view(np.uint32))


def test_errors_are_reported(digits):
    exe, tmp = str(digits["exe"]), digits["tmp"]
    short = tmp / "short.f32"
    short.write_bytes(b"\0" * 12)
    r = subprocess.run([exe, str(short)], capture_output=True, text=True)
    assert r.returncode == 1 and "fewer bytes than the 256" in r.stderr
    r = subprocess.run([exe, "-t", "100000", str(digits["files"][0])], capture_output=True, text=True)
    assert r.returncode == 2 and "threads=100000" in r.stderr
    r = subprocess.run([exe], capture_output=True, text=True)
    assert r.returncode == 1 and "usage" in r.stderr
    r = subprocess.run([exe, str(digits["files"][0])], capture_output=True, text=True,
                       env={"EDGECC_MODEL_PRETEND_MISSING_CPU_FLAGS": "avx2"})
    assert r.returncode == 2 and "open failed (status 2)" in r.stderr and "lacks flags" in r.stderr


def test_valgrind_memcheck(digits):
    """valgrind does not emulate AVX-512: the app runs on a generic (x86-64) build here."""
    if not shutil.which("valgrind"):
        pytest.skip("valgrind is not installed")
    tmp = digits["tmp"]
    _compile(digits["graph"], tmp / "digits_generic", "generic")
    exe = _make(tmp / "digits_generic", tmp / "classify_generic")
    r = subprocess.run(["valgrind", "-q", "--leak-check=full", "--errors-for-leak-kinds=definite",
                        "--error-exitcode=99", str(exe), "-t", "2", str(digits["files"][0])],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    logits, top = _parse(r.stdout)
    (expected,) = edgecc.runtime.load(tmp / "digits_generic").run(digits["x"][IMAGES[0]:IMAGES[0] + 1])
    assert np.array_equal(logits.view(np.uint32), expected.ravel().view(np.uint32))
    assert top == int(expected.argmax())
