// Bit-packing of activations into one-hot interval planes, channel-packed NHWC.
//
// Layout: [n][h][w][planes][words] of 32-bit words, channel c at bit c%32 of word c/32,
// words = 2*ceil(channels/64) (zero-filled up to a multiple of 64 channels, so the
// buffer is also a valid array of 64-bit words on a little-endian machine).
// Plane j (0-based) of element x in channel c is set iff t[j][c] <= x < t[j+1][c]
// (the last plane is open above): x lands in at most one plane, and below t[0][c] in
// none. NaN lands in none. With one plane and threshold 0 this is the sign bit of
// +-1 nets (bit 1 = +1 = x >= 0).
#pragma once
#include <cstdint>

namespace edgecc::binary {

struct PackProblem {
  int n = 0, c = 0, h = 0, w = 0;
  bool nchw = true;         // input layout: [n][c][h][w] or [n][h][w][c]
  int planes = 1;
  int words = 0;            // 32-bit words per (pixel, plane): 2*ceil(c/64)
  uint32_t* out = nullptr;  // [n][h][w][planes][words]
  int threads = 1;
};

// thresholds: [planes][c], strictly increasing along planes (validated by the caller).
void pack_activations_f32(const PackProblem& p, const float* x, const float* thresholds,
                          const char* isa);
void pack_activations_f64(const PackProblem& p, const double* x, const double* thresholds);
void pack_activations_i32(const PackProblem& p, const int32_t* x, const int64_t* thresholds);
void pack_activations_i64(const PackProblem& p, const int64_t* x, const int64_t* thresholds);

// Per-ISA fast paths for float32 (bitpack_avx512.cpp).
void pack_activations_f32_avx512(const PackProblem& p, const float* x, const float* thresholds);

}  // namespace edgecc::binary
