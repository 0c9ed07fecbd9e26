// Direct 2-D convolution baselines: fp32 and exact integer (int8 -> int32,
// int16 -> int64), NCHW activations, OIHW weights, any stride / asymmetric
// padding / dilation / groups. They are the native reference point every later
// kernel is compared with, and the fallback the compiler uses without oneDNN.
//
// Structure (XNNPACK style): a portable operator packs the input and weights,
// splits the output into tiles and runs them in parallel with OpenMP; per-ISA
// microkernels compute one tile: output channels in vector lanes times a run of
// output pixels of one row, or, for depthwise layers, output pixels in lanes for
// the rows of one channel. One small table in direct_conv.cpp picks the
// microkernels for the ISA chosen by edgecc::select_isa.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "edgecc/cpu.h"

namespace edgecc {

struct Conv2dShape {
  int64_t batch = 1, in_channels = 1, in_h = 1, in_w = 1;
  int64_t out_channels = 1, kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int64_t groups = 1;

  int64_t in_per_group() const { return in_channels / groups; }
  int64_t out_per_group() const { return out_channels / groups; }
  int64_t taps() const { return kernel_h * kernel_w; }
  // Length of the sum behind one output value: C/groups * KH * KW.
  int64_t reduction() const { return in_per_group() * taps(); }
  int64_t out_h() const;
  int64_t out_w() const;
  // One input channel per group (any channel multiplier): own kernels.
  bool depthwise() const { return in_per_group() == 1 && groups > 1; }
  // Throws std::invalid_argument naming the bad field and its value.
  void validate() const;
  std::string describe() const;
};

// Largest reduction length for which int8 x int8 sums are exact in int32:
// |sum| <= K * 128 * 128 <= 2^31 - 1.
constexpr int64_t kQs8MaxReductionI32 = 131071;

// Run-time dispatch: validate the shape, pick the kernel for `isa` (general or
// depthwise) and run it. threads <= 0 means the OpenMP default; work items (rows
// of output tiles) are scheduled dynamically, so a thread whose core is busy with
// another process does not hold the others up. Outputs are NCHW.
void conv2d_direct_f32(const Conv2dShape&, const float* x, const float* w, const float* bias, float* y,
                       int threads, Isa isa);
// Throws std::invalid_argument when reduction() > kQs8MaxReductionI32.
void conv2d_direct_qs8(const Conv2dShape&, const int8_t* x, const int8_t* w, int32_t* y, int threads,
                       Isa isa);
void conv2d_direct_qs16(const Conv2dShape&, const int16_t* x, const int16_t* w, int64_t* y, int threads,
                        Isa isa);
// Name of the kernel the dispatcher runs for dtype "f32" | "qs8" | "qs16".
std::string conv2d_direct_kernel_name(const std::string& dtype, const Conv2dShape&, Isa isa);

// Portable operators: row-vector loops over the padded input (auto-vectorized).
void f32_conv2d_direct_nchw_scalar(const Conv2dShape&, const float* x, const float* w, const float* bias,
                                   float* y, int threads);
void qs8_conv2d_direct_i32_scalar(const Conv2dShape&, const int8_t* x, const int8_t* w, int32_t* y,
                                  int threads);
void qs16_conv2d_direct_i64_scalar(const Conv2dShape&, const int16_t* x, const int16_t* w, int64_t* y,
                                   int threads);

// The textbook seven-loop convolution with a bounds test per tap (the baseline of
// the DFNT thesis), parallel over (batch, output channel) only. They validate.
void f32_conv2d_naive_scalar(const Conv2dShape&, const float* x, const float* w, const float* bias,
                             float* y, int threads);
void qs8_conv2d_naive_i32_scalar(const Conv2dShape&, const int8_t* x, const int8_t* w, int32_t* y,
                                 int threads);
void qs8_conv2d_naive_i64_scalar(const Conv2dShape&, const int8_t* x, const int8_t* w, int64_t* y,
                                 int threads);
void qs16_conv2d_naive_i64_scalar(const Conv2dShape&, const int16_t* x, const int16_t* w, int64_t* y,
                                  int threads);

namespace direct_conv_detail {

int resolve_threads(int threads);

// Padded input of one "image" (one batch item and group) laid out [channel_packs][rows][phases][cols][kpack channels]: padded
// column iw = col * stride_w + phase, so for every stride the output pixels
// ow, ow+1, ... of a row read consecutive packs. Outside the input, and for
// channels past the end, a pack holds the packed form of 0.
struct PackedInput {
  int64_t images = 0, channels = 0, kpack = 0;
  int64_t channel_packs = 0, rows = 0, phases = 0, cols = 0;
  int64_t row_stride() const { return phases * cols; }                    // in packs
  int64_t pack_stride() const { return rows * row_stride(); }              // in packs
  int64_t image_stride() const { return channel_packs * pack_stride(); }   // in packs
  // Offset (in packs) of kernel tap t = kh * KW + kw from the tap-0 pack of a pixel.
  std::vector<int64_t> tap_offsets(const Conv2dShape& s) const;
};

// per_group: images are (batch, group) with C/groups channels; else batch with C.
PackedInput packed_input_layout(const Conv2dShape& s, int64_t kpack, bool per_group);

// Input packers; each pack holds kpack channels (values per pack in brackets).
void pack_input_f32(const Conv2dShape&, const PackedInput&, const float* x, float* out, int threads);  // [kpack]
void pack_input_qs8(const Conv2dShape&, const PackedInput&, const int8_t* x, int8_t* out, int threads);  // [kpack]
void pack_input_qs16(const Conv2dShape&, const PackedInput&, const int16_t* x, int16_t* out, int threads);  // [kpack]
// x + 128 as uint8 (u8 x s8 dot products) [kpack].
void pack_input_qs8_u8(const Conv2dShape&, const PackedInput&, const int8_t* x, uint8_t* out, int threads);
// Sign-extended to int16 (int16 pair dot products) [kpack].
void pack_input_qs8_i16(const Conv2dShape&, const PackedInput&, const int8_t* x, int16_t* out, int threads);
// Split x = hi * 256 + lo, lo in [0, 255], hi in [-128, 127]: [lo x kpack, hi x kpack].
void pack_input_qs16_split(const Conv2dShape&, const PackedInput&, const int16_t* x, int16_t* out,
                           int threads);
// One image only (kpack 1), into out[image_stride]: the depthwise operator packs
// each channel right before using it, while it is in cache. Integers are
// sign-extended to int32.
void pack_image_f32(const Conv2dShape&, const PackedInput&, const float* x, int64_t image, float* out);
void pack_image_qs8_i32(const Conv2dShape&, const PackedInput&, const int8_t* x, int64_t image, int32_t* out);
void pack_image_qs16_i32(const Conv2dShape&, const PackedInput&, const int16_t* x, int64_t image, int32_t* out);

// Weights of the general kernels: [groups][out_blocks][channel_packs][taps][lanes][kpack],
// zero past the group's output and input channels.
struct PackedWeights {
  int64_t out_blocks = 0, channel_packs = 0, taps = 0, lanes = 0, kpack = 0;
  int64_t block_stride() const { return channel_packs * taps * lanes * kpack; }  // elements
};
std::vector<float> pack_weights_f32(const Conv2dShape&, const float* w, int64_t lanes, int64_t kpack,
                                    PackedWeights* layout);
std::vector<int8_t> pack_weights_qs8(const Conv2dShape&, const int8_t* w, int64_t lanes, int64_t kpack,
                                     PackedWeights* layout);
std::vector<int16_t> pack_weights_qs8_i16(const Conv2dShape&, const int8_t* w, int64_t lanes, int64_t kpack,
                                          PackedWeights* layout);
std::vector<int16_t> pack_weights_qs16(const Conv2dShape&, const int16_t* w, int64_t lanes, int64_t kpack,
                                       PackedWeights* layout);
// Depthwise integer weights [output channel][tap] as int32 with a zero high half,
// so pmaddwd with a sign-extended int32 input gives x * w exactly.
std::vector<int32_t> pack_dw_weights_qs8(const Conv2dShape&, const int8_t* w);
std::vector<int32_t> pack_dw_weights_qs16(const Conv2dShape&, const int16_t* w);

// 128 * (sum of each output channel's weights): what the u8 offset adds.
std::vector<int32_t> qs8_weight_offset_correction(const Conv2dShape&, const int8_t* w);

// One microkernel call computes `pixels` consecutive output pixels of one row for
// blocks * lanes channels, adds the per-channel addend and writes the result to
// y[channel * y_channel_stride + pixel] for the first `channels` channels.
struct DirectTileArgs {
  const uint8_t* x = nullptr;         // packed input at (channel pack 0, first pixel, tap 0)
  const void* w = nullptr;            // packed weights of the first block
  int64_t w_block_stride = 0;         // weight elements between output blocks
  int64_t channel_packs = 0;          // general kernels: packs to reduce over
  int64_t pack_stride_bytes = 0;      // bytes between channel packs
  int64_t taps = 0;
  const int64_t* tap_offset_bytes = nullptr;
  void* y = nullptr;                  // output at (first channel of the tile, row, first pixel)
  int64_t y_channel_stride = 0;       // output elements between consecutive tile channels
  int channels = 0;                   // tile channels that exist (later lanes are padding)
  const void* addend = nullptr;       // per tile channel: bias or offset correction; may be null
};
using DirectTileFn = void (*)(const DirectTileArgs&, int blocks, int pixels);

struct DirectMicrokernel {
  const char* name;
  DirectTileFn fn;
  int lanes;       // output channels per vector
  int max_blocks;  // output-channel vectors per tile
  int max_pixels;
};

// Depthwise microkernels compute `rows` output rows of one channel with pixels in
// vector lanes: the NCHW input needs no transpose and rows are stored directly.
struct DepthwiseRowArgs {
  const uint8_t* x = nullptr;  // packed input image of the channel (kpack 1) at (first output row, column 0)
  int64_t x_row_stride_bytes = 0;  // between consecutive output rows (stride_h padded rows)
  const int64_t* tap_offset_bytes = nullptr;
  int64_t taps = 0;
  const void* w = nullptr;     // the channel's taps: float, or int32 with a zero high half
  const void* bias = nullptr;  // one float (f32 kernels) or null
  void* y = nullptr;           // first output row
  int64_t y_row_stride = 0;    // elements between output rows
  int64_t rows = 0, pixels = 0;
};
using DepthwiseRowFn = void (*)(const DepthwiseRowArgs&);
struct DepthwiseMicrokernel {
  const char* name;
  DepthwiseRowFn fn;
};
// Input buffers of depthwise kernels need this many bytes after the packed image:
// tail vectors read (and ignore) up to one vector past a row.
constexpr int64_t kDepthwiseInputSlackBytes = 64;

// AVX-512 microkernels (direct_conv_avx512.cpp).
void f32_conv2d_direct_nchw_32x14_avx512(const DirectTileArgs&, int, int);
void qs8_conv2d_direct_vnni_32x14_avx512(const DirectTileArgs&, int, int);
void qs16_conv2d_direct_i64_16x12_avx512(const DirectTileArgs&, int, int);
void f32_dwconv2d_direct_row_4x16_avx512(const DepthwiseRowArgs&);
void qs8_dwconv2d_direct_row_i32_4x16_avx512(const DepthwiseRowArgs&);
void qs16_dwconv2d_direct_row_i64_4x16_avx512(const DepthwiseRowArgs&);
// AVX2 microkernels (direct_conv_avx2.cpp).
void f32_conv2d_direct_nchw_16x6_avx2(const DirectTileArgs&, int, int);
void qs8_conv2d_direct_maddwd_16x6_avx2(const DirectTileArgs&, int, int);
void qs16_conv2d_direct_i64_8x6_avx2(const DirectTileArgs&, int, int);
void f32_dwconv2d_direct_row_4x8_avx2(const DepthwiseRowArgs&);
void qs8_dwconv2d_direct_row_i32_4x8_avx2(const DepthwiseRowArgs&);
void qs16_dwconv2d_direct_row_i64_2x8_avx2(const DepthwiseRowArgs&);

}  // namespace direct_conv_detail

// Weights packed once for one ISA (and the kernel picked for them); run()
// convolves inputs of any batch and spatial size. T -> Y: float -> float,
// int8 -> int32 (exact; the constructor throws std::invalid_argument when
// C/groups*KH*KW > kQs8MaxReductionI32), int16 -> int64 (exact).
template <typename T, typename Y>
class DirectConv2d {
 public:
  // geometry: channels, kernel, stride, padding, dilation, groups (its batch and
  // input size are ignored). w: OIHW; bias: float only, may be null.
  DirectConv2d(const Conv2dShape& geometry, const T* w, const float* bias, Isa isa);
  DirectConv2d(const DirectConv2d&) = delete;  // packed_ points into the members
  DirectConv2d& operator=(const DirectConv2d&) = delete;
  DirectConv2d(DirectConv2d&&) = default;      // moved vectors keep their buffers
  DirectConv2d& operator=(DirectConv2d&&) = default;
  // x: NCHW (batch, C, in_h, in_w); y: NCHW (batch, O, out_h, out_w) of shape().
  void run(const T* x, int64_t batch, int64_t in_h, int64_t in_w, Y* y, int threads) const;
  Conv2dShape shape(int64_t batch, int64_t in_h, int64_t in_w) const;
  const std::string& kernel_name() const { return name_; }
  Isa isa() const { return isa_; }

 private:
  Conv2dShape geometry_;
  Isa isa_;
  std::string name_;
  const direct_conv_detail::DirectMicrokernel* kernel_ = nullptr;  // general layers
  const direct_conv_detail::DepthwiseMicrokernel* dw_kernel_ = nullptr;  // depthwise layers
  // Both null: the portable operator.
  direct_conv_detail::PackedWeights layout_;
  // Packed weights; the element type depends on the kernel, `packed_` points
  // at the one in use.
  std::vector<float> packed_f32_;
  std::vector<int8_t> packed_i8_;
  std::vector<int16_t> packed_i16_;
  std::vector<int32_t> packed_i32_;
  const void* packed_ = nullptr;
  std::vector<T> plain_weights_;  // OIHW, for the portable operator
  std::vector<Y> addend_;         // per output channel: bias or u8 offset correction
};

using DirectConv2dF32 = DirectConv2d<float, float>;
using DirectConv2dQs8 = DirectConv2d<int8_t, int32_t>;
using DirectConv2dQs16 = DirectConv2d<int16_t, int64_t>;

}  // namespace edgecc
