"""Build a generated model into model.so with the system g++.

The kernel sources the models call (cpp/src: binary engine, bit-packing, direct conv, DFNT,
CPU detection) are compiled once per set of flags into a static archive cached under
build/model-kernels/<key>/, where the key hashes the compiler, the flags and every
source and header, so an edited kernel or a new target rebuilds it. The model library
links that archive with its symbols hidden (only the C API is exported).

Sanitizer builds: with the environment variable EDGECC_SANITIZE set to a comma-separated
list of sanitizers (address, undefined, leak; e.g. EDGECC_SANITIZE=address,undefined, as
scripts/sanitize.sh does), every object of the model library and of the kernel archive is
compiled with -fsanitize=<list> -fno-omit-frame-pointer -g -O1 (plus -fno-sanitize-recover=all
with undefined, so a UBSan report stops the run) and model.so is linked with -fsanitize=<list>.
The flags are part of the target's flags, so the archive's cache key, build_info and
model.json's target.flags carry them, and sanitized archives live in their own cache
directories (<target>-sanitize-<list>-<key>), never mixed with plain objects. The library
needs the sanitizer runtime loaded first (LD_PRELOAD=libasan.so for a Python process).
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ...errors import EdgeccError
from . import onednn

REPO = Path(__file__).resolve().parents[3]
INCLUDE = REPO / "cpp" / "include"
SRC = REPO / "cpp" / "src"
CACHE = REPO / "build" / "model-kernels"
KERNEL_SOURCES = ("cpu", "bitpack", "bitpack_avx512", "binary_conv", "binary_conv_avx2", "binary_conv_avx512",
                  "binary_conv_scalar", "binary_conv_tables", "direct_conv", "direct_conv_avx2",
                  "direct_conv_avx512", "direct_conv_pack", "direct_conv_scalar",
                  "dfnt_avx512", "dfnt_conv", "dfnt_gemm_avx512", "dfnt_ring_api", "dfnt_scalar")
AVX2_FLAGS = ["-mavx2", "-mfma", "-mbmi2", "-mpopcnt"]
AVX512_FLAGS = ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx512vpopcntdq", "-mavx512vnni",
                "-mavx512ifma", "-mavx512bitalg"] + AVX2_FLAGS
COMMON = ["-std=c++17", "-fPIC", "-fopenmp", "-fvisibility=hidden", "-fno-math-errno", f"-I{INCLUDE}"]
TARGETS = ("host", "avx512", "avx2", "generic")
SANITIZE_ENV = "EDGECC_SANITIZE"
SANITIZERS = ("address", "undefined", "leak")   # thread: libgomp is not instrumented (false races)
# CPU flags (edgecc::CpuFeatures fields) per target, checked when the library is opened.
_MACRO_FLAGS = {"__AVX2__": "avx2", "__FMA__": "fma", "__BMI2__": "bmi2", "__POPCNT__": "popcnt",
                "__AVX512F__": "avx512f", "__AVX512BW__": "avx512bw", "__AVX512DQ__": "avx512dq",
                "__AVX512VL__": "avx512vl", "__AVX512VPOPCNTDQ__": "avx512vpopcntdq",
                "__AVX512VNNI__": "avx512vnni", "__AVX512IFMA__": "avx512ifma", "__AVX512BITALG__": "avx512bitalg"}


@dataclass(frozen=True)
class Target:
    name: str
    march: list[str]          # flags of the model TU and the portable kernels
    isa_request: str          # kernel path asked of edgecc::select_isa ("" = EDGECC_ISA or best)
    required_flags: list[str]
    sanitize: str = ""        # "" or the validated EDGECC_SANITIZE list, e.g. "address,undefined"

    def sanitize_compile_flags(self) -> list[str]:
        """Compiler flags every object of a sanitized build gets (march includes them too)."""
        if not self.sanitize:
            return []
        recover = ["-fno-sanitize-recover=all"] if "undefined" in self.sanitize.split(",") else []
        # -O1 (placed after each command's own -O, so it wins): the usual sanitizer level,
        # a third of -O3's compile time, and no optimization that exploits UB to hide it.
        return [f"-fsanitize={self.sanitize}", *recover, "-fno-omit-frame-pointer", "-g", "-O1"]

    def sanitize_link_flags(self) -> list[str]:
        return [f"-fsanitize={self.sanitize}"] if self.sanitize else []


def _cxx() -> str:
    cxx = os.environ.get("CXX") or shutil.which("g++")
    if not cxx:
        raise EdgeccError("no C++ compiler: install g++ (or set CXX) to use edgecc compile")
    return cxx


def _flags_enabled(march: list[str]) -> list[str]:
    out = subprocess.run([_cxx(), *march, "-dM", "-E", "-x", "c++", "/dev/null"], capture_output=True,
                         text=True, check=True).stdout
    macros = {line.split()[1] for line in out.splitlines() if line.startswith("#define ")}
    return [flag for macro, flag in _MACRO_FLAGS.items() if macro in macros]


def sanitizers_from_env() -> str:
    """The validated EDGECC_SANITIZE value ("" when unset or empty)."""
    value = os.environ.get(SANITIZE_ENV, "").strip()
    if not value:
        return ""
    names = [part.strip() for part in value.split(",")]
    bad = [part for part in names if part not in SANITIZERS]
    if bad or len(set(names)) != len(names):
        what = f"unknown sanitizer {bad[0]!r}" if bad else "a sanitizer is listed twice"
        raise EdgeccError(f"{SANITIZE_ENV}={value!r}: {what}; expected a comma-separated list of "
                          f"{', '.join(SANITIZERS)} (e.g. address,undefined), or unset for a plain build")
    return ",".join(names)


def resolve_target(name: str) -> Target:
    if name not in TARGETS:
        raise EdgeccError(f"--target {name!r}: expected one of {', '.join(TARGETS)}")
    march = {"host": ["-march=native"], "avx512": ["-march=x86-64"] + AVX512_FLAGS,
             "avx2": ["-march=x86-64"] + AVX2_FLAGS, "generic": ["-march=x86-64"]}[name]
    isa = {"host": "", "avx512": "avx512", "avx2": "avx2", "generic": "scalar"}[name]
    plain = Target(name, march, isa, _flags_enabled(march), sanitizers_from_env())
    # Sanitizer flags ride along with the target flags: build_info and model.json show them.
    return Target(name, march + plain.sanitize_compile_flags(), isa, plain.required_flags, plain.sanitize)


def compiler_version() -> str:
    return subprocess.run([_cxx(), "--version"], capture_output=True, text=True).stdout.splitlines()[0]


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout)[-4000:]
        raise EdgeccError(f"{what} failed (exit {r.returncode}):\n  {' '.join(cmd)}\n{tail}")


def _source_flags(name: str, target: Target) -> list[str]:
    """cpu.cpp stays plain x86-64 (it runs the check); ISA files get their own flags."""
    if name == "cpu":
        return ["-march=x86-64", *target.sanitize_compile_flags()]
    if name.endswith("_avx512"):
        return target.march + AVX512_FLAGS
    if name.endswith("_avx2"):
        return target.march + AVX2_FLAGS
    return target.march


def _local_includes(paths: list[Path]) -> list[Path]:
    """The cpp/include headers the given files include, transitively (for the cache key:
    edits to unrelated headers must not rebuild the archive)."""
    seen: dict[Path, None] = {}
    pending = list(paths)
    while pending:
        for line in pending.pop().read_text().splitlines():
            if line.startswith('#include "'):
                header = INCLUDE / line.split('"')[1]
                if header.is_file() and header not in seen:
                    seen[header] = None
                    pending.append(header)
    return sorted(seen)


def archive_dir(target: Target) -> Path:
    """Where the kernel archive for `target` is cached: a key over the compiler, the flags
    (sanitizer flags included) and the sources; sanitized builds also say so in the name."""
    h = hashlib.sha256()
    h.update(compiler_version().encode())
    h.update(repr((COMMON, target.march, AVX2_FLAGS, AVX512_FLAGS)).encode())
    sources = [SRC / f"{name}.cpp" for name in KERNEL_SOURCES]
    for path in sources + _local_includes(sources):
        h.update(path.name.encode() + path.read_bytes())
    sanitized = f"-sanitize-{target.sanitize.replace(',', '-')}" if target.sanitize else ""
    return CACHE / f"{target.name}{sanitized}-{h.hexdigest()[:16]}"


def kernel_archive(target: Target, jobs: int = 2) -> Path:
    """The cached static archive of the kernel sources for `target` (built if missing)."""
    out_dir = archive_dir(target)
    archive = out_dir / "libedgecc_model_kernels.a"
    if archive.exists():
        return archive
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".lock", "w") as lock:   # one builder per key; others wait for it
        fcntl.flock(lock, fcntl.LOCK_EX)
        if archive.exists():
            return archive

        def compile_one(name: str) -> Path:
            obj = out_dir / f"{name}.o"
            _run([_cxx(), *COMMON, "-O3", *_source_flags(name, target), "-c", str(SRC / f"{name}.cpp"),
                  "-o", str(obj)], f"compiling kernel {name}.cpp")
            return obj

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            objs = list(pool.map(compile_one, KERNEL_SOURCES))
        tmp = out_dir / "lib.a.tmp"
        tmp.unlink(missing_ok=True)
        _run(["ar", "rcs", str(tmp), *map(str, objs)], "archiving the kernels")
        os.replace(tmp, archive)
    return archive


def build_library(workdir: Path, target: Target, jobs: int = 2) -> Path:
    """workdir holds model.cpp, entry.cpp and weights.bin (which model.cpp embeds by that
    relative name); writes workdir/model.so."""
    archive = kernel_archive(target, jobs)
    cxx = _cxx()
    # Layers that call oneDNN (model_onednn.h): its headers, and libdnnl with an RPATH.
    dnnl_cflags, dnnl_ldflags = [], []
    if onednn.uses_onednn((workdir / "model.cpp").read_text()):
        found = onednn.require()
        dnnl_cflags, dnnl_ldflags = onednn.compile_flags(found), onednn.link_flags(found)
    model_o, entry_o = workdir / "model.o", workdir / "entry.o"
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs_ = [pool.submit(_run, [cxx, *COMMON, *dnnl_cflags, "-O3", *target.march, "-c",
                                    str(workdir / "model.cpp"), "-o", str(model_o)], "compiling the model",
                                    workdir),
                 pool.submit(_run, [cxx, *COMMON, "-O2", "-march=x86-64", *target.sanitize_compile_flags(),
                                    "-c", str(workdir / "entry.cpp"),
                                    "-o", str(entry_o)], "compiling the model entry points")]
        for j in jobs_:
            j.result()
    lib = workdir / "model.so"
    _run([cxx, "-shared", "-fopenmp", "-o", str(lib), str(entry_o), str(model_o), str(archive),
          "-Wl,--exclude-libs,ALL", "-Wl,-Bsymbolic", "-Wl,-z,defs", "-Wl,-z,noexecstack",
          *target.sanitize_link_flags(), *dnnl_ldflags],
         "linking model.so")
    model_o.unlink()
    entry_o.unlink()
    return lib
