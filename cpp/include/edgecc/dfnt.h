// DFNT: exact integer convolution with the diminished-1 Fermat number transform
// (thesis ch.2: Algorithm 1, eq 2.4-2.11).
//
// Rings Z/(2^b + 1): F5 (b = 32) for INT8 data, F6 (b = 64) for INT16 data, and
// F48 (b = 48, not a Fermat number but diminished-1 works for any 2^b + 1) for
// INT16 data on IFMA52. Powers of two are roots of unity, so transform twiddles are
// shifts (rotations with complemented wrap-around in diminished-1).
//
// Diminished-1 ("d-1") words: the value v in [1, 2^b] is stored as v - 1 in b bits;
// the value 0 is the extra word 2^b. At the API, a (b+1)-bit word or a normal
// binary ("nb") residue in [0, 2^b] is passed as a pair (lo: uint64, hi: uint8) with
// value lo + hi * 2^64 (hi is only ever 1 for b = 64).
//
// Convolution: overlap-save tiles of n x n (n a power of two), one 2-D transform per
// input tile and channel, one modular GEMM per frequency bin (delayed reduction),
// one inverse transform per output tile and channel. Stride 1 here; the Python layer
// maps stride s to stride 1 by polyphase decomposition.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "edgecc/cpu.h"

namespace edgecc {
namespace dfnt {

enum class Modulus { kF5 = 32, kF48 = 48, kF6 = 64 };

// Throws std::invalid_argument unless bits is 32, 48 or 64.
Modulus modulus_from_bits(int bits);
inline int modulus_bits(Modulus m) { return static_cast<int>(m); }
const char* modulus_name(Modulus m);  // "F5", "2^48+1", "F6"
// Longest power-of-two transform with a root of unity made of shifts: 2 has order
// 2b modulo 2^b + 1 and sqrt(2) = 2^(b/4) (2^(b/2) - 1) has order 4b, so 128 for F5,
// 256 for F6, 64 for F48 (4b = 192). Lengths up to 2b use powers of 2 only.
int max_transform_length(Modulus m);
// h such that 2^(h/2) is a root of unity of order `length` (h in half-bits; even
// for length <= 2b).
int root_shift(Modulus m, int length);
// Largest convolution tile (transformed weights grow as n^2).
constexpr int kMaxConvTransform = 64;

// ---- element-wise diminished-1 arithmetic (Algorithm 1), for tests and tools ----
enum class RingOp {
  kAdd,      // x + y          (d-1 in, d-1 out)
  kSub,      // x - y
  kNeg,      // -x
  kShl,      // x * 2^shift, shift in [0, 2b)
  kMul,      // x * y
  kToD1,     // nb residue in [0, 2^b] -> d-1 word
  kFromD1,   // d-1 word -> nb residue in [0, 2^b]
};
// z = op(x, y) for n elements; y is ignored by unary ops. Words must be valid
// (d-1 word <= 2^b, nb residue <= 2^b): throws std::invalid_argument otherwise.
void ring_op(Modulus m, RingOp op, const uint64_t* x_lo, const uint8_t* x_hi, const uint64_t* y_lo,
             const uint8_t* y_hi, int64_t n, int shift, uint64_t* z_lo, uint8_t* z_hi, Isa isa);

// ---- transforms ----
// `count` independent transforms of length L (dims = 1) or L x L (dims = 2, row-major),
// nb residues in natural order in and out. Forward: X(k) = sum x(l) a^(lk) (eq 2.4),
// decimation in time (eq 2.5-2.8). Inverse: x(l) = 1/L sum X(k) a^(-lk) (eq 2.9),
// decimation in frequency. a = 2^(root_shift(m, L) / 2).
void fnt(Modulus m, const uint64_t* in_lo, const uint8_t* in_hi, int64_t count, int length, int dims,
         bool inverse, uint64_t* out_lo, uint8_t* out_hi, Isa isa);

// ---- convolution ----
// Zero-initialized uint64 storage, 64-byte aligned; large buffers are placed on
// 2 MiB pages (transformed weights stream through the TLB once per call).
class WordBuffer {
 public:
  WordBuffer() = default;
  explicit WordBuffer(size_t words);
  ~WordBuffer();
  WordBuffer(WordBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
  WordBuffer& operator=(WordBuffer&& o) noexcept;
  WordBuffer(const WordBuffer&) = delete;
  WordBuffer& operator=(const WordBuffer&) = delete;
  uint64_t* data() const { return p_; }
  size_t size() const { return n_; }

 private:
  uint64_t* p_ = nullptr;
  size_t n_ = 0;
};

// Weights transformed once (at load time) for one modulus, transform size and ISA.
struct ConvPlan {
  Modulus modulus = Modulus::kF5;
  Isa isa = Isa::kScalar;
  int n = 0, log_n = 0;                       // transform size n x n
  int64_t out_channels = 0, in_channels = 0, kernel_h = 0, kernel_w = 0;
  int64_t cpad = 0, opad = 0;                 // channels rounded up to the kernel's blocking
  int limbs = 1;                              // words per residue in the pointwise operands
  int w_limbs = 1;                            // words per residue of the stored weights
  std::string gemm_kernel;                    // name of the pointwise kernel
  WordBuffer wf;                              // W layout of dfnt_kernels.h
  struct Workspace;                           // run buffers kept between runs
  std::shared_ptr<Workspace> workspace;
  int64_t tile_h() const { return n - kernel_h + 1; }
  int64_t tile_w() const { return n - kernel_w + 1; }
};

// w: int64 [out_channels][in_channels][kernel_h][kernel_w] (any values; reduced mod p).
// n: transform size (power of two, 8 <= n <= min(max_transform_length, kMaxConvTransform),
// kernel <= n). gemm:
// "" (the ISA's default), "ifma", "muludq" (avx512, F5 only) or "scalar".
// Throws std::invalid_argument.
std::shared_ptr<ConvPlan> prepare_conv(const int64_t* w, int64_t out_channels, int64_t in_channels,
                                       int64_t kernel_h, int64_t kernel_w, Modulus m, int n, Isa isa,
                                       const std::string& gemm, int threads);

// x: int8 (elem_bytes 1) or int16 (2) NCHW [batch][in_channels][h][w]. pads: top, left,
// bottom, right. y: NCHW, int32 for F5 and int64 otherwise, shape
// [batch][out_channels][h + top + bottom - kh + 1][w + left + right - kw + 1].
// Exact when every |output| <= 2^(b-1) - 1; the caller (Python) checks that bound.
void run_conv(const ConvPlan& plan, const void* x, int elem_bytes, int64_t batch, int64_t h, int64_t w,
              const int64_t pads[4], void* y, int threads);

// Seconds the last run_conv on the calling thread spent per stage (input padding,
// forward transforms, pointwise GEMMs, inverse transforms); for benchmarks.
struct StageTimes {
  double pad = 0, forward = 0, pointwise = 0, inverse = 0;
};
StageTimes last_stage_times();

// Tiles per pointwise GEMM (bounded so the transformed tiles stay within memory_bytes).
int64_t conv_chunk_tiles(const ConvPlan& plan, int64_t total_tiles, int64_t memory_bytes);

}  // namespace dfnt
}  // namespace edgecc
