// Scalar diminished-1 arithmetic modulo 2^B + 1 (thesis Algorithm 1), one word at a
// time. A d-1 word X is a (B+1)-bit number: X in [0, 2^B - 1] stands for the value
// X + 1, X = 2^B stands for 0. Words are held in unsigned __int128 so that B = 64
// needs no special case.
//
// Internal header: everything has internal linkage, so each translation unit (built
// with its own ISA flags) gets its own copy.
#pragma once
#include <cstdint>

namespace edgecc {
namespace dfnt {
namespace {

using u128 = unsigned __int128;

template <int B>
struct ScalarD1 {
  static constexpr int kBits = B;
  static constexpr u128 kZero = u128(1) << B;  // the word that stands for 0
  static constexpr u128 kMask = kZero - 1;     // 2^B - 1, also the word for -1
  static constexpr u128 kP = kZero + 1;        // the modulus

  // addition_d-1: X_b + Y_b plus the complemented carry. Written as
  // s = X + Y; s >= 2^B ? s - 2^B : s + 1, which also covers zero operands.
  static u128 add(u128 x, u128 y) {
    const u128 s = x + y;
    return s >= kZero ? s - kZero : s + 1;
  }
  // negation_d-1: complement the B bits; zero stays zero.
  static u128 neg(u128 x) { return x == kZero ? kZero : kMask - x; }
  static u128 sub(u128 x, u128 y) { return add(x, neg(y)); }
  // left shift_d-1 by k in [0, B): rotate left, the bits that wrap are complemented.
  static u128 shl_low(u128 x, int k) {
    if (x == kZero || k == 0) return x;
    const u128 lo = (x << k) & kMask, hi = x >> (B - k);
    return lo + ((u128(1) << k) - 1 - hi);
  }
  // x * 2^s for any s >= 0 (2^B = -1, 2^(2B) = 1).
  static u128 mul_pow2(u128 x, int s) {
    s %= 2 * B;
    return s >= B ? neg(shl_low(x, s - B)) : shl_low(x, s);
  }
  // multiplication_d-1: nb operands x = X + 1 and y = Y + 1 (B bits when neither is
  // 2^B, the word 2^B - 1), 2B-bit product {Zh, Zl}, result subtraction_d-1(Zl, Zh).
  static u128 mul(u128 x, u128 y) {
    if (x == kZero || y == kZero) return kZero;
    if (x == kMask) return neg(y);
    if (y == kMask) return neg(x);
    const u128 p = (x + 1) * (y + 1);  // < 2^(2B) <= 2^128
    return sub(p & kMask, p >> B);
  }
  // nb_to_d-1: x + (2^B - 1) in d-1, i.e. x - 1 with 0 -> 2^B. x in [0, 2^B].
  static u128 from_nb(u128 x) { return add(x, kMask); }
  // d-1_to_nb: residue in [0, 2^B].
  static u128 to_nb(u128 x) { return x == kZero ? 0 : x + 1; }
  // Signed integer with |v| < p -> d-1 word.
  static u128 from_signed(int64_t v) {
    if (v > 0) return u128(uint64_t(v)) - 1;
    return kZero - u128(uint64_t(-(v + 1)) + 1);  // 2^B + v (v = 0 gives 2^B)
  }
  // d-1 word -> the signed residue in [-(p-1)/2, (p-1)/2] (caller guarantees it fits int64).
  static int64_t to_signed(u128 x) {
    const u128 r = to_nb(x);
    return r > (kP >> 1) ? -int64_t(uint64_t(kP - r)) : int64_t(uint64_t(r));
  }
};

// nb residue (u128, < 2^B + 1) times nb residue, reduced: [0, p).
template <int B>
u128 nb_mulmod(u128 x, u128 y) {
  using R = ScalarD1<B>;
  if (x == R::kZero) return y == 0 ? 0 : R::kP - y;  // 2^B = -1
  if (y == R::kZero) return x == 0 ? 0 : R::kP - x;
  const u128 p = x * y;  // both < 2^B
  const u128 lo = p & R::kMask, hi = p >> B;  // p = hi * 2^B + lo = lo - hi
  return lo >= hi ? lo - hi : lo + R::kP - hi;
}

// Any value v < 2^128 reduced modulo 2^B + 1.
template <int B>
u128 nb_reduce(u128 v) {
  using R = ScalarD1<B>;
  while (v >= R::kP) {  // v = hi * 2^B + lo = lo - hi
    const u128 lo = v & R::kMask, hi = v >> B;
    if (lo >= hi) {
      v = lo - hi;
    } else {
      const u128 d = (hi - lo) % R::kP;
      v = d == 0 ? 0 : R::kP - d;
    }
  }
  return v;
}

}  // namespace
}  // namespace dfnt
}  // namespace edgecc
