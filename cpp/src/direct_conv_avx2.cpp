// AVX2 direct convolution microkernels (AVX2 + FMA). Same structure as the
// AVX-512 file with 8 lanes; integer dot products use pmaddwd + paddd (no VNNI
// here). pmaddwd overflows only for (-32768)^2 * 2; every call here has one
// factor of each pair within a byte (or a zero half), so its sums are exact.
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

constexpr int kLanes = 8;

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

// Accumulator type for integer kernels: unlike __m256i (declared may_alias),
// a plain GCC vector type lets the compiler keep arrays of accumulators in
// registers instead of mirroring them on the stack.
typedef int32_t VI __attribute__((vector_size(32)));
inline __m256i mi(VI v) { return reinterpret_cast<__m256i>(v); }
inline VI vi(__m256i v) { return reinterpret_cast<VI>(v); }
inline __m256i loadu(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline void storeu(void* p, __m256i v) { _mm256_storeu_si256(static_cast<__m256i*>(p), v); }

// ---- Output: transpose tiles (pixels x channels) into NCHW rows ----------------

// rows[p] holds 8 channels of pixel p; afterwards rows[l] holds 8 pixels of channel l.
inline void transpose8x8(__m256 rows[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(rows[i], rows[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(rows[i], rows[i + 1]);
  }
  // u[4q + j], 128-bit lane k: column 4k + j of rows 4q..4q+3
  for (int q = 0; q < 2; ++q) {
    u[4 * q + 0] = _mm256_shuffle_ps(t[4 * q], t[4 * q + 2], 0x44);
    u[4 * q + 1] = _mm256_shuffle_ps(t[4 * q], t[4 * q + 2], 0xee);
    u[4 * q + 2] = _mm256_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0x44);
    u[4 * q + 3] = _mm256_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0xee);
  }
  for (int j = 0; j < 4; ++j) {
    rows[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
    rows[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
  }
}

// 4 x 4 transpose of 64-bit elements.
inline void transpose4x4(__m256i rows[4]) {
  const __m256i t0 = _mm256_unpacklo_epi64(rows[0], rows[1]), t1 = _mm256_unpackhi_epi64(rows[0], rows[1]);
  const __m256i t2 = _mm256_unpacklo_epi64(rows[2], rows[3]), t3 = _mm256_unpackhi_epi64(rows[2], rows[3]);
  rows[0] = _mm256_permute2x128_si256(t0, t2, 0x20);
  rows[1] = _mm256_permute2x128_si256(t1, t3, 0x20);
  rows[2] = _mm256_permute2x128_si256(t0, t2, 0x31);
  rows[3] = _mm256_permute2x128_si256(t1, t3, 0x31);
}

inline int block_channels(const DirectTileArgs& a, int block) {
  const int left = a.channels - block * kLanes;
  return left < 0 ? 0 : (left > kLanes ? kLanes : left);
}

// Lane i of the result is all ones when i < n (maskload / maskstore masks).
inline __m256i first_lanes32(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline __m256i first_lanes64(int n) { return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3)); }

inline __m256 add_lanes(__m256 a, __m256 b, float) { return _mm256_add_ps(a, b); }
inline __m256 add_lanes(__m256 a, __m256 b, int32_t) {  // wrapping int32 add
  return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(a), _mm256_castps_si256(b)));
}

// tile[p][l] (+ addend[l]) -> y[l * stride + p] for the block's channels; T is
// float or int32_t.
template <int P, typename T>
void store_tile(const T* tile, int block, const DirectTileArgs& a) {
  static_assert(P <= 8, "one 8 x 8 transpose per block");
  const int channels = block_channels(a, block);
  if (channels == 0) return;
  const __m256 addend =
      a.addend ? _mm256_maskload_ps(reinterpret_cast<const float*>(static_cast<const T*>(a.addend) + block * kLanes),
                                    first_lanes32(channels))
               : _mm256_setzero_ps();
  __m256 rows[8];
#pragma GCC unroll 8
  for (int p = 0; p < 8; ++p)
    rows[p] = p < P ? add_lanes(_mm256_loadu_ps(reinterpret_cast<const float*>(tile + p * kLanes)), addend, T())
                    : _mm256_setzero_ps();
  transpose8x8(rows);
  const __m256i pixel_mask = first_lanes32(P);
  float* y = reinterpret_cast<float*>(static_cast<T*>(a.y) + block * kLanes * a.y_channel_stride);
  for (int l = 0; l < channels; ++l) _mm256_maskstore_ps(y + l * a.y_channel_stride, pixel_mask, rows[l]);
}

