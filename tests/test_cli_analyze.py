"""`edgecc analyze`: tables and JSON of the cost model, peak memory, 3DRF and organizer."""
from __future__ import annotations

import json

import pytest
from test_analysis_3drf import VGG16, vgg_graph
from test_analysis_cost import bireal_graph

from edgecc.cli import main
from edgecc.compiler.ir import save


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "vgg16.ecir"
    save(vgg_graph(VGG16), str(path))
    return str(path)


def test_analyze_json_all(vgg_file, capsys):
    assert main(["analyze", vgg_file, "--cost", "--memory", "--batch", "64", "--3drf",
                 "--organize", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"cost", "memory", "3drf", "organizer"}
    assert doc["organizer"]["depths_after"] == [5, 4, 2, 1, 1]
    assert doc["memory"]["batch"] == 64
    # stage 1 of VGG16 at batch 64: conv out + BN out, 2 x 64x32x32 fp32 x 64, plus weights
    assert doc["memory"]["peak_bytes"] == 2 * 64 * 64 * 1024 * 4 + doc["memory"]["weight_bytes"]
    assert [len(s["layers"]) for s in doc["3drf"]["stages"]] == [2, 2, 3, 3, 3]
    assert doc["cost"]["fp_params"] > 0 and doc["cost"]["binary_params"] > 0


def test_analyze_tables(tmp_path, capsys):
    path = tmp_path / "bireal.ecir"
    save(bireal_graph(18, "cifar"), str(path))
    assert main(["analyze", str(path), "--cost", "--memory", "--batch", "64",
                 "--weights", "none"]) == 0
    out = capsys.readouterr().out
    assert "storage: 18.18 Mbit" in out and "binary MACs / 64): 1.666e+07" in out
    assert "peak 50.33 MB" in out
    assert main(["analyze", str(path), "--pa", "4,5"]) == 0
    assert "binary M=4 N=5" in capsys.readouterr().out


def test_analyze_errors(vgg_file, tmp_path, capsys):
    assert main(["analyze", vgg_file, "--pa", "4"]) == 2
    assert "--pa" in capsys.readouterr().err
    assert main(["analyze", vgg_file, "--memory", "--batch", "0"]) == 2
    assert main(["analyze", "zoo:not_a_model"]) == 2
    assert "unknown zoo model" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "missing.ecir")]) == 1
    assert "no such file" in capsys.readouterr().err
