// AVX-512 direct convolution microkernels (F, BW, VNNI). General kernels hold 16
// output channels per vector, broadcast one input pack per output pixel and
// transpose the finished tile into NCHW rows; depthwise kernels hold 16 pixels
// of one channel's output row per vector.
#include <immintrin.h>

// GCC 12 reports its own intrinsics headers (`__Y = __Y` placeholders) as
// maybe-uninitialized once they are inlined into these kernels.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <cstdint>
#include <cstring>

#include "edgecc/direct_conv.h"

namespace edgecc {
namespace direct_conv_detail {
namespace {

constexpr int kLanes = 16;

// Accumulator type for integer kernels: unlike __m512i (declared may_alias),
// a plain GCC vector type lets the compiler keep arrays of accumulators in
// registers instead of mirroring them on the stack.
typedef int32_t VI __attribute__((vector_size(64)));
inline __m512i mi(VI v) { return reinterpret_cast<__m512i>(v); }
inline VI vi(__m512i v) { return reinterpret_cast<VI>(v); }

inline int32_t load_i32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline float load_f32(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}

// ---- Output: transpose tiles (pixels x channels) into NCHW rows ----------------

// rows[p] holds 16 channels of pixel p; afterwards rows[l] holds 16 pixels of
// channel l (three shuffle stages).
inline void transpose16x16(__m512 rows[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(rows[i], rows[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(rows[i], rows[i + 1]);
  }
  // u[4q + j], 128-bit lane k: column 4k + j of rows 4q..4q+3
  for (int q = 0; q < 4; ++q) {
    u[4 * q + 0] = _mm512_shuffle_ps(t[4 * q], t[4 * q + 2], 0x44);
    u[4 * q + 1] = _mm512_shuffle_ps(t[4 * q], t[4 * q + 2], 0xee);
    u[4 * q + 2] = _mm512_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0x44);
    u[4 * q + 3] = _mm512_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0xee);
  }
  for (int j = 0; j < 4; ++j) {
    const __m512 v0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);       // cols j, 8+j of rows 0-7
    const __m512 w0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xdd);       // cols 4+j, 12+j
    const __m512 v1 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);  // same, rows 8-15
    const __m512 w1 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xdd);
    rows[j] = _mm512_shuffle_f32x4(v0, v1, 0x88);
    rows[8 + j] = _mm512_shuffle_f32x4(v0, v1, 0xdd);
    rows[4 + j] = _mm512_shuffle_f32x4(w0, w1, 0x88);
    rows[12 + j] = _mm512_shuffle_f32x4(w0, w1, 0xdd);
  }
}

// 8 x 8 transpose of 64-bit elements.
inline void transpose8x8(__m512i rows[8]) {
  __m512i t[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm512_unpacklo_epi64(rows[i], rows[i + 1]);      // even columns
    t[i + 1] = _mm512_unpackhi_epi64(rows[i], rows[i + 1]);  // odd columns
  }
  for (int odd = 0; odd < 2; ++odd) {
    const __m512i a0 = _mm512_shuffle_i64x2(t[odd], t[2 + odd], 0x88);      // cols odd+{0,4}, rows 0-3
    const __m512i a1 = _mm512_shuffle_i64x2(t[4 + odd], t[6 + odd], 0x88);  // rows 4-7
    const __m512i b0 = _mm512_shuffle_i64x2(t[odd], t[2 + odd], 0xdd);      // cols odd+{2,6}
    const __m512i b1 = _mm512_shuffle_i64x2(t[4 + odd], t[6 + odd], 0xdd);
    rows[odd] = _mm512_shuffle_i64x2(a0, a1, 0x88);
    rows[4 + odd] = _mm512_shuffle_i64x2(a0, a1, 0xdd);
    rows[2 + odd] = _mm512_shuffle_i64x2(b0, b1, 0x88);
    rows[6 + odd] = _mm512_shuffle_i64x2(b0, b1, 0xdd);
  }
}

inline int block_channels(const DirectTileArgs& a, int block) {
  const int left = a.channels - block * kLanes;
  return left < 0 ? 0 : (left > kLanes ? kLanes : left);
}

