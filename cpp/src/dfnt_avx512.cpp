// AVX-512 diminished-1 arithmetic and transforms, 8 lanes (one uint64 per lane).
//
// b = 32, 48 ("flag word"): a lane holds the (b+1)-bit d-1 word itself, 2^b = zero.
// b = 64: a lane holds the 64 low bits and a mask register holds the zero flags.
// Lanes are independent transforms (8 channels), so every butterfly is vertical.
#include <immintrin.h>

#include <cstring>
#include <type_traits>
#include <vector>

#include "edgecc/dfnt_fnt_impl.h"
#include "edgecc/dfnt_kernels.h"
#include "edgecc/dfnt_ring.h"

namespace edgecc {
namespace dfnt {
namespace {

inline __m512i set1(uint64_t v) { return _mm512_set1_epi64(static_cast<long long>(v)); }

// ---- b < 64: the d-1 word in each lane ----
template <int B>
struct RingW {
  static constexpr int kBits = B;
  static constexpr uint64_t kZ = uint64_t(1) << B, kM = kZ - 1, kP = kZ + 1;
  using V = __m512i;
  using Buf = uint64_t*;  // slot s = 8 words at buf + 8 s
  struct Twiddle {
    __m128i left, right;
    __m512i low_ones;  // 2^k - 1
  };
  static V load(Buf b, int64_t s) { return _mm512_load_si512(b + 8 * s); }
  static void store(Buf b, int64_t s, V v) { _mm512_store_si512(b + 8 * s, v); }
  static V zero() { return set1(kZ); }

