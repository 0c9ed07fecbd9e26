// Direct convolution operators: shape checks, the microkernel table, and the
// portable driver that packs operands and runs tiles in parallel.
#include "edgecc/direct_conv.h"


#include <algorithm>
#include <cstring>
#include <memory>
#include <type_traits>
#include <stdexcept>
#include <string>
#include <vector>

namespace edgecc {

using namespace direct_conv_detail;

int64_t Conv2dShape::out_h() const {
  return (in_h + pad_top + pad_bottom - dilation_h * (kernel_h - 1) - 1) / stride_h + 1;
}
int64_t Conv2dShape::out_w() const {
  return (in_w + pad_left + pad_right - dilation_w * (kernel_w - 1) - 1) / stride_w + 1;
}

std::string Conv2dShape::describe() const {
  auto s = [](int64_t v) { return std::to_string(v); };
  return "input (" + s(batch) + ", " + s(in_channels) + ", " + s(in_h) + ", " + s(in_w) + "), weight (" +
         s(out_channels) + ", " + s(groups > 0 ? in_channels / groups : 0) + ", " + s(kernel_h) + ", " +
         s(kernel_w) + "), stride (" + s(stride_h) + ", " + s(stride_w) + "), padding (" + s(pad_top) + ", " +
         s(pad_left) + ", " + s(pad_bottom) + ", " + s(pad_right) + "), dilation (" + s(dilation_h) + ", " +
         s(dilation_w) + "), groups " + s(groups);
}

void Conv2dShape::validate() const {
  auto fail = [this](const std::string& what) { throw std::invalid_argument("conv2d: " + what + " [" + describe() + "]"); };
  auto positive = [&](int64_t v, const char* name) {
    if (v < 1) fail(std::string(name) + " must be >= 1, got " + std::to_string(v));
  };
  positive(batch, "batch");
  positive(in_channels, "input channels");
  positive(in_h, "input height");
  positive(in_w, "input width");
  positive(out_channels, "output channels");
  positive(kernel_h, "kernel height");
  positive(kernel_w, "kernel width");
  positive(stride_h, "stride_h");
  positive(stride_w, "stride_w");
  positive(dilation_h, "dilation_h");
  positive(dilation_w, "dilation_w");
  positive(groups, "groups");
  const int64_t pads[4] = {pad_top, pad_left, pad_bottom, pad_right};
  for (int64_t p : pads)
    if (p < 0) fail("padding must be >= 0, got " + std::to_string(p));
  if (in_channels % groups) fail("input channels " + std::to_string(in_channels) + " not divisible by groups");
  if (out_channels % groups) fail("output channels " + std::to_string(out_channels) + " not divisible by groups");
  if (in_h + pad_top + pad_bottom < dilation_h * (kernel_h - 1) + 1)
    fail("padded input height " + std::to_string(in_h + pad_top + pad_bottom) +
         " smaller than the dilated kernel height " + std::to_string(dilation_h * (kernel_h - 1) + 1));
  if (in_w + pad_left + pad_right < dilation_w * (kernel_w - 1) + 1)
    fail("padded input width " + std::to_string(in_w + pad_left + pad_right) +
         " smaller than the dilated kernel width " + std::to_string(dilation_w * (kernel_w - 1) + 1));
  const int64_t limit = int64_t(1) << 40;  // keeps every index product far from overflow
  if (batch * in_channels * (in_h + pad_top + pad_bottom) * (in_w + pad_left + pad_right) > limit ||
      out_channels * in_per_group() * taps() > limit || batch * out_channels * out_h() * out_w() > limit)
    fail("tensor too large");
}

namespace {

// Microkernels for one ISA (the scalar ISA has none: it runs the portable operators).
struct DirectConvKernels {
  DirectMicrokernel f32, qs8, qs16;
  DepthwiseMicrokernel f32_dw, qs8_dw, qs16_dw;
};

const DirectConvKernels kAvx512Kernels = {
    {"f32_conv2d_direct_nchw_32x14_avx512", f32_conv2d_direct_nchw_32x14_avx512, 16, 2, 14},
    {"qs8_conv2d_direct_vnni_32x14_avx512", qs8_conv2d_direct_vnni_32x14_avx512, 16, 2, 14},
    {"qs16_conv2d_direct_i64_16x12_avx512", qs16_conv2d_direct_i64_16x12_avx512, 16, 1, 12},
    {"f32_dwconv2d_direct_row_4x16_avx512", f32_dwconv2d_direct_row_4x16_avx512},
    {"qs8_dwconv2d_direct_row_i32_4x16_avx512", qs8_dwconv2d_direct_row_i32_4x16_avx512},
    {"qs16_dwconv2d_direct_row_i64_4x16_avx512", qs16_dwconv2d_direct_row_i64_4x16_avx512},
};
const DirectConvKernels kAvx2Kernels = {
    {"f32_conv2d_direct_nchw_16x6_avx2", f32_conv2d_direct_nchw_16x6_avx2, 8, 2, 6},
    {"qs8_conv2d_direct_maddwd_16x6_avx2", qs8_conv2d_direct_maddwd_16x6_avx2, 8, 2, 6},
    {"qs16_conv2d_direct_i64_8x6_avx2", qs16_conv2d_direct_i64_8x6_avx2, 8, 1, 6},
    {"f32_dwconv2d_direct_row_4x8_avx2", f32_dwconv2d_direct_row_4x8_avx2},
    {"qs8_dwconv2d_direct_row_i32_4x8_avx2", qs8_dwconv2d_direct_row_i32_4x8_avx2},
    {"qs16_dwconv2d_direct_row_i64_2x8_avx2", qs16_dwconv2d_direct_row_i64_2x8_avx2},
};

const DirectConvKernels* kernels_for(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return &kAvx512Kernels;
    case Isa::kAvx2: return &kAvx2Kernels;
    default: return nullptr;
  }
}

std::vector<int64_t> tap_offset_bytes(const Conv2dShape& s, const PackedInput& p, int64_t pack_bytes) {
  std::vector<int64_t> offsets = p.tap_offsets(s);
  for (int64_t& o : offsets) o *= pack_bytes;
  return offsets;
}

// Runs a general microkernel over the output: work items are (batch, group,
// group of output blocks, output row); each row is cut into tiles of at most
// max_pixels pixels. addend: one value per output channel, or null.
template <typename Y>
void run_general(const Conv2dShape& s, const DirectMicrokernel& mk, const PackedInput& in, const void* xp,
                 int64_t pack_bytes, const void* wp, int64_t w_elem_bytes, const PackedWeights& wl, Y* y,
                 const Y* addend, int threads) {
  const int64_t oh_count = s.out_h(), ow_count = s.out_w(), og = s.out_per_group();
  const int64_t block_groups = (wl.out_blocks + mk.max_blocks - 1) / mk.max_blocks;
  const int64_t work = s.batch * s.groups * block_groups * oh_count;
  const std::vector<int64_t> taps = tap_offset_bytes(s, in, pack_bytes);
  const uint8_t* x_bytes = static_cast<const uint8_t*>(xp);
  const uint8_t* w_bytes = static_cast<const uint8_t*>(wp);
#pragma omp parallel for schedule(dynamic) num_threads(resolve_threads(threads))
  for (int64_t item = 0; item < work; ++item) {
    const int64_t oh = item % oh_count;
    const int64_t bg = (item / oh_count) % block_groups;
    const int64_t g = (item / (oh_count * block_groups)) % s.groups;
    const int64_t n = item / (oh_count * block_groups * s.groups);
    const int64_t first_block = bg * mk.max_blocks;
    const int blocks = static_cast<int>(std::min<int64_t>(mk.max_blocks, wl.out_blocks - first_block));
    const int64_t first_channel = g * og + first_block * mk.lanes;
    DirectTileArgs a;
    a.w = w_bytes + (g * wl.out_blocks + first_block) * wl.block_stride() * w_elem_bytes;
    a.w_block_stride = wl.block_stride();
    a.channel_packs = in.channel_packs;
    a.pack_stride_bytes = in.pack_stride() * pack_bytes;
    a.taps = s.taps();
    a.tap_offset_bytes = taps.data();
    a.y_channel_stride = oh_count * ow_count;
    a.channels = static_cast<int>(std::min<int64_t>(blocks * mk.lanes, og - first_block * mk.lanes));
    a.addend = addend ? addend + first_channel : nullptr;
    const int64_t row_pack = (n * s.groups + g) * in.image_stride() + oh * s.stride_h * in.row_stride();
    Y* y_row = y + ((n * s.out_channels + first_channel) * oh_count + oh) * ow_count;
    // Tiles of near-equal width (7 = 4 + 3, not 6 + 1): narrow tiles waste loads.
    const int64_t tiles = (ow_count + mk.max_pixels - 1) / mk.max_pixels;
    for (int64_t i = 0, ow0 = 0; i < tiles; ++i) {
      const int64_t pixels = ow_count / tiles + (i < ow_count % tiles ? 1 : 0);
      a.x = x_bytes + (row_pack + ow0) * pack_bytes;
      a.y = y_row + ow0;
      mk.fn(a, blocks, static_cast<int>(pixels));
      ow0 += pixels;
    }
  }
}

// Depthwise: work items are (batch, input channel). Each packs its channel
// (one image, kpack 1, 4-byte values) into a per-thread buffer that stays in
// cache, then computes the rows of the channel's output channels; w holds the
// taps per output channel (4-byte values), bias one value per output channel.
template <typename T, typename Packed, typename Y, typename PackImage>
void run_depthwise(const Conv2dShape& s, const DepthwiseMicrokernel& mk, const T* x, const void* w, const Y* bias,
                   Y* y, int threads, PackImage pack_image) {
  const PackedInput in = packed_input_layout(s, 1, true);
  const int64_t oh_count = s.out_h(), ow_count = s.out_w(), mult = s.out_per_group();
  const int64_t work = s.batch * s.in_channels;
  const std::vector<int64_t> taps = tap_offset_bytes(s, in, 4);
  const uint8_t* w_bytes = static_cast<const uint8_t*>(w);
  const size_t slack = kDepthwiseInputSlackBytes / sizeof(Packed);
#pragma omp parallel num_threads(resolve_threads(threads))
  {
    std::vector<Packed> image(static_cast<size_t>(in.image_stride()) + slack, Packed(0));
#pragma omp for schedule(dynamic)
    for (int64_t item = 0; item < work; ++item) {
      pack_image(s, in, x, item, image.data());
      const int64_t n = item / s.in_channels, c = item % s.in_channels;
      for (int64_t j = 0; j < mult; ++j) {
        const int64_t oc = c * mult + j;
        DepthwiseRowArgs a;
        a.tap_offset_bytes = taps.data();
        a.taps = s.taps();
        a.w = w_bytes + oc * s.taps() * 4;
        a.bias = bias ? bias + oc : nullptr;
        a.x = reinterpret_cast<const uint8_t*>(image.data());
        a.x_row_stride_bytes = s.stride_h * in.row_stride() * 4;
        a.y = y + (n * s.out_channels + oc) * oh_count * ow_count;
        a.y_row_stride = ow_count;
        a.rows = oh_count;
        a.pixels = ow_count;
        mk.fn(a);
      }
    }
  }
}

// Packed input buffers are filled completely by the packers: no zero-fill.
template <typename T>
std::unique_ptr<T[]> packed_buffer(const PackedInput& in, int64_t values_per_pack) {
  return std::unique_ptr<T[]>(new T[static_cast<size_t>(in.images * in.image_stride() * values_per_pack)]);
}

void check_qs8_reduction(const Conv2dShape& s) {
  if (s.reduction() > kQs8MaxReductionI32)
    throw std::invalid_argument("conv2d int8 with int32 accumulation: reduction length C/groups*KH*KW = " +
                                std::to_string(s.reduction()) + " exceeds " +
                                std::to_string(kQs8MaxReductionI32) +
                                ", so int32 could overflow; use int64 accumulation");
}

template <typename T>
const DirectMicrokernel& general_kernel(const DirectConvKernels& k) {
  if constexpr (std::is_same_v<T, float>) return k.f32;
  else if constexpr (std::is_same_v<T, int8_t>) return k.qs8;
  else return k.qs16;
}
template <typename T>
const DepthwiseMicrokernel& depthwise_kernel(const DirectConvKernels& k) {
  if constexpr (std::is_same_v<T, float>) return k.f32_dw;
  else if constexpr (std::is_same_v<T, int8_t>) return k.qs8_dw;
  else return k.qs16_dw;
}
template <typename T>
const char* scalar_kernel_name() {
  if constexpr (std::is_same_v<T, float>) return "f32_conv2d_direct_nchw_scalar";
  else if constexpr (std::is_same_v<T, int8_t>) return "qs8_conv2d_direct_i32_scalar";
  else return "qs16_conv2d_direct_i64_scalar";
}

}  // namespace

