"""Damaged or mismatched compiled models are refused at load with a clear error, never
run to a wrong result: flipped bytes in the weights section inside model.so, truncated
libraries, a model.json that disagrees with the library, missing files, and a library
built for CPU flags the machine lacks (EDGECC_MODEL_PRETEND_MISSING_CPU_FLAGS, the test
hook documented in model_api.h)."""
from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

import edgecc.runtime
from edgecc.errors import ModelLoadError

import fuzz_c_api as F  # tests/fuzz, on sys.path through conftest.py


@pytest.fixture(scope="module")
def built(two_input_model):
    return two_input_model


@pytest.fixture(scope="module")
def reference(built):
    rng = np.random.default_rng(0)
    xs = (rng.standard_normal((1, 2, 5, 5)).astype(np.float32), rng.standard_normal((1, 3, 5, 5)).astype(np.float32))
    return xs, edgecc.runtime.load(built).run(*xs)


def _compile(graph, out: Path, target: str = "host"):
    """Compile on edgecc's own kernels (the tests must not depend on the optional oneDNN)."""
    import inspect

    from edgecc.compiler.compile import compile as compile_model
    extra = {"onednn": False} if "onednn" in inspect.signature(compile_model).parameters else {}
    return compile_model(graph, out, scheme="fp32", target=target, **extra)


def _copy(built, tmp_path) -> Path:
    d = tmp_path / "copy"
    shutil.copytree(built, d)
    return d


def _write_lib(d: Path, data: bytes, update_json: bool = True):
    """Replace model.so; with update_json, model.json's library SHA-256 follows it, so
    only the library's own checks stand between the damage and a run."""
    (d / "model.so").write_bytes(data)
    if update_json:
        meta = json.loads((d / "model.json").read_text())
        meta["library"]["sha256"] = hashlib.sha256(data).hexdigest()
        (d / "model.json").write_text(json.dumps(meta))


def weights_section(data: bytes) -> tuple[int, int]:
    """File offsets [begin, end) of the embedded weights: the symbols edgecc_weights_begin/_end
    of .symtab, mapped from virtual addresses to file offsets through the PT_LOAD segments."""
    (phoff, shoff) = struct.unpack_from("<QQ", data, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 0x36)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    symtab = next(s for s in sections if s[1] == 2)                  # SHT_SYMTAB
    strtab = sections[symtab[6]]                                       # sh_link -> its string table
    addrs = {}
    for off in range(symtab[4], symtab[4] + symtab[5], symtab[9]):
        name_off, _, _, _, value, _ = struct.unpack_from("<IBBHQQ", data, off)
        end = data.index(b"\0", strtab[4] + name_off)
        name = data[strtab[4] + name_off:end].decode()
        if name in ("edgecc_weights_begin", "edgecc_weights_end"):
            addrs[name] = value

    def file_offset(vaddr: int) -> int:
        for i in range(phnum):
            p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
            if p_type == 1 and p_vaddr <= vaddr < p_vaddr + p_filesz:   # PT_LOAD
                return vaddr - p_vaddr + p_offset
        raise AssertionError(f"address {vaddr:#x} outside every loadable segment")

    return file_offset(addrs["edgecc_weights_begin"]), file_offset(addrs["edgecc_weights_end"] - 1) + 1


def test_weights_section_is_found(built):
    data = (built / "model.so").read_bytes()
    begin, end = weights_section(data)
    weights = (built / "src" / "weights.bin").read_bytes() if (built / "src" / "weights.bin").exists() else None
    meta = json.loads((built / "model.json").read_text())
    assert end - begin == meta["weights"]["bytes"]
    assert hashlib.sha256(data[begin:end]).hexdigest() == meta["weights"]["sha256"]
    if weights is not None:
        assert data[begin:end] == weights


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_flipped_weight_byte(built, tmp_path, where):
    d = _copy(built, tmp_path)
    data = bytearray((d / "model.so").read_bytes())
    begin, end = weights_section(bytes(data))
    at = {"first": begin, "middle": (begin + end) // 2, "last": end - 1}[where]
    data[at] ^= 0x10
    _write_lib(d, bytes(data), update_json=False)
    with pytest.raises(ModelLoadError, match="does not match model.json"):      # the file's SHA-256
        edgecc.runtime.load(d)
    _write_lib(d, bytes(data))
    with pytest.raises(ModelLoadError, match="weights section fails its SHA-256 check"):   # the library's own
        edgecc.runtime.load(d)
    api = F.CApi(d / "model.so")            # a C application gets the same answer
    status, h = api.open_handle()
    assert status == F.CORRUPT and h == 0
    assert "fails its SHA-256 check" in api.open_error().decode()


@pytest.mark.parametrize("keep", [0, 3, 63, 200, "half", "minus_segment_end"])
def test_truncated_library(built, tmp_path, reference, keep):
    d = _copy(built, tmp_path)
    data = (d / "model.so").read_bytes()
    if keep == "half":
        keep = len(data) // 2
    elif keep == "minus_segment_end":          # just short of the end of the weights
        keep = weights_section(data)[1] - 1
    _write_lib(d, data[:keep])
    with pytest.raises(ModelLoadError, match="cannot load"):
        edgecc.runtime.load(d)


def test_truncated_section_headers_still_exact(built, tmp_path, reference):
    """Cutting only non-loaded bytes (the section headers at the end) may load: then the
    results must still be exact."""
    d = _copy(built, tmp_path)
    data = (d / "model.so").read_bytes()
    _write_lib(d, data[:-1])
    try:
        model = edgecc.runtime.load(d)
    except ModelLoadError as e:
        assert "cannot load" in str(e)
        return
    xs, want = reference
    assert all(np.array_equal(a, b) for a, b in zip(model.run(*xs), want))


def _edit_json(d: Path, edit):
    meta = json.loads((d / "model.json").read_text())
    edit(meta)
    (d / "model.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("edit,message", [
    (lambda m: m["inputs"][1].__setitem__("shape", [1, 3, 5, 6]), "inputs"),
    (lambda m: m["inputs"][0].__setitem__("name", "y"), "inputs"),
    (lambda m: m["outputs"][0].__setitem__("shape", [1, 3]), "outputs"),
    (lambda m: m["outputs"].pop(), "outputs"),
    (lambda m: m["inputs"].append({"name": "w", "shape": [1]}), "inputs"),
    (lambda m: m["weights"].__setitem__("sha256", "0" * 64), "weights SHA-256 of model.so and model.json differ"),
    (lambda m: m["library"].__setitem__("sha256", "f" * 64), "does not match model.json"),
    (lambda m: m.__setitem__("abi_version", 2), "ABI version 2"),
    (lambda m: m.__setitem__("abi_version", "1"), "ABI version '1'"),
    (lambda m: m.pop("abi_version"), "ABI version None"),
    (lambda m: m.__setitem__("format", "onnx"), "not an edgecc model"),
    (lambda m: m.pop("weights"), "missing 'weights'"),
    (lambda m: m.__setitem__("library", "model.so"), "'library' must be an object"),
    (lambda m: m["weights"].pop("sha256"), "'weights' must be an object"),
    (lambda m: m.__setitem__("inputs", {"x": [1, 2, 5, 5]}), "'inputs' must be a list"),
    (lambda m: m["outputs"][0].__setitem__("shape", None), "'outputs' must be a list"),
])
def test_model_json_disagrees(built, tmp_path, edit, message):
    d = _copy(built, tmp_path)
    _edit_json(d, edit)
    with pytest.raises(ModelLoadError, match=message):
        edgecc.runtime.load(d)


