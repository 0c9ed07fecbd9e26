// The ISA-independent part of the binary convolution: tiling, OpenMP, padding, the
// +-1 corrections and the fused epilogue. Each binary_conv_<isa>.cpp includes this
// header with its own compile flags (so the epilogue is vectorized for that ISA) and
// instantiates run_binary_conv<Kernels> with its micro-kernels.
//
// Work decomposition. Output pixels (flattened over n, oh, ow) x output channels of one
// group form a matrix; the "rows" of the GEMM-like product are weight blocks (16 output
// channels of one weight plane), the "columns" are (pixel, activation plane) pairs. A
// macro tile covers `pixels` pixels x `chunks` chunks of 16 output channels with all
// M x P plane pairs, so the epilogue finds every count of an output in one scratch
// buffer. Micro-kernel calls cover up to kMaxCols columns x kMaxBlocks blocks.
#pragma once
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "edgecc/binary_conv.h"
#include "edgecc/binary_conv_tables.h"

namespace edgecc::binary {
// Everything here is compiled once per ISA file with that file's flags; the anonymous
// namespace keeps each copy private to its file (one shared inline definition would let
// the linker pick, say, the AVX-512 copy for the portable path).
namespace {

inline int popcount32(uint32_t v) {
#if defined(__POPCNT__)
  return __builtin_popcount(v);
#else
  v = v - ((v >> 1) & 0x55555555u);
  v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
  return static_cast<int>((((v + (v >> 4)) & 0x0f0f0f0fu) * 0x01010101u) >> 24);
#endif
}

// out[c * out_stride + b * 16 + lane] = sum over taps t and words k of
//   popcount(w[b * w_block_stride + (t * k_words + k) * 16 + lane] op x[c][tap_offset[t] + k])
// with op = AND, or XOR for the kXor kernels.
using TileFn = void (*)(const uint32_t* const* x, const std::ptrdiff_t* tap_offset, const uint32_t* w,
                        std::ptrdiff_t w_block_stride, int taps, int k_words, int32_t* out,
                        int out_stride);

constexpr int kMaxTilePixels = 16;  // plan_tiles never exceeds kMaxCols (<= 16) pixels
constexpr int kMaxTileCols = 32;    // pixels x activation planes of one tile

struct TilePlan {
  int pixels;  // pixels per macro tile
  int chunks;  // 16-channel chunks per macro tile
};

// Kernels (one per ISA) provides:
//   kMaxCols, kMaxBlocks: the largest micro-kernel call (columns x 16-lane blocks);
//   kBestCols, kBestBlocks: the call shape that runs fastest (planning target);
//   static constexpr bool fits(cols, blocks): the call keeps its accumulators in registers;
//   template <int C, int B, bool kXor> struct Tile { static void run(...); }: the kernels;
//   Vec: 16-lane operations for the epilogue (GenericVec below, or the ISA's own).
template <class Kernels>
int max_blocks_for(int cols) {
  int b = 1;
  while (b < Kernels::kMaxBlocks && Kernels::fits(cols, b + 1)) ++b;
  return b;
}

// Splits n into pieces of at most `most`, as equal as possible (no allocation).
struct Split {
  int count = 0;
  int start[64], len[64];
};
inline Split split_even(int n, int most) {
  Split s;
  s.count = (n + most - 1) / most;
  int at = 0;
  for (int i = 0; i < s.count; ++i) {
    const int rest = s.count - i;
    s.start[i] = at;
    s.len[i] = (n - at + rest - 1) / rest;
    at += s.len[i];
  }
  return s;
}

// Picks the macro tile that keeps the most accumulators busy per micro-kernel call,
// averaged over the layer (so 8 chunks go as 4 + 4, not 6 + 2).
template <class Kernels>
TilePlan plan_tiles(int m_planes, int in_planes, int chunks_in_group) {
  TilePlan best{1, 1};
  double best_score = -1.0;
  const int most_chunks = std::min(chunks_in_group, std::max(1, Kernels::kMaxBlocks / m_planes));
  for (int nch = 1; nch <= most_chunks; ++nch) {
    const int tiles = (chunks_in_group + nch - 1) / nch;
    const double blocks_avg = static_cast<double>(chunks_in_group) * m_planes / tiles;
    const int blocks = std::min(nch * m_planes, Kernels::kMaxBlocks);
    int cols = 1;
    while (cols < Kernels::kMaxCols && Kernels::fits(cols + 1, blocks) &&
           (cols + 1) * blocks <= Kernels::kBestCols * Kernels::kBestBlocks)
      ++cols;
    const int pixels = std::max(1, cols / in_planes);
    const Split cs = split_even(pixels * in_planes, Kernels::kMaxCols);
    int calls = 0;
    for (int i = 0; i < cs.count; ++i)
      calls += split_even(nch * m_planes, max_blocks_for<Kernels>(cs.len[i])).count;
    const double score = pixels * in_planes * blocks_avg / calls;
    if (score >= best_score) {
      best_score = score;
      best = {pixels, nch};
    }
  }
  return best;
}

// The micro-kernel table [cols-1][blocks-1] (null where a shape does not fit registers).
template <class K, bool X, int C, int B>
constexpr TileFn tile_entry() {
  if constexpr (K::fits(C, B)) return &K::template Tile<C, B, X>::run;
  else return nullptr;
}
template <class K, bool X, int C, int... B>
constexpr std::array<TileFn, sizeof...(B)> tile_row(std::integer_sequence<int, B...>) {
  return {{tile_entry<K, X, C, B + 1>()...}};
}
template <class K, bool X, int... C>
constexpr std::array<std::array<TileFn, K::kMaxBlocks>, sizeof...(C)> tile_table(
    std::integer_sequence<int, C...>) {
  return {{tile_row<K, X, C + 1>(std::make_integer_sequence<int, K::kMaxBlocks>())...}};
}
template <class K>
TileFn lookup_tile(int cols, int blocks, bool xor_counts) {
  static constexpr auto and_table = tile_table<K, false>(std::make_integer_sequence<int, K::kMaxCols>());
  static constexpr auto xor_table = tile_table<K, true>(std::make_integer_sequence<int, K::kMaxCols>());
  return (xor_counts ? xor_table : and_table)[cols - 1][blocks - 1];
}

// A zeroed array whose data starts on a cache line: the kernels store whole zmm rows
// into it and the epilogue reloads them, which must not straddle lines (a split store
// defeats store-to-load forwarding).
template <class T>
class LineAligned {
 public:
  void resize(size_t n) {
    raw_.assign(n * sizeof(T) + 64, 0);
    const size_t off = (64 - reinterpret_cast<uintptr_t>(raw_.data()) % 64) % 64;
    data_ = reinterpret_cast<T*>(raw_.data() + off);
  }
  T* data() { return data_; }
  const T* data() const { return data_; }

