// Radix-2 Fermat number transform passes, generic over a diminished-1 "ring vector"
// type R (one scalar word, or 8 lanes of an AVX-512 register), so the scalar and the
// vector kernels share one transform structure.
//
// Roots of unity are given in half-bits: root r means 2^(r/2).
//
// R provides: kBits; V; Buf; load(Buf, slot), store(Buf, slot, V); add, sub, neg;
// Twiddle twiddle(k) and shl(V, Twiddle) for x * 2^k with 0 < k < kBits;
// shl_relaxed(V, Twiddle), whose result need only be valid as the second operand
// of add() and sub().
//
// Internal header (internal linkage): included by each ISA's translation unit.
#pragma once
#include <algorithm>
#include <cstdint>

namespace edgecc {
namespace dfnt {
namespace {

inline int bit_reverse(int i, int log_n) {
  int r = 0;
  for (int b = 0; b < log_n; ++b) r |= ((i >> b) & 1) << (log_n - 1 - b);
  return r;
}

// Multiplication by a twiddle 2^(h/2), h in half-bits. Even h: one rotation.
// Odd h: 2^((h-1)/2) sqrt(2) with sqrt(2) = 2^(B/4) (2^(B/2) - 1) modulo 2^B + 1,
// i.e. the difference of two rotations (this doubles the longest transform).
template <class R>
struct HalfTwiddle {
  struct Pow2 {
    int k = 0;
    bool negate = false;  // 2^B = -1
    typename R::Twiddle tw;
  };
  bool odd = false;
  Pow2 a, b;  // even: x 2^a; odd: x 2^a - x 2^b