  // s = x + y; s >= 2^b ? s - 2^b : s + 1  ==  min(s + 1, s - 2^b) unsigned.
  static V add(V x, V y) {
    const V s = _mm512_add_epi64(x, y);
    return _mm512_min_epu64(_mm512_add_epi64(s, set1(1)), _mm512_sub_epi64(s, set1(kZ)));
  }
  // (2^b - 1) - x; the zero word 2^b wraps to 2^64 - 1 and min() brings it back.
  static V neg(V x) { return _mm512_min_epu64(_mm512_sub_epi64(set1(kM), x), set1(kZ)); }
  // x + neg(y) folded: d = x - y; d > 0 ? d - 1 : d + 2^b (d = 0 gives the zero word)
  // == min(d + 2^b, d - 1) unsigned.
  static V sub(V x, V y) {
    const V d = _mm512_sub_epi64(x, y);
    return _mm512_min_epu64(_mm512_add_epi64(d, set1(kZ)), _mm512_sub_epi64(d, set1(1)));
  }
  static Twiddle twiddle(int k) {
    return {_mm_cvtsi32_si128(k), _mm_cvtsi32_si128(B - k), set1((uint64_t(1) << k) - 1)};
  }
  // Rotate left by k with the wrapped bits complemented: lo + (2^k - 1 - hi).
  // The zero word gives 2^64 - 1 ("relaxed" zero): add() and sub() read it as 0
  // when it is their second operand, so a butterfly can skip the min().
  static V shl_relaxed(V x, const Twiddle& t) {
    const V lo = _mm512_and_si512(_mm512_sll_epi64(x, t.left), set1(kM));
    const V hi = _mm512_srl_epi64(x, t.right);
    return _mm512_add_epi64(_mm512_sub_epi64(lo, hi), t.low_ones);
  }
  static V shl(V x, const Twiddle& t) { return _mm512_min_epu64(shl_relaxed(x, t), set1(kZ)); }
  // Algorithm 1 multiplication_d-1: special words first, else the 2b-bit product of
  // the nb operands {Zh, Zl} and subtraction_d-1(Zl, Zh).
  static V mul(V x, V y) {
    const __mmask8 zero = _mm512_cmpeq_epi64_mask(x, set1(kZ)) | _mm512_cmpeq_epi64_mask(y, set1(kZ));
    const __mmask8 x_m1 = _mm512_cmpeq_epi64_mask(x, set1(kM)), y_m1 = _mm512_cmpeq_epi64_mask(y, set1(kM));
    const V xn = _mm512_add_epi64(x, set1(1)), yn = _mm512_add_epi64(y, set1(1));
    V zl, zh;
    if (B == 32) {
      const V p = _mm512_mul_epu32(xn, yn);
      zl = _mm512_and_si512(p, set1(kM));
      zh = _mm512_srli_epi64(p, 32);
    } else {  // b = 48: IFMA52 gives the 96-bit product as lo 52 + hi 52 bits
      const V plo = _mm512_madd52lo_epu64(_mm512_setzero_si512(), xn, yn);
      const V phi = _mm512_madd52hi_epu64(_mm512_setzero_si512(), xn, yn);
      zl = _mm512_and_si512(plo, set1(kM));
      zh = _mm512_or_si512(_mm512_srli_epi64(plo, B), _mm512_slli_epi64(phi, 52 - B));
    }
    V r = sub(zl, zh);
    r = _mm512_mask_mov_epi64(r, y_m1, neg(x));
    r = _mm512_mask_mov_epi64(r, x_m1, neg(y));
    return _mm512_mask_mov_epi64(r, zero, set1(kZ));
  }
  // Signed int64 (|v| < p) -> d-1: v > 0 ? v - 1 : 2^b + v.
  static V from_signed(V v) {
    const __mmask8 pos = _mm512_cmpgt_epi64_mask(v, _mm512_setzero_si512());
    return _mm512_mask_sub_epi64(_mm512_add_epi64(v, set1(kZ)), pos, v, set1(1));
  }
  // d-1 -> signed residue: r = X + 1 (the zero word gives p), minus p above p/2.
  static V to_signed(V x) {
    const V r = _mm512_add_epi64(x, set1(1));
    const __mmask8 big = _mm512_cmpgt_epu64_mask(r, set1(kP >> 1));
    return _mm512_mask_sub_epi64(r, big, r, set1(kP));
  }
  // nb residue r in [0, 2^b] -> d-1: r - 1, and 0 -> 2^b (2^64 - 1 clamps to 2^b).
  static V from_nb(V r) { return _mm512_min_epu64(_mm512_sub_epi64(r, set1(1)), set1(kZ)); }
  static V to_nb(V x) {
    return _mm512_maskz_add_epi64(_mm512_cmpneq_epi64_mask(x, set1(kZ)), x, set1(1));
  }
  // Canonical pointwise operand (one limb).
  static V load_limbs(const uint64_t* p) { return from_nb(_mm512_loadu_si512(p)); }
  static void store_limbs(uint64_t* p, V x) { _mm512_storeu_si512(p, to_nb(x)); }
  // Pairs (lo, hi) at the API: hi is always 0 for b < 64.
  static V from_word(V lo, __mmask8) { return lo; }
  static V from_nb_pair(V lo, __mmask8) { return from_nb(lo); }
  static void to_word(V x, V* lo, __mmask8* hi) { *lo = x, *hi = 0; }
  static void to_nb_pair(V x, V* lo, __mmask8* hi) { *lo = to_nb(x), *hi = 0; }
};

// ---- b = 64: 64 low bits per lane plus a zero-flag mask ----
struct V64 {
  __m512i v;
  __mmask8 z;  // lanes that hold the value 0 (their v is 0)
};

struct Ring64 {
  static constexpr int kBits = 64;
  using V = V64;
  struct Buf {
    uint64_t* bits;
    uint8_t* zero;
  };
  struct Twiddle {
    __m128i left, right;
    __m512i low_ones;
  };
  static V load(const Buf& b, int64_t s) { return {_mm512_load_si512(b.bits + 8 * s), b.zero[s]}; }
  static void store(const Buf& b, int64_t s, V x) {
    _mm512_store_si512(b.bits + 8 * s, x.v);
    b.zero[s] = x.z;
  }
  static V zero() { return {_mm512_setzero_si512(), 0xff}; }
  static __m512i ones() { return _mm512_set1_epi64(-1); }

