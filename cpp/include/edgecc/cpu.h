// CPU feature detection and ISA selection shared by every kernel family.
#pragma once
#include <string>

namespace edgecc {

struct CpuFeatures {
  bool avx2 = false, fma = false, bmi2 = false, popcnt = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512vpopcntdq = false, avx512vnni = false, avx512ifma = false, avx512bitalg = false;
};

// Kernel paths, best first. kAvx512 means the "Zen4/Ice Lake" set: F, BW, VL, DQ,
// VPOPCNTDQ, VNNI, IFMA; kAvx2 means AVX2 + FMA + BMI2 + POPCNT.
enum class Isa { kAvx512 = 0, kAvx2 = 1, kScalar = 2 };

const CpuFeatures& cpu_features();
bool isa_supported(Isa isa);
Isa best_isa();
const char* isa_name(Isa isa);
// requested: "avx512" | "avx2" | "scalar" | "" (auto). Empty falls back to the
// EDGECC_ISA environment variable, then to best_isa(). Throws std::invalid_argument
// naming the missing CPU flags when the requested path cannot run here.
Isa select_isa(const std::string& requested);
int omp_max_threads();

}  // namespace edgecc