  static Pow2 pow2(int s) {  // s in bits, any s >= 0
    s %= 2 * R::kBits;
    Pow2 p;
    p.k = s % R::kBits;
    p.negate = s >= R::kBits;
    p.tw = R::twiddle(p.k);
    return p;
  }
  explicit HalfTwiddle(int h) {
    h %= 4 * R::kBits;
    odd = h & 1;
    if (!odd) {
      a = pow2(h / 2);
    } else {
      a = pow2((h - 1) / 2 + 3 * R::kBits / 4);
      b = pow2((h - 1) / 2 + R::kBits / 4);
    }
  }
  static typename R::V apply(const Pow2& p, typename R::V x) {
    if (p.k) x = R::shl(x, p.tw);
    return p.negate ? R::neg(x) : x;
  }
  // Full product (canonical word).
  typename R::V operator()(typename R::V x) const { return odd ? R::sub(apply(a, x), apply(b, x)) : apply(a, x); }
};

// Decimation in time (eq 2.5-2.8), in place on `count` sequences of length 2^log_n:
// element e of sequence q is at slot first + q * stride + e * es. Input in
// bit-reversed order, output in natural order. 2^(root/2) is the root of unity of
// order 2^log_n (root in half-bits).
template <class R>
void fnt_dit(const typename R::Buf buf, int64_t es, int64_t first, int64_t stride, int count, int log_n, int root) {
  using V = typename R::V;
  const int n = 1 << log_n;
  for (int len = 2; len <= n; len <<= 1) {
    const int half = len >> 1;
    const int step = root * (n / len);  // 2^(step/2) is a root of order len
    for (int j = 0; j < half; ++j) {
      const HalfTwiddle<R> tw(j * step);
      const auto& a = tw.a;
      for (int g = 0; g < n; g += len) {
        const int64_t s0 = first + (g + j) * es, s1 = s0 + half * es;
        for (int q = 0; q < count; ++q) {
          const V u = R::load(buf, s0 + q * stride);
          V t = R::load(buf, s1 + q * stride);
          bool negate = a.negate;
          if (tw.odd) t = tw(t), negate = false;
          else if (a.k) t = R::shl_relaxed(t, a.tw);
          // X(q) = x1 + 2^s x2, X(q + L/2) = x1 - 2^s x2 (eq 2.5, 2.6)
          R::store(buf, s0 + q * stride, negate ? R::sub(u, t) : R::add(u, t));
          R::store(buf, s1 + q * stride, negate ? R::add(u, t) : R::sub(u, t));
        }
      }
    }
  }
}

// Decimation in frequency, same addressing: natural order in, bit-reversed order out.
template <class R>
void fnt_dif(const typename R::Buf buf, int64_t es, int64_t first, int64_t stride, int count, int log_n, int root) {
  using V = typename R::V;
  const int n = 1 << log_n;
  for (int len = n; len >= 2; len >>= 1) {
    const int half = len >> 1;
    const int step = root * (n / len);
    for (int j = 0; j < half; ++j) {
      const HalfTwiddle<R> tw(j * step);
      const auto& a = tw.a;
      for (int g = 0; g < n; g += len) {
        const int64_t s0 = first + (g + j) * es, s1 = s0 + half * es;
        for (int q = 0; q < count; ++q) {
          const V u = R::load(buf, s0 + q * stride);
          const V v = R::load(buf, s1 + q * stride);
          V d;
          if (tw.odd) {
            d = tw(R::sub(u, v));
          } else {
            d = a.negate ? R::sub(v, u) : R::sub(u, v);
            if (a.k) d = R::shl(d, a.tw);
          }
          R::store(buf, s0 + q * stride, R::add(u, v));
          R::store(buf, s1 + q * stride, d);
        }
      }
    }
  }
}

// Sequences are transformed 8 at a time so that their slots (8 x n x 64 bytes for
// the vector rings) stay in L1 through all the stages.
constexpr int kSeqBlock = 8;

template <class R>
void fnt_dit_blocked(const typename R::Buf buf, int64_t es, int64_t first, int64_t stride, int count, int log_n,
                     int root) {
  for (int q = 0; q < count; q += kSeqBlock)
    fnt_dit<R>(buf, es, first + q * stride, stride, std::min(kSeqBlock, count - q), log_n, root);
}

template <class R>
void fnt_dif_blocked(const typename R::Buf buf, int64_t es, int64_t first, int64_t stride, int count, int log_n,
                     int root) {
  for (int q = 0; q < count; q += kSeqBlock)
    fnt_dif<R>(buf, es, first + q * stride, stride, std::min(kSeqBlock, count - q), log_n, root);
}

// 2-D forward transform of an n x n block (eq 2.10): input at slot
// bitrev(i) * n + bitrev(j), output bin (u, v) at slot u * n + v.
template <class R>
void fnt2d_forward(const typename R::Buf buf, int log_n, int root) {
  const int n = 1 << log_n;
  fnt_dit_blocked<R>(buf, 1, 0, n, n, log_n, root);  // along each row
  fnt_dit_blocked<R>(buf, n, 0, 1, n, log_n, root);  // along each column
}

// 2-D inverse (unscaled) from natural-order bins; only the output rows i < rows are
// completed. Output (i, j) at slot bitrev(i) * n + bitrev(j).
template <class R>
void fnt2d_inverse(const typename R::Buf buf, int log_n, int inv_root, int rows) {
  const int n = 1 << log_n;
  fnt_dif_blocked<R>(buf, n, 0, 1, n, log_n, inv_root);  // along each column
  // Rows i in [base, base + 2^a) for each set bit 2^a of `rows` (high to low)
  // sit at slots bitrev(base) + m * (n >> a): an arithmetic progression each.
  int base = 0;
  for (int a = log_n; a >= 0; --a) {
    if (!(rows >> a & 1)) continue;
    const int64_t slot_step = int64_t(n >> a);
    fnt_dif_blocked<R>(buf, 1, int64_t(bit_reverse(base, log_n)) * n, slot_step * n, 1 << a, log_n, inv_root);
    base += 1 << a;
  }
}

}  // namespace
}  // namespace dfnt
}  // namespace edgecc
