"""ISA isolation of the native module: no code compiled for AVX-512 / AVX2 may be
reachable from portable code except through the ISA kernels named as such.

*_avx512.cpp / *_avx2.cpp files are compiled with -mavx512* / -mavx2. The inline
functions and template instantiations they emit are weak COMDAT copies; if the
linker picks such a copy for everyone, portable callers run AVX-512 code and crash
with SIGILL on older CPUs. CMakeLists.txt renames those copies (NAME.<isa>); this
test disassembles the built module and fails on any function that holds AVX / AVX2
/ AVX-512 / BMI instructions while being neither named for its ISA (avx512 / avx2
in its name, e.g. `..._avx512`, `[clone .avx512]`) nor a file-local function of an
ISA source file. It also checks the detector on a planted leak.
"""
from __future__ import annotations

import bisect
import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("objdump", "readelf", "nm", "c++filt")
pytestmark = pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                                reason="needs binutils (objdump, readelf, nm, c++filt)")

# Instructions a baseline x86-64 (SSE2) CPU does not have: every VEX/EVEX instruction
# (mnemonics v*), AVX-512 mask registers, BMI1/BMI2, POPCNT, LZCNT/TZCNT.
EXTENDED = re.compile(r"^(v[a-z0-9]+|k[a-z]+[bwdq]|shlx|shrx|sarx|rorx|mulx|pdep|pext|andn|bextr|"
                      r"blsi|blsmsk|blsr|bzhi|popcnt|lzcnt|tzcnt)\b")
# Signs of AVX-512 (EVEX) on top of that: zmm, mask registers, xmm/ymm16-31, masking.
AVX512 = re.compile(r"%zmm|%k[0-7]\b|%[xy]mm(1[6-9]|2\d|3[01])\b|\{%k|\{z\}|\{1to|"
                    r"^(vmovdq[au](8|16|32|64)|vpternlog|vperm[ti]2|vpcompress|vpexpand|vpopcnt|"
                    r"vpdpbusd|vpdpwssd|vpmadd52|vpro[lr]|vpsraq|vpmovq|vpmovd|vpmovw|vpabsq|vpm[ai][nx][su]q)")
ISA_NAME = re.compile(r"avx512|avx2", re.I)
ISA_FILE = re.compile(r"_(avx512|avx2)\.cpp$")


def _run(*cmd, stdin=None) -> str:
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=True).stdout


def _build_id(so: str) -> str | None:
    m = re.search(r"Build ID: ([0-9a-f]+)", _run("readelf", "-n", so))
    return m.group(1) if m else None


def _has_symtab(so: str) -> bool:
    return ".symtab" in _run("readelf", "-S", "-W", so)


def function_symbols(so: str) -> dict[int, tuple[int, str, str, str | None]]:
    """address -> (size, binding, demangled name, source file of a local symbol)."""
    out = _run("readelf", "-W", "--syms", so)
    raw, current_file = {}, None
    for line in out.splitlines():
        p = line.split()
        if len(p) < 8 or not p[0].endswith(":") or not p[0][:-1].isdigit():
            continue
        value, size, typ, bind, ndx, name = p[1], p[2], p[3], p[4], p[6], p[7]
        if typ == "FILE":
            current_file = name
        elif typ == "FUNC" and ndx != "UND":
            size = int(size, 16) if size.startswith("0x") else int(size)
            raw.setdefault(int(value, 16), (size, bind, name.split("@")[0],
                                            current_file if bind == "LOCAL" else None))
    names = sorted({r[2] for r in raw.values()})
    demangled = dict(zip(names, _run("c++filt", stdin="\n".join(names)).splitlines()))
    return {a: (s, b, demangled.get(n, n), f) for a, (s, b, n, f) in raw.items()}


def extended_isa_functions(so: str, symbols) -> dict[int | None, dict]:
    """Function address (None: outside every symbol) -> {'count', 'avx512', 'example'}
    for each function holding non-baseline instructions."""
    addrs = sorted(symbols)
    found: dict[int | None, dict] = {}
    dump = subprocess.Popen(["objdump", "-d", "--no-show-raw-insn", "-j", ".text", so],
                            stdout=subprocess.PIPE, text=True)
    for line in dump.stdout:
        head, sep, insn = line.partition(":\t")
        if not sep:
            continue
        try:
            addr = int(head, 16)
        except ValueError:
            continue
        insn = insn.strip()
        if not EXTENDED.match(insn):
            continue
        i = bisect.bisect_right(addrs, addr) - 1
        key = addrs[i] if i >= 0 and addr < addrs[i] + max(symbols[addrs[i]][0], 1) else None
        entry = found.setdefault(key, {"count": 0, "avx512": False, "example": insn})
        entry["count"] += 1
        entry["avx512"] |= bool(AVX512.search(insn))
    dump.wait()
    return found