inline __m512 add_lanes(__m512 a, __m512 b, float) { return _mm512_add_ps(a, b); }
inline __m512 add_lanes(__m512 a, __m512 b, int32_t) {  // wrapping int32 add
  return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(a), _mm512_castps_si512(b)));
}

// tile[p][l] (+ addend[l]) -> y[l * stride + p] for the block's channels; T is
// float or int32_t.
template <int P, typename T>
void store_tile(const T* tile, int block, const DirectTileArgs& a) {
  static_assert(P <= 16, "one 16 x 16 transpose per block");
  const int channels = block_channels(a, block);
  if (channels == 0) return;
  const __mmask16 lane_mask = static_cast<__mmask16>((1u << channels) - 1);
  const __m512 addend = a.addend ? _mm512_maskz_loadu_ps(lane_mask, static_cast<const T*>(a.addend) + block * kLanes)
                                 : _mm512_setzero_ps();
  __m512 rows[16];
#pragma GCC unroll 16
  for (int p = 0; p < 16; ++p)
    rows[p] = p < P ? add_lanes(_mm512_loadu_ps(tile + p * kLanes), addend, T()) : _mm512_setzero_ps();
  transpose16x16(rows);
  const __mmask16 pixel_mask = static_cast<__mmask16>((1u << P) - 1);
  T* y = static_cast<T*>(a.y) + block * kLanes * a.y_channel_stride;
  for (int l = 0; l < channels; ++l) _mm512_mask_storeu_ps(y + l * a.y_channel_stride, pixel_mask, rows[l]);
}

// int64 tiles: 8 x 8 transposes over (pixel groups of 8) x (channel halves).
template <int P>
void store_tile(const int64_t* tile, int block, const DirectTileArgs& a) {
  const int channels = block_channels(a, block);
  int64_t* y = static_cast<int64_t*>(a.y) + block * kLanes * a.y_channel_stride;
  for (int p0 = 0; p0 < P; p0 += 8) {
    const int np = P - p0 < 8 ? P - p0 : 8;
    const __mmask8 pixel_mask = static_cast<__mmask8>((1u << np) - 1);
    for (int half = 0; half * 8 < channels; ++half) {
      __m512i rows[8];
      for (int p = 0; p < 8; ++p)
        rows[p] = p < np ? _mm512_loadu_si512(tile + (p0 + p) * kLanes + half * 8) : _mm512_setzero_si512();
      transpose8x8(rows);
      const int nc = channels - half * 8 < 8 ? channels - half * 8 : 8;
      for (int l = 0; l < nc; ++l)
        _mm512_mask_storeu_epi64(y + (half * 8 + l) * a.y_channel_stride + p0, pixel_mask, rows[l]);
    }
  }
}

// ---- General kernels: policies --------------------------------------------
// Each policy: V (vector), kParts (accumulator vectors per output vector), W
// (packed weight element), kWStep (weight elements per block per step),
// kPackBytes (input bytes per pack), kMaxSteps (steps before int32 accumulators
// must be drained into the tile), zero/load_w/step/drain.

struct F32Fma {
  using V = __m512;
  using W = float;
  using Out = float;
  static constexpr int kParts = 1;
  static constexpr int kWStep = 16, kPackBytes = 4;
  static constexpr int64_t kMaxSteps = INT64_MAX;
  static V zero() { return _mm512_setzero_ps(); }
  static V load_w(const W* w) { return _mm512_loadu_ps(w); }
  static void step(V* acc, V w, const uint8_t* x) { acc[0] = _mm512_fmadd_ps(w, _mm512_set1_ps(load_f32(x)), acc[0]); }
  static void drain(const V* acc, Out* out) { _mm512_storeu_ps(out, _mm512_add_ps(_mm512_loadu_ps(out), acc[0])); }
};

