"""Sanitizer builds of compiled models (codegen/build.py, EDGECC_SANITIZE): the value is
validated, the flags reach every compile and the link, sanitized kernel archives have
their own cache directory, and a library built with the flags really reports a heap
overflow (ASan) and a signed overflow (UBSan). Under scripts/sanitize.sh (EDGECC_SANITIZE
set) a compiled model is also checked to be instrumented end to end."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edgecc.compiler.codegen import build as B
from edgecc.errors import EdgeccError

CANARY = r"""
// Not inlined: UBSan's object-size check then cannot see the bound; only ASan can.
__attribute__((noinline)) static int read_at(const int* p, int i) { return p[i]; }
extern "C" __attribute__((visibility("default"))) int canary_read(int i) {
  int* p = new int[4]();
  int v = read_at(p, i);      // i = 4: one past the end
  delete[] p;
  return v;
}
extern "C" __attribute__((visibility("default"))) int canary_add(int a) { return a + 1; }  // INT_MAX + 1
"""


@pytest.mark.parametrize("value, message", [
    ("address,memory", "unknown sanitizer 'memory'"),
    ("thread", "unknown sanitizer 'thread'"),
    ("address,,undefined", "unknown sanitizer ''"),
    ("address,address", "a sanitizer is listed twice"),
])
def test_bad_value_names_the_variable(monkeypatch, value, message):
    monkeypatch.setenv("EDGECC_SANITIZE", value)
    with pytest.raises(EdgeccError, match=rf"EDGECC_SANITIZE='{value}': {message}"):
        B.resolve_target("generic")


def test_flags_and_separate_cache(monkeypatch):
    monkeypatch.delenv("EDGECC_SANITIZE", raising=False)
    plain = B.resolve_target("avx2")
    assert plain.sanitize == "" and not any(f.startswith("-fsanitize") for f in plain.march)
    assert plain.sanitize_link_flags() == [] and B._source_flags("cpu", plain) == ["-march=x86-64"]

    monkeypatch.setenv("EDGECC_SANITIZE", " address, undefined ")
    san = B.resolve_target("avx2")
    want = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g", "-O1"]
    assert san.sanitize == "address,undefined" and san.march == plain.march + want
    assert san.required_flags == plain.required_flags
    assert san.sanitize_link_flags() == ["-fsanitize=address,undefined"]
    for name in B.KERNEL_SOURCES:                 # every kernel object, cpu.cpp included
        flags = B._source_flags(name, san)
        at = flags.index(want[0])
        assert flags[at:at + len(want)] == want and "-O1" not in flags[at + len(want):]
    assert B.archive_dir(san) != B.archive_dir(plain)
    assert B.archive_dir(san).name.startswith("avx2-sanitize-address-undefined-")

    monkeypatch.setenv("EDGECC_SANITIZE", "address")   # no UBSan: nothing to make fatal
    assert "-fno-sanitize-recover=all" not in B.resolve_target("avx2").march


def _canary(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("EDGECC_SANITIZE", "address,undefined")
    t = B.resolve_target("generic")
    (tmp_path / "canary.cpp").write_text(CANARY)
    lib = tmp_path / "canary.so"
    B._run([B._cxx(), *B.COMMON, "-O3", *t.march, "-shared", str(tmp_path / "canary.cpp"), "-o", str(lib),
            "-Wl,-z,defs", *t.sanitize_link_flags()], "compiling the canary")
    return str(lib)


def _call(lib: str, fn: str, arg: int) -> subprocess.CompletedProcess:
    """fn(arg) in a fresh Python with the ASan runtime first, reports on stderr."""
    cxx = B._cxx()
    runtime = [subprocess.run([cxx, f"-print-file-name={n}"], capture_output=True, text=True).stdout.strip()
               for n in ("libasan.so", "libstdc++.so")]
    env = {**os.environ, "LD_PRELOAD": " ".join(runtime), "ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1",
           "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}
    code = f"import ctypes; print(ctypes.CDLL({lib!r}).{fn}({arg}))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_sanitized_flags_catch_real_bugs(tmp_path, monkeypatch):
    lib = _canary(tmp_path, monkeypatch)
    ok = _call(lib, "canary_read", 3)
    assert ok.returncode == 0 and ok.stdout.strip() == "0", ok.stderr
    assert _call(lib, "canary_add", 41).stdout.strip() == "42"
    oob = _call(lib, "canary_read", 4)
    assert oob.returncode != 0 and "heap-buffer-overflow" in oob.stderr and "canary_read" in oob.stderr
    ub = _call(lib, "canary_add", 2**31 - 1)
    assert ub.returncode != 0 and "signed integer overflow" in ub.stderr, ub.stderr


@pytest.mark.skipif(not os.environ.get("EDGECC_SANITIZE"), reason="scripts/sanitize.sh sets EDGECC_SANITIZE "
                    "(a sanitized kernel archive takes minutes to build)")
def test_compiled_model_is_instrumented(tmp_path):
    import edgecc.runtime
    import fuzz_c_api as F  # tests/fuzz, on sys.path through conftest.py
    from edgecc.runtime.interpreter import interpret

    out = F.compile_two_input_model(tmp_path / "m")
    meta = json.loads((out / "model.json").read_text())
    flag = f"-fsanitize={os.environ['EDGECC_SANITIZE']}"
    assert flag in meta["target"]["flags"] and flag in meta["build_info"]
    symbols = subprocess.run(["nm", "-D", str(out / "model.so")], capture_output=True, text=True).stdout
    assert "__asan_init" in symbols
    assert "__ubsan_handle" in symbols or "undefined" not in os.environ["EDGECC_SANITIZE"]
    rng = np.random.default_rng(3)
    x, z = rng.standard_normal((1, 2, 5, 5)).astype(np.float32), rng.standard_normal((1, 3, 5, 5)).astype(np.float32)
    for got, want in zip(edgecc.runtime.load(out).run(x, z), interpret(F.two_input_graph(), x, z)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
