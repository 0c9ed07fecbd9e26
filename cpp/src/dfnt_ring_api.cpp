// Moduli, element-wise diminished-1 ops and transforms of edgecc/dfnt.h: argument
// checks, then the kernel family the ISA picks.
#include <stdexcept>
#include <string>

#include "edgecc/dfnt.h"
#include "edgecc/dfnt_kernels.h"

namespace edgecc {
namespace dfnt {

namespace {

using u128 = unsigned __int128;

void fail(const std::string& msg) { throw std::invalid_argument("dfnt: " + msg); }

void check_words(Modulus m, const uint64_t* lo, const uint8_t* hi, int64_t n, const char* what) {
  const int b = modulus_bits(m);
  for (int64_t i = 0; i < n; ++i) {
    const u128 v = u128(lo[i]) + (u128(hi[i]) << 64);
    if (hi[i] > 1 || v > (u128(1) << b))
      fail(std::string(what) + "[" + std::to_string(i) + "] is not a word in [0, 2^" + std::to_string(b) + "]");
  }
}

}  // namespace

Modulus modulus_from_bits(int bits) {
  if (bits == 32) return Modulus::kF5;
  if (bits == 48) return Modulus::kF48;
  if (bits == 64) return Modulus::kF6;
  fail("unsupported modulus 2^" + std::to_string(bits) + "+1 (use b = 32, 48 or 64)");
  return Modulus::kF5;
}

const char* modulus_name(Modulus m) { return m == Modulus::kF5 ? "F5" : m == Modulus::kF48 ? "2^48+1" : "F6"; }

int max_transform_length(Modulus m) {
  // 2 has order 2b and sqrt(2) = 2^(b/4) (2^(b/2) - 1) order 4b; the largest power
  // of two dividing 4b.
  const int four_b = 4 * modulus_bits(m);
  return four_b & -four_b;
}

int root_shift(Modulus m, int length) {
  if (length < 1 || log2_exact(length) < 0 || length > max_transform_length(m))
    fail("transform length " + std::to_string(length) + " is not a power of two <= " +
         std::to_string(max_transform_length(m)) + " for " + modulus_name(m));
  return 4 * modulus_bits(m) / length;
}

void ring_op(Modulus m, RingOp op, const uint64_t* x_lo, const uint8_t* x_hi, const uint64_t* y_lo,
             const uint8_t* y_hi, int64_t n, int shift, uint64_t* z_lo, uint8_t* z_hi, Isa isa) {
  if (n < 0) fail("negative element count");
  if (op == RingOp::kShl && shift < 0) fail("shift must be >= 0, got " + std::to_string(shift));
  check_words(m, x_lo, x_hi, n, "x");
  if (op == RingOp::kAdd || op == RingOp::kSub || op == RingOp::kMul) check_words(m, y_lo, y_hi, n, "y");
  transforms_for(m, kernel_isa(isa)).ring_op(op, x_lo, x_hi, y_lo, y_hi, n, shift, z_lo, z_hi);
}

void fnt(Modulus m, const uint64_t* in_lo, const uint8_t* in_hi, int64_t count, int length, int dims, bool inverse,
         uint64_t* out_lo, uint8_t* out_hi, Isa isa) {
  root_shift(m, length);  // validates the length
  if (dims != 1 && dims != 2) fail("dims must be 1 or 2, got " + std::to_string(dims));
  if (count < 0) fail("negative transform count");
  const int64_t size = dims == 2 ? int64_t(length) * length : length;
  check_words(m, in_lo, in_hi, count * size, "x");
  transforms_for(m, kernel_isa(isa)).fnt(in_lo, in_hi, count, log2_exact(length), dims, inverse, out_lo, out_hi);
}

}  // namespace dfnt
}  // namespace edgecc
