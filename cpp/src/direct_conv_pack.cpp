// Input and weight packing for the direct convolution kernels (portable code).
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "edgecc/direct_conv.h"

namespace edgecc {
namespace direct_conv_detail {

int resolve_threads(int threads) { return threads > 0 ? threads : omp_get_max_threads(); }

PackedInput packed_input_layout(const Conv2dShape& s, int64_t kpack, bool per_group) {
  PackedInput p;
  p.images = s.batch * (per_group ? s.groups : 1);
  p.channels = per_group ? s.in_per_group() : s.in_channels;
  p.kpack = kpack;
  p.channel_packs = (p.channels + kpack - 1) / kpack;
  // Only the padded rows and columns some output pixel reads.
  p.rows = (s.out_h() - 1) * s.stride_h + (s.kernel_h - 1) * s.dilation_h + 1;
  p.phases = s.stride_w;
  p.cols = s.out_w() + (s.kernel_w - 1) * s.dilation_w / s.stride_w;
  return p;
}

std::vector<int64_t> PackedInput::tap_offsets(const Conv2dShape& s) const {
  std::vector<int64_t> offsets;
  for (int64_t i = 0; i < s.kernel_h; ++i) {
    for (int64_t j = 0; j < s.kernel_w; ++j) {
      const int64_t col = j * s.dilation_w;  // padded column of pixel 0
      offsets.push_back(i * s.dilation_h * row_stride() + (col % s.stride_w) * cols + col / s.stride_w);
    }
  }
  return offsets;
}

static int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }
static int64_t clamp(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

// Columns of each phase whose padded position col * stride_w + phase lies
// inside the input: [begin, end).
struct InsideColumns {
  std::vector<int64_t> begin, end;
  InsideColumns(const Conv2dShape& s, const PackedInput& p) {
    for (int64_t phase = 0; phase < p.phases; ++phase) {
      begin.push_back(clamp(ceil_div(s.pad_left - phase, s.stride_w), 0, p.cols));
      end.push_back(clamp(ceil_div(s.in_w + s.pad_left - phase, s.stride_w), begin.back(), p.cols));
    }
  }
};

// Fills the packs of one (image, channel pack) `item` at `out` (the item's first
// value): put(pack_pointer, k, v) stores channel k of a pack, v = 0 outside the
// input. KPACK channels per pack and VPP values per pack are compile-time so the
// interleaving loops vectorize; the padding loops are short, so they stay loops
// rather than become memset calls.
template <int KPACK, int VPP, typename Tin, typename Tout, typename Put>
__attribute__((optimize("no-tree-loop-distribute-patterns"))) static void pack_item(
    const Conv2dShape& s, const PackedInput& p, const InsideColumns& inside, const Tin* x, int64_t item,
    Tout* out, Put put) {
  const int64_t cp = item % p.channel_packs;
  const int64_t image = item / p.channel_packs;
  const int64_t images_per_batch = p.images / s.batch;
  const int64_t n = image / images_per_batch;
  const int64_t first_channel = (image % images_per_batch) * p.channels + cp * KPACK;
  // One source plane per channel of the pack; channels past the end read zeros.
  const Tin* plane[KPACK] = {};
  int valid = 0;
  for (int k = 0; k < KPACK && cp * KPACK + k < p.channels; ++k, ++valid)
    plane[k] = x + (n * s.in_channels + first_channel + k) * s.in_h * s.in_w;
  for (int64_t row = 0; row < p.rows; ++row) {
    Tout* dst_row = out + row * p.row_stride() * VPP;
    const int64_t ih = row - s.pad_top;
    const bool row_inside = ih >= 0 && ih < s.in_h;
    for (int64_t phase = 0; phase < p.phases; ++phase) {
      Tout* dst = dst_row + phase * p.cols * VPP;
      const int64_t b = row_inside ? inside.begin[phase] : 0, e = row_inside ? inside.end[phase] : 0;
      for (int64_t col = 0; col < b; ++col)
        for (int k = 0; k < KPACK; ++k) put(dst + col * VPP, k, Tin(0));
      for (int64_t col = e; col < p.cols; ++col)
        for (int k = 0; k < KPACK; ++k) put(dst + col * VPP, k, Tin(0));
      if (b == e) continue;
      const int64_t first = ih * s.in_w + b * s.stride_w + phase - s.pad_left;
      if (valid == KPACK && s.stride_w == 1) {  // the common case, vectorizable
        for (int64_t col = b; col < e; ++col)
          for (int k = 0; k < KPACK; ++k) put(dst + col * VPP, k, plane[k][first + col - b]);
      } else {
        for (int64_t col = b; col < e; ++col)
          for (int k = 0; k < KPACK; ++k)
            put(dst + col * VPP, k, k < valid ? plane[k][first + (col - b) * s.stride_w] : Tin(0));
      }
    }
  }
}

// All images, parallel over (image, channel pack).
template <int KPACK, int VPP, typename Tin, typename Tout, typename Put>
static void pack_input(const Conv2dShape& s, const PackedInput& p, const Tin* x, Tout* out, int threads, Put put) {
  const InsideColumns inside(s, p);
  const int64_t work = p.images * p.channel_packs;
#pragma omp parallel for schedule(dynamic) num_threads(resolve_threads(threads))
  for (int64_t item = 0; item < work; ++item)
    pack_item<KPACK, VPP>(s, p, inside, x, item, out + item * p.pack_stride() * VPP, put);
}

static void check_kpack(const PackedInput& p, int expected) {
  if (p.kpack != expected) throw std::invalid_argument("direct conv packer: unsupported channel pack size");
}

void pack_input_f32(const Conv2dShape& s, const PackedInput& p, const float* x, float* out, int threads) {
  check_kpack(p, 1);
  pack_input<1, 1>(s, p, x, out, threads, [](float* pk, int k, float v) { pk[k] = v; });
}
void pack_input_qs8(const Conv2dShape& s, const PackedInput& p, const int8_t* x, int8_t* out, int threads) {
  check_kpack(p, 1);
  pack_input<1, 1>(s, p, x, out, threads, [](int8_t* pk, int k, int8_t v) { pk[k] = v; });
}
void pack_input_qs16(const Conv2dShape& s, const PackedInput& p, const int16_t* x, int16_t* out,
                     int threads) {
  check_kpack(p, 1);
  pack_input<1, 1>(s, p, x, out, threads, [](int16_t* pk, int k, int16_t v) { pk[k] = v; });
}
void pack_input_qs8_u8(const Conv2dShape& s, const PackedInput& p, const int8_t* x, uint8_t* out,
                       int threads) {
  check_kpack(p, 4);
  pack_input<4, 4>(s, p, x, out, threads,
                   [](uint8_t* pk, int k, int8_t v) { pk[k] = static_cast<uint8_t>(v + 128); });
}
void pack_input_qs8_i16(const Conv2dShape& s, const PackedInput& p, const int8_t* x, int16_t* out,
                        int threads) {
  check_kpack(p, 2);
  pack_input<2, 2>(s, p, x, out, threads, [](int16_t* pk, int k, int8_t v) { pk[k] = v; });
}
void pack_input_qs16_split(const Conv2dShape& s, const PackedInput& p, const int16_t* x, int16_t* out,
                           int threads) {
  check_kpack(p, 2);
  pack_input<2, 4>(s, p, x, out, threads, [](int16_t* pk, int k, int16_t v) {
    pk[k] = static_cast<int16_t>(v & 0xff);     // lo in [0, 255]
    pk[2 + k] = static_cast<int16_t>(v >> 8);   // hi in [-128, 127] (arithmetic shift)
  });
}
void pack_image_f32(const Conv2dShape& s, const PackedInput& p, const float* x, int64_t image, float* out) {
  check_kpack(p, 1);
  const InsideColumns inside(s, p);
  for (int64_t cp = 0; cp < p.channel_packs; ++cp)
    pack_item<1, 1>(s, p, inside, x, image * p.channel_packs + cp, out + cp * p.pack_stride(),
                    [](float* pk, int k, float v) { pk[k] = v; });
}
void pack_image_qs8_i32(const Conv2dShape& s, const PackedInput& p, const int8_t* x, int64_t image, int32_t* out) {
  check_kpack(p, 1);
  const InsideColumns inside(s, p);
  for (int64_t cp = 0; cp < p.channel_packs; ++cp)
    pack_item<1, 1>(s, p, inside, x, image * p.channel_packs + cp, out + cp * p.pack_stride(),
                    [](int32_t* pk, int k, int8_t v) { pk[k] = v; });
}
void pack_image_qs16_i32(const Conv2dShape& s, const PackedInput& p, const int16_t* x, int64_t image,
                         int32_t* out) {
  check_kpack(p, 1);
  const InsideColumns inside(s, p);
  for (int64_t cp = 0; cp < p.channel_packs; ++cp)
    pack_item<1, 1>(s, p, inside, x, image * p.channel_packs + cp, out + cp * p.pack_stride(),
                    [](int32_t* pk, int k, int16_t v) { pk[k] = v; });
}

// One (output block, channel pack): dst[t][l][k] = w[o = l][c = k][t] of the
// block; LANES and KPACK are compile-time so the copy loops unroll.
template <int LANES, int KPACK, typename Tout, typename Tin>
static void pack_weight_block(Tout* dst, const Tin* src, int64_t cg, int64_t taps, int64_t valid_lanes,
                              int64_t valid_k) {
  for (int64_t l = 0; l < valid_lanes; ++l)
    for (int64_t k = 0; k < valid_k; ++k) {
      const Tin* row = src + (l * cg + k) * taps;
      for (int64_t t = 0; t < taps; ++t) dst[(t * LANES + l) * KPACK + k] = static_cast<Tout>(row[t]);
    }
}

template <int LANES, int KPACK, typename Tout, typename Tin>
static void pack_weights_into(const Conv2dShape& s, const Tin* w, const PackedWeights& p, Tout* dst) {
  const int64_t og = s.out_per_group(), cg = s.in_per_group(), taps = s.taps();
  // Destination order, one (block, channel pack) at a time.
  for (int64_t g = 0; g < s.groups; ++g)
    for (int64_t b = 0; b < p.out_blocks; ++b) {
      const int64_t valid_lanes = std::min<int64_t>(LANES, og - b * LANES);
      const Tin* src_block = w + (g * og + b * LANES) * cg * taps;
      for (int64_t cp = 0; cp < p.channel_packs; ++cp, dst += taps * LANES * KPACK) {
        const int64_t valid_k = std::min<int64_t>(KPACK, cg - cp * KPACK);
        if (valid_lanes == LANES && valid_k == KPACK)  // constant trip counts in the common case
          pack_weight_block<LANES, KPACK>(dst, src_block + cp * KPACK * taps, cg, taps, LANES, KPACK);
        else
          pack_weight_block<LANES, KPACK>(dst, src_block + cp * KPACK * taps, cg, taps, valid_lanes, valid_k);
      }
    }
}

template <typename Tout, typename Tin>
static std::vector<Tout> pack_weights(const Conv2dShape& s, const Tin* w, int64_t lanes, int64_t kpack,
                                      PackedWeights* layout) {
  PackedWeights& p = *layout;
  p.out_blocks = (s.out_per_group() + lanes - 1) / lanes;
  p.channel_packs = (s.in_per_group() + kpack - 1) / kpack;
  p.taps = s.taps();
  p.lanes = lanes;
  p.kpack = kpack;
  std::vector<Tout> out(static_cast<size_t>(s.groups * p.out_blocks * p.block_stride()), Tout(0));
  if (lanes == 16 && kpack == 1) pack_weights_into<16, 1>(s, w, p, out.data());
  else if (lanes == 16 && kpack == 2) pack_weights_into<16, 2>(s, w, p, out.data());
  else if (lanes == 16 && kpack == 4) pack_weights_into<16, 4>(s, w, p, out.data());
  else if (lanes == 8 && kpack == 1) pack_weights_into<8, 1>(s, w, p, out.data());
  else if (lanes == 8 && kpack == 2) pack_weights_into<8, 2>(s, w, p, out.data());
  else throw std::invalid_argument("direct conv weight packer: unsupported lanes / channel pack size");
  return out;
}

std::vector<float> pack_weights_f32(const Conv2dShape& s, const float* w, int64_t lanes, int64_t kpack,
                                    PackedWeights* layout) {
  return pack_weights<float>(s, w, lanes, kpack, layout);
}
std::vector<int8_t> pack_weights_qs8(const Conv2dShape& s, const int8_t* w, int64_t lanes, int64_t kpack,
                                     PackedWeights* layout) {
  return pack_weights<int8_t>(s, w, lanes, kpack, layout);
}
std::vector<int16_t> pack_weights_qs8_i16(const Conv2dShape& s, const int8_t* w, int64_t lanes,
                                          int64_t kpack, PackedWeights* layout) {
  return pack_weights<int16_t>(s, w, lanes, kpack, layout);
}
std::vector<int16_t> pack_weights_qs16(const Conv2dShape& s, const int16_t* w, int64_t lanes, int64_t kpack,
                                       PackedWeights* layout) {
  return pack_weights<int16_t>(s, w, lanes, kpack, layout);
}

// Low 16 bits hold w, high 16 bits zero.
template <typename T>
static std::vector<int32_t> lo16_weights(const Conv2dShape& s, const T* w) {
  std::vector<int32_t> out(static_cast<size_t>(s.out_channels * s.reduction()));
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint16_t>(static_cast<int16_t>(w[i]));
  return out;
}

std::vector<int32_t> pack_dw_weights_qs8(const Conv2dShape& s, const int8_t* w) { return lo16_weights(s, w); }
std::vector<int32_t> pack_dw_weights_qs16(const Conv2dShape& s, const int16_t* w) { return lo16_weights(s, w); }

std::vector<int32_t> qs8_weight_offset_correction(const Conv2dShape& s, const int8_t* w) {
  const int64_t k = s.reduction();
  std::vector<int32_t> corr(static_cast<size_t>(s.out_channels));
  for (int64_t o = 0; o < s.out_channels; ++o) {
    int64_t sum = 0;
    for (int64_t i = 0; i < k; ++i) sum += w[o * k + i];
    corr[o] = static_cast<int32_t>(128 * sum);  // |128 * sum| <= K * 2^14 < 2^31 (K checked)
  }
  return corr;
}

}  // namespace direct_conv_detail
}  // namespace edgecc