  // X + Y + complemented carry; the sum 2^64 - 1 without carry is the value 0.
  static V add(V x, V y) {
    const __m512i s = _mm512_add_epi64(x.v, y.v);
    const __mmask8 no_carry = static_cast<__mmask8>(~_mm512_cmplt_epu64_mask(s, x.v));
    __m512i r = _mm512_mask_add_epi64(s, no_carry, s, set1(1));  // 2^64 - 1 + 1 wraps to 0
    const __mmask8 rz = no_carry & _mm512_cmpeq_epi64_mask(s, ones());
    r = _mm512_mask_mov_epi64(r, x.z, y.v);
    r = _mm512_mask_mov_epi64(r, y.z, x.v);
    return {r, static_cast<__mmask8>((rz & ~(x.z | y.z)) | (x.z & y.z))};
  }
  static V neg(V x) { return {_mm512_maskz_xor_epi64(static_cast<__mmask8>(~x.z), x.v, ones()), x.z}; }
  static V sub(V x, V y) { return add(x, neg(y)); }
  static Twiddle twiddle(int k) {
    return {_mm_cvtsi32_si128(k), _mm_cvtsi32_si128(64 - k), set1((uint64_t(1) << k) - 1)};
  }
  // lo | (~hi & (2^k - 1)): rotate left, wrapped bits complemented.
  static V shl_relaxed(V x, const Twiddle& t) { return shl(x, t); }
  static V shl(V x, const Twiddle& t) {
    const __m512i lo = _mm512_sll_epi64(x.v, t.left), hi = _mm512_srl_epi64(x.v, t.right);
    const __m512i r = _mm512_ternarylogic_epi64(lo, hi, t.low_ones, 0xF2);
    return {_mm512_maskz_mov_epi64(static_cast<__mmask8>(~x.z), r), x.z};
  }
  // 64 x 64 -> 128-bit product from four 32 x 32 products.
  static void mul128(__m512i a, __m512i b, __m512i* lo, __m512i* hi) {
    const __m512i m32 = set1(0xffffffffu);
    const __m512i ah = _mm512_srli_epi64(a, 32), bh = _mm512_srli_epi64(b, 32);
    const __m512i p00 = _mm512_mul_epu32(a, b), p01 = _mm512_mul_epu32(a, bh);
    const __m512i p10 = _mm512_mul_epu32(ah, b), p11 = _mm512_mul_epu32(ah, bh);
    const __m512i mid = _mm512_add_epi64(_mm512_add_epi64(_mm512_srli_epi64(p00, 32), _mm512_and_si512(p01, m32)),
                                         _mm512_and_si512(p10, m32));
    *lo = _mm512_or_si512(_mm512_and_si512(p00, m32), _mm512_slli_epi64(mid, 32));
    *hi = _mm512_add_epi64(_mm512_add_epi64(p11, _mm512_srli_epi64(mid, 32)),
                           _mm512_add_epi64(_mm512_srli_epi64(p01, 32), _mm512_srli_epi64(p10, 32)));
  }
  static V mul(V x, V y) {
    const __mmask8 zero = x.z | y.z;
    const __mmask8 x_m1 = _mm512_cmpeq_epi64_mask(x.v, ones()), y_m1 = _mm512_cmpeq_epi64_mask(y.v, ones());
    __m512i zl, zh;
    mul128(_mm512_add_epi64(x.v, set1(1)), _mm512_add_epi64(y.v, set1(1)), &zl, &zh);
    V r = sub({zl, 0}, {zh, 0});
    const V nx = neg(x), ny = neg(y);
    r.v = _mm512_mask_mov_epi64(r.v, y_m1, nx.v);
    r.z = static_cast<__mmask8>((r.z & ~y_m1) | (nx.z & y_m1));
    r.v = _mm512_mask_mov_epi64(r.v, x_m1, ny.v);
    r.z = static_cast<__mmask8>((r.z & ~x_m1) | (ny.z & x_m1));
    return {_mm512_maskz_mov_epi64(static_cast<__mmask8>(~zero), r.v), static_cast<__mmask8>(r.z | zero)};
  }
  static V from_signed(__m512i v) {
    const __mmask8 pos = _mm512_cmpgt_epi64_mask(v, _mm512_setzero_si512());
    return {_mm512_mask_sub_epi64(v, pos, v, set1(1)), _mm512_cmpeq_epi64_mask(v, _mm512_setzero_si512())};
  }
  // value X + 1 if X < 2^63, else X + 1 - p = X - 2^64 (the same 64 bits as X).
  static __m512i to_signed(V x) {
    const __mmask8 small = _mm512_cmpge_epi64_mask(x.v, _mm512_setzero_si512());
    return _mm512_maskz_mov_epi64(static_cast<__mmask8>(~x.z), _mm512_mask_add_epi64(x.v, small, x.v, set1(1)));
  }
  // nb residue r = l0 + l1 * 2^33 in [0, 2^64]: X = r - 1 mod 2^64, zero when r = 0.
  static V load_limbs(const uint64_t* p) {
    const __m512i l0 = _mm512_loadu_si512(p), l1 = _mm512_loadu_si512(p + 8);
    const __m512i x = _mm512_sub_epi64(_mm512_add_epi64(l0, _mm512_slli_epi64(l1, 33)), set1(1));
    const __mmask8 z = _mm512_testn_epi64_mask(_mm512_or_si512(l0, l1), _mm512_or_si512(l0, l1));
    return {_mm512_maskz_mov_epi64(static_cast<__mmask8>(~z), x), z};
  }
  static void store_limbs(uint64_t* p, V x) {
    const __m512i r = _mm512_add_epi64(x.v, set1(1));  // r mod 2^64; r = 2^64 when X = 2^64 - 1
    const __mmask8 top = static_cast<__mmask8>(_mm512_cmpeq_epi64_mask(x.v, ones()) & ~x.z);
    const __mmask8 nz = static_cast<__mmask8>(~x.z);
    _mm512_storeu_si512(p, _mm512_maskz_and_epi64(nz, r, set1((uint64_t(1) << 33) - 1)));
    _mm512_storeu_si512(p + 8, _mm512_mask_mov_epi64(_mm512_maskz_srli_epi64(nz, r, 33), top,
                                                     set1(uint64_t(1) << 31)));
  }
  static V from_word(__m512i lo, __mmask8 hi) { return {_mm512_maskz_mov_epi64(static_cast<__mmask8>(~hi), lo), hi}; }
  static V from_nb_pair(__m512i lo, __mmask8 hi) {
    const __mmask8 z = static_cast<__mmask8>(_mm512_testn_epi64_mask(lo, lo) & ~hi);
    return {_mm512_maskz_sub_epi64(static_cast<__mmask8>(~z), lo, set1(1)), z};
  }
  static void to_word(V x, __m512i* lo, __mmask8* hi) { *lo = x.v, *hi = x.z; }
  static void to_nb_pair(V x, __m512i* lo, __mmask8* hi) {
    *lo = _mm512_maskz_add_epi64(static_cast<__mmask8>(~x.z), x.v, set1(1));
    *hi = static_cast<__mmask8>(_mm512_cmpeq_epi64_mask(x.v, ones()) & ~x.z);
  }
};

// ---- helpers shared by both representations ----
template <class R>
typename R::V mul_pow2(typename R::V x, int s) {
  s %= 2 * R::kBits;
  const int k = s % R::kBits;
  if (k) x = R::shl(x, R::twiddle(k));
  return s >= R::kBits ? R::neg(x) : x;
}

template <class R>
typename R::Buf make_buf(void* scratch, int64_t slots) {
  if constexpr (std::is_same_v<R, Ring64>) {
    return {static_cast<uint64_t*>(scratch), static_cast<uint8_t*>(scratch) + slots * 64};
  } else {
    return static_cast<uint64_t*>(scratch);
  }
}

inline __mmask8 bytes_to_mask(const uint8_t* p) {
  __mmask8 m = 0;
  for (int l = 0; l < 8; ++l) m |= static_cast<__mmask8>((p[l] & 1) << l);
  return m;
}
inline void mask_to_bytes(__mmask8 m, uint8_t* p) {
  for (int l = 0; l < 8; ++l) p[l] = (m >> l) & 1;
}

// 8 x 8 transpose of 64-bit elements.
inline void transpose8x8(__m512i r[8]) {
  __m512i t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm512_unpacklo_epi64(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi64(r[2 * i], r[2 * i + 1]);
  }
  u[0] = _mm512_shuffle_i64x2(t[0], t[2], 0x88);
  u[1] = _mm512_shuffle_i64x2(t[0], t[2], 0xDD);
  u[2] = _mm512_shuffle_i64x2(t[1], t[3], 0x88);
  u[3] = _mm512_shuffle_i64x2(t[1], t[3], 0xDD);
  u[4] = _mm512_shuffle_i64x2(t[4], t[6], 0x88);
  u[5] = _mm512_shuffle_i64x2(t[4], t[6], 0xDD);
  u[6] = _mm512_shuffle_i64x2(t[5], t[7], 0x88);
  u[7] = _mm512_shuffle_i64x2(t[5], t[7], 0xDD);
  r[0] = _mm512_shuffle_i64x2(u[0], u[4], 0x88);
  r[4] = _mm512_shuffle_i64x2(u[0], u[4], 0xDD);
  r[2] = _mm512_shuffle_i64x2(u[1], u[5], 0x88);
  r[6] = _mm512_shuffle_i64x2(u[1], u[5], 0xDD);
  r[1] = _mm512_shuffle_i64x2(u[2], u[6], 0x88);
  r[5] = _mm512_shuffle_i64x2(u[2], u[6], 0xDD);
  r[3] = _mm512_shuffle_i64x2(u[3], u[7], 0x88);
  r[7] = _mm512_shuffle_i64x2(u[3], u[7], 0xDD);
}

// ---- element-wise ops on arrays (tests and tools) ----
template <class R>
void ring_op_avx512(RingOp op, const uint64_t* xl, const uint8_t* xh, const uint64_t* yl, const uint8_t* yh,
                    int64_t n, int shift, uint64_t* zl, uint8_t* zh) {
  const bool binary = op == RingOp::kAdd || op == RingOp::kSub || op == RingOp::kMul;
  for (int64_t i = 0; i < n; i += 8) {
    const int cnt = int(n - i < 8 ? n - i : 8);
    const __mmask8 valid = static_cast<__mmask8>((1u << cnt) - 1);
    uint8_t hx[8] = {0}, hy[8] = {0};
    std::memcpy(hx, xh + i, cnt);
    if (binary) std::memcpy(hy, yh + i, cnt);
    const __m512i lx = _mm512_maskz_loadu_epi64(valid, xl + i);
    const __m512i ly = binary ? _mm512_maskz_loadu_epi64(valid, yl + i) : _mm512_setzero_si512();
    __m512i lo;
    __mmask8 hi;
    if (op == RingOp::kToD1) {
      R::to_word(R::from_nb_pair(lx, bytes_to_mask(hx)), &lo, &hi);
    } else {
      const typename R::V x = R::from_word(lx, bytes_to_mask(hx));
      const typename R::V y = R::from_word(ly, bytes_to_mask(hy));
      typename R::V z = x;
      switch (op) {
        case RingOp::kAdd: z = R::add(x, y); break;
        case RingOp::kSub: z = R::sub(x, y); break;
        case RingOp::kNeg: z = R::neg(x); break;
        case RingOp::kShl: z = mul_pow2<R>(x, shift); break;
        case RingOp::kMul: z = R::mul(x, y); break;
        default: break;
      }
      if (op == RingOp::kFromD1) R::to_nb_pair(x, &lo, &hi);
      else R::to_word(z, &lo, &hi);
    }
    _mm512_mask_storeu_epi64(zl + i, valid, lo);
    uint8_t hz[8];
    mask_to_bytes(hi, hz);
    std::memcpy(zh + i, hz, cnt);
  }
}

// ---- 1-D / 2-D transforms of 8 sequences at a time (natural order in and out) ----
template <class R>
void fnt_avx512(const uint64_t* in_lo, const uint8_t* in_hi, int64_t count, int log_len, int dims, bool inverse,
                uint64_t* out_lo, uint8_t* out_hi) {
  const int len = 1 << log_len, root = 4 * R::kBits / len;  // half-bits
  const int64_t size = dims == 2 ? int64_t(len) * len : len;
  std::vector<uint64_t> storage(size * 9 + 8);
  void* aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(storage.data()) + 63) & ~uintptr_t(63));
  const typename R::Buf buf = make_buf<R>(aligned, size);
  auto pos = [&](int64_t e) {
    if (dims == 1) return int64_t(bit_reverse(int(e), log_len));
    return int64_t(bit_reverse(int(e / len), log_len)) * len + bit_reverse(int(e % len), log_len);
  };
  for (int64_t t0 = 0; t0 < count; t0 += 8) {
    const int lanes = int(count - t0 < 8 ? count - t0 : 8);
    for (int64_t e = 0; e < size; ++e) {
      alignas(64) uint64_t lo[8] = {0};
      uint8_t hi[8] = {0};
      for (int l = 0; l < lanes; ++l) lo[l] = in_lo[(t0 + l) * size + e], hi[l] = in_hi[(t0 + l) * size + e];
      R::store(buf, inverse ? e : pos(e), R::from_nb_pair(_mm512_load_si512(lo), bytes_to_mask(hi)));
    }
    if (!inverse) {
      if (dims == 1) fnt_dit<R>(buf, 1, 0, 0, 1, log_len, root);
      else fnt2d_forward<R>(buf, log_len, root);
    } else {
      const int inv_root = 4 * R::kBits - root;
      fnt_dif<R>(buf, 1, 0, len, dims == 1 ? 1 : len, log_len, inv_root);  // rows
      if (dims == 2) fnt_dif<R>(buf, len, 0, 1, len, log_len, inv_root);  // columns
    }
    for (int64_t e = 0; e < size; ++e) {
      typename R::V v = R::load(buf, inverse ? pos(e) : e);
      if (inverse) v = mul_pow2<R>(v, 2 * R::kBits - dims * log_len);
      alignas(64) uint64_t lo[8];
      __m512i lov;
      __mmask8 him;
      R::to_nb_pair(v, &lov, &him);
      _mm512_store_si512(lo, lov);
      for (int l = 0; l < lanes; ++l) out_lo[(t0 + l) * size + e] = lo[l], out_hi[(t0 + l) * size + e] = (him >> l) & 1;
    }
  }
}

// ---- convolution tiles ----
template <class R>
void transform_weights_avx512(const TileGeometry& g, const int64_t* w, int64_t lane_stride, int lanes, uint64_t* wf,
                              int64_t bin_stride, void* scratch) {
  const int n = g.n;
  const int64_t bins = int64_t(n) * n;
  const typename R::Buf buf = make_buf<R>(scratch, bins);
  for (int64_t s = 0; s < bins; ++s) R::store(buf, s, R::zero());
  for (int64_t u = 0; u < g.kh; ++u) {
    for (int64_t v = 0; v < g.kw; ++v) {
      alignas(64) int64_t vals[8] = {0};
      for (int l = 0; l < lanes; ++l) vals[l] = w[l * lane_stride + u * g.kw + v];
      const int64_t slot = int64_t(bit_reverse(int((n - u) % n), g.log_n)) * n + bit_reverse(int((n - v) % n), g.log_n);
      R::store(buf, slot, R::from_signed(_mm512_load_si512(vals)));
    }
  }
  fnt2d_forward<R>(buf, g.log_n, 4 * R::kBits / n);
  const int scale = 2 * R::kBits - 2 * g.log_n;  // 1/n^2, folded into the weights
  for (int64_t bin = 0; bin < bins; ++bin) R::store_limbs(wf + bin * bin_stride, mul_pow2<R>(R::load(buf, bin), scale));
}

template <class R, class T>
void forward_tile_avx512(const TileGeometry& g, const T* patch, int64_t row_stride, uint64_t* xf, int64_t bin_stride,
                         void* scratch) {
  const int n = g.n;
  const int64_t bins = int64_t(n) * n;
  const typename R::Buf buf = make_buf<R>(scratch, bins);
  int brev[256];
  for (int i = 0; i < n; ++i) brev[i] = bit_reverse(i, g.log_n);
  for (int i = 0; i < n; ++i) {
    const T* row = patch + i * row_stride;
    const int64_t base = int64_t(brev[i]) * n;
    for (int j = 0; j < n; ++j) {
      __m512i v;
      if constexpr (sizeof(T) == 1) v = _mm512_cvtepi8_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + j * 8)));
      else v = _mm512_cvtepi16_epi64(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j * 8)));
      R::store(buf, base + brev[j], R::from_signed(v));
    }
  }
  fnt2d_forward<R>(buf, g.log_n, 4 * R::kBits / n);
  for (int64_t bin = 0; bin < bins; ++bin) R::store_limbs(xf + bin * bin_stride, R::load(buf, bin));
}

