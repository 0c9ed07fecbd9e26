// AVX2 binary convolution: no vector popcount, so AND -> nibble-table popcount (VPSHUFB)
// into byte counters, widened to 32-bit counts every 31 steps (31 * 8 < 256).
#include <immintrin.h>

#include "edgecc/binary_conv_driver.h"

namespace edgecc::binary {
namespace {

template <int C, int B, bool kXor>
struct B1ConvTileAvx2 {
  // C columns x B blocks of 16 lanes; each block is two ymm halves of 8 lanes.
  static void run(const uint32_t* const* x, const std::ptrdiff_t* tap_offset, const uint32_t* w,
                  std::ptrdiff_t w_block_stride, int taps, int k_words, int32_t* out,
                  int out_stride) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    __m256i acc8[C][B][2];
    auto clear = [&] {
      for (int c = 0; c < C; ++c)
        for (int b = 0; b < B; ++b) acc8[c][b][0] = acc8[c][b][1] = _mm256_setzero_si256();
    };
    // Adds the byte counters into the 32-bit counts in `out`.
    auto flush = [&] {
      const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
      for (int c = 0; c < C; ++c)
        for (int b = 0; b < B; ++b)
          for (int h = 0; h < 2; ++h) {
            const __m256i s32 =
                _mm256_madd_epi16(_mm256_maddubs_epi16(acc8[c][b][h], ones8), ones16);
            __m256i* o = reinterpret_cast<__m256i*>(out + c * out_stride + b * kLanes + h * 8);
            _mm256_storeu_si256(o, _mm256_add_epi32(_mm256_loadu_si256(o), s32));
          }
    };
    for (int c = 0; c < C; ++c)
      for (int b = 0; b < B * kLanes; ++b) out[c * out_stride + b] = 0;
    clear();
    int steps = 0;
    for (int t = 0; t < taps; ++t) {
      const uint32_t* xs[C];
      for (int c = 0; c < C; ++c) xs[c] = x[c] + tap_offset[t];
      const uint32_t* wt = w + static_cast<std::ptrdiff_t>(t) * k_words * kLanes;
      for (int k = 0; k < k_words; ++k) {
        __m256i wv[B][2];
        for (int b = 0; b < B; ++b)
          for (int h = 0; h < 2; ++h)
            wv[b][h] = _mm256_loadu_si256(
                reinterpret_cast<const __m256i*>(wt + b * w_block_stride + k * kLanes + h * 8));
        for (int c = 0; c < C; ++c) {
          const __m256i xv = _mm256_set1_epi32(static_cast<int>(xs[c][k]));
          for (int b = 0; b < B; ++b)
            for (int h = 0; h < 2; ++h) {
              const __m256i v = kXor ? _mm256_xor_si256(wv[b][h], xv) : _mm256_and_si256(wv[b][h], xv);
              const __m256i lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(v, low4));
              const __m256i hi =
                  _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), low4));
              acc8[c][b][h] = _mm256_add_epi8(acc8[c][b][h], _mm256_add_epi8(lo, hi));
            }
        }
        if (++steps == 31) {
          flush();
          clear();
          steps = 0;
        }
      }
    }
    if (steps) flush();
  }
};

struct Avx2Kernels {
  using Vec = GenericVec;
  static constexpr int kMaxCols = 4, kMaxBlocks = 2;
  static constexpr int kBestCols = 4, kBestBlocks = 1;
  // 16 ymm: 2*C*B byte counters + 2*B weight halves + table, mask and temporaries.
  static constexpr bool fits(int c, int b) { return 2 * c * b + 2 * b + 5 <= 16; }
  template <int C, int B, bool kXor>
  using Tile = B1ConvTileAvx2<C, B, kXor>;
};

}  // namespace

void binary_conv_avx2(const ConvProblem& p, const ConvTables& tables) { run_binary_conv<Avx2Kernels>(p, tables); }

}  // namespace edgecc::binary