// int64 tiles: 4 x 4 transposes over (pixel groups of 4) x (channel halves).
template <int P>
void store_tile(const int64_t* tile, int block, const DirectTileArgs& a) {
  const int channels = block_channels(a, block);
  int64_t* y = static_cast<int64_t*>(a.y) + block * kLanes * a.y_channel_stride;
  for (int p0 = 0; p0 < P; p0 += 4) {
    const int np = P - p0 < 4 ? P - p0 : 4;
    const __m256i pixel_mask = first_lanes64(np);
    for (int half = 0; half * 4 < channels; ++half) {
      __m256i rows[4];
      for (int p = 0; p < 4; ++p) rows[p] = p < np ? loadu(tile + (p0 + p) * kLanes + half * 4) : _mm256_setzero_si256();
      transpose4x4(rows);
      const int nc = channels - half * 4 < 4 ? channels - half * 4 : 4;
      for (int l = 0; l < nc; ++l)
        _mm256_maskstore_epi64(reinterpret_cast<long long*>(y + (half * 4 + l) * a.y_channel_stride + p0), pixel_mask,
                               rows[l]);
    }
  }
}

// ---- General kernels: policies (see direct_conv_avx512.cpp) -----------------

struct F32Fma {
  using V = __m256;
  using W = float;
  using Out = float;
  static constexpr int kParts = 1;
  static constexpr int kWStep = 8, kPackBytes = 4;
  static constexpr int64_t kMaxSteps = INT64_MAX;
  static V zero() { return _mm256_setzero_ps(); }
  static V load_w(const W* w) { return _mm256_loadu_ps(w); }
  static void step(V* acc, V w, const uint8_t* x) { acc[0] = _mm256_fmadd_ps(w, _mm256_set1_ps(load_f32(x)), acc[0]); }
  static void drain(const V* acc, Out* out) { _mm256_storeu_ps(out, _mm256_add_ps(_mm256_loadu_ps(out), acc[0])); }
};

// int8 sign-extended to int16 pairs: products are at most 2^14, and every partial
// sum is bounded by K * 2^14 < 2^31 (K is checked by the driver).
struct Qs8Maddwd {
  using V = VI;
  using W = int16_t;
  using Out = int32_t;
  static constexpr int kParts = 1;
  static constexpr int kWStep = 16, kPackBytes = 4;
  static constexpr int64_t kMaxSteps = INT64_MAX;
  static V zero() { return vi(_mm256_setzero_si256()); }
  static V load_w(const W* w) { return vi(loadu(w)); }
  static void step(V* acc, V w, const uint8_t* x) {
    acc[0] = vi(_mm256_add_epi32(mi(acc[0]), _mm256_madd_epi16(_mm256_set1_epi32(load_i32(x)), mi(w))));
  }
  static void drain(const V* acc, Out* out) { storeu(out, _mm256_add_epi32(loadu(out), mi(acc[0]))); }
};

// int16 split into lo byte (unsigned) and hi byte (signed), 128 steps per int32
// chunk, widened to int64 as hi * 256 + lo (bounds in direct_conv_avx512.cpp).
struct Qs16Split {
  using V = VI;
  using W = int16_t;
  using Out = int64_t;
  static constexpr int kParts = 2;  // lo and hi sums
  static constexpr int kWStep = 16, kPackBytes = 8;
  static constexpr int64_t kMaxSteps = 128;
  static V zero() { return vi(_mm256_setzero_si256()); }
  static V load_w(const W* w) { return vi(loadu(w)); }
  static void step(V* acc, V w, const uint8_t* x) {
    acc[0] = vi(_mm256_add_epi32(mi(acc[0]), _mm256_madd_epi16(_mm256_set1_epi32(load_i32(x)), mi(w))));
    acc[1] = vi(_mm256_add_epi32(mi(acc[1]), _mm256_madd_epi16(_mm256_set1_epi32(load_i32(x + 4)), mi(w))));
  }
  static __m256i combine(__m128i lo, __m128i hi) {
    return _mm256_add_epi64(_mm256_slli_epi64(_mm256_cvtepi32_epi64(hi), 8), _mm256_cvtepi32_epi64(lo));
  }
  static void drain(const V* acc, Out* out) {
    const __m256i lo = mi(acc[0]), hi = mi(acc[1]);
    const __m256i first = combine(_mm256_castsi256_si128(lo), _mm256_castsi256_si128(hi));
    const __m256i second = combine(_mm256_extracti128_si256(lo, 1), _mm256_extracti128_si256(hi, 1));
    storeu(out, _mm256_add_epi64(loadu(out), first));
    storeu(out + 4, _mm256_add_epi64(loadu(out + 4), second));
  }
};