def test_library_of_another_model(built, tmp_path):
    """model.so swapped for another build (other weights) with model.json's file hash updated:
    the weights SHA-256 recorded in model.json no longer matches."""
    other = tmp_path / "other"
    _compile(F.two_input_graph(seed=9), other)
    d = _copy(built, tmp_path)
    _write_lib(d, (other / "model.so").read_bytes())
    with pytest.raises(ModelLoadError, match="weights SHA-256 of model.so and model.json differ"):
        edgecc.runtime.load(d)


@pytest.mark.parametrize("missing,message", [("model.so", "no model.so"), ("model.json", "no model.json")])
def test_missing_files(built, tmp_path, missing, message):
    d = _copy(built, tmp_path)
    (d / missing).unlink()
    with pytest.raises(ModelLoadError, match=message):
        edgecc.runtime.load(d)


def test_other_files_are_not_needed_to_run(built, tmp_path, reference):
    d = _copy(built, tmp_path)
    for name in ("model.h", "model_api.h"):
        (d / name).unlink()
    shutil.rmtree(d / "src", ignore_errors=True)
    xs, want = reference
    assert all(np.array_equal(a, b) for a, b in zip(edgecc.runtime.load(d).run(*xs), want))


def test_library_is_a_directory_or_garbage(built, tmp_path):
    d = _copy(built, tmp_path)
    _write_lib(d, b"#!/bin/sh\necho not a library\n" * 20)
    with pytest.raises(ModelLoadError, match="not an x86-64 ELF"):
        edgecc.runtime.load(d)
    (d / "model.so").unlink()
    (d / "model.so").mkdir()
    with pytest.raises(ModelLoadError, match="no model.so"):
        edgecc.runtime.load(d)


def test_missing_cpu_flag(built, reference, monkeypatch):
    meta = json.loads((built / "model.json").read_text())
    flags = meta["target"]["required_cpu_flags"]
    if not flags:
        pytest.skip("this host build needs no CPU flag beyond x86-64")
    flag = flags[-1]
    monkeypatch.setenv("EDGECC_MODEL_PRETEND_MISSING_CPU_FLAGS", f"sse9,{flag}")
    with pytest.raises(ModelLoadError, match=f"this CPU lacks flags the model was compiled for: {flag}"):
        edgecc.runtime.load(built)
    api = F.CApi(built / "model.so")
    status, h = api.open_handle()
    assert status == F.UNSUPPORTED_CPU and h == 0 and "recompile with --target" in api.open_error().decode()
    monkeypatch.setenv("EDGECC_MODEL_PRETEND_MISSING_CPU_FLAGS", "sse9")     # a flag it does not need
    xs, want = reference
    assert all(np.array_equal(a, b) for a, b in zip(edgecc.runtime.load(built).run(*xs), want))


def test_generic_build_ignores_missing_flags(tmp_path, reference, monkeypatch):
    """A generic (x86-64) build needs no extra flag: it opens and is exact whatever is missing."""
    meta = _compile(F.two_input_graph(), tmp_path / "generic", target="generic")
    assert meta["target"]["required_cpu_flags"] == []
    monkeypatch.setenv("EDGECC_MODEL_PRETEND_MISSING_CPU_FLAGS", "avx2,fma,avx512f,avx512bw")
    xs, want = reference
    got = edgecc.runtime.load(tmp_path / "generic").run(*xs)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