def isa_leaks(so: str) -> list[str]:
    """Descriptions of every function with ISA-extended code outside the ISA kernels."""
    symbols = function_symbols(so)
    leaks = []
    for addr, hit in extended_isa_functions(so, symbols).items():
        if addr is None:
            leaks.append(f"{hit['count']} extended instructions outside any function symbol, "
                         f"e.g. {hit['example']!r}")
            continue
        _, bind, name, src = symbols[addr]
        isa = ISA_NAME.search(name) or (src and ISA_FILE.search(src))
        where = f"{bind.lower()} {name[:160]}" + (f" ({src})" if src else "")
        if not isa:
            leaks.append(f"{where}: {hit['count']} extended instructions, e.g. {hit['example']!r}")
        elif "avx2" in isa.group(0).lower() and "avx512" not in name.lower() and hit["avx512"]:
            leaks.append(f"{where}: AVX2 code with AVX-512 instructions, e.g. {hit['example']!r}")
    return sorted(leaks)


def _module_with_symbols() -> str:
    """The built module, or its unstripped twin in build/ (same GNU build id) when the
    installed copy was stripped."""
    native = pytest.importorskip("edgecc._native")
    so = native.__file__
    if _has_symtab(so):
        return so
    bid = _build_id(so)
    for twin in glob.glob(str(ROOT / "build" / "*" / "_native*.so")):
        if _build_id(twin) == bid and _has_symtab(twin):
            return twin
    pytest.skip(f"{so} is stripped and no unstripped build with build id {bid} is in build/")


def test_native_module_has_no_isa_code_outside_isa_kernels():
    so = _module_with_symbols()
    symbols = function_symbols(so)
    hits = extended_isa_functions(so, symbols)
    kernels = [symbols[a][2] for a in hits if a is not None and ISA_NAME.search(symbols[a][2])]
    # The scan sees the kernels (else it could not see a leak either).
    assert any("avx512" in k for k in kernels) and any("avx2" in k for k in kernels), kernels[:5]
    leaks = isa_leaks(so)
    assert not leaks, f"{len(leaks)} ISA leak(s) in {so}:\n" + "\n".join(leaks[:30])


def test_isa_objects_define_only_isa_named_weak_functions():
    """Each ISA object's weak functions and code COMDAT groups carry the ISA suffix, so
    the linker cannot merge them with portable copies (whatever the link order)."""
    objects = glob.glob(str(ROOT / "build" / "*" / "CMakeFiles" / "edgecc_kernels.dir" / "cpp" / "src"
                            / "*_avx*.cpp.o"))
    if not objects:
        pytest.skip("no kernel object files under build/")
    bad = []
    for obj in objects:
        isa = "avx512" if obj.endswith("_avx512.cpp.o") else "avx2"
        for line in _run("nm", "--defined-only", obj).splitlines():
            p = line.split()
            if len(p) == 3 and p[1] == "W" and not p[2].endswith("." + isa):
                bad.append(f"{os.path.basename(obj)}: weak function {p[2]}")
        for sig in re.findall(r"COMDAT group section \[\s*\d+\] `\.group' \[([^\]]+)\]",
                              _run("readelf", "-g", "-W", obj)):
            if not sig.endswith("." + isa) and not sig.startswith("DW.ref."):
                bad.append(f"{os.path.basename(obj)}: COMDAT group {sig}")
    assert not bad, "\n".join(bad[:30])


# ---- the detector and the build's renaming, on a planted leak ---------------------
_SHARED = "#include <vector>\ninline float total(const std::vector<float>& v) { float s = 0; " \
          "for (float x : v) s += x * 1.5f; return s; }\n"
_ISA_SRC = _SHARED + "float sum_avx512(int n) { std::vector<float> v(n, 2.0f); return total(v); }\n"
_PORTABLE_SRC = _SHARED + "float sum(int n) { std::vector<float> v(n, 3.0f); return total(v); }\n"
_ISA_FLAGS = ["-mavx512f", "-mavx512vl", "-mavx2", "-mfma"]


def _planted_module(out_dir: Path, launcher: list[str]) -> str:
    """Builds a two-file module, ISA object linked first so its COMDAT copies win
    unless renamed."""
    out_dir.mkdir()
    (out_dir / "leak_avx512.cpp").write_text(_ISA_SRC)
    (out_dir / "leak.cpp").write_text(_PORTABLE_SRC)
    cxx = ["g++", "-std=c++17", "-O3", "-fPIC", "-fno-inline", "-c"]  # keep total() out of line
    for src, flags in (("leak_avx512.cpp", _ISA_FLAGS), ("leak.cpp", [])):
        subprocess.run(launcher + cxx + flags + [str(out_dir / src), "-o", str(out_dir / (src + ".o"))],
                       check=True)
    so = str(out_dir / "libleak.so")
    subprocess.run(["g++", "-shared", "-o", so, str(out_dir / "leak_avx512.cpp.o"),
                    str(out_dir / "leak.cpp.o")], check=True)
    return so


@pytest.mark.skipif(shutil.which("g++") is None or shutil.which("objcopy") is None,
                    reason="needs g++ and objcopy")
def test_detector_finds_planted_leak_and_launcher_removes_it(tmp_path):
    leaks = isa_leaks(_planted_module(tmp_path / "plain", []))
    assert any("total(" in leak for leak in leaks), leaks
    launcher = [str(ROOT / "cmake" / "isa_private_inlines.sh"), "nm", "objcopy"]
    fixed = _planted_module(tmp_path / "fixed", launcher)
    assert isa_leaks(fixed) == []
    assert any("[clone .avx512]" in name for _, _, name, _ in function_symbols(fixed).values())