// x + 128 (u8, 4 channels) . w (s8, 4 channels) with vpdpbusd; int32 sums wrap
// modulo 2^32 and the addend -128 * sum(w) makes them exact when |result| < 2^31.
struct Qs8Vnni {
  using V = VI;
  using W = int8_t;
  using Out = int32_t;
  static constexpr int kParts = 1;
  static constexpr int kWStep = 64, kPackBytes = 4;
  static constexpr int64_t kMaxSteps = INT64_MAX;
  static V zero() { return vi(_mm512_setzero_si512()); }
  static V load_w(const W* w) { return vi(_mm512_loadu_si512(w)); }
  static void step(V* acc, V w, const uint8_t* x) {
    acc[0] = vi(_mm512_dpbusd_epi32(mi(acc[0]), _mm512_set1_epi32(load_i32(x)), mi(w)));
  }
  static void drain(const V* acc, Out* out) {
    _mm512_storeu_si512(out, _mm512_add_epi32(_mm512_loadu_si512(out), mi(acc[0])));
  }
};

// int16 x = hi * 256 + lo with lo in [0, 255], hi in [-128, 127]. vpdpwssd on
// (lo pair, w pair) adds at most 2 * 255 * 32768 < 2^24 per step and on (hi pair,
// w pair) at most 2^23, so 128 steps stay below 2^31 in int32; then both are
// widened to int64 as hi * 256 + lo. No product can hit the (-32768)^2 * 2 pmaddwd
// overflow because one factor is always a byte.
struct Qs16Split {
  using V = VI;
  using W = int16_t;
  using Out = int64_t;
  static constexpr int kParts = 2;  // lo and hi sums
  static constexpr int kWStep = 32, kPackBytes = 8;
  static constexpr int64_t kMaxSteps = 128;
  static V zero() { return vi(_mm512_setzero_si512()); }
  static V load_w(const W* w) { return vi(_mm512_loadu_si512(w)); }
  static void step(V* acc, V w, const uint8_t* x) {
    acc[0] = vi(_mm512_dpwssd_epi32(mi(acc[0]), _mm512_set1_epi32(load_i32(x)), mi(w)));
    acc[1] = vi(_mm512_dpwssd_epi32(mi(acc[1]), _mm512_set1_epi32(load_i32(x + 4)), mi(w)));
  }
  static __m512i combine(__m256i lo, __m256i hi) {
    return _mm512_add_epi64(_mm512_slli_epi64(_mm512_cvtepi32_epi64(hi), 8), _mm512_cvtepi32_epi64(lo));
  }
  static void drain(const V* acc, Out* out) {
    const __m512i lo = mi(acc[0]), hi = mi(acc[1]);
    const __m512i first = combine(_mm512_castsi512_si256(lo), _mm512_castsi512_si256(hi));
    const __m512i second = combine(_mm512_extracti64x4_epi64(lo, 1), _mm512_extracti64x4_epi64(hi, 1));
    _mm512_storeu_si512(out, _mm512_add_epi64(_mm512_loadu_si512(out), first));
    _mm512_storeu_si512(out + 8, _mm512_add_epi64(_mm512_loadu_si512(out + 8), second));
  }
};

// tile[NB][P][16] = sum over channel packs and taps. Steps run in chunks of at
// most kMaxSteps; each chunk's accumulators are drained (added) into the tile.
template <class Op, int NB, int P>
void conv_tile(const DirectTileArgs& a) {
  // Plain loops, no std:: templates: inline library code compiled with AVX-512
  // flags here could be merged by the linker into the portable code paths.
  alignas(64) typename Op::Out tile[NB * P * kLanes];
  for (int i = 0; i < NB * P * kLanes; ++i) tile[i] = 0;
  const int64_t steps = a.channel_packs * a.taps;
  const uint8_t* xc = a.x;
  const typename Op::W* w = static_cast<const typename Op::W*>(a.w);
  int64_t t = 0;
  for (int64_t done = 0; done < steps;) {
    const int64_t end = steps - done > Op::kMaxSteps ? done + Op::kMaxSteps : steps;
    typename Op::V acc[NB][P][Op::kParts];
#pragma GCC unroll 32
    for (int b = 0; b < NB; ++b)
#pragma GCC unroll 32
      for (int p = 0; p < P; ++p)
#pragma GCC unroll 2
        for (int k = 0; k < Op::kParts; ++k) acc[b][p][k] = Op::zero();
    for (; done < end; ++done) {
      const uint8_t* xt = xc + a.tap_offset_bytes[t];
      typename Op::V wv[NB];
#pragma GCC unroll 32
      for (int b = 0; b < NB; ++b) wv[b] = Op::load_w(w + b * a.w_block_stride);
      w += Op::kWStep;
#pragma GCC unroll 32
      for (int p = 0; p < P; ++p)
#pragma GCC unroll 32
        for (int b = 0; b < NB; ++b) Op::step(acc[b][p], wv[b], xt + p * Op::kPackBytes);
      if (++t == a.taps) {
        t = 0;
        xc += a.pack_stride_bytes;
      }
    }
#pragma GCC unroll 32
    for (int b = 0; b < NB; ++b)
#pragma GCC unroll 32
      for (int p = 0; p < P; ++p) Op::drain(acc[b][p], tile + (b * P + p) * kLanes);
  }
  for (int b = 0; b < NB; ++b) store_tile<P>(tile + b * P * kLanes, b, a);
}