template <class R>
void forward_tile_any(const TileGeometry& g, const void* patch, int elem_bytes, int64_t row_stride, uint64_t* xf,
                      int64_t bin_stride, void* scratch) {
  if (elem_bytes == 1) forward_tile_avx512<R>(g, static_cast<const int8_t*>(patch), row_stride, xf, bin_stride, scratch);
  else forward_tile_avx512<R>(g, static_cast<const int16_t*>(patch), row_stride, xf, bin_stride, scratch);
}

template <class R>
void inverse_tile_avx512(const TileGeometry& g, const uint64_t* yf, int64_t bin_stride, void* y, int out_bytes,
                         int64_t ch_stride, int64_t row_stride, int rows, int cols, int channels, void* scratch) {
  const int n = g.n;
  const int64_t bins = int64_t(n) * n;
  const typename R::Buf buf = make_buf<R>(scratch, bins);
  for (int64_t bin = 0; bin < bins; ++bin) R::store(buf, bin, R::load_limbs(yf + bin * bin_stride));
  fnt2d_inverse<R>(buf, g.log_n, 4 * R::kBits - 4 * R::kBits / n, rows);
  int brev[256];
  for (int i = 0; i < n; ++i) brev[i] = bit_reverse(i, g.log_n);
  for (int i = 0; i < rows; ++i) {
    const int64_t base = int64_t(brev[i]) * n;
    for (int j0 = 0; j0 < cols; j0 += 8) {
      __m512i r[8];  // r[q]: pixel j0 + q, lanes = channels
      for (int q = 0; q < 8; ++q) r[q] = R::to_signed(R::load(buf, base + brev[j0 + q]));
      transpose8x8(r);  // r[l]: channel l, lanes = pixels
      const __mmask8 valid = static_cast<__mmask8>(cols - j0 >= 8 ? 0xff : (1u << (cols - j0)) - 1);
      for (int l = 0; l < channels; ++l) {
        const int64_t o = l * ch_stride + i * row_stride + j0;
        if (out_bytes == 4) _mm256_mask_storeu_epi32(static_cast<int32_t*>(y) + o, valid, _mm512_cvtepi64_epi32(r[l]));
        else _mm512_mask_storeu_epi64(static_cast<int64_t*>(y) + o, valid, r[l]);
      }
    }
  }
}

template <class R>
TransformKernels make_family(const char* name) {
  return {name, ring_op_avx512<R>, fnt_avx512<R>, transform_weights_avx512<R>, forward_tile_any<R>,
          inverse_tile_avx512<R>};
}

}  // namespace

const TransformKernels& transform_kernels_avx512(Modulus m) {
  static const TransformKernels f5 = make_family<RingW<32>>("d1f5_fnt2d_8lane_avx512");
  static const TransformKernels f48 = make_family<RingW<48>>("d1f48_fnt2d_8lane_avx512");
  static const TransformKernels f6 = make_family<Ring64>("d1f6_fnt2d_8lane_avx512");
  return m == Modulus::kF5 ? f5 : m == Modulus::kF48 ? f48 : f6;
}

}  // namespace dfnt
}  // namespace edgecc
