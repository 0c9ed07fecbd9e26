// Pointwise stage of DFNT convolution: one modular GEMM per frequency bin,
// y[m][o] = sum_c x[m][c] * w[c][o] mod (2^b + 1), with delayed reduction on IFMA52.
//
// vpmadd52luq / vpmadd52huq add the low / high 52 bits of the 104-bit product of
// two 52-bit operands to 64-bit accumulators, so residues below 2^52 (F5: 33 bits,
// F48: 49 bits) multiply with no reduction at all; the sum is reduced once per
// block of up to 4096 channels: value = lo + hi * 2^52, and 2^52 = -2^20 mod F5,
// 2^52 = -16 mod 2^48 + 1. F6 residues (65 bits) are split into 33-bit limbs: four
// limb products, six accumulators, combined in the epilogue.
#include <immintrin.h>

#include "edgecc/dfnt_kernels.h"
#include "edgecc/dfnt_ring.h"

namespace edgecc {
namespace dfnt {
namespace {

inline __m512i set1(uint64_t v) { return _mm512_set1_epi64(static_cast<long long>(v)); }

// v < 2^64 reduced mod 2^B + 1 (B = 32 or 48): v = h 2^B + l = l - h.
template <int B>
inline __m512i reduce64(__m512i v) {
  constexpr uint64_t kM = (uint64_t(1) << B) - 1, kP = kM + 2;
  const __m512i t = _mm512_add_epi64(_mm512_sub_epi64(_mm512_and_si512(v, set1(kM)), _mm512_srli_epi64(v, B)),
                                     set1(kP));  // in (0, 2p)
  return _mm512_min_epu64(t, _mm512_sub_epi64(t, set1(kP)));
}

// lo + hi * 2^52 mod p, in [0, p).
template <int B>
inline __m512i reduce_lohi(__m512i lo, __m512i hi) {
  constexpr uint64_t kP = (uint64_t(1) << B) + 1;
  // 2^52 = 2^(52 - B) * 2^B = -2^(52 - B)
  const __m512i l = reduce64<B>(lo), h = reduce64<B>(_mm512_slli_epi64(hi, 52 - B));
  const __m512i s = _mm512_add_epi64(_mm512_sub_epi64(l, h), set1(kP));
  return _mm512_min_epu64(s, _mm512_sub_epi64(s, set1(kP)));
}

template <int B>
inline __m512i add_mod(__m512i a, __m512i b) {
  constexpr uint64_t kP = (uint64_t(1) << B) + 1;
  const __m512i s = _mm512_add_epi64(a, b);
  return _mm512_min_epu64(s, _mm512_sub_epi64(s, set1(kP)));
}

// MR rows x (8 * NV) columns over channels [k0, k1) of one bin (GemmArgs layout);
// w: a contiguous panel, channel c at w + c * 8 NV.
template <int B, int MR, int NV>
void tile_1limb(const GemmArgs& g, const uint64_t* x, const uint64_t* w, uint64_t* y, int64_t k0, int64_t k1,
                bool accumulate) {
  __m512i lo[MR][NV], hi[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) lo[r][v] = hi[r][v] = _mm512_setzero_si512();
  for (int64_t c = k0; c < k1; ++c) {
    __m512i b[NV];
    // W streams from memory when few rows share it: fetch a few channels ahead.
    for (int v = 0; v < NV; ++v) _mm_prefetch(reinterpret_cast<const char*>(w + (c + 8) * 8 * NV + 8 * v), _MM_HINT_T0);
    for (int v = 0; v < NV; ++v) b[v] = _mm512_loadu_si512(w + c * 8 * NV + 8 * v);
    const uint64_t* xc = x + (c >> 3) * g.x_group + (c & 7);
    for (int r = 0; r < MR; ++r) {
      const __m512i a = set1(xc[r * g.x_row]);
      for (int v = 0; v < NV; ++v) {
        lo[r][v] = _mm512_madd52lo_epu64(lo[r][v], a, b[v]);
        hi[r][v] = _mm512_madd52hi_epu64(hi[r][v], a, b[v]);
      }
    }
  }
  for (int r = 0; r < MR; ++r) {
    for (int v = 0; v < NV; ++v) {
      uint64_t* out = y + r * g.y_row + v * g.y_group;
      __m512i res = reduce_lohi<B>(lo[r][v], hi[r][v]);
      if (accumulate) res = add_mod<B>(res, _mm512_loadu_si512(out));
      _mm512_storeu_si512(out, res);
    }
  }
}

// All rows against one panel of 8 NV output channels starting at group og.
template <int B, int NV>
void rows_1limb(const GemmArgs& g, const uint64_t* panel, int64_t og, int64_t k0, int64_t k1) {
  constexpr int MR = 6;
  const bool acc = k0 > 0;
  uint64_t* y = g.y + og * g.y_group;
  int64_t r = 0;
  for (; r + MR <= g.m; r += MR) tile_1limb<B, MR, NV>(g, g.x + r * g.x_row, panel, y + r * g.y_row, k0, k1, acc);
  const uint64_t* xr = g.x + r * g.x_row;
  uint64_t* yr = y + r * g.y_row;
  switch (g.m - r) {
    case 5: tile_1limb<B, 5, NV>(g, xr, panel, yr, k0, k1, acc); break;
    case 4: tile_1limb<B, 4, NV>(g, xr, panel, yr, k0, k1, acc); break;
    case 3: tile_1limb<B, 3, NV>(g, xr, panel, yr, k0, k1, acc); break;
    case 2: tile_1limb<B, 2, NV>(g, xr, panel, yr, k0, k1, acc); break;
    case 1: tile_1limb<B, 1, NV>(g, xr, panel, yr, k0, k1, acc); break;
    default: break;
  }
}

// Column panels of 16 (the last one 8 when opad is an odd multiple of 8), each
// contiguous in w.
// Channels in blocks of kBlock: one block of a W panel (kBlock x 16 words, 16 KiB)
// stays in L1 while every row passes; partial sums are reduced per block (a block
// must stay <= 4096 channels so its lo terms < 2^52 fit 64 bits).
template <int B>
void gemm_1limb(const GemmArgs& g) {
  constexpr int64_t kBlock = 128;
  for (int64_t k0 = 0; k0 < g.cpad; k0 += kBlock) {
    const int64_t k1 = k0 + kBlock < g.cpad ? k0 + kBlock : g.cpad;
    for (int64_t o = 0; o < g.opad; o += 16) {
      const uint64_t* panel = g.w + o * g.cpad;
      if (g.opad - o >= 16) rows_1limb<B, 2>(g, panel, o / 8, k0, k1);
      else rows_1limb<B, 1>(g, panel, o / 8, k0, k1);
    }
  }
}

// ---- F6: two 33-bit limbs per residue ----
using u128 = unsigned __int128;
constexpr u128 kP6 = (u128(1) << 64) + 1;

inline u128 reduce_f6(u128 v) {  // any v < 2^128 -> [0, p): v = h 2^64 + l = l - h
  const uint64_t l = uint64_t(v), h = uint64_t(v >> 64);
  return l >= h ? u128(l - h) : u128(l) + kP6 - h;
}

// acc[0..5]: lo(a0 b0), hi(a0 b0), lo(a0 b1 + a1 b0), hi(...), lo(a1 b1), hi(a1 b1);
// value = A0 + A1 2^52 + (A2 + A3 2^52) 2^33 + (A4 + A5 2^52) 2^66, and modulo
// 2^64 + 1: 2^85 = -2^21, 2^66 = -4, 2^118 = -2^54.
inline u128 combine_f6(const uint64_t a[6]) {
  const u128 pos = u128(a[0]) + (u128(a[1]) << 52) + (u128(a[2]) << 33);
  const u128 neg = (u128(a[3]) << 21) + (u128(a[4]) << 2) + (u128(a[5]) << 54);
  const u128 p = reduce_f6(pos), n = reduce_f6(neg);
  return p >= n ? p - n : p + kP6 - n;
}

template <int MR>
void tile_f6(const GemmArgs& g, const uint64_t* x, const uint64_t* w, uint64_t* y, int64_t k0, int64_t k1,
             bool accumulate) {
  __m512i acc[MR][6];
  for (int r = 0; r < MR; ++r)
    for (int q = 0; q < 6; ++q) acc[r][q] = _mm512_setzero_si512();
  for (int64_t c = k0; c < k1; ++c) {
    const uint64_t* wc = w + c * 16;
    const __m512i b0 = _mm512_loadu_si512(wc), b1 = _mm512_loadu_si512(wc + 8);
    const uint64_t* xc = x + (c >> 3) * g.x_group + (c & 7);
    for (int r = 0; r < MR; ++r) {
      const __m512i a0 = set1(xc[r * g.x_row]), a1 = set1(xc[r * g.x_row + 8]);
      acc[r][0] = _mm512_madd52lo_epu64(acc[r][0], a0, b0);
      acc[r][1] = _mm512_madd52hi_epu64(acc[r][1], a0, b0);
      acc[r][2] = _mm512_madd52lo_epu64(acc[r][2], a0, b1);
      acc[r][3] = _mm512_madd52hi_epu64(acc[r][3], a0, b1);
      acc[r][2] = _mm512_madd52lo_epu64(acc[r][2], a1, b0);
      acc[r][3] = _mm512_madd52hi_epu64(acc[r][3], a1, b0);
      acc[r][4] = _mm512_madd52lo_epu64(acc[r][4], a1, b1);
      acc[r][5] = _mm512_madd52hi_epu64(acc[r][5], a1, b1);
    }
  }
  for (int r = 0; r < MR; ++r) {
    alignas(64) uint64_t a[6][8];
    for (int q = 0; q < 6; ++q) _mm512_store_si512(a[q], acc[r][q]);
    uint64_t* out = y + r * g.y_row;
    for (int l = 0; l < 8; ++l) {
      const uint64_t parts[6] = {a[0][l], a[1][l], a[2][l], a[3][l], a[4][l], a[5][l]};
      u128 v = combine_f6(parts);
      if (accumulate) {
        v += u128(out[l]) + (u128(out[8 + l]) << 33);
        if (v >= kP6) v -= kP6;
      }
      out[l] = uint64_t(v & ((u128(1) << 33) - 1));
      out[8 + l] = uint64_t(v >> 33);
    }
  }
}

void gemm_f6(const GemmArgs& g) {
  constexpr int MR = 4;
  constexpr int64_t kBlock = 128;  // <= 2048: the cross accumulator takes two lo terms per channel
  for (int64_t k0 = 0; k0 < g.cpad; k0 += kBlock) {
    const int64_t k1 = k0 + kBlock < g.cpad ? k0 + kBlock : g.cpad;
    const bool acc = k0 > 0;
    for (int64_t og = 0; og < g.opad / 8; ++og) {
      const uint64_t* panel = g.w + og * 16 * g.cpad;  // 8 channels: [cpad][2][8]
      uint64_t* y = g.y + og * g.y_group;
      int64_t r = 0;
      for (; r + MR <= g.m; r += MR) tile_f6<MR>(g, g.x + r * g.x_row, panel, y + r * g.y_row, k0, k1, acc);
      const uint64_t* xr = g.x + r * g.x_row;
      uint64_t* yr = y + r * g.y_row;
      switch (g.m - r) {
        case 3: tile_f6<3>(g, xr, panel, yr, k0, k1, acc); break;
        case 2: tile_f6<2>(g, xr, panel, yr, k0, k1, acc); break;
        case 1: tile_f6<1>(g, xr, panel, yr, k0, k1, acc); break;
        default: break;
      }
    }
  }
}

// ---- F5 without IFMA: vpmuludq (32 x 32 -> 64 bits) ----
// W is split into 16-bit limbs w = w0 + w1 2^16 (w1 <= 2^16), so x * w0 and x * w1
// stay below 2^48 and 2^15 of them add up in 64 bits. x uses its low 32 bits: the
// one residue that needs 33, 2^32 = -1, is patched afterwards (rare, sparse).
template <int MR>
void tile_muludq(const GemmArgs& g, const uint64_t* x, const uint64_t* w, uint64_t* y, int64_t k0, int64_t k1,
                 bool accumulate) {
  __m512i a0[MR], a1[MR];
  for (int r = 0; r < MR; ++r) a0[r] = a1[r] = _mm512_setzero_si512();
  for (int64_t c = k0; c < k1; ++c) {
    const __m512i w0 = _mm512_loadu_si512(w + c * 16), w1 = _mm512_loadu_si512(w + c * 16 + 8);
    const uint64_t* xc = x + (c >> 3) * g.x_group + (c & 7);
    for (int r = 0; r < MR; ++r) {
      const __m512i a = set1(xc[r * g.x_row]);
      a0[r] = _mm512_add_epi64(a0[r], _mm512_mul_epu32(a, w0));
      a1[r] = _mm512_add_epi64(a1[r], _mm512_mul_epu32(a, w1));
    }
  }
  for (int r = 0; r < MR; ++r) {
    uint64_t* out = y + r * g.y_row;
    const __m512i hi = reduce64<32>(_mm512_slli_epi64(reduce64<32>(a1[r]), 16));
    __m512i res = add_mod<32>(reduce64<32>(a0[r]), hi);
    if (accumulate) res = add_mod<32>(res, _mm512_loadu_si512(out));
    _mm512_storeu_si512(out, res);
  }
}

void gemm_muludq(const GemmArgs& g) {
  constexpr int MR = 12;
  constexpr int64_t kBlock = int64_t(1) << 15;
  constexpr uint64_t kP = (uint64_t(1) << 32) + 1;
  for (int64_t k0 = 0; k0 < g.cpad; k0 += kBlock) {
    const int64_t k1 = k0 + kBlock < g.cpad ? k0 + kBlock : g.cpad;
    const bool acc = k0 > 0;
    for (int64_t og = 0; og < g.opad / 8; ++og) {
      const uint64_t* panel = g.w + og * 16 * g.cpad;  // [cpad][w0, w1][8]
      uint64_t* y = g.y + og * g.y_group;
      int64_t r = 0;
      for (; r + MR <= g.m; r += MR) tile_muludq<MR>(g, g.x + r * g.x_row, panel, y + r * g.y_row, k0, k1, acc);
      for (; r < g.m; ++r) tile_muludq<1>(g, g.x + r * g.x_row, panel, y + r * g.y_row, k0, k1, acc);
    }
  }
  // x = 2^32 contributed 0 instead of 2^32 * w = -w.
  for (int64_t r = 0; r < g.m; ++r) {
    for (int64_t c = 0; c < g.cpad; ++c) {
      if (g.x[r * g.x_row + (c >> 3) * g.x_group + (c & 7)] != kP - 1) continue;
      for (int64_t og = 0; og < g.opad / 8; ++og) {
        const uint64_t* wc = g.w + og * 16 * g.cpad + c * 16;
        const __m512i wv = _mm512_add_epi64(_mm512_loadu_si512(wc), _mm512_slli_epi64(_mm512_loadu_si512(wc + 8), 16));
        uint64_t* out = g.y + r * g.y_row + og * g.y_group;
        const __m512i d = _mm512_add_epi64(_mm512_sub_epi64(_mm512_loadu_si512(out), wv), set1(kP));
        _mm512_storeu_si512(out, _mm512_min_epu64(d, _mm512_sub_epi64(d, set1(kP))));
      }
    }
  }
}

}  // namespace

void f5_pack_w_muludq_avx512(const uint64_t* canonical, uint64_t* packed, int64_t cpad, int64_t opad) {
  for (int64_t c = 0; c < cpad; ++c) {
    for (int64_t og = 0; og < opad / 8; ++og) {
      const __m512i w = _mm512_loadu_si512(canonical + w_group_offset(c, og, cpad, opad, 1));
      uint64_t* dst = packed + w_group_offset(c, og, cpad, opad, 2);
      _mm512_storeu_si512(dst, _mm512_and_si512(w, set1(0xffff)));
      _mm512_storeu_si512(dst + 8, _mm512_srli_epi64(w, 16));
    }
  }
}

void f5_gemm_muludq_12x8_avx512(const GemmArgs& a) { gemm_muludq(a); }

void f5_gemm_ifma_6x16_avx512(const GemmArgs& a) { gemm_1limb<32>(a); }
void f48_gemm_ifma_6x16_avx512(const GemmArgs& a) { gemm_1limb<48>(a); }
void f6_gemm_ifma_4x8_avx512(const GemmArgs& a) { gemm_f6(a); }

}  // namespace dfnt
}  // namespace edgecc
