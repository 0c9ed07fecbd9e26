// AVX-512 float32 packing. NHWC: 16 channels per compare give 16 plane bits directly.
// NCHW: 16 pixels per compare; a channel's bit is OR-ed into 16 per-pixel words under
// the compare mask, then the words are scattered to their pixels.
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <stdexcept>

#include "edgecc/bitpack.h"

namespace edgecc::binary {
namespace {

constexpr int kMaxPlanes = 16;

void pack_nhwc(const PackProblem& p, const float* x, const float* thr) {
  const long npix = static_cast<long>(p.n) * p.h * p.w;
  const int C = p.c, P = p.planes, halves = 2 * p.words;  // 16-channel groups per plane
#pragma omp parallel for num_threads(std::max(1, p.threads)) schedule(static)
  for (long pix = 0; pix < npix; ++pix) {
    const float* xp = x + static_cast<size_t>(pix) * C;
    uint16_t* o = reinterpret_cast<uint16_t*>(p.out + static_cast<size_t>(pix) * P * p.words);
    for (int h = 0; h < halves; ++h) {
      const int c0 = h * 16;
      const __mmask16 valid =
          c0 >= C ? 0 : (C - c0 >= 16 ? 0xffff : static_cast<__mmask16>((1u << (C - c0)) - 1));
      const __m512 v = _mm512_maskz_loadu_ps(valid, xp + c0);
      __mmask16 ge = _mm512_mask_cmp_ps_mask(valid, v, _mm512_maskz_loadu_ps(valid, thr + c0),
                                             _CMP_GE_OQ);
      for (int q = 0; q < P; ++q) {
        const __mmask16 next =
            q + 1 < P ? _mm512_mask_cmp_ps_mask(
                            valid, v, _mm512_maskz_loadu_ps(valid, thr + static_cast<size_t>(q + 1) * C + c0),
                            _CMP_GE_OQ)
                      : static_cast<__mmask16>(0);
        o[static_cast<size_t>(q) * halves + h] = static_cast<uint16_t>(ge & ~next);
        ge = next;
      }
    }
  }
}

void pack_nchw(const PackProblem& p, const float* x, const float* thr) {
  const long hw = static_cast<long>(p.h) * p.w;
  const long sblocks = (hw + 15) / 16;
  const int C = p.c, P = p.planes, words = p.words;
  const __m512i lane_offsets =
      _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                         _mm512_set1_epi32(P * words));
#pragma omp parallel for num_threads(std::max(1, p.threads)) schedule(static)
  for (long item = 0; item < p.n * sblocks; ++item) {
    const long img = item / sblocks, s0 = (item % sblocks) * 16;
    const __mmask16 valid =
        hw - s0 >= 16 ? 0xffff : static_cast<__mmask16>((1u << (hw - s0)) - 1);
    const float* xi = x + static_cast<size_t>(img) * C * hw + s0;
    uint32_t* o = p.out + static_cast<size_t>(img * hw + s0) * P * words;
    for (int wd = 0; wd < words; ++wd) {
      __m512i acc[kMaxPlanes];
      for (int q = 0; q < P; ++q) acc[q] = _mm512_setzero_si512();
      const int c_end = std::min(C, (wd + 1) * 32);
      for (int c = wd * 32; c < c_end; ++c) {
        const __m512 v = _mm512_maskz_loadu_ps(valid, xi + static_cast<size_t>(c) * hw);
        const __m512i bit = _mm512_set1_epi32(static_cast<int>(1u << (c % 32)));
        __mmask16 ge = _mm512_mask_cmp_ps_mask(valid, v, _mm512_set1_ps(thr[c]), _CMP_GE_OQ);
        for (int q = 0; q < P; ++q) {
          const __mmask16 next =
              q + 1 < P ? _mm512_mask_cmp_ps_mask(valid, v, _mm512_set1_ps(thr[static_cast<size_t>(q + 1) * C + c]),
                                                  _CMP_GE_OQ)
                        : static_cast<__mmask16>(0);
          acc[q] = _mm512_mask_or_epi32(acc[q], ge & ~next, acc[q], bit);
          ge = next;
        }
      }
      for (int q = 0; q < P; ++q)
        _mm512_mask_i32scatter_epi32(o + static_cast<size_t>(q) * words + wd, valid, lane_offsets,
                                     acc[q], 4);
    }
  }
}

}  // namespace

void pack_activations_f32_avx512(const PackProblem& p, const float* x, const float* thresholds) {
  if (p.planes < 1 || p.planes > kMaxPlanes)
    throw std::invalid_argument("pack_activations: planes must be in 1..16");
  if (p.nchw)
    pack_nchw(p, x, thresholds);
  else
    pack_nhwc(p, x, thresholds);
}

}  // namespace edgecc::binary
