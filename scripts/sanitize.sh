#!/usr/bin/env bash
# Build the native extension with AddressSanitizer + UndefinedBehaviorSanitizer into
# build/sanitize/ (the normal editable build in .venv is left alone) and run the kernel
# tests against it, then the compiled-model runtime tests with EDGECC_SANITIZE exported, so
# every model.so they compile (and its cached kernel archive, codegen/build.py) is
# instrumented too. Any sanitizer report, crash or test failure fails the script.
#   scripts/sanitize.sh                 # default kernel + compiled-model subset (minutes)
#   scripts/sanitize.sh tests/test_x.py # other tests / pytest arguments
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python
OUT=$ROOT/build/sanitize
export PATH=$ROOT/.venv/bin:$PATH  # cmake and ninja from the venv

# 1. Build (incremental). RelWithDebInfo: -g for symbolized reports.
cmake -S . -B "$OUT/cmake" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DEDGECC_SANITIZE=address,undefined \
  -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$PY" > "$OUT.configure.log" 2>&1 ||
  { cat "$OUT.configure.log"; exit 1; }
flock /tmp/edgecc-sanitize-build.lock cmake --build "$OUT/cmake" -j "$(nproc)"
SO=$(ls "$OUT"/cmake/_native*.so)
case "$(nm -D "$SO")" in *__asan_init*) ;; *) echo "sanitize: $SO is not ASan-instrumented"; exit 1 ;; esac

# 2. A package directory: the edgecc sources (symlinked) with the sanitized module.
PKG=$OUT/pkg
rm -rf "$PKG" && mkdir -p "$PKG/edgecc"
for entry in "$ROOT"/edgecc/*; do
  case "$entry" in *.so|*/__pycache__) continue ;; esac
  ln -s "$entry" "$PKG/edgecc/"
done
cp "$SO" "$PKG/edgecc/"

TESTS=("$@")
if [ ${#TESTS[@]} -eq 0 ]; then
  TESTS=(tests/test_direct_conv.py tests/test_binary_conv.py tests/test_bitpack.py
         tests/test_dfnt_conv.py tests/test_dfnt_ring.py tests/test_dfnt_transform.py
         tests/fuzz/test_fuzz_kernels.py
         # Compiled models, in-process (edgecc.runtime and the C API through ctypes).
         # Not tests/test_c_app.py: its C example is a separate process (the sanitized
         # model.so needs the ASan runtime loaded first, which a plain C program does not
         # do) and it runs under valgrind, which cannot run ASan code.
         tests/test_runtime_robustness.py tests/test_concurrency.py tests/test_fault_injection.py
         tests/test_compile_int.py tests/test_compile_pa.py tests/test_sanitize_build.py)
  PREBUILD=1
fi

# 3. Compiled models: codegen/build.py instruments every model.so and kernel archive it
# builds while EDGECC_SANITIZE is set. For the default run, the sanitized kernel archives of
# every target the tests build are made up front without the ASan preload (a plain
# compiler runs faster; cached in build/model-kernels/<target>-sanitize-*). oneDNN's plain
# probe library is built here too (sanitized and plain probes have separate cache keys), so
# plain processes started by the tests find it ready.
export EDGECC_SANITIZE=address,undefined
if [ "${PREBUILD:-0}" = 1 ]; then
  EDGECC_SANITIZE= "$PY" -c \
    "from edgecc.compiler.codegen import onednn as d; d.available() and d.matmul_impl(1, 1, 1, False, 0, 0)"
  "$PY" - "$(nproc)" <<'EOF'
import sys
from edgecc.compiler.codegen import build as B
for name in B.TARGETS:
    B.kernel_archive(B.resolve_target(name), jobs=int(sys.argv[1]))
EOF
  echo "sanitize: extension and kernel archives ready after ${SECONDS}s"
fi

# 4. Run. The ASan runtime must be loaded first (Python itself is not instrumented);
# libstdc++ is preloaded too, else ASan's __cxa_throw interceptor finds no real
# __cxa_throw (Python is C, libstdc++ only arrives with the module) and aborts on the
# first C++ exception. Leak checking is off: the interpreter keeps its objects until exit.
REPORTS=$OUT/reports
rm -rf "$REPORTS" && mkdir -p "$REPORTS"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:detect_odr_violation=0:log_path=$REPORTS/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$REPORTS/ubsan"
export EDGECC_SANITIZE_PKG=$PKG
set +e
LD_PRELOAD="$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libstdc++.so)" OMP_NUM_THREADS=2 "$PY" - "${TESTS[@]}" <<'EOF'
import os, sys
# Import edgecc from the sanitized package, not through the editable-install redirect.
sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "ScikitBuildRedirectingFinder"]
sys.path[:] = [os.environ["EDGECC_SANITIZE_PKG"]] + [p for p in sys.path if p not in ("", os.getcwd())]
import edgecc._native
assert edgecc._native.__file__.startswith(os.environ["EDGECC_SANITIZE_PKG"]), edgecc._native.__file__
print("sanitized module:", edgecc._native.__file__)
import pytest
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", *sys.argv[1:]]))
EOF
rc=$?
set -e
if compgen -G "$REPORTS/*" > /dev/null; then
  echo "sanitize: sanitizer reports:"
  cat "$REPORTS"/*
  exit 1
fi
if [ "$rc" -ne 0 ]; then echo "sanitize: tests failed under ASan+UBSan (exit $rc)"; exit "$rc"; fi
echo "sanitize: clean (ASan+UBSan, ${#TESTS[@]} test files, compiled models too) in ${SECONDS}s"
