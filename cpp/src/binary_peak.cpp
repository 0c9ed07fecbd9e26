// Portable entry points of the peak microbenchmarks: they check the CPU before entering
// code compiled with AVX-512 flags, whose very first instructions may be AVX-512.
#include <stdexcept>

#include "edgecc/binary_peak.h"
#include "edgecc/cpu.h"

namespace edgecc::binary {

std::vector<std::string> binary_peak_forms() {
  if (!isa_supported(Isa::kAvx512)) return {};
  return binary_peak_forms_avx512();
}

double binary_peak(const std::string& form, double seconds, int threads, bool cpu_time) {
  if (!isa_supported(Isa::kAvx512))
    throw std::invalid_argument("binary_peak needs the avx512 path (VPOPCNTDQ, VNNI)");
  return binary_peak_avx512(form, seconds, threads, cpu_time);
}

}  // namespace edgecc::binary