template <typename T, typename Y>
DirectConv2d<T, Y>::DirectConv2d(const Conv2dShape& geometry, const T* w, const float* bias, Isa isa)
    : geometry_(geometry), isa_(isa) {
  geometry_.batch = geometry_.in_h = geometry_.in_w = 1;
  // Validate everything except the input size, which run() checks.
  Conv2dShape probe = geometry_;
  probe.in_h = (probe.kernel_h - 1) * probe.dilation_h + 1;
  probe.in_w = (probe.kernel_w - 1) * probe.dilation_w + 1;
  probe.validate();
  if constexpr (std::is_same_v<T, int8_t>) check_qs8_reduction(probe);
  const DirectConvKernels* k = kernels_for(isa);
  const Conv2dShape& s = probe;
  if (!k) {  // portable operator: plain OIHW weights
    name_ = scalar_kernel_name<T>();
    plain_weights_.assign(w, w + s.out_channels * s.reduction());
    if (bias) addend_.assign(bias, bias + s.out_channels);
    return;
  }
  if (s.depthwise()) {
    dw_kernel_ = &depthwise_kernel<T>(*k);
    if constexpr (std::is_same_v<T, float>) {
      packed_f32_.assign(w, w + s.out_channels * s.taps());
      packed_ = packed_f32_.data();
      if (bias) addend_.assign(bias, bias + s.out_channels);
    } else if constexpr (std::is_same_v<T, int8_t>) {
      packed_i32_ = pack_dw_weights_qs8(s, w);
      packed_ = packed_i32_.data();
    } else {
      packed_i32_ = pack_dw_weights_qs16(s, w);
      packed_ = packed_i32_.data();
    }
    name_ = dw_kernel_->name;
    return;
  }
  kernel_ = &general_kernel<T>(*k);
  const int64_t lanes = kernel_->lanes;
  if constexpr (std::is_same_v<T, float>) {
    packed_f32_ = pack_weights_f32(s, w, lanes, 1, &layout_);
    packed_ = packed_f32_.data();
    if (bias) addend_.assign(bias, bias + s.out_channels);
  } else if constexpr (std::is_same_v<T, int8_t>) {
    if (isa == Isa::kAvx512) {
      // u8 x s8 dot products on x + 128; adding -128 * sum(w) per output channel
      // undoes the offset. Sums wrap modulo 2^32 in the hardware and the true
      // result fits int32, so the wrapped sum is exact.
      packed_i8_ = pack_weights_qs8(s, w, lanes, 4, &layout_);
      packed_ = packed_i8_.data();
      addend_ = qs8_weight_offset_correction(s, w);
      for (int32_t& v : addend_) v = -v;  // |v| < 2^31: negation is safe
    } else {
      // int16 pairs: pmaddwd products of int8 values are exact.
      packed_i16_ = pack_weights_qs8_i16(s, w, lanes, 2, &layout_);
      packed_ = packed_i16_.data();
    }
  } else {
    packed_i16_ = pack_weights_qs16(s, w, lanes, 2, &layout_);
    packed_ = packed_i16_.data();
  }
  name_ = kernel_->name;
}