 private:
  std::vector<unsigned char> raw_;
  T* data_ = nullptr;
};

// The input with its zero padding made explicit, so that every tap of every output pixel
// is a fixed offset from the pixel's first tap (no bounds checks in the kernels; padded
// taps read zero words, which is exact for AND and for the +-1 identity).
struct PaddedInput {
  const uint32_t* data = nullptr;  // [n][hp][wp][in_planes][x_words]
  int hp = 0, wp = 0;
  std::vector<uint32_t> storage;
  std::vector<std::ptrdiff_t> tap_offset;  // [taps]: words from the first tap
  // What the kernels loop over: the taps, or whole kernel rows when the taps of a row are
  // adjacent in memory (one plane, no dilation along x, no padding words): fewer, longer
  // runs of words per tap.
  int kernel_taps = 0, kernel_words = 0;
  std::vector<std::ptrdiff_t> kernel_offset;
  std::vector<int32_t> act_bits;   // w_signed: [n*oh*ow][groups][in_planes] bits over the taps
};

inline PaddedInput pad_input(const ConvProblem& p) {
  PaddedInput in;
  const size_t pix_words = static_cast<size_t>(p.in_planes) * p.x_words;
  in.hp = std::max(p.h + p.pad_top, (p.oh - 1) * p.stride_h + (p.kh - 1) * p.dil_h + 1);
  in.wp = std::max(p.w + p.pad_left, (p.ow - 1) * p.stride_w + (p.kw - 1) * p.dil_w + 1);
  if (p.pad_top == 0 && p.pad_left == 0 && in.hp == p.h && in.wp == p.w) {
    in.data = p.x;
  } else {
    in.storage.assign(static_cast<size_t>(p.n) * in.hp * in.wp * pix_words, 0u);
    for (int img = 0; img < p.n; ++img)
      for (int y = 0; y < p.h; ++y)
        std::memcpy(&in.storage[((static_cast<size_t>(img) * in.hp + y + p.pad_top) * in.wp + p.pad_left) *
                                pix_words],
                    p.x + (static_cast<size_t>(img) * p.h + y) * p.w * pix_words,
                    static_cast<size_t>(p.w) * pix_words * sizeof(uint32_t));
    in.data = in.storage.data();
  }
  in.tap_offset.resize(p.taps());
  for (int ky = 0; ky < p.kh; ++ky)
    for (int kx = 0; kx < p.kw; ++kx)
      in.tap_offset[ky * p.kw + kx] = static_cast<std::ptrdiff_t>(
          (static_cast<size_t>(ky) * p.dil_h * in.wp + static_cast<size_t>(kx) * p.dil_w) * pix_words);
  const bool rows_adjacent = p.dil_w == 1 && p.in_planes == 1 && p.x_words == p.k_words && p.groups == 1;
  if (rows_adjacent) {
    in.kernel_taps = p.kh;
    in.kernel_words = p.kw * p.k_words;
    for (int ky = 0; ky < p.kh; ++ky) in.kernel_offset.push_back(in.tap_offset[ky * p.kw]);
  } else {
    in.kernel_taps = p.taps();
    in.kernel_words = p.k_words;
    in.kernel_offset = in.tap_offset;
  }
  return in;
}

// The first-tap input words of output pixel (img, oy, ox) in group g.
inline const uint32_t* first_tap(const ConvProblem& p, const PaddedInput& in, int img, int oy, int ox, int g) {
  const size_t pix_words = static_cast<size_t>(p.in_planes) * p.x_words;
  return in.data +
         ((static_cast<size_t>(img) * in.hp + static_cast<size_t>(oy) * p.stride_h) * in.wp +
          static_cast<size_t>(ox) * p.stride_w) * pix_words +
         static_cast<size_t>(g) * p.x_group_words;
}

// Activation bits of every (output pixel, group, plane) over its taps, for +-1 weights:
// bits per padded input pixel first, then a sum over the taps.
inline void count_activation_bits(const ConvProblem& p, PaddedInput& in) {
  const long npix = static_cast<long>(p.n) * p.oh * p.ow;
  const int P = p.in_planes, G = p.groups, taps = p.taps();
  const long nin = static_cast<long>(p.n) * in.hp * in.wp;
  const size_t pix_words = static_cast<size_t>(P) * p.x_words;
  std::vector<int32_t> pixel_bits(static_cast<size_t>(nin) * G * P);
  std::vector<long> tap_pixels(taps);
  for (int ky = 0; ky < p.kh; ++ky)
    for (int kx = 0; kx < p.kw; ++kx)
      tap_pixels[ky * p.kw + kx] = static_cast<long>(ky) * p.dil_h * in.wp + static_cast<long>(kx) * p.dil_w;
  in.act_bits.assign(static_cast<size_t>(npix) * G * P, 0);
#pragma omp parallel num_threads(std::max(1, p.threads))
  {
#pragma omp for schedule(static)
    for (long q = 0; q < nin; ++q)
      for (int g = 0; g < G; ++g)
        for (int j = 0; j < P; ++j) {
          const uint32_t* xw = in.data + q * pix_words + static_cast<size_t>(j) * p.x_words +
                               static_cast<size_t>(g) * p.x_group_words;
          int32_t bits = 0;
          for (int k = 0; k < p.k_words; ++k) bits += popcount32(xw[k]);
          pixel_bits[(static_cast<size_t>(q) * G + g) * P + j] = bits;
        }
#pragma omp for schedule(static)
    for (long row = 0; row < static_cast<long>(p.n) * p.oh; ++row) {  // (img, oy)
      const long img = row / p.oh, oy = row % p.oh;
      for (int ox = 0; ox < p.ow; ++ox) {
        const long first = (img * in.hp + oy * p.stride_h) * in.wp + static_cast<long>(ox) * p.stride_w;
        int32_t* out = &in.act_bits[(static_cast<size_t>(row) * p.ow + ox) * G * P];
        for (int i = 0; i < G * P; ++i) {
          int32_t sum = 0;  // in a register, not a read-modify-write chain through memory
          for (int t = 0; t < taps; ++t) sum += pixel_bits[static_cast<size_t>(first + tap_pixels[t]) * G * P + i];
          out[i] = sum;
        }
      }
    }
  }
}

// The pixels of one tile: kernel columns (pixel, plane) and output coordinates.
struct PixelTile {
  int npx = 0;
  const uint32_t* col[kMaxTileCols];  // first-tap input words of each column
  int img[kMaxTilePixels], oy[kMaxTilePixels], ox[kMaxTilePixels];
  size_t pix[kMaxTilePixels];         // flattened output pixel (n, oy, ox)
  int32_t base[kMaxTileCols];         // [cols]: dw*ca*(activation bits) + dw*da*n_valid
};

// Fills the tile of `npx` pixels starting at flattened pixel pix0 = (img, oy, ox).
inline void build_pixel_tile(const ConvProblem& p, const ConvTables& tb, const PaddedInput& in,
                             PixelTile& t, int g, long pix0, int img, int oy, int ox, int npx) {
  const int P = p.in_planes;
  t.npx = npx;
  for (int r = 0; r < npx; ++r) {
    if (r > 0 && ++ox == p.ow) {  // next pixel in (n, oy, ox) order
      ox = 0;
      if (++oy == p.oh) oy = 0, ++img;
    }
    t.img[r] = img; t.oy[r] = oy; t.ox[r] = ox; t.pix[r] = static_cast<size_t>(pix0 + r);
    const uint32_t* first = first_tap(p, in, img, oy, ox, g);
    for (int j = 0; j < P; ++j) {
      t.col[r * P + j] = first + static_cast<size_t>(j) * p.x_words;
      int32_t b = 0;
      if (tb.xor_counts) {
        b = tb.valid_products(oy, ox, p.cin_g);  // D = n_valid - 2 * (disagreements on valid taps)
      } else if (p.w_signed) {
        b = -in.act_bits[((static_cast<size_t>(pix0) + r) * p.groups + g) * P + j];  // dw*ca*(bits), x {0,1}
      }
      t.base[r * P + j] = b;
    }
  }
}

// Portable 16-lane operations for the epilogue; an ISA may supply its own `Vec` with
// the same interface (binary_conv_avx512.cpp does).
struct GenericVec {
  struct F { float v[kLanes]; };
  struct I { int32_t v[kLanes]; };
  static I load_i(const int32_t* p) { I r; for (int l = 0; l < kLanes; ++l) r.v[l] = p[l]; return r; }
  static I zero_i() { I r; for (int l = 0; l < kLanes; ++l) r.v[l] = 0; return r; }
  // cnt * mul + add + base
  static I combine(I cnt, int mul, I add, int32_t base) {
    I r;
    for (int l = 0; l < kLanes; ++l) r.v[l] = cnt.v[l] * mul + add.v[l] + base;
    return r;
  }
  static void store_i(int32_t* p, I v) { for (int l = 0; l < kLanes; ++l) p[l] = v.v[l]; }
  static F load_f(const float* p) { F r; for (int l = 0; l < kLanes; ++l) r.v[l] = p[l]; return r; }
  static void store_f(float* p, F v) { for (int l = 0; l < kLanes; ++l) p[l] = v.v[l]; }
  static F madd_i(F acc, const float* a, I b) {  // acc + a * float(b)
    for (int l = 0; l < kLanes; ++l) acc.v[l] += a[l] * static_cast<float>(b.v[l]);
    return acc;
  }
  static F add(F a, F b) { for (int l = 0; l < kLanes; ++l) a.v[l] += b.v[l]; return a; }
  static F relu(F a) { for (int l = 0; l < kLanes; ++l) a.v[l] = a.v[l] > 0.0f ? a.v[l] : 0.0f; return a; }
  static F prelu(F a, F s) {
    for (int l = 0; l < kLanes; ++l) a.v[l] = a.v[l] >= 0.0f ? a.v[l] : s.v[l] * a.v[l];
    return a;
  }
  static uint32_t ge(F a, const float* t) {  // lanes with a >= t (false for NaN)
    uint32_t m = 0;
    for (int l = 0; l < kLanes; ++l) m |= static_cast<uint32_t>(a.v[l] >= t[l]) << l;
    return m;
  }
};

// The integer result D_ij = cw*ca*count + cw*da*(weight bits) + base of column c and
// 16 lanes of weight row `row0` (see binary_conv.h).
template <class V>
inline typename V::I result(const int32_t* counts, int rows, int c, int row0, int mul,
                            const int32_t* sb, const int32_t* base) {
  return V::combine(V::load_i(counts + static_cast<size_t>(c) * rows + row0), mul,
                    sb ? V::load_i(sb) : V::zero_i(), base[c]);
}

template <class V>
void write_counts(const ConvProblem& p, const ConvTables& tb, const PixelTile& t, const int32_t* counts,
                  int g, int ch0, int nch, int mul) {
  const int M = p.m_planes, P = p.in_planes, cout = p.cout(), rows = nch * M * kLanes;
  const size_t hw_out = static_cast<size_t>(p.oh) * p.ow;
  for (int r = 0; r < t.npx; ++r) {
    const int32_t* sb = p.x_signed ? tb.sb_row(t.oy[r], t.ox[r], g) : nullptr;
    for (int cl = 0; cl < nch; ++cl) {
      const int lane0_g = (ch0 + cl) * kLanes, oc0 = g * p.cout_g + lane0_g;
      const int valid = std::min(kLanes, p.cout_g - lane0_g);
      for (int i = 0; i < M; ++i)
        for (int j = 0; j < P; ++j) {
          alignas(64) int32_t tmp[kLanes];
          V::store_i(tmp, result<V>(counts, rows, r * P + j, (cl * M + i) * kLanes, mul,
                                    sb ? sb + ((ch0 + cl) * M + i) * kLanes : nullptr, t.base));
          int32_t* dst = p.counts + (((static_cast<size_t>(t.img[r]) * M + i) * P + j) * cout + oc0) * hw_out +
                         (t.pix[r] % hw_out);
          for (int l = 0; l < valid; ++l) dst[l * hw_out] = tmp[l];
        }
    }
  }
}

// Outputs of one tile: y = sum_ij phi * D_ij + bias (+ residual), activation, then float or
// planes. Channel chunks outer, pixels inner, everything per chunk hoisted out of the pixel
// loop. kSinglePair: M = P = 1.
template <class V, bool kSinglePair>
void write_outputs(const ConvProblem& p, const ConvTables& tb, const PixelTile& t, const int32_t* counts,
                   int g, int ch0, int nch, int mul) {
  using F = typename V::F;
  const int M = p.m_planes, P = p.in_planes, cout = p.cout(), rows = nch * M * kLanes, npx = t.npx;
  const int lanes_g = p.chunks * kLanes;
  const size_t hw_out = static_cast<size_t>(p.oh) * p.ow;
  const size_t plane_step = static_cast<size_t>(p.groups) * lanes_g;
  const bool planes_out = p.epilogue == Epilogue::kPlanes;
  const int oc_g = g * p.cout_g;
  // Per pixel: float element (img, oc, oy, ox) = f_base + oc * f_step; plane words; the
  // +-1 weight-bit terms of the pixel's valid taps.
  const size_t f_step = p.nchw ? hw_out : 1;
  size_t f_base[kMaxTilePixels];
  uint32_t* words[kMaxTilePixels];
  const int32_t* sb[kMaxTilePixels];
  for (int r = 0; r < npx; ++r) {
    const size_t pix = t.pix[r];
    f_base[r] = p.nchw ? (static_cast<size_t>(t.img[r]) * cout * hw_out + (pix - t.img[r] * hw_out)) : pix * cout;
    words[r] = planes_out ? p.out_bits + pix * p.out_planes * p.out_words : nullptr;
    sb[r] = p.x_signed ? tb.sb_row(t.oy[r], t.ox[r], g) : nullptr;
  }
  if (kSinglePair && planes_out && p.out_planes == 1 && !p.residual && p.activation != Activation::kPrelu &&
      (p.groups == 1 || p.cout_g % kLanes == 0)) {
    // The chained single binary layer: one compare per 16 channels, 16-bit stores.
    const bool relu = p.activation == Activation::kRelu;
    for (int cl = 0; cl < nch; ++cl) {
      const int lane0_g = (ch0 + cl) * kLanes;
      const F bias = V::load_f(tb.bias.data() + static_cast<size_t>(g) * lanes_g + lane0_g);
      const float* phi = tb.phi.data() + static_cast<size_t>(g) * lanes_g + lane0_g;
      const float* thr = tb.thr.data() + static_cast<size_t>(g) * lanes_g + lane0_g;
      const int32_t* cnt = counts + cl * kLanes;
      const int half = (oc_g + lane0_g) / kLanes;
      const int sb_off = (ch0 + cl) * kLanes;
      for (int r = 0; r < npx; ++r) {
        F y = V::madd_i(bias, phi, V::combine(V::load_i(cnt + static_cast<size_t>(r) * rows), mul,
                                              sb[r] ? V::load_i(sb[r] + sb_off) : V::zero_i(), t.base[r]));
        if (relu) y = V::relu(y);
        reinterpret_cast<uint16_t*>(words[r])[half] = static_cast<uint16_t>(V::ge(y, thr));
      }
    }
    return;
  }
  for (int cl = 0; cl < nch; ++cl) {
    const int ch = ch0 + cl, lane0_g = ch * kLanes, oc0 = oc_g + lane0_g;
    const bool whole = lane0_g + kLanes <= p.cout_g;
    const bool contiguous = whole && !p.nchw;
    const int valid = whole ? kLanes : p.cout_g - lane0_g;
    // A plain 16-bit store is race-free when this chunk owns every bit of its half-word:
    // it starts one and no other group's channels share it.
    const bool halves = oc0 % kLanes == 0 && (valid == kLanes || oc0 + valid == cout);
    const F bias = V::load_f(tb.bias.data() + static_cast<size_t>(g) * lanes_g + lane0_g);
    const F slope = V::load_f(tb.slope.data() + static_cast<size_t>(g) * lanes_g + lane0_g);
    const float* phi = tb.phi.data() + (static_cast<size_t>(g) * p.chunks + ch) * M * P * kLanes;  // [i][j][16]
    const float* thr = planes_out ? tb.thr.data() + static_cast<size_t>(g) * lanes_g + lane0_g : nullptr;
    const int32_t* cnt = counts + cl * M * kLanes;
    for (int r = 0; r < npx; ++r) {
      F y;
      if constexpr (kSinglePair) {
        y = V::madd_i(bias, phi, V::combine(V::load_i(cnt + static_cast<size_t>(r) * rows), mul,
                                            sb[r] ? V::load_i(sb[r] + ch * kLanes) : V::zero_i(), t.base[r]));
      } else {
        y = bias;
        for (int i = 0; i < M; ++i) {
          const typename V::I add = sb[r] ? V::load_i(sb[r] + (ch * M + i) * kLanes) : V::zero_i();
          for (int j = 0; j < P; ++j) {
            const int c = r * P + j;
            y = V::madd_i(y, phi + (i * P + j) * kLanes,
                          V::combine(V::load_i(cnt + static_cast<size_t>(c) * rows + i * kLanes), mul, add,
                                     t.base[c]));
          }
        }
      }
      const size_t fi = f_base[r] + static_cast<size_t>(oc0) * f_step;
      alignas(64) float tmp[kLanes];
      if (p.residual) {
        if (contiguous) {
          y = V::add(y, V::load_f(p.residual + fi));
        } else {
          for (int l = 0; l < kLanes; ++l) tmp[l] = l < valid ? p.residual[fi + l * f_step] : 0.0f;
          y = V::add(y, V::load_f(tmp));
        }
      }
      if (p.activation == Activation::kRelu)
        y = V::relu(y);
      else if (p.activation == Activation::kPrelu)
        y = V::prelu(y, slope);
      if (!planes_out) {
        if (contiguous) {
          V::store_f(p.out + fi, y);
        } else {
          V::store_f(tmp, y);
          for (int l = 0; l < valid; ++l) p.out[fi + l * f_step] = tmp[l];
        }
        continue;
      }
      // Plane q of y is t_q <= y < t_{q+1}; padded lanes have NaN thresholds: no bit.
      uint32_t at_least = V::ge(y, thr);
      uint32_t* w = words[r];
      for (int qp = 0; qp < p.out_planes; ++qp, w += p.out_words) {
        const uint32_t next = qp + 1 < p.out_planes ? V::ge(y, thr + (qp + 1) * plane_step) : 0u;
        const uint32_t bits = at_least & ~next;
        at_least = next;
        if (halves) {
          reinterpret_cast<uint16_t*>(w)[oc0 / kLanes] = static_cast<uint16_t>(bits);
        } else {
          for (int l = 0; l < valid; ++l)
            if (bits >> l & 1u)
              __atomic_fetch_or(&w[(oc0 + l) / 32], 1u << ((oc0 + l) % 32), __ATOMIC_RELAXED);
        }
      }
    }
  }
}

// Counts of every (column, row) of one macro tile through the micro-kernels.
template <class Kernels>
void count_tile(const ConvProblem& p, const PaddedInput& in, const PixelTile& t, int32_t* counts, int g,
                int ch0, int nch, bool xor_counts) {
  const int M = p.m_planes, taps = p.taps(), cols = t.npx * p.in_planes, rows = nch * M * kLanes;
  const size_t block_size = static_cast<size_t>(taps) * p.k_words * kLanes;
  const uint32_t* w0 = p.wts + (static_cast<size_t>(g) * p.chunks + ch0) * M * block_size;
  const Split cs = split_even(cols, Kernels::kMaxCols);
  for (int ci = 0; ci < cs.count; ++ci) {
    const int c0 = cs.start[ci], nc = cs.len[ci];
    const Split bs = split_even(nch * M, max_blocks_for<Kernels>(nc));
    for (int bi = 0; bi < bs.count; ++bi) {
      const int b0 = bs.start[bi], nb = bs.len[bi];
      lookup_tile<Kernels>(nc, nb, xor_counts)(t.col + c0, in.kernel_offset.data(), w0 + b0 * block_size,
                                   static_cast<std::ptrdiff_t>(block_size), in.kernel_taps, in.kernel_words,
                                   counts + static_cast<size_t>(c0) * rows + b0 * kLanes, rows);
    }
  }
}

template <class Kernels>
void run_binary_conv(const ConvProblem& p, const ConvTables& tables) {
  using V = typename Kernels::Vec;
  static_assert(Kernels::kMaxCols <= kMaxTilePixels && 16 <= kMaxTileCols, "tile arrays too small");
  const long npix = static_cast<long>(p.n) * p.oh * p.ow;
  if (npix == 0) return;
  const TilePlan plan = plan_tiles<Kernels>(p.m_planes, p.in_planes, p.chunks);
  PaddedInput in = pad_input(p);
  if (p.w_signed && !tables.xor_counts) count_activation_bits(p, in);
  const long ptiles = (npix + plan.pixels - 1) / plan.pixels;
  const long otiles_g = (p.chunks + plan.chunks - 1) / plan.chunks;
  const long otiles = otiles_g * p.groups;
  // Items: blocks of pixel tiles, then output-channel tiles, then pixel tiles within the
  // block; a static schedule gives each thread a contiguous run (its own pixels when the
  // layer is large, its own output channels when it is small). Weights of one
  // output-channel tile stay in cache across the block's pixel tiles.
  const long block = std::min<long>(ptiles, 32);
  const long nblocks = (ptiles + block - 1) / block;
  const long items = nblocks * otiles * block;
  const int cols_max = plan.pixels * p.in_planes;
  const int rows_max = plan.chunks * p.m_planes * kLanes;
  const int mul = tables.mul;  // count multiplier of the integer result
  const bool single_pair = p.m_planes == 1 && p.in_planes == 1;
  // Start coordinates (img, oy, ox) of every pixel tile.
  std::vector<int> tile_start(static_cast<size_t>(ptiles) * 3);
  for (long pt = 0; pt < ptiles; ++pt) {
    const long q = pt * plan.pixels, hw_out = static_cast<long>(p.oh) * p.ow;
    tile_start[pt * 3] = static_cast<int>(q / hw_out);
    tile_start[pt * 3 + 1] = static_cast<int>(q % hw_out / p.ow);
    tile_start[pt * 3 + 2] = static_cast<int>(q % p.ow);
  }
  const int threads = static_cast<int>(std::max<long>(1, std::min<long>(p.threads, items)));
#pragma omp parallel num_threads(threads)
  {
    LineAligned<int32_t> counts;  // [cols][rows]
    counts.resize(static_cast<size_t>(cols_max) * rows_max);
    PixelTile t;
    // A contiguous run of items per thread, walked without divisions.
    const int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    const long begin = items * tid / nt, end = items * (tid + 1) / nt;
    long b = begin / (otiles * block), ot = begin % (otiles * block) / block, in_block = begin % block;
    for (long it = begin; it < end; ++it) {
      const long pt = b * block + in_block;
      if (pt < ptiles) {
        const int g = static_cast<int>(ot / otiles_g);
        const int ch0 = static_cast<int>(ot % otiles_g) * plan.chunks;
        const int nch = std::min(plan.chunks, p.chunks - ch0);
        const long pix0 = pt * plan.pixels;
        const int* st = &tile_start[pt * 3];
        build_pixel_tile(p, tables, in, t, g, pix0, st[0], st[1], st[2],
                         static_cast<int>(std::min<long>(plan.pixels, npix - pix0)));
        count_tile<Kernels>(p, in, t, counts.data(), g, ch0, nch, tables.xor_counts);
        if (p.epilogue == Epilogue::kCounts)
          write_counts<V>(p, tables, t, counts.data(), g, ch0, nch, mul);
        else if (single_pair)
          write_outputs<V, true>(p, tables, t, counts.data(), g, ch0, nch, mul);
        else
          write_outputs<V, false>(p, tables, t, counts.data(), g, ch0, nch, mul);
      }
      if (++in_block == block) {
        in_block = 0;
        if (++ot == otiles) ot = 0, ++b;
      }
    }
  }
}

}  // namespace
}  // namespace edgecc::binary
