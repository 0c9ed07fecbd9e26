// Portable DFNT kernels: diminished-1 words one at a time (u128), lanes in a loop.
// The reference the AVX-512 family is tested against, and the fallback on CPUs
// without AVX-512.
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "edgecc/dfnt_fnt_impl.h"
#include "edgecc/dfnt_kernels.h"
#include "edgecc/dfnt_ring.h"

namespace edgecc {
namespace dfnt {
namespace {

template <int B>
struct ScalarRing {
  using D = ScalarD1<B>;
  static constexpr int kBits = B;
  using V = u128;
  using Buf = u128*;
  struct Twiddle {
    int k;
  };
  static V load(Buf b, int64_t slot) { return b[slot]; }
  static void store(Buf b, int64_t slot, V v) { b[slot] = v; }
  static V add(V x, V y) { return D::add(x, y); }
  static V sub(V x, V y) { return D::sub(x, y); }
  static V neg(V x) { return D::neg(x); }
  static Twiddle twiddle(int k) { return {k}; }
  static V shl(V x, Twiddle t) { return D::shl_low(x, t.k); }
  static V shl_relaxed(V x, Twiddle t) { return D::shl_low(x, t.k); }
};

inline u128 join(uint64_t lo, uint8_t hi) { return u128(lo) | (u128(hi) << 64); }

// Canonical pointwise limbs of an nb residue r (see dfnt_kernels.h).
template <int B>
void store_limbs(uint64_t* p, u128 r) {
  if (B == 64) {
    p[0] = uint64_t(r & ((u128(1) << 33) - 1));
    p[8] = uint64_t(r >> 33);
  } else {
    p[0] = uint64_t(r);
  }
}
template <int B>
u128 load_limbs(const uint64_t* p) {
  return B == 64 ? u128(p[0]) + (u128(p[8]) << 33) : u128(p[0]);
}

template <int B>
void ring_op_scalar(RingOp op, const uint64_t* xl, const uint8_t* xh, const uint64_t* yl, const uint8_t* yh,
                    int64_t n, int shift, uint64_t* zl, uint8_t* zh) {
  using D = ScalarD1<B>;
  const bool binary = op == RingOp::kAdd || op == RingOp::kSub || op == RingOp::kMul;
  for (int64_t i = 0; i < n; ++i) {
    const u128 x = join(xl[i], xh[i]);
    const u128 y = binary ? join(yl[i], yh[i]) : 0;
    if (x > D::kZero || y > D::kZero)
      throw std::invalid_argument("dfnt ring_op: element " + std::to_string(i) + " is not a word in [0, 2^" +
                                  std::to_string(B) + "]");
    u128 z = 0;
    switch (op) {
      case RingOp::kAdd: z = D::add(x, y); break;
      case RingOp::kSub: z = D::sub(x, y); break;
      case RingOp::kNeg: z = D::neg(x); break;
      case RingOp::kShl: z = D::mul_pow2(x, shift); break;
      case RingOp::kMul: z = D::mul(x, y); break;
      case RingOp::kToD1: z = D::from_nb(x); break;
      case RingOp::kFromD1: z = D::to_nb(x); break;
    }
    zl[i] = uint64_t(z);
    zh[i] = uint8_t(z >> 64);
  }
}

template <int B>
void fnt_scalar(const uint64_t* in_lo, const uint8_t* in_hi, int64_t count, int log_len, int dims, bool inverse,
                uint64_t* out_lo, uint8_t* out_hi) {
  using D = ScalarD1<B>;
  using R = ScalarRing<B>;
  const int len = 1 << log_len;
  const int64_t size = dims == 2 ? int64_t(len) * len : len;
  const int root = 4 * B / len;  // half-bits
  std::vector<u128> buf(size);
  auto pos = [&](int64_t e) {  // bit-reversed slot of natural element e
    if (dims == 1) return int64_t(bit_reverse(int(e), log_len));
    return int64_t(bit_reverse(int(e / len), log_len)) * len + bit_reverse(int(e % len), log_len);
  };
  for (int64_t t = 0; t < count; ++t) {
    const uint64_t* xl = in_lo + t * size;
    const uint8_t* xh = in_hi + t * size;
    for (int64_t e = 0; e < size; ++e) {
      const u128 x = join(xl[e], xh[e]);
      if (x > D::kZero) throw std::invalid_argument("dfnt fnt: residue " + std::to_string(e) + " exceeds 2^b");
      buf[inverse ? e : pos(e)] = D::from_nb(x);
    }
    if (!inverse) {
      if (dims == 1) fnt_dit<R>(buf.data(), 1, 0, 0, 1, log_len, root);
      else fnt2d_forward<R>(buf.data(), log_len, root);
    } else {
      const int inv_root = 4 * B - root;
      fnt_dif<R>(buf.data(), 1, 0, len, dims == 1 ? 1 : len, log_len, inv_root);  // rows
      if (dims == 2) fnt_dif<R>(buf.data(), len, 0, 1, len, log_len, inv_root);  // columns
    }
    for (int64_t e = 0; e < size; ++e) {
      u128 v = buf[inverse ? pos(e) : e];
      if (inverse) v = D::mul_pow2(v, 2 * B - dims * log_len);  // 1 / L^dims
      const u128 r = D::to_nb(v);
      out_lo[t * size + e] = uint64_t(r);
      out_hi[t * size + e] = uint8_t(r >> 64);
    }
  }
}

template <int B>
void transform_weights_scalar(const TileGeometry& g, const int64_t* w, int64_t lane_stride, int lanes,
                              uint64_t* wf, int64_t bin_stride, void* scratch) {
  using D = ScalarD1<B>;
  const int n = g.n;
  u128* buf = static_cast<u128*>(scratch);
  for (int l = 0; l < 8; ++l) {
    for (int64_t s = 0; s < int64_t(n) * n; ++s) buf[s] = D::kZero;
    if (l < lanes) {
      // Cross-correlation by cyclic convolution: w[u][v] goes to ((-u) mod n, (-v) mod n).
      for (int64_t u = 0; u < g.kh; ++u)
        for (int64_t v = 0; v < g.kw; ++v)
          buf[int64_t(bit_reverse(int((n - u) % n), g.log_n)) * n + bit_reverse(int((n - v) % n), g.log_n)] =
              D::from_signed(w[l * lane_stride + u * g.kw + v]);
      fnt2d_forward<ScalarRing<B>>(buf, g.log_n, 4 * B / n);
    }
    for (int64_t bin = 0; bin < int64_t(n) * n; ++bin) {
      const u128 r = l < lanes ? D::to_nb(D::mul_pow2(buf[bin], 2 * B - 2 * g.log_n)) : 0;
      store_limbs<B>(wf + bin * bin_stride + l, r);
    }
  }
}

template <int B>
void forward_tile_scalar(const TileGeometry& g, const void* patch, int elem_bytes, int64_t row_stride,
                         uint64_t* xf, int64_t bin_stride, void* scratch) {
  using D = ScalarD1<B>;
  const int n = g.n;
  u128* buf = static_cast<u128*>(scratch);
  for (int l = 0; l < 8; ++l) {
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < n; ++j) {
        const int64_t e = i * row_stride + j * 8 + l;
        const int64_t v = elem_bytes == 1 ? static_cast<const int8_t*>(patch)[e] : static_cast<const int16_t*>(patch)[e];
        buf[int64_t(bit_reverse(i, g.log_n)) * n + bit_reverse(j, g.log_n)] = D::from_signed(v);
      }
    }
    fnt2d_forward<ScalarRing<B>>(buf, g.log_n, 4 * B / n);
    for (int64_t bin = 0; bin < int64_t(n) * n; ++bin) store_limbs<B>(xf + bin * bin_stride + l, D::to_nb(buf[bin]));
  }
}

template <int B>
void inverse_tile_scalar(const TileGeometry& g, const uint64_t* yf, int64_t bin_stride, void* y, int out_bytes,
                         int64_t ch_stride, int64_t row_stride, int rows, int cols, int channels, void* scratch) {
  using D = ScalarD1<B>;
  const int n = g.n;
  u128* buf = static_cast<u128*>(scratch);
  for (int l = 0; l < channels; ++l) {
    for (int64_t bin = 0; bin < int64_t(n) * n; ++bin) buf[bin] = D::from_nb(load_limbs<B>(yf + bin * bin_stride + l));
    fnt2d_inverse<ScalarRing<B>>(buf, g.log_n, 4 * B - 4 * B / n, rows);
    for (int i = 0; i < rows; ++i) {
      const int64_t br = int64_t(bit_reverse(i, g.log_n)) * n;
      for (int j = 0; j < cols; ++j) {
        const int64_t v = D::to_signed(buf[br + bit_reverse(j, g.log_n)]);
        const int64_t o = l * ch_stride + i * row_stride + j;
        if (out_bytes == 4) static_cast<int32_t*>(y)[o] = int32_t(v);
        else static_cast<int64_t*>(y)[o] = v;
      }
    }
  }
}

template <int B>
void gemm_scalar(const GemmArgs& a) {
  constexpr int L = B == 64 ? 2 : 1;
  for (int64_t r = 0; r < a.m; ++r) {
    for (int64_t o = 0; o < a.opad; ++o) {
      u128 acc = 0;
      for (int64_t c = 0; c < a.cpad; ++c) {
        const u128 xv = load_limbs<B>(a.x + r * a.x_row + (c / 8) * a.x_group + c % 8);
        const u128 wv = load_limbs<B>(a.w + w_group_offset(c, o / 8, a.cpad, a.opad, L) + o % 8);
        // b < 64: product < 2^98, no overflow for 2^30 terms; F6: reduce each product.
        acc += B == 64 ? nb_mulmod<B>(xv, wv) : xv * wv;
      }
      store_limbs<B>(a.y + r * a.y_row + (o / 8) * a.y_group + o % 8, nb_reduce<B>(acc));
    }
  }
}

template <int B>
const TransformKernels make_scalar_family(const char* name) {
  return {name, ring_op_scalar<B>, fnt_scalar<B>, transform_weights_scalar<B>, forward_tile_scalar<B>,
          inverse_tile_scalar<B>};
}

}  // namespace

const TransformKernels& transform_kernels_scalar(Modulus m) {
  static const TransformKernels f5 = make_scalar_family<32>("d1f5_fnt2d_1lane_scalar");
  static const TransformKernels f48 = make_scalar_family<48>("d1f48_fnt2d_1lane_scalar");
  static const TransformKernels f6 = make_scalar_family<64>("d1f6_fnt2d_1lane_scalar");
  return m == Modulus::kF5 ? f5 : m == Modulus::kF48 ? f48 : f6;
}

void f5_gemm_scalar(const GemmArgs& a) { gemm_scalar<32>(a); }
void f48_gemm_scalar(const GemmArgs& a) { gemm_scalar<48>(a); }
void f6_gemm_scalar(const GemmArgs& a) { gemm_scalar<64>(a); }

}  // namespace dfnt
}  // namespace edgecc
