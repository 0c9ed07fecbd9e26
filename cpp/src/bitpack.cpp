// Portable activation packing (any dtype, NCHW or NHWC) and the float32 ISA table.
#include "edgecc/bitpack.h"

#include <omp.h>

#include <algorithm>
#include <cstddef>

#include "edgecc/cpu.h"

namespace edgecc::binary {
namespace {

// x is compared with thresholds of type Thr (the caller converts them exactly: float
// thresholds for float input, ceil() of them as int64 for integer input).
template <class T, class Thr>
void pack_generic(const PackProblem& p, const T* x, const Thr* thr) {
  const long hw = static_cast<long>(p.h) * p.w;
  const long npix = hw * p.n;
  const int C = p.c, P = p.planes, words = p.words;
#pragma omp parallel for num_threads(std::max(1, p.threads)) schedule(static)
  for (long pix = 0; pix < npix; ++pix) {
    const long img = pix / hw, s = pix % hw;
    uint32_t* o = p.out + static_cast<size_t>(pix) * P * words;
    std::fill(o, o + static_cast<size_t>(P) * words, 0u);
    for (int c = 0; c < C; ++c) {
      const T v = p.nchw ? x[(img * C + c) * hw + s] : x[pix * C + c];
      int j = 0;  // number of thresholds <= v: thresholds increase, NaN passes none
      while (j < P && v >= thr[static_cast<size_t>(j) * C + c]) ++j;
      if (j) o[static_cast<size_t>(j - 1) * words + c / 32] |= 1u << (c % 32);
    }
  }
}

}  // namespace

void pack_activations_f32(const PackProblem& p, const float* x, const float* thresholds,
                          const char* isa) {
  if (select_isa(isa ? isa : "") == Isa::kAvx512)
    pack_activations_f32_avx512(p, x, thresholds);
  else
    pack_generic(p, x, thresholds);
}

void pack_activations_f64(const PackProblem& p, const double* x, const double* thresholds) {
  pack_generic(p, x, thresholds);
}

void pack_activations_i32(const PackProblem& p, const int32_t* x, const int64_t* thresholds) {
  pack_generic(p, x, thresholds);
}

void pack_activations_i64(const PackProblem& p, const int64_t* x, const int64_t* thresholds) {
  pack_generic(p, x, thresholds);
}

}  // namespace edgecc::binary
