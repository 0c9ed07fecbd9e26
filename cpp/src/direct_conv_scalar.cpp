// Portable direct convolution (row-vector loops the compiler vectorizes) and the
// naive seven-loop baseline.
#include <omp.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "edgecc/direct_conv.h"

namespace edgecc {

using namespace direct_conv_detail;

namespace {

// xp: input packed one channel per pack, so for every stride a pixel row of one
// tap is a contiguous run. Work items are (batch, output channel); each output
// row is accumulated as a vector over its pixels.
template <typename T, typename Acc, typename Y>
void direct_rows(const Conv2dShape& s, const PackedInput& in, const T* xp, const T* w, const float* bias, Y* y,
                 int threads) {
  const int64_t oh_count = s.out_h(), ow_count = s.out_w(), cg = s.in_per_group(), og = s.out_per_group();
  const int64_t taps = s.taps();
  const std::vector<int64_t> tap_offsets = in.tap_offsets(s);
  const int64_t work = s.batch * s.out_channels;
#pragma omp parallel num_threads(resolve_threads(threads))
  {
    std::vector<Acc> acc(static_cast<size_t>(ow_count));
#pragma omp for schedule(dynamic)
    for (int64_t item = 0; item < work; ++item) {
      const int64_t oc = item % s.out_channels, n = item / s.out_channels, g = oc / og;
      const T* image = xp + (n * s.groups + g) * in.image_stride();
      const T* wo = w + oc * cg * taps;
      for (int64_t oh = 0; oh < oh_count; ++oh) {
        std::fill(acc.begin(), acc.end(), Acc(0));
        Acc* a = acc.data();
        for (int64_t c = 0; c < cg; ++c) {
          const T* row = image + c * in.pack_stride() + oh * s.stride_h * in.row_stride();
          for (int64_t t = 0; t < taps; ++t) {
            const Acc wv = static_cast<Acc>(wo[c * taps + t]);
            const T* xr = row + tap_offsets[t];
            for (int64_t ow = 0; ow < ow_count; ++ow) a[ow] += wv * static_cast<Acc>(xr[ow]);
          }
        }
        Y* dst = y + ((n * s.out_channels + oc) * oh_count + oh) * ow_count;
        const Acc b = bias ? static_cast<Acc>(bias[oc]) : Acc(0);
        for (int64_t ow = 0; ow < ow_count; ++ow) dst[ow] = static_cast<Y>(a[ow] + b);
      }
    }
  }
}

template <typename T, typename Acc, typename Y>
void naive(const Conv2dShape& s, const T* x, const T* w, const float* bias, Y* y, int threads) {
  const int64_t oh_count = s.out_h(), ow_count = s.out_w(), cg = s.in_per_group(), og = s.out_per_group();
  const int64_t work = s.batch * s.out_channels;
#pragma omp parallel for schedule(dynamic) num_threads(resolve_threads(threads))
  for (int64_t item = 0; item < work; ++item) {
    const int64_t oc = item % s.out_channels, n = item / s.out_channels, g = oc / og;
    for (int64_t oh = 0; oh < oh_count; ++oh) {
      for (int64_t ow = 0; ow < ow_count; ++ow) {
        Acc acc = bias ? static_cast<Acc>(bias[oc]) : Acc(0);
        for (int64_t c = 0; c < cg; ++c) {
          const int64_t ic = g * cg + c;
          for (int64_t i = 0; i < s.kernel_h; ++i) {
            const int64_t ih = oh * s.stride_h - s.pad_top + i * s.dilation_h;
            if (ih < 0 || ih >= s.in_h) continue;
            for (int64_t j = 0; j < s.kernel_w; ++j) {
              const int64_t iw = ow * s.stride_w - s.pad_left + j * s.dilation_w;
              if (iw < 0 || iw >= s.in_w) continue;
              acc += static_cast<Acc>(x[((n * s.in_channels + ic) * s.in_h + ih) * s.in_w + iw]) *
                     static_cast<Acc>(w[((oc * cg + c) * s.kernel_h + i) * s.kernel_w + j]);
            }
          }
        }
        y[((n * s.out_channels + oc) * oh_count + oh) * ow_count + ow] = static_cast<Y>(acc);
      }
    }
  }
}

void check_qs8_i32(const Conv2dShape& s) {
  if (s.reduction() > kQs8MaxReductionI32)
    throw std::invalid_argument("conv2d int8 with int32 accumulation: reduction length " +
                                std::to_string(s.reduction()) + " exceeds " +
                                std::to_string(kQs8MaxReductionI32) + "; use int64 accumulation");
}

}  // namespace

void f32_conv2d_direct_nchw_scalar(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                                   float* y, int threads) {
  s.validate();
  const PackedInput in = packed_input_layout(s, 1, true);
  std::vector<float> xp(static_cast<size_t>(in.images * in.image_stride()));
  pack_input_f32(s, in, x, xp.data(), threads);
  direct_rows<float, float>(s, in, xp.data(), w, bias, y, threads);
}

void qs8_conv2d_direct_i32_scalar(const Conv2dShape& s, const int8_t* x, const int8_t* w, int32_t* y,
                                  int threads) {
  s.validate();
  check_qs8_i32(s);
  const PackedInput in = packed_input_layout(s, 1, true);
  std::vector<int8_t> xp(static_cast<size_t>(in.images * in.image_stride()));
  pack_input_qs8(s, in, x, xp.data(), threads);
  direct_rows<int8_t, int32_t>(s, in, xp.data(), w, nullptr, y, threads);
}

void qs16_conv2d_direct_i64_scalar(const Conv2dShape& s, const int16_t* x, const int16_t* w, int64_t* y,
                                   int threads) {
  s.validate();
  const PackedInput in = packed_input_layout(s, 1, true);
  std::vector<int16_t> xp(static_cast<size_t>(in.images * in.image_stride()));
  pack_input_qs16(s, in, x, xp.data(), threads);
  direct_rows<int16_t, int64_t>(s, in, xp.data(), w, nullptr, y, threads);
}

void f32_conv2d_naive_scalar(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                             float* y, int threads) {
  s.validate();
  naive<float, float>(s, x, w, bias, y, threads);
}

void qs8_conv2d_naive_i32_scalar(const Conv2dShape& s, const int8_t* x, const int8_t* w, int32_t* y,
                                 int threads) {
  s.validate();
  check_qs8_i32(s);
  naive<int8_t, int32_t>(s, x, w, nullptr, y, threads);
}

void qs8_conv2d_naive_i64_scalar(const Conv2dShape& s, const int8_t* x, const int8_t* w, int64_t* y,
                                 int threads) {
  s.validate();
  naive<int8_t, int64_t>(s, x, w, nullptr, y, threads);
}

void qs16_conv2d_naive_i64_scalar(const Conv2dShape& s, const int16_t* x, const int16_t* w, int64_t* y,
                                  int threads) {
  s.validate();
  naive<int16_t, int64_t>(s, x, w, nullptr, y, threads);
}

}  // namespace edgecc
