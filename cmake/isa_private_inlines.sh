#!/usr/bin/env bash
# Compiler launcher for the kernel library (see "ISA isolation" in CMakeLists.txt).
# Usage: isa_private_inlines.sh NM OBJCOPY COMPILER ARGS...
# Runs the compiler; if the object is from an *_avx512.cpp / *_avx2.cpp file, renames
# every weak function it defines (inline functions, template instantiations: COMDAT
# copies compiled with that ISA's flags) to NAME.<isa>. objcopy renames the COMDAT
# group signature with it, so the linker only ever merges copies of the same ISA and
# never hands an AVX-512 copy to portable or AVX2 callers.
set -euo pipefail
nm_tool=$1 objcopy_tool=$2
shift 2
"$@"
out="" prev=""
for arg in "$@"; do
  if [ "$prev" = "-o" ]; then out=$arg; fi
  prev=$arg
done
case "$out" in
  *_avx512.cpp.o) isa=avx512 ;;
  *_avx2.cpp.o) isa=avx2 ;;
  *) exit 0 ;;
esac
renames="$out.isa-renames"
"$nm_tool" --defined-only "$out" | awk -v isa="$isa" '$2 == "W" { print $3, $3 "." isa }' > "$renames"
if [ -s "$renames" ]; then
  "$objcopy_tool" --redefine-syms="$renames" "$out"
fi
rm -f "$renames"
