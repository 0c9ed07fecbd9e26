// Kernel families behind edgecc/dfnt.h, one per ISA, chosen by the tables in
// dfnt_conv.cpp. Every family works on 8 lanes (8 channels) at a time and shares the
// layouts below, so the driver stays ISA-independent.
//
// Pointwise operands ("canonical" layouts), residues in normal binary:
//   X  [tile][cpad/8][bin][L][8]   transformed input tiles (one transform writes
//                                  one contiguous block)
//   W  [bin][panel][cpad][width][L]  transformed weights (scaled by 1/n^2), output
//      channels in panels of 16 (L = 1) or 8 (L = 2) so one GEMM panel is contiguous;
//      a last panel of 8 when opad is an odd multiple of 8 (see w_group_offset)
//   Y  [tile][opad/8][bin][L][8]   pointwise products, reduced to [0, p)
// L = 1 for b < 64 (the residue itself); L = 2 for F6, the residue r in [0, 2^64]
// split as (r mod 2^33, r >> 33) so that each limb fits IFMA52.
//
// The small helpers below are `static`: every translation unit (each built with its
// own ISA flags) gets its own copy, so no AVX-512 code leaks into portable callers.
#pragma once
#include <algorithm>
#include <cstdint>

#include "edgecc/dfnt.h"

namespace edgecc {
namespace dfnt {

static inline int residue_limbs(Modulus m) { return m == Modulus::kF6 ? 2 : 1; }

// Word offset, within one bin of W, of the 8 lanes of output group og (channels
// 8 og .. 8 og + 7) for input channel c; limb q of lane l is at + q * 8 + l.
static inline int64_t w_group_offset(int64_t c, int64_t og, int64_t cpad, int64_t opad, int limbs) {
  const int64_t groups_per_panel = 2 / limbs, panel = og / groups_per_panel;
  const int64_t width = std::min<int64_t>(groups_per_panel, opad / 8 - panel * groups_per_panel);  // in groups
  return panel * groups_per_panel * 8 * limbs * cpad + (c * width + (og - panel * groups_per_panel)) * 8 * limbs;
}

struct TileGeometry {
  int n = 0, log_n = 0;
  int64_t kh = 0, kw = 0;
};

struct TransformKernels {
  const char* name;
  void (*ring_op)(RingOp op, const uint64_t* x_lo, const uint8_t* x_hi, const uint64_t* y_lo,
                  const uint8_t* y_hi, int64_t n, int shift, uint64_t* z_lo, uint8_t* z_hi);
  // Natural-order nb residues in and out; see dfnt::fnt.
  void (*fnt)(const uint64_t* in_lo, const uint8_t* in_hi, int64_t count, int log_len, int dims,
              bool inverse, uint64_t* out_lo, uint8_t* out_hi);
  // Lane l < lanes: kernel w + l * lane_stride (kh x kw signed residues, |v| < p),
  // placed for cross-correlation, transformed and scaled by 1/n^2; written to W at
  // wf + bin * bin_stride (+ limb * 8 + lane). Lanes >= `lanes` are zero.
  void (*transform_weights)(const TileGeometry& g, const int64_t* w, int64_t lane_stride, int lanes,
                            uint64_t* wf, int64_t bin_stride, void* scratch);
  // One n x n input patch of 8 channels, element (i, j, lane) at
  // patch[i * row_stride + j * 8 + lane] (int8 or int16), transformed into X at
  // xf + bin * bin_stride.
  void (*forward_tile)(const TileGeometry& g, const void* patch, int elem_bytes, int64_t row_stride,
                       uint64_t* xf, int64_t bin_stride, void* scratch);
  // Y at yf + bin * bin_stride -> inverse transform -> the rows x cols valid outputs
  // of `channels` channels as signed integers (out_bytes 4 or 8) at
  // y[c * ch_stride + i * row_stride + j].
  void (*inverse_tile)(const TileGeometry& g, const uint64_t* yf, int64_t bin_stride, void* y,
                       int out_bytes, int64_t ch_stride, int64_t row_stride, int rows, int cols,
                       int channels, void* scratch);
};

// Scratch bytes one transform call needs for an n x n block (any family).
static inline int64_t transform_scratch_bytes(int n) { return int64_t(n) * n * (8 * 16 + 16) + 4096; }

// One frequency bin: y[r][o] = sum_c x[r][c] * w[c][o] mod p. x, y point at the
// bin's first group; the 8 lanes of channel group g of row r are at
// x + r * x_row + g * x_group (limb q at + q * 8), likewise y. w: the bin's W block.
struct GemmArgs {
  const uint64_t* x;
  int64_t x_row, x_group;
  const uint64_t* w;
  uint64_t* y;
  int64_t y_row, y_group;
  int64_t m, cpad, opad;
};
using GemmFn = void (*)(const GemmArgs&);

const TransformKernels& transform_kernels_scalar(Modulus m);
const TransformKernels& transform_kernels_avx512(Modulus m);

// The AVX2 path has no DFNT kernels of its own: it runs the portable ones.
static inline Isa kernel_isa(Isa isa) { return isa == Isa::kAvx512 ? Isa::kAvx512 : Isa::kScalar; }

// The table that picks a kernel family from the ISA (XNNPACK style).
static inline const TransformKernels& transforms_for(Modulus m, Isa isa) {
  return kernel_isa(isa) == Isa::kAvx512 ? transform_kernels_avx512(m) : transform_kernels_scalar(m);
}

// log2(n) for a power of two, else -1.
static inline int log2_exact(int64_t n) {
  int l = 0;
  while ((int64_t(1) << l) < n) ++l;
  return (int64_t(1) << l) == n ? l : -1;
}

void f5_gemm_scalar(const GemmArgs&);
void f48_gemm_scalar(const GemmArgs&);
void f6_gemm_scalar(const GemmArgs&);
void f5_gemm_ifma_6x16_avx512(const GemmArgs&);
void f48_gemm_ifma_6x16_avx512(const GemmArgs&);
void f6_gemm_ifma_4x8_avx512(const GemmArgs&);
void f5_gemm_muludq_12x8_avx512(const GemmArgs&);

// Kernels with their own W layout repack one bin of canonical W (cpad x opad).
using PackWFn = void (*)(const uint64_t* canonical, uint64_t* packed, int64_t cpad, int64_t opad);
// F5 for vpmuludq: 16-bit limbs (w & 0xffff, w >> 16) in the L = 2 layout.
void f5_pack_w_muludq_avx512(const uint64_t*, uint64_t*, int64_t, int64_t);

}  // namespace dfnt
}  // namespace edgecc
