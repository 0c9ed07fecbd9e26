// AVX-512 binary convolution: 16 output channels x 32 input channels per zmm, the
// activation word broadcast, AND -> VPOPCNTD -> VPADDD into C x B accumulators.
#include <immintrin.h>

#include "edgecc/binary_conv_driver.h"

namespace edgecc::binary {
namespace {

template <int C, int B, bool kXor>
struct B1ConvTileAvx512 {
  // C columns (pixel, plane) x B blocks of 16 output-channel lanes.
  static void run(const uint32_t* const* x, const std::ptrdiff_t* tap_offset, const uint32_t* w,
                  std::ptrdiff_t w_block_stride, int taps, int k_words, int32_t* out,
                  int out_stride) {
    __m512i acc[C][B];
    for (int c = 0; c < C; ++c)
      for (int b = 0; b < B; ++b) acc[c][b] = _mm512_setzero_si512();
    for (int t = 0; t < taps; ++t) {
      const uint32_t* xs[C];
      for (int c = 0; c < C; ++c) xs[c] = x[c] + tap_offset[t];
      const uint32_t* wt = w + static_cast<std::ptrdiff_t>(t) * k_words * kLanes;
      for (int k = 0; k < k_words; ++k) {
        __m512i wv[B];
        for (int b = 0; b < B; ++b) wv[b] = _mm512_loadu_si512(wt + b * w_block_stride + k * kLanes);
        for (int c = 0; c < C; ++c) {
          const __m512i xv = _mm512_set1_epi32(static_cast<int>(xs[c][k]));
          for (int b = 0; b < B; ++b)
            acc[c][b] = _mm512_add_epi32(acc[c][b], _mm512_popcnt_epi32(kXor ? _mm512_xor_si512(wv[b], xv) : _mm512_and_si512(wv[b], xv)));
        }
      }
    }
    for (int c = 0; c < C; ++c)
      for (int b = 0; b < B; ++b) _mm512_storeu_si512(out + c * out_stride + b * kLanes, acc[c][b]);
  }
};

// The epilogue's 16-lane operations: one zmm each.
struct Avx512Vec {
  using F = __m512;
  using I = __m512i;
  static I load_i(const int32_t* p) { return _mm512_loadu_si512(p); }
  static I zero_i() { return _mm512_setzero_si512(); }
  static I combine(I cnt, int mul, I add, int32_t base) {
    return _mm512_add_epi32(_mm512_add_epi32(_mm512_mullo_epi32(cnt, _mm512_set1_epi32(mul)), add),
                            _mm512_set1_epi32(base));
  }
  static void store_i(int32_t* p, I v) { _mm512_storeu_si512(p, v); }
  static F zero_f() { return _mm512_setzero_ps(); }
  static F load_f(const float* p) { return _mm512_loadu_ps(p); }
  static void store_f(float* p, F v) { _mm512_storeu_ps(p, v); }
  static F madd_i(F acc, const float* a, I b) { return _mm512_fmadd_ps(_mm512_loadu_ps(a), _mm512_cvtepi32_ps(b), acc); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F relu(F a) { return _mm512_max_ps(a, _mm512_setzero_ps()); }
  static F prelu(F a, F s) {
    const __mmask16 neg = _mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_LT_OQ);
    return _mm512_mask_mul_ps(a, neg, a, s);
  }
  static uint32_t ge(F a, const float* t) { return _mm512_cmp_ps_mask(a, _mm512_loadu_ps(t), _CMP_GE_OQ); }
};

struct Avx512Kernels {
  using Vec = Avx512Vec;
  static constexpr int kMaxCols = 8, kMaxBlocks = 8;
  static constexpr int kBestCols = 4, kBestBlocks = 6;
  // 32 zmm: C*B accumulators + B weight vectors + 1 broadcast.
  static constexpr bool fits(int c, int b) { return c * b <= 24 && c * b + b + 1 <= 32; }
  template <int C, int B, bool kXor>
  using Tile = B1ConvTileAvx512<C, B, kXor>;
};

}  // namespace

void binary_conv_avx512(const ConvProblem& p, const ConvTables& tables) { run_binary_conv<Avx512Kernels>(p, tables); }

}  // namespace edgecc::binary