template <typename T, typename Y>
Conv2dShape DirectConv2d<T, Y>::shape(int64_t batch, int64_t in_h, int64_t in_w) const {
  Conv2dShape s = geometry_;
  s.batch = batch;
  s.in_h = in_h;
  s.in_w = in_w;
  return s;
}

template <typename T, typename Y>
void DirectConv2d<T, Y>::run(const T* x, int64_t batch, int64_t in_h, int64_t in_w, Y* y, int threads) const {
  const Conv2dShape s = shape(batch, in_h, in_w);
  s.validate();
  const Y* addend = addend_.empty() ? nullptr : addend_.data();
  if (!kernel_ && !dw_kernel_) {
    const T* w = plain_weights_.data();
    if constexpr (std::is_same_v<T, float>) f32_conv2d_direct_nchw_scalar(s, x, w, addend, y, threads);
    else if constexpr (std::is_same_v<T, int8_t>) qs8_conv2d_direct_i32_scalar(s, x, w, y, threads);
    else qs16_conv2d_direct_i64_scalar(s, x, w, y, threads);
    return;
  }
  if (dw_kernel_) {
    if constexpr (std::is_same_v<T, float>)
      run_depthwise<T, float>(s, *dw_kernel_, x, packed_, addend, y, threads, pack_image_f32);
    else if constexpr (std::is_same_v<T, int8_t>)
      run_depthwise<T, int32_t>(s, *dw_kernel_, x, packed_, addend, y, threads, pack_image_qs8_i32);
    else
      run_depthwise<T, int32_t>(s, *dw_kernel_, x, packed_, addend, y, threads, pack_image_qs16_i32);
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    const PackedInput in = packed_input_layout(s, 1, true);
    auto xp = packed_buffer<float>(in, 1);
    pack_input_f32(s, in, x, xp.get(), threads);
    run_general<Y>(s, *kernel_, in, xp.get(), 4, packed_, 4, layout_, y, addend, threads);
  } else if constexpr (std::is_same_v<T, int8_t>) {
    if (isa_ == Isa::kAvx512) {
      const PackedInput in = packed_input_layout(s, 4, true);
      auto xp = packed_buffer<uint8_t>(in, 4);
      pack_input_qs8_u8(s, in, x, xp.get(), threads);
      run_general<Y>(s, *kernel_, in, xp.get(), 4, packed_, 1, layout_, y, addend, threads);
    } else {
      const PackedInput in = packed_input_layout(s, 2, true);
      auto xp = packed_buffer<int16_t>(in, 2);
      pack_input_qs8_i16(s, in, x, xp.get(), threads);
      run_general<Y>(s, *kernel_, in, xp.get(), 4, packed_, 2, layout_, y, addend, threads);
    }
  } else {
    // Pairs of channels, x split into a byte-sized low part and a high part so
    // int32 partial sums stay exact (see the microkernels).
    const PackedInput in = packed_input_layout(s, 2, true);
    auto xp = packed_buffer<int16_t>(in, 4);
    pack_input_qs16_split(s, in, x, xp.get(), threads);
    run_general<Y>(s, *kernel_, in, xp.get(), 8, packed_, 2, layout_, y, addend, threads);
  }
}

