#include "edgecc/cpu.h"

#include <cpuid.h>
#include <omp.h>

#include <cstdlib>
#include <stdexcept>

namespace edgecc {

static unsigned long long read_xcr0() {
  unsigned eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}

static CpuFeatures detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27);
  f.fma = c & (1u << 12);
  f.popcnt = c & (1u << 23);
  if (!osxsave) return f;
  const unsigned long long xcr0 = read_xcr0();
  const bool ymm_os = (xcr0 & 0x6) == 0x6;
  const bool zmm_os = (xcr0 & 0xe6) == 0xe6;
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  f.avx2 = ymm_os && (b & (1u << 5));
  f.bmi2 = b & (1u << 8);
  f.fma = f.fma && ymm_os;
  if (zmm_os) {
    f.avx512f = b & (1u << 16);
    f.avx512dq = b & (1u << 17);
    f.avx512ifma = b & (1u << 21);
    f.avx512bw = b & (1u << 30);
    f.avx512vl = b & (1u << 31);
    f.avx512vnni = c & (1u << 11);
    f.avx512bitalg = c & (1u << 12);
    f.avx512vpopcntdq = c & (1u << 14);
  }
  return f;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

static std::string missing_flags(Isa isa) {
  const CpuFeatures& f = cpu_features();
  std::string m;
  auto need = [&](bool have, const char* name) {
    if (!have) m += (m.empty() ? "" : ", ") + std::string(name);
  };
  if (isa == Isa::kAvx512) {
    need(f.avx512f, "avx512f");
    need(f.avx512bw, "avx512bw");
    need(f.avx512vl, "avx512vl");
    need(f.avx512dq, "avx512dq");
    need(f.avx512vpopcntdq, "avx512vpopcntdq");
    need(f.avx512vnni, "avx512vnni");
    need(f.avx512ifma, "avx512ifma");
  }
  if (isa == Isa::kAvx512 || isa == Isa::kAvx2) {
    need(f.avx2, "avx2");
    need(f.fma, "fma");
    need(f.bmi2, "bmi2");
    need(f.popcnt, "popcnt");
  }
  return m;
}

bool isa_supported(Isa isa) { return missing_flags(isa).empty(); }

Isa best_isa() {
  if (isa_supported(Isa::kAvx512)) return Isa::kAvx512;
  if (isa_supported(Isa::kAvx2)) return Isa::kAvx2;
  return Isa::kScalar;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "scalar";
  }
}

Isa select_isa(const std::string& requested) {
  std::string r = requested;
  if (r.empty()) {
    const char* env = std::getenv("EDGECC_ISA");
    if (env && *env) r = env;
  }
  if (r.empty() || r == "auto") return best_isa();
  Isa isa;
  if (r == "avx512") isa = Isa::kAvx512;
  else if (r == "avx2") isa = Isa::kAvx2;
  else if (r == "scalar" || r == "portable") isa = Isa::kScalar;
  else
    throw std::invalid_argument("unknown ISA '" + r + "' (expected avx512, avx2, scalar or auto)");
  const std::string miss = missing_flags(isa);
  if (!miss.empty())
    throw std::invalid_argument("ISA '" + r + "' is not supported by this CPU: missing " + miss);
  return isa;
}

int omp_max_threads() { return omp_get_max_threads(); }

}  // namespace edgecc
