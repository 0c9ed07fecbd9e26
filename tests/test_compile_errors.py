"""Bad input to compiled models and to the compiler gives clear errors, never a crash,
and never a half-written artifact."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

import edgecc.runtime
from edgecc.compiler.compile import compile as compile_model
from edgecc.compiler.ir import Graph
from edgecc.errors import EdgeccError, InputError, ModelLoadError, UnsupportedOpsError


def _small_graph(seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    g = Graph("small")
    x = g.add_input("x", (1, 2, 5, 5))
    w = Graph.constant("w", rng.standard_normal((3, 2, 3, 3)).astype(np.float32))
    y = g.add_node("conv2d", [x, w], dict(pads=1), name="conv").outputs[0]
    y = g.add_node("relu", [y], name="act").outputs[0]
    g.outputs = [g.add_node("global_avg_pool", [y], name="pool").outputs[0]]
    return g


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("errors") / "small"
    compile_model(_small_graph(), out, scheme="fp32")
    return out


def _copy(built, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(built, dst)
    return dst


def test_wrong_inputs_raise_input_error(built):
    m = edgecc.runtime.load(built)
    with pytest.raises(InputError, match=r"input 'x': expected shape \[1, 2, 5, 5\], got \[1, 2, 5, 4\]"):
        m.run(np.zeros((1, 2, 5, 4), np.float32))
    with pytest.raises(InputError, match="input 'x': expected dtype f32.*float64"):
        m.run(np.zeros((1, 2, 5, 5)))
    with pytest.raises(InputError, match="takes 1 input"):
        m.run()
    with pytest.raises(InputError, match="threads"):
        m.threads = -1
    x = np.zeros((1, 2, 5, 10), np.float32)[..., ::2]        # strided views are accepted
    assert m.run(x)[0].shape == (1, 3, 1, 1)


# Damaged libraries (truncated, flipped weight bytes, with and without a matching
# model.json): tests/test_fault_injection.py.


def test_tampered_metadata(built, tmp_path):
    d = _copy(built, tmp_path)
    text = (d / "model.json").read_text()
    (d / "model.json").write_text(text[: len(text) // 2])
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        edgecc.runtime.load(d)
    meta = json.loads(text)
    meta["inputs"][0]["shape"] = [1, 2, 6, 6]
    (d / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="inputs"):
        edgecc.runtime.load(d)
    (d / "model.json").unlink()
    with pytest.raises(ModelLoadError, match="no model.json"):
        edgecc.runtime.load(d)


def test_failed_compile_keeps_previous_artifact(built, tmp_path):
    d = _copy(built, tmp_path)
    before = {p: (d / p).read_bytes() for p in ("model.so", "model.json", "model.h")}
    g = _small_graph()
    h = g.outputs[0]
    s1 = g.add_node("resize", [h], {"mode": "nearest", "size": (2, 2)}, name="probs").outputs[0]
    s2 = g.add_node("matmul", [h, h], name="gate").outputs[0]
    g.outputs = [s1, s2]
    with pytest.raises(UnsupportedOpsError) as info:
        compile_model(g, d, scheme="fp32")
    msg = str(info.value)
    assert "2 unsupported operator(s)" in msg and "resize" in msg and "probs" in msg and "gate" in msg
    assert {p: (d / p).read_bytes() for p in before} == before
    assert sorted(os.listdir(tmp_path)) == ["copy"]          # no temporary directory left behind
    m = edgecc.runtime.load(d)                               # the old artifact still works
    assert m.run(np.ones((1, 2, 5, 5), np.float32))[0].shape == (1, 3, 1, 1)


def test_refuses_to_replace_a_foreign_directory(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(EdgeccError, match="refusing"):
        compile_model(_small_graph(), tmp_path / "mine", scheme="fp32")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_not_a_model_directory(tmp_path):
    with pytest.raises(ModelLoadError, match="no model.json"):
        edgecc.runtime.load(tmp_path)


def test_open_failure_is_reported(built, monkeypatch):
    monkeypatch.setenv("EDGECC_ISA", "bogus")      # host builds ask edgecc::select_isa at open
    with pytest.raises(ModelLoadError, match="unknown ISA 'bogus'"):
        edgecc.runtime.load(built)
