"""Finding oneDNN for compiled models, and the g++ flags of a model that uses it.

Float conv / gemm layers call oneDNN (cpp/include/edgecc/model_onednn.h) unless the
model is compiled with --no-onednn. oneDNN is looked for, in order, under
$EDGECC_ONEDNN_ROOT, the running Python's prefix (PyPI wheels install into
<venv>/include and <venv>/lib), then /usr/local and /usr.

The build must run its CPU threads on GNU OpenMP (or be sequential): models already
use libgomp, and one OpenMP runtime per process is what coexists with PyTorch (which
ships libgomp too). That is the PyPI `onednn-cpu-gomp` build. The `onednn` 2026 wheel
is a SYCL build whose CPU engine needs a SYCL CPU device (none here), so it is skipped.

The library is linked with an absolute RPATH to the directory holding libdnnl (old
style DT_RPATH, which the loader also uses for libdnnl's own dependencies). An $ORIGIN
path would not do: model.so is written wherever the user asks, far from the venv, and
copying libdnnl (50+ MiB) next to every model is not an option. The cost: moving the
model to another machine needs oneDNN at the same path (or LD_LIBRARY_PATH);
--no-onednn builds a library without the dependency.
"""
from __future__ import annotations

import functools
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ...errors import EdgeccError

HEADER = "edgecc/model_onednn.h"
# Generated code uses oneDNN when it names a wrapper in code (not in a comment or a string,
# where node names appear).
_USES = re.compile(r'^[^/"]*edgecc::model::Onednn', re.M)
INSTALL_HINT = ("pip install onednn-cpu-gomp==2023.2.0 onednn-devel-cpu-gomp==2023.2.0 "
                "(or compile with --no-onednn)")
_THREADING = {"DNNL_RUNTIME_OMP": "OpenMP", "DNNL_RUNTIME_SEQ": "sequential"}   # the runtimes we take


@dataclass(frozen=True)
class Onednn:
    include: Path
    lib: Path
    version: str      # "3.2.0"
    threading: str    # "OpenMP" | "sequential"

    def describe(self) -> str:
        return f"oneDNN {self.version} ({self.threading} threads, {self.lib})"


def _prefixes() -> list[Path]:
    roots = [os.environ.get("EDGECC_ONEDNN_ROOT", ""), sys.prefix, sys.base_prefix, "/usr/local", "/usr"]
    out = []
    for r in roots:
        if r and Path(r) not in out:
            out.append(Path(r))
    return out


def _define(text: str, name: str) -> str | None:
    m = re.search(rf"^#define {name} (\S+)", text, re.M)
    return m.group(1) if m else None


def _probe(prefix: Path) -> Onednn | None:
    inc = prefix / "include"
    headers = inc / "oneapi" / "dnnl"
    libs = [d for d in (prefix / "lib", prefix / "lib64", prefix / "lib" / "x86_64-linux-gnu")
            if (d / "libdnnl.so").exists()]
    if not (headers / "dnnl.hpp").is_file() or not libs:
        return None
    version_h = (headers / "dnnl_version.h").read_text()
    version = ".".join(_define(version_h, f"DNNL_VERSION_{p}") or "?" for p in ("MAJOR", "MINOR", "PATCH"))
    config = (headers / "dnnl_config.h").read_text()
    runtime = _define(config, "DNNL_CPU_RUNTIME")
    if runtime not in _THREADING:   # TBB, threadpool, or SYCL (needs a SYCL CPU device)
        return None
    return Onednn(inc, libs[0], version, _THREADING[runtime])


@functools.lru_cache(maxsize=1)
def find() -> Onednn | None:
    """The first oneDNN install (headers and library) found, or None."""
    for prefix in _prefixes():
        found = _probe(prefix)
        if found is not None:
            return found
    return None


def require() -> Onednn:
    """The oneDNN install, or an EdgeccError that says how to get one (and the way out)."""
    found = find()
    if found is None:
        raise EdgeccError("oneDNN with the OpenMP CPU runtime not found (looked under " +
                          ", ".join(str(p) for p in _prefixes()) + f"): {INSTALL_HINT}")
    return found


def available() -> bool:
    """Whether models can be compiled with oneDNN here (library and headers found)."""
    try:
        require()
    except EdgeccError:
        return False
    return True


def uses_onednn(model_cpp: str) -> bool:
    return _USES.search(model_cpp) is not None


def compile_flags(o: Onednn) -> list[str]:
    """For model.cpp: oneDNN's headers (model.cpp includes model_onednn.h itself)."""
    return ["-isystem", str(o.include)]


def link_flags(o: Onednn) -> list[str]:
    return [f"-L{o.lib}", "-Wl,--disable-new-dtags", f"-Wl,-rpath,{o.lib}", "-ldnnl"]