// Picks the template for the pixel count (1..P).
template <class Op, int NB, int P>
void conv_tile_pixels(const DirectTileArgs& a, int pixels) {
  if constexpr (P > 1) {
    if (pixels < P) return conv_tile_pixels<Op, NB, P - 1>(a, pixels);
  }
  conv_tile<Op, NB, P>(a);
}

// ---- Depthwise kernels: one output row, 16 pixels per vector ----------------
// Policies: V (vector), kParts (accumulator vectors per 16 pixels), W (weight
// element), init/weight/step/store. Input values are 4 bytes per pixel.

struct F32DwRow {
  using V = __m512;
  using W = float;
  static constexpr int kParts = 1;
  static void init(V* acc, const void* bias) {
    acc[0] = bias ? _mm512_set1_ps(*static_cast<const float*>(bias)) : _mm512_setzero_ps();
  }
  static V weight(const W* w) { return _mm512_set1_ps(*w); }
  static void step(V* acc, V w, const uint8_t* x) { acc[0] = _mm512_fmadd_ps(_mm512_loadu_ps(x), w, acc[0]); }
  static void store(void* y, const V* acc, __mmask16 m) { _mm512_mask_storeu_ps(y, m, acc[0]); }
};

// x sign-extended to int32, w in the low 16 bits: vpdpwssd adds x * w + sign * 0.
struct Qs8DwRow {
  using V = VI;
  using W = int32_t;
  static constexpr int kParts = 1;
  static void init(V* acc, const void*) { acc[0] = vi(_mm512_setzero_si512()); }
  static V weight(const W* w) { return vi(_mm512_set1_epi32(*w)); }
  static void step(V* acc, V w, const uint8_t* x) {
    acc[0] = vi(_mm512_dpwssd_epi32(mi(acc[0]), _mm512_loadu_si512(x), mi(w)));
  }
  static void store(void* y, const V* acc, __mmask16 m) { _mm512_mask_storeu_epi32(y, m, mi(acc[0])); }
};

// Same exact product (|x * w| <= 2^30 fits int32), summed in int64: part 0
// holds pixels 0-7, part 1 pixels 8-15.
struct Qs16DwRow {
  using V = VI;
  using W = int32_t;
  static constexpr int kParts = 2;
  static void init(V* acc, const void*) { acc[0] = acc[1] = vi(_mm512_setzero_si512()); }
  static V weight(const W* w) { return vi(_mm512_set1_epi32(*w)); }
  static void step(V* acc, V w, const uint8_t* x) {
    const __m512i prod = _mm512_madd_epi16(_mm512_loadu_si512(x), mi(w));
    acc[0] = vi(_mm512_add_epi64(mi(acc[0]), _mm512_cvtepi32_epi64(_mm512_castsi512_si256(prod))));
    acc[1] = vi(_mm512_add_epi64(mi(acc[1]), _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(prod, 1))));
  }
  static void store(void* y, const V* acc, __mmask16 m) {
    int64_t* out = static_cast<int64_t*>(y);
    _mm512_mask_storeu_epi64(out, static_cast<__mmask8>(m), mi(acc[0]));
    _mm512_mask_storeu_epi64(out + 8, static_cast<__mmask8>(m >> 8), mi(acc[1]));
  }
};

