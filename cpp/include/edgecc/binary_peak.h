// Microbenchmarks of the AND + popcount instruction mix (and, for context, fp32 FMA and
// int8 VNNI) with everything in registers or L1: the peak the binary kernels are
// measured against.
#pragma once
#include <string>
#include <vector>

namespace edgecc::binary {

// Names of the forms binary_peak() can run (none without the avx512 path).
std::vector<std::string> binary_peak_forms();
// Runs `form` on `threads` threads at once for about `seconds`; returns the total rate
// in operations per second: bit-MACs for the binary forms ("and_popcnt_*"), FMAs for
// "fp32_fma", multiply-adds for "int8_vnni". cpu_time: time each thread on its own
// CPU-time clock (immune to preemption by other processes on a shared machine).
// Needs AVX-512 (VPOPCNTDQ, VNNI).
double binary_peak(const std::string& form, double seconds, int threads, bool cpu_time);

// The AVX-512 bodies (binary_peak_avx512.cpp); call them only after checking the CPU.
std::vector<std::string> binary_peak_forms_avx512();
double binary_peak_avx512(const std::string& form, double seconds, int threads, bool cpu_time);

}  // namespace edgecc::binary