# ---- which implementation oneDNN picks, asked at compile time ------------------------
# A small library built from model_onednn.h (cached under build/onednn-probe/) creates the
# primitive descriptors the model will create at open and reports impl_info_str(), so
# model.json can say e.g. "brgconv:avx512_core". It answers for the build machine's CPU.
_PROBE_SOURCE = r'''
#include <cstring>
#include <exception>
#include "edgecc/model_onednn.h"
namespace {
int put(const std::string& s, char* out, int len) {
  std::strncpy(out, s.c_str(), static_cast<size_t>(len) - 1);
  out[len - 1] = 0;
  return 0;
}
}  // namespace
// v: n c h w o kh kw sh sw dh dw pt pl pb pr groups
extern "C" __attribute__((visibility("default"))) int edgecc_onednn_conv_impl(const int64_t* v, int int8, int bias,
                                                                              char* out, int len) {
  try {
    edgecc::Conv2dShape s;
    s.batch = v[0]; s.in_channels = v[1]; s.in_h = v[2]; s.in_w = v[3]; s.out_channels = v[4];
    s.kernel_h = v[5]; s.kernel_w = v[6]; s.stride_h = v[7]; s.stride_w = v[8]; s.dilation_h = v[9];
    s.dilation_w = v[10]; s.pad_top = v[11]; s.pad_left = v[12]; s.pad_bottom = v[13]; s.pad_right = v[14];
    s.groups = v[15];
    s.validate();
    using dt = dnnl::memory::data_type;
    return put(edgecc::model::onednn_detail::conv_primitive_desc(s, int8 ? dt::s8 : dt::f32,
                                                                 int8 ? dt::s32 : dt::f32, bias).impl_info_str(),
               out, len);
  } catch (const std::exception& e) {
    put(e.what(), out, len);
    return 1;
  }
}
extern "C" __attribute__((visibility("default"))) int edgecc_onednn_matmul_impl(
    int64_t m, int64_t n, int64_t k, int trans_a, int64_t c_rows, int64_t c_cols, char* out, int len) {
  try {
    return put(edgecc::model::onednn_detail::matmul_primitive_desc(m, n, k, trans_a, c_rows, c_cols).impl_info_str(),
               out, len);
  } catch (const std::exception& e) {
    put(e.what(), out, len);
    return 1;
  }
}
'''


@functools.lru_cache(maxsize=None)
def helper_library(name: str, source: str, opt: str = "-O1") -> Path:
    """A small shared library of `source` (C++ calling model_onednn.h) linked with the host
    kernel archive and oneDNN, built once per compiler, oneDNN, header and sanitizer
    setting under build/<name>/; raises EdgeccError with the compiler's message if it fails."""
    import fcntl
    import hashlib
    import subprocess

    from . import build as B
    o = require()
    target = B.resolve_target("host")
    h = hashlib.sha256((B.compiler_version() + o.describe() + source + opt).encode())
    for header in B._local_includes([B.INCLUDE / HEADER]) + [B.INCLUDE / HEADER]:
        h.update(header.read_bytes())
    h.update(target.sanitize.encode())   # a sanitized library needs the ASan runtime: never share it
    out_dir = B.CACHE.parent / name / h.hexdigest()[:16]
    lib = out_dir / f"{name}.so"
    if lib.exists():
        return lib
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".lock", "w") as lock:   # one builder per key; others wait for it
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not lib.exists():
            (out_dir / f"{name}.cpp").write_text(source)
            tmp = out_dir / f"{name}.so.tmp"
            # the target's sanitizer flags too: the kernel archive it links is sanitized alike
            r = subprocess.run([B._cxx(), *B.COMMON, *compile_flags(o), opt, *target.sanitize_compile_flags(),
                                "-shared", str(out_dir / f"{name}.cpp"), str(B.kernel_archive(target)),
                                "-o", str(tmp), *link_flags(o), *target.sanitize_link_flags()],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise EdgeccError(f"building the {name} library failed:\n{r.stderr[-2000:]}")
            os.replace(tmp, lib)
    return lib


@functools.lru_cache(maxsize=1)
def _probe_library():
    """The probe library, or None when it cannot be built (the kernel strings then say
    'implementation unknown')."""
    import ctypes
    try:
        lib = helper_library("onednn-probe", _PROBE_SOURCE)
    except EdgeccError:
        return None
    probe = ctypes.CDLL(str(lib))
    probe.edgecc_onednn_conv_impl.argtypes = [ctypes.POINTER(ctypes.c_int64), ctypes.c_int, ctypes.c_int,
                                              ctypes.c_char_p, ctypes.c_int]
    probe.edgecc_onednn_matmul_impl.argtypes = [ctypes.c_int64] * 3 + [ctypes.c_int] + [ctypes.c_int64] * 2 + \
        [ctypes.c_char_p, ctypes.c_int]
    return probe


def _ask(call, *args) -> str:
    import ctypes
    try:
        probe = _probe_library()
    except (OSError, EdgeccError):
        return ""
    if probe is None:
        return ""
    out = ctypes.create_string_buffer(256)
    rc = getattr(probe, call)(*args, out, 256)
    return out.value.decode() if rc == 0 else ""


@functools.lru_cache(maxsize=None)
def conv_impl(shape: tuple[int, ...], int8: bool = False, bias: bool = False) -> str:
    """oneDNN's implementation for a conv (shape: n c h w o kh kw sh sw dh dw pt pl pb pr
    groups) on this CPU, e.g. "brgconv:avx512_core"; "" when it cannot tell."""
    import ctypes
    v = (ctypes.c_int64 * 16)(*shape)
    return _ask("edgecc_onednn_conv_impl", v, int(int8), int(bias))


@functools.lru_cache(maxsize=None)
def matmul_impl(m: int, n: int, k: int, trans_a: bool, c_rows: int, c_cols: int) -> str:
    """Likewise for a matmul (c_rows 0: no C)."""
    return _ask("edgecc_onednn_matmul_impl", m, n, k, int(trans_a), c_rows, c_cols)
