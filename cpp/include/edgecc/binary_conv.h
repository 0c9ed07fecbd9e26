// Binary convolution engine: AND+popcount direct convolution over bit-packed NHWC
// planes, producing every (weight plane, activation plane) count in one pass, with a
// fused float epilogue (phi, bias, residual, activation) that writes float output or
// the next layer's bit-planes.
//
// Encodings. A plane bit b stands for the value b ({0,1} planes) or 2b-1 (+-1 planes).
// Padded taps (outside the image) are excluded from every dot product, which for +-1
// equals a float convolution of +-1 tensors with zero padding. The kernels only AND
// and count; +-1 results come from the identity, over the valid taps,
//   sum (cw*b + dw)(ca*x + da) = cw*ca*#(b&x) + cw*da*#b + dw*ca*#x + dw*da*n_valid,
// with (c, d) = (1, 0) for {0,1} and (2, -1) for +-1. When both operands are +-1 the
// kernels count XOR instead (disagreements), which needs no activation-bit term.
#pragma once
#include <cstddef>
#include <cstdint>

namespace edgecc::binary {

// Output channels go through the kernels in chunks of 16 lanes (one zmm of 32-bit counts).
constexpr int kLanes = 16;

enum class Epilogue { kCounts, kFloat, kPlanes };
struct ConvTables;  // binary_conv_tables.h
enum class Activation { kNone = 0, kRelu = 1, kPrelu = 2 };

struct ConvProblem {
  // Input planes as 32-bit words: [n][h][w][in_planes][x_words]. Group g's channels
  // start at word g * x_group_words of each (pixel, plane) row.
  const uint32_t* x = nullptr;
  int n = 0, h = 0, w = 0, in_planes = 1, x_words = 0, x_group_words = 0;
  bool x_signed = false;
  // Weights: [groups][chunks][m_planes][kh*kw][k_words][16 lanes]; chunk c lane l holds
  // output channel c*16+l of the group, k_words = ceil(cin_g / 32), zero-filled.
  const uint32_t* wts = nullptr;
  int groups = 1, cin_g = 0, cout_g = 0, m_planes = 1, kh = 1, kw = 1, k_words = 0, chunks = 0;
  bool w_signed = false;
  int stride_h = 1, stride_w = 1, pad_top = 0, pad_left = 0, dil_h = 1, dil_w = 1;
  int oh = 0, ow = 0;

  Epilogue epilogue = Epilogue::kCounts;
  int32_t* counts = nullptr;       // kCounts: [n][m_planes][in_planes][cout][oh][ow]
  const float* phi = nullptr;      // [cout][m_planes][in_planes], per-channel scale folded in
  const float* bias = nullptr;     // [cout] or null
  const float* residual = nullptr; // same layout as the float output, or null
  Activation activation = Activation::kNone;
  const float* prelu_slope = nullptr;  // [cout] for kPrelu
  bool nchw = true;                // layout of `out` and `residual`
  float* out = nullptr;            // kFloat: [n][cout][oh][ow] or [n][oh][ow][cout]
  uint32_t* out_bits = nullptr;    // kPlanes: [n][oh][ow][out_planes][out_words], pre-zeroed
  int out_planes = 0, out_words = 0;
  const float* out_thresholds = nullptr;  // [out_planes][cout], increasing per channel
  int threads = 1;
  // Tables built by make_tables(*this) for this layer and input size, or null (built per
  // call). A prepared layer keeps them between calls.
  const ConvTables* tables = nullptr;

  int cout() const { return groups * cout_g; }
  int taps() const { return kh * kw; }
};

// Throws std::invalid_argument when the problem is inconsistent.
void validate(const ConvProblem& p);

// Runs the problem on the kernels of one ISA path ("avx512", "avx2", "scalar", "" = auto
// / EDGECC_ISA). Returns the name of the path used.
const char* binary_conv(const ConvProblem& p, const char* isa);

// Per-ISA entry points (binary_conv_<isa>.cpp); `tables` = make_tables(p).
void binary_conv_avx512(const ConvProblem& p, const ConvTables& tables);
void binary_conv_avx2(const ConvProblem& p, const ConvTables& tables);
void binary_conv_scalar(const ConvProblem& p, const ConvTables& tables);

}  // namespace edgecc::binary
