"""`edgecc bench`: sane statistics of a compiled small CNN, JSON output, --compare against
PyTorch / ONNX Runtime (float baselines must agree with the float compiled model), and
clear errors for bad arguments. No timing assertions beyond the order of statistics."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgecc.cli import main as cli
from edgecc.compiler.compile import compile as compile_model
from edgecc.errors import InputError
from edgecc.runtime import bench as B
from edgecc.runtime import compare as C

FAST = ["--runs", "5", "--min-time", "0", "--max-time", "2"]


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 16, 3, stride=2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.c1(x)))
        x = torch.relu(self.c2(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """A float CNN compiled from an ONNX file (model.json records it as the source)."""
    torch.manual_seed(0)
    model = TinyCNN().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    d = tmp_path_factory.mktemp("bench")
    C.export_onnx(model, [np.zeros((2, 3, 12, 12), np.float32)], str(d / "tiny.onnx"), ["x"])
    compile_model(str(d / "tiny.onnx"), d / "out", scheme="fp32", onednn=False)
    return d / "out", model


def _ordered(lat: dict) -> None:
    assert 0 < lat["min_ms"] <= lat["p10_ms"] <= lat["median_ms"] <= lat["p90_ms"] <= lat["p99_ms"] <= lat["max_ms"]


def test_bench_statistics(compiled):
    out, _ = compiled
    r = B.bench(out, runs=7, min_time=0.0, max_time=5.0, threads=1)
    lat = r["latency"]
    assert lat["runs"] >= 7 and not lat["capped"]
    _ordered(lat)
    assert r["throughput_per_s"] == pytest.approx(2 / (lat["median_ms"] / 1e3))
    assert r["threads"] == 1 and r["batch"] == 2 and r["inputs"] == [{"name": "x", "shape": [2, 3, 12, 12]}]
    assert r["load_ms"] > 0 and r["first_run_ms"] > 0
    assert r["isa"].split()[0] in ("avx512", "avx2", "scalar")
    assert "edgecc" in r["versions"] and r["machine"]["cpu"]
    assert "median" in B.format_report(r)


def test_time_calls_cap_and_limits():
    calls = []
    lat = B.time_calls(lambda: calls.append(sum(range(20000))), runs=10**9, min_time=0.0, max_time=0.05)
    assert lat.capped and lat.runs == len(calls) < 10**9
    for bad in (dict(runs=0), dict(min_time=-1.0), dict(max_time=0.0), dict(min_time=3.0, max_time=2.0)):
        kw = {**dict(runs=1, min_time=0.0, max_time=1.0), **bad}
        with pytest.raises(InputError):
            B.time_calls(lambda: None, **kw)


def test_cli_json_parses(compiled, capsys):
    out, _ = compiled
    assert cli(["bench", str(out), *FAST, "--json", "--threads", "1", "--seed", "3"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["latency"]["runs"] >= 5 and doc["input_data"] == "random normal, seed 3"
    _ordered(doc["latency"])


def test_cli_compare_agreement_and_plot(compiled, tmp_path, capsys):
    out, model = compiled
    x = np.random.default_rng(5).standard_normal((2, 3, 12, 12)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    png = tmp_path / "bench.png"
    assert cli(["bench", str(out), *FAST, "--compare", "--json", "--input", str(tmp_path / "x.npy"),
                "--plot", str(png)]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {r["key"]: r for r in doc["compare"]}
    assert list(rows) == ["edgecc", "torch_fp32", "torch_int8", "ort_fp32", "ort_int8"]
    for key, r in rows.items():
        assert r["available"], (key, r["error"])
        assert r["latency"]["runs"] >= 5
        _ordered(r["latency"])
        assert r["ratio_ref_over_engine"] > 0
    with torch.no_grad():
        scale = float(model(torch.from_numpy(x)).abs().max())
    for key in ("torch_fp32", "ort_fp32"):     # float baselines = the compiled float model
        assert rows[key]["agreement"]["max_abs_diff"] < 1e-4 * max(scale, 1.0)
        assert rows[key]["agreement"]["top1_agree"] == 1.0
    for key in ("torch_int8", "ort_int8"):     # int8: close, not equal
        assert 0 < rows[key]["agreement"]["max_abs_diff"] < 0.2 * scale
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


def test_missing_baselines_are_reported(tmp_path):
    x = [np.ones((1, 4), np.float32)]
    engines = [C.Engine("edgecc", "edgecc", run=lambda: [x[0] * 2]),
               C.Engine("broken", "raises", run=lambda: 1 / 0),
               C.Engine("other", "other shape", run=lambda: [np.ones((2, 2), np.float32)])]
    engines += C.baseline_engines(None, x, threads=1, workdir=str(tmp_path), module_error="no module here")
    C.measure(engines, runs=3, min_time=0.0, max_time=1.0, reference="edgecc")
    rows = C.engine_dicts(engines, reference_latency="edgecc")
    by = {r["key"]: r for r in rows}
    assert by["broken"]["error"].startswith("run failed: ZeroDivisionError")
    assert "output shapes" in by["other"]["agreement"]["error"]
    for key in ("torch_fp32", "torch_int8", "ort_fp32", "ort_int8"):
        assert not by[key]["available"] and "no module here" in by[key]["error"]
    table = C.format_table(rows)
    assert table.count("not available:") == 5      # broken + 4 baselines, none silently missing


def test_bad_arguments(compiled, tmp_path, capsys):
    out, _ = compiled
    assert cli(["bench", str(out), "--runs", "0"]) == 2
    assert "--runs must be >= 1" in capsys.readouterr().err
    assert cli(["bench", str(out), "--min-time", "5", "--max-time", "1"]) == 2
    assert "--max-time" in capsys.readouterr().err
    assert cli(["bench", str(out), "--threads", "-1"]) == 2
    assert cli(["bench", str(tmp_path / "nope")]) == 1
    assert "no such directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli(["bench", str(tmp_path / "empty")]) == 1
    assert "no model.json" in capsys.readouterr().err
    np.save(tmp_path / "bad.npy", np.zeros((1, 3, 12, 12), np.float32))
    assert cli(["bench", str(out), "--input", str(tmp_path / "bad.npy")]) == 1
    assert "compiled for [2, 3, 12, 12]" in capsys.readouterr().err
    np.save(tmp_path / "f64.npy", np.zeros((2, 3, 12, 12)))
    assert cli(["bench", str(out), "--input", str(tmp_path / "f64.npy")]) == 1
    assert "takes float32" in capsys.readouterr().err
    assert cli(["bench", str(out), "--input", str(tmp_path / "f64.npy"), "--input", str(tmp_path / "f64.npy")]) == 1
    assert "the model takes 1 input(s)" in capsys.readouterr().err


def test_source_model_from_compiled_ir(compiled, tmp_path):
    """Compiled from an in-memory graph (no source file): the baselines come from
    OUTDIR/src/model.ecir rebuilt in PyTorch, and compute what the library computes."""
    import edgecc
    import edgecc.runtime
    _, model = compiled
    graph = edgecc.load(model, (torch.zeros(2, 3, 12, 12),))
    compile_model(graph, tmp_path / "g", scheme="fp32", onednn=False)
    m = edgecc.runtime.load(tmp_path / "g")
    module, onnx_path, why = C.source_models(m)
    assert module is not None and onnx_path is None and why == ""
    x = np.random.default_rng(9).standard_normal((2, 3, 12, 12)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), m.run(x)[0], rtol=1e-4, atol=1e-5)