template <class Op, int NB, int P>
void conv_tile(const DirectTileArgs& a) {
  // Plain loops, no std:: templates: inline library code compiled with AVX2
  // flags here could be merged by the linker into the portable code paths.
  alignas(32) typename Op::Out tile[NB * P * kLanes];
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

template <class Op, int NB, int P>
void conv_tile_pixels(const DirectTileArgs& a, int pixels) {
  if constexpr (P > 1) {
    if (pixels < P) return conv_tile_pixels<Op, NB, P - 1>(a, pixels);
  }
  conv_tile<Op, NB, P>(a);
}

// ---- Depthwise kernels: one output row, 8 pixels per vector -----------------

struct F32DwRow {
  using V = __m256;
  using W = float;
  static constexpr int kParts = 1;
  static void init(V* acc, const void* bias) {
    acc[0] = bias ? _mm256_set1_ps(*static_cast<const float*>(bias)) : _mm256_setzero_ps();
  }
  static V weight(const W* w) { return _mm256_set1_ps(*w); }
  static void step(V* acc, V w, const uint8_t* x) {
    acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(reinterpret_cast<const float*>(x)), w, acc[0]);
  }
  static void store(void* y, const V* acc, int n) {
    float* out = static_cast<float*>(y);
    if (n == kLanes) return _mm256_storeu_ps(out, acc[0]);
    _mm256_maskstore_ps(out, first_lanes32(n), acc[0]);
  }
};

// x sign-extended to int32, w in the low 16 bits: pmaddwd gives x * w exactly.
struct Qs8DwRow {
  using V = VI;
  using W = int32_t;
  static constexpr int kParts = 1;
  static void init(V* acc, const void*) { acc[0] = vi(_mm256_setzero_si256()); }
  static V weight(const W* w) { return vi(_mm256_set1_epi32(*w)); }
  static void step(V* acc, V w, const uint8_t* x) {
    acc[0] = vi(_mm256_add_epi32(mi(acc[0]), _mm256_madd_epi16(loadu(x), mi(w))));
  }
  static void store(void* y, const V* acc, int n) {
    if (n == kLanes) return storeu(y, mi(acc[0]));
    _mm256_maskstore_epi32(static_cast<int*>(y), first_lanes32(n), mi(acc[0]));
  }
};

// |x * w| <= 2^30 fits int32; summed in int64: part 0 pixels 0-3, part 1 pixels 4-7.
struct Qs16DwRow {
  using V = VI;
  using W = int32_t;
  static constexpr int kParts = 2;
  static void init(V* acc, const void*) { acc[0] = acc[1] = vi(_mm256_setzero_si256()); }
  static V weight(const W* w) { return vi(_mm256_set1_epi32(*w)); }
  static void step(V* acc, V w, const uint8_t* x) {
    const __m256i prod = _mm256_madd_epi16(loadu(x), mi(w));
    acc[0] = vi(_mm256_add_epi64(mi(acc[0]), _mm256_cvtepi32_epi64(_mm256_castsi256_si128(prod))));
    acc[1] = vi(_mm256_add_epi64(mi(acc[1]), _mm256_cvtepi32_epi64(_mm256_extracti128_si256(prod, 1))));
  }
  static void store(void* y, const V* acc, int n) {
    long long* out = static_cast<long long*>(y);
    if (n == kLanes) {
      storeu(out, mi(acc[0]));
      return storeu(out + 4, mi(acc[1]));
    }
    _mm256_maskstore_epi64(out, first_lanes64(n), mi(acc[0]));
    _mm256_maskstore_epi64(out + 4, first_lanes64(n - 4), mi(acc[1]));
  }
};

// R rows x NV vectors of 8 pixels starting at (row, pixel p). Loads may run past
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
      Op::store(y + v * kLanes, acc[r][v], left >= kLanes ? kLanes : static_cast<int>(left));
    }
  }
}

// All rows for NV vectors at pixel p: blocks of several rows give the FMA
// chains (one per tap) enough independent accumulators to hide latency.
template <class Op, int NV, typename Y>
void dw_columns(const DepthwiseRowArgs& a, int64_t p) {
  constexpr int kRows = NV * Op::kParts >= 6 ? 1 : 6 / (NV * Op::kParts);
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

void f32_conv2d_direct_nchw_16x6_avx2(const DirectTileArgs& a, int blocks, int pixels) {
  if (blocks == 2) return conv_tile_pixels<F32Fma, 2, 6>(a, pixels);
  conv_tile_pixels<F32Fma, 1, 6>(a, pixels);
}

void qs8_conv2d_direct_maddwd_16x6_avx2(const DirectTileArgs& a, int blocks, int pixels) {
  if (blocks == 2) return conv_tile_pixels<Qs8Maddwd, 2, 6>(a, pixels);
  conv_tile_pixels<Qs8Maddwd, 1, 6>(a, pixels);
}

void qs16_conv2d_direct_i64_8x6_avx2(const DirectTileArgs& a, int, int pixels) {
  conv_tile_pixels<Qs16Split, 1, 6>(a, pixels);
}

void f32_dwconv2d_direct_row_4x8_avx2(const DepthwiseRowArgs& a) { dw_rows<F32DwRow, 4, float>(a); }
void qs8_dwconv2d_direct_row_i32_4x8_avx2(const DepthwiseRowArgs& a) { dw_rows<Qs8DwRow, 4, int32_t>(a); }
void qs16_dwconv2d_direct_row_i64_2x8_avx2(const DepthwiseRowArgs& a) { dw_rows<Qs16DwRow, 2, int64_t>(a); }

}  // namespace direct_conv_detail
}  // namespace edgecc
