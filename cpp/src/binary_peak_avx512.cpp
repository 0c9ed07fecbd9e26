// Peak microbenchmarks (see binary_peak.h). Each form keeps independent accumulators so
// that throughput, not latency, limits it; results are summed into a sink so the
// compiler cannot drop the work.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <ctime>
#include <cstdint>
#include <stdexcept>

#include "edgecc/binary_peak.h"
#include "edgecc/cpu.h"

namespace edgecc::binary {
namespace {

constexpr int kRing = 1024;  // activation words cycled through (4 KiB, L1-resident)

// Weights in B registers, C activation words broadcast per step: C*B accumulators.
// Returns bit-MACs done.
template <int C, int B>
double and_popcnt_registers(const uint32_t* x, long steps, int32_t* sink) {
  __m512i w[B], acc[C][B];
  for (int b = 0; b < B; ++b) w[b] = _mm512_set1_epi32(static_cast<int>(0x9e3779b9u * (b + 1)));
  for (int c = 0; c < C; ++c)
    for (int b = 0; b < B; ++b) acc[c][b] = _mm512_setzero_si512();
  for (long i = 0; i < steps; ++i) {
    const uint32_t* xs = x + (i * C) % kRing;
    for (int c = 0; c < C; ++c) {
      const __m512i xv = _mm512_set1_epi32(static_cast<int>(xs[c]));
      for (int b = 0; b < B; ++b)
        acc[c][b] = _mm512_add_epi32(acc[c][b], _mm512_popcnt_epi32(_mm512_and_si512(w[b], xv)));
    }
  }
  __m512i s = _mm512_setzero_si512();
  for (int c = 0; c < C; ++c)
    for (int b = 0; b < B; ++b) s = _mm512_add_epi32(s, acc[c][b]);
  *sink += _mm512_reduce_add_epi32(s);
  return static_cast<double>(steps) * C * B * 512;
}

// Both operands streamed from L1 (two vector loads per AND), A accumulators.
template <int A>
double and_popcnt_streaming(const uint32_t* x, const uint32_t* w, long steps, int32_t* sink) {
  __m512i acc[A];
  for (int a = 0; a < A; ++a) acc[a] = _mm512_setzero_si512();
  for (long i = 0; i < steps; ++i) {
    const long base = (i * A * 16) % kRing;
    for (int a = 0; a < A; ++a) {
      const long o = (base + a * 16) % kRing;
      acc[a] = _mm512_add_epi32(acc[a], _mm512_popcnt_epi32(_mm512_and_si512(
                                            _mm512_loadu_si512(w + o), _mm512_loadu_si512(x + o))));
    }
  }
  __m512i s = _mm512_setzero_si512();
  for (int a = 0; a < A; ++a) s = _mm512_add_epi32(s, acc[a]);
  *sink += _mm512_reduce_add_epi32(s);
  return static_cast<double>(steps) * A * 512;
}

// 64-bit lanes (VPOPCNTQ), weights in registers: the same work with the other popcount.
template <int C, int B>
double and_popcnt_registers_q(const uint32_t* x, long steps, int32_t* sink) {
  __m512i w[B], acc[C][B];
  for (int b = 0; b < B; ++b) w[b] = _mm512_set1_epi64(static_cast<long long>(0x9e3779b97f4a7c15ull * (b + 1)));
  for (int c = 0; c < C; ++c)
    for (int b = 0; b < B; ++b) acc[c][b] = _mm512_setzero_si512();
  const uint64_t* x64 = reinterpret_cast<const uint64_t*>(x);
  for (long i = 0; i < steps; ++i) {
    const uint64_t* xs = x64 + (i * C) % (kRing / 2);
    for (int c = 0; c < C; ++c) {
      const __m512i xv = _mm512_set1_epi64(static_cast<long long>(xs[c]));
      for (int b = 0; b < B; ++b)
        acc[c][b] = _mm512_add_epi64(acc[c][b], _mm512_popcnt_epi64(_mm512_and_si512(w[b], xv)));
    }
  }
  __m512i s = _mm512_setzero_si512();
  for (int c = 0; c < C; ++c)
    for (int b = 0; b < B; ++b) s = _mm512_add_epi64(s, acc[c][b]);
  *sink += static_cast<int32_t>(_mm512_reduce_add_epi64(s));
  return static_cast<double>(steps) * C * B * 512;
}

double fp32_fma(long steps, int32_t* sink) {
  constexpr int A = 12;
  __m512 acc[A];
  for (int a = 0; a < A; ++a) acc[a] = _mm512_set1_ps(0.001f * a);
  const __m512 m = _mm512_set1_ps(0.9999f), c = _mm512_set1_ps(0.0001f);
  for (long i = 0; i < steps; ++i)
    for (int a = 0; a < A; ++a) acc[a] = _mm512_fmadd_ps(acc[a], m, c);
  __m512 s = acc[0];
  for (int a = 1; a < A; ++a) s = _mm512_add_ps(s, acc[a]);
  *sink += static_cast<int32_t>(_mm512_reduce_add_ps(s));
  return static_cast<double>(steps) * A * 16;
}

double int8_vnni(long steps, int32_t* sink) {
  constexpr int A = 12;
  __m512i acc[A];
  for (int a = 0; a < A; ++a) acc[a] = _mm512_setzero_si512();
  const __m512i u = _mm512_set1_epi32(0x01020304), v = _mm512_set1_epi32(0x05060708);
  for (long i = 0; i < steps; ++i)
    for (int a = 0; a < A; ++a) acc[a] = _mm512_dpbusd_epi32(acc[a], u, v);
  __m512i s = _mm512_setzero_si512();
  for (int a = 0; a < A; ++a) s = _mm512_add_epi32(s, acc[a]);
  *sink += _mm512_reduce_add_epi32(s);
  return static_cast<double>(steps) * A * 64;
}

using FormFn = double (*)(const uint32_t*, const uint32_t*, long, int32_t*);

struct Form {
  const char* name;
  FormFn run;
};

const Form kForms[] = {
    {"and_popcnt_regs_2x6", [](const uint32_t* x, const uint32_t*, long n, int32_t* s) { return and_popcnt_registers<2, 6>(x, n, s); }},
    {"and_popcnt_regs_3x4", [](const uint32_t* x, const uint32_t*, long n, int32_t* s) { return and_popcnt_registers<3, 4>(x, n, s); }},
    {"and_popcnt_regs_4x4", [](const uint32_t* x, const uint32_t*, long n, int32_t* s) { return and_popcnt_registers<4, 4>(x, n, s); }},
    {"and_popcnt_regs_4x6", [](const uint32_t* x, const uint32_t*, long n, int32_t* s) { return and_popcnt_registers<4, 6>(x, n, s); }},
    {"and_popcnt_regs_1x12", [](const uint32_t* x, const uint32_t*, long n, int32_t* s) { return and_popcnt_registers<1, 12>(x, n, s); }},
    {"and_popcnt_regs_12x1", [](const uint32_t* x, const uint32_t*, long n, int32_t* s) { return and_popcnt_registers<12, 1>(x, n, s); }},
    {"and_popcntq_regs_3x4", [](const uint32_t* x, const uint32_t*, long n, int32_t* s) { return and_popcnt_registers_q<3, 4>(x, n, s); }},
    {"and_popcnt_stream_12", [](const uint32_t* x, const uint32_t* w, long n, int32_t* s) { return and_popcnt_streaming<12>(x, w, n, s); }},
    {"and_popcnt_stream_16", [](const uint32_t* x, const uint32_t* w, long n, int32_t* s) { return and_popcnt_streaming<16>(x, w, n, s); }},
    {"fp32_fma", [](const uint32_t*, const uint32_t*, long n, int32_t* s) { return fp32_fma(n, s); }},
    {"int8_vnni", [](const uint32_t*, const uint32_t*, long n, int32_t* s) { return int8_vnni(n, s); }},
};

}  // namespace

std::vector<std::string> binary_peak_forms_avx512() {
  std::vector<std::string> names;
  for (const Form& f : kForms) names.emplace_back(f.name);
  return names;
}

// Seconds on the wall clock, or on this thread's CPU-time clock (which does not count
// time the thread spent preempted by other processes).
static double now_seconds(bool cpu_time) {
  timespec ts;
  clock_gettime(cpu_time ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Entered only through binary_peak() (binary_peak.cpp), which checks the CPU first.
double binary_peak_avx512(const std::string& form, double seconds, int threads, bool cpu_time) {
  if (threads < 1) throw std::invalid_argument("binary_peak: threads must be >= 1");
  if (!(seconds > 0.0 && seconds <= 60.0))
    throw std::invalid_argument("binary_peak: seconds must be in (0, 60]");
  const Form* f = nullptr;
  for (const Form& k : kForms)
    if (form == k.name) f = &k;
  if (!f) throw std::invalid_argument("binary_peak: unknown form '" + form + "'");

  double total_rate = 0.0;
#pragma omp parallel num_threads(threads) reduction(+ : total_rate)
  {
    alignas(64) uint32_t x[kRing], w[kRing];
    for (int i = 0; i < kRing; ++i) {
      x[i] = 0x9e3779b9u * (i + 1) ^ static_cast<uint32_t>(omp_get_thread_num());
      w[i] = 0x85ebca6bu * (i + 7);
    }
    int32_t sink = 0;
    // Calibrate the step count on a short run, then time a run of about `seconds`.
    long steps = 1 << 16;
    for (;;) {
      const double t0 = now_seconds(cpu_time);
      f->run(x, w, steps, &sink);
      const double dt = now_seconds(cpu_time) - t0;
      if (dt > 0.02 || steps > (1L << 40)) {
        steps = static_cast<long>(steps * std::min(1e6, seconds / std::max(dt, 1e-9)));
        break;
      }
      steps *= 4;
    }
#pragma omp barrier
    const double t0 = now_seconds(cpu_time);
    const double work = f->run(x, w, std::max(1L, steps), &sink);
    const double dt = now_seconds(cpu_time) - t0;
    total_rate += work / dt + (sink == 0x7fffffff ? 1e-30 : 0.0);
  }
  return total_rate;
}

}  // namespace edgecc::binary
