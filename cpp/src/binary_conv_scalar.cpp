// Portable binary convolution: the same tiling with plain C++ (SWAR popcount), the
// reference the vector paths are checked against and the fallback for any x86-64.
#include "edgecc/binary_conv_driver.h"

namespace edgecc::binary {
namespace {

template <int C, int B, bool kXor>
struct B1ConvTileScalar {
  static void run(const uint32_t* const* x, const std::ptrdiff_t* tap_offset, const uint32_t* w,
                  std::ptrdiff_t w_block_stride, int taps, int k_words, int32_t* out,
                  int out_stride) {
    int32_t acc[C][B * kLanes] = {};
    for (int t = 0; t < taps; ++t) {
      const uint32_t* wt = w + static_cast<std::ptrdiff_t>(t) * k_words * kLanes;
      for (int c = 0; c < C; ++c) {
        const uint32_t* xs = x[c] + tap_offset[t];
        for (int k = 0; k < k_words; ++k) {
          const uint32_t xv = xs[k];
          for (int b = 0; b < B; ++b)
            for (int l = 0; l < kLanes; ++l)
              acc[c][b * kLanes + l] +=
                  popcount32(kXor ? wt[b * w_block_stride + k * kLanes + l] ^ xv
                                  : wt[b * w_block_stride + k * kLanes + l] & xv);
        }
      }
    }
    for (int c = 0; c < C; ++c)
      for (int r = 0; r < B * kLanes; ++r) out[c * out_stride + r] = acc[c][r];
  }
};

struct ScalarKernels {
  using Vec = GenericVec;
  static constexpr int kMaxCols = 4, kMaxBlocks = 4;
  static constexpr int kBestCols = 4, kBestBlocks = 2;
  static constexpr bool fits(int c, int b) { return c * b <= 8; }
  template <int C, int B, bool kXor>
  using Tile = B1ConvTileScalar<C, B, kXor>;
};

}  // namespace

void binary_conv_scalar(const ConvProblem& p, const ConvTables& tables) { run_binary_conv<ScalarKernels>(p, tables); }

}  // namespace edgecc::binary