template class DirectConv2d<float, float>;
template class DirectConv2d<int8_t, int32_t>;
template class DirectConv2d<int16_t, int64_t>;

void conv2d_direct_f32(const Conv2dShape& s, const float* x, const float* w, const float* bias, float* y,
                       int threads, Isa isa) {
  s.validate();
  DirectConv2dF32(s, w, bias, isa).run(x, s.batch, s.in_h, s.in_w, y, threads);
}

void conv2d_direct_qs8(const Conv2dShape& s, const int8_t* x, const int8_t* w, int32_t* y, int threads,
                       Isa isa) {
  s.validate();
  DirectConv2dQs8(s, w, nullptr, isa).run(x, s.batch, s.in_h, s.in_w, y, threads);
}

void conv2d_direct_qs16(const Conv2dShape& s, const int16_t* x, const int16_t* w, int64_t* y, int threads,
                        Isa isa) {
  s.validate();
  DirectConv2dQs16(s, w, nullptr, isa).run(x, s.batch, s.in_h, s.in_w, y, threads);
}

std::string conv2d_direct_kernel_name(const std::string& dtype, const Conv2dShape& s, Isa isa) {
  const DirectConvKernels* k = kernels_for(isa);
  const bool dw = s.depthwise();
  if (dtype == "f32") return k ? (dw ? k->f32_dw.name : k->f32.name) : scalar_kernel_name<float>();
  if (dtype == "qs8") return k ? (dw ? k->qs8_dw.name : k->qs8.name) : scalar_kernel_name<int8_t>();
  if (dtype == "qs16") return k ? (dw ? k->qs16_dw.name : k->qs16.name) : scalar_kernel_name<int16_t>();
  throw std::invalid_argument("conv2d_direct_kernel_name: dtype must be 'f32', 'qs8' or 'qs16', got '" +
                              dtype + "'");
}

}  // namespace edgecc