// R rows x NV vectors of 16 pixels starting at (row, pixel p). Loads may run past
// the row (the driver leaves slack after the buffer); stores stop at its end.
template <class Op, int NV, int R, typename Y>
void dw_block(const DepthwiseRowArgs& a, int64_t row, int64_t p) {
  typename Op::V acc[R][NV][Op::kParts];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) Op::init(acc[r][v], a.bias);
  const typename Op::W* w = static_cast<const typename Op::W*>(a.w);
  const uint8_t* x = a.x + row * a.x_row_stride_bytes + p * 4;
  for (int64_t t = 0; t < a.taps; ++t) {
    const typename Op::V wv = Op::weight(w + t);
    const uint8_t* xt = x + a.tap_offset_bytes[t];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) Op::step(acc[r][v], wv, xt + r * a.x_row_stride_bytes + v * kLanes * 4);
  }
  for (int r = 0; r < R; ++r) {
    Y* y = static_cast<Y*>(a.y) + (row + r) * a.y_row_stride + p;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const int64_t left = a.pixels - p - v * kLanes;
      const __mmask16 m = left >= kLanes ? __mmask16(0xffff) : static_cast<__mmask16>((1u << left) - 1);
      Op::store(y + v * kLanes, acc[r][v], m);
    }
  }
}

// All rows for NV vectors at pixel p: blocks of several rows give the FMA
// chains (one per tap) enough independent accumulators to hide latency.
template <class Op, int NV, typename Y>
void dw_columns(const DepthwiseRowArgs& a, int64_t p) {
  constexpr int kRows = NV * Op::kParts >= 8 ? 1 : 8 / (NV * Op::kParts);
  int64_t row = 0;
  for (; row + kRows <= a.rows; row += kRows) dw_block<Op, NV, kRows, Y>(a, row, p);
  for (; row < a.rows; ++row) dw_block<Op, NV, 1, Y>(a, row, p);
}

template <class Op, int NMAX, typename Y>
void dw_rows(const DepthwiseRowArgs& a) {
  static_assert(NMAX >= 1 && NMAX <= 4, "up to 4 vectors per block");
  int64_t p = 0;
  for (; p + NMAX * kLanes <= a.pixels; p += NMAX * kLanes) dw_columns<Op, NMAX, Y>(a, p);
  switch ((a.pixels - p + kLanes - 1) / kLanes) {  // 0 to NMAX vectors left
    case 4: return dw_columns<Op, (NMAX < 4 ? NMAX : 4), Y>(a, p);
    case 3: return dw_columns<Op, (NMAX < 3 ? NMAX : 3), Y>(a, p);
    case 2: return dw_columns<Op, (NMAX < 2 ? NMAX : 2), Y>(a, p);
    case 1: return dw_columns<Op, 1, Y>(a, p);
    default: return;
  }
}

}  // namespace

void f32_conv2d_direct_nchw_32x14_avx512(const DirectTileArgs& a, int blocks, int pixels) {
  if (blocks == 2) return conv_tile_pixels<F32Fma, 2, 14>(a, pixels);
  conv_tile_pixels<F32Fma, 1, 14>(a, pixels);
}

void qs8_conv2d_direct_vnni_32x14_avx512(const DirectTileArgs& a, int blocks, int pixels) {
  if (blocks == 2) return conv_tile_pixels<Qs8Vnni, 2, 14>(a, pixels);
  conv_tile_pixels<Qs8Vnni, 1, 14>(a, pixels);
}

void qs16_conv2d_direct_i64_16x12_avx512(const DirectTileArgs& a, int, int pixels) {
  conv_tile_pixels<Qs16Split, 1, 12>(a, pixels);
}

void f32_dwconv2d_direct_row_4x16_avx512(const DepthwiseRowArgs& a) { dw_rows<F32DwRow, 4, float>(a); }
void qs8_dwconv2d_direct_row_i32_4x16_avx512(const DepthwiseRowArgs& a) { dw_rows<Qs8DwRow, 4, int32_t>(a); }
void qs16_dwconv2d_direct_row_i64_4x16_avx512(const DepthwiseRowArgs& a) { dw_rows<Qs16DwRow, 4, int64_t>(a); }

}  // namespace direct_conv_detail
}  // namespace edgecc
