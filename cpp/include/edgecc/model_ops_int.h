// Glue that generated models call for `qconv2d` (int8 / int16 integer convolution):
// the input quantizer, the requantizing epilogue and the DFNT layer (polyphase input
// for strides). The integer convolution itself is edgecc's direct kernel
// (DirectConv2dQs8 / Qs16, weights packed at open), the DFNT plan (weights
// transformed at open) or, for int8 layers, oneDNN's OnednnConvS8S32 (model_onednn.h,
// force-included only into models that name it). Header-only: each model TU compiles
// it with its own target flags.
//
// Numerics are those of ops.py / kernels/reference.py::_qconv2d, bit for bit:
//   q = clip(rint(x * inv_scale), -qmax, qmax) in float32, half to even, NaN -> 0
//   y = float32(double(acc) * double(scale[o]) + double(bias[o])), then max(y, 0) if relu
// The multiply and the add are rounded separately (numpy does): the functions that
// do float arithmetic are compiled with fp-contract=off so no FMA fuses them.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "edgecc/cpu.h"
#include "edgecc/dfnt.h"
#include "edgecc/model_ops.h"

#define EDGECC_NO_FP_CONTRACT __attribute__((optimize("fp-contract=off")))

namespace edgecc::model {

// Elements per parallel chunk of the elementwise stages; below 4 chunks: one thread.
constexpr int64_t kQconvChunk = 16384;

// One chunk of the quantizer. 1.5 * 2^23 added and subtracted rounds a float of
// magnitude < 2^22 to the nearest integer, ties to even (the default rounding mode),
// like np.rint; the value is already clipped to +-qmax <= 32767 here.
template <class Q>
EDGECC_NO_FP_CONTRACT void quantize_chunk(const float* x, Q* q, int64_t n, float inv_scale, float qmax) {
  const float magic = 12582912.0f;
  for (int64_t i = 0; i < n; ++i) {
    float v = x[i] * inv_scale;
    v = v == v ? v : 0.0f;          // NaN -> 0
    v = v < -qmax ? -qmax : v;      // -inf and huge negatives -> -qmax
    v = v > qmax ? qmax : v;
    v = (v + magic) - magic;
    q[i] = static_cast<Q>(static_cast<int32_t>(v));
  }
}

// q = clip(rint(x * inv_scale), -qmax, qmax), NaN -> 0, for n elements.
template <class Q>
void quantize_qconv_input(const float* x, Q* q, int64_t n, float inv_scale, float qmax, int threads) {
  const int64_t chunks = (n + kQconvChunk - 1) / kQconvChunk;
#pragma omp parallel for num_threads(resolve_threads(threads)) schedule(static) if (chunks >= 4)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kQconvChunk;
    quantize_chunk(x + begin, q + begin, std::min(kQconvChunk, n - begin), inv_scale, qmax);
  }
}

// One output plane: y = float(double(acc) * s + b), then max(y, 0) if relu. `y < 0`
// keeps a NaN, like np.maximum.
template <class Acc>
EDGECC_NO_FP_CONTRACT void requantize_plane(const Acc* acc, float* y, int64_t n, double s, double b, bool relu) {
  if (relu) {
    for (int64_t i = 0; i < n; ++i) {
      const double p = static_cast<double>(acc[i]) * s;
      const float v = static_cast<float>(p + b);
      y[i] = v < 0.0f ? 0.0f : v;
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const double p = static_cast<double>(acc[i]) * s;
      y[i] = static_cast<float>(p + b);
    }
  }
}

// acc, y: NCHW [batch][channels][plane]; scale, bias: [channels].
template <class Acc>
void requantize_qconv_output(const Acc* acc, float* y, int64_t batch, int64_t channels, int64_t plane,
                             const float* scale, const float* bias, bool relu, int threads) {
  const int64_t planes = batch * channels;
#pragma omp parallel for num_threads(resolve_threads(threads)) schedule(static) if (planes * plane >= 4 * kQconvChunk)
  for (int64_t i = 0; i < planes; ++i) {
    const int64_t o = i % channels;
    requantize_plane(acc + i * plane, y + i * plane, plane, static_cast<double>(scale[o]),
                     static_cast<double>(bias[o]), relu);
  }
}

// ---- DFNT layer ----------------------------------------------------------------------
// A stride-1 DFNT convolution over the polyphase components of the padded input
// (kernels/dfnt.py does the same in numpy): component (a, b) of channel c is input
// channel (a * stride_w + b) * C + c, x_ab[i, j] = x_padded[stride_h * i + a, stride_w * j + b].
// The weights given at prepare are already dilated and split the same way (Python).
struct QConvDfnt {
  std::shared_ptr<dfnt::ConvPlan> plan;
  int elem_bytes = 1;                       // 1: int8 input, 2: int16
  int64_t batch = 1, channels = 1, in_h = 1, in_w = 1;
  int64_t pads[4] = {0, 0, 0, 0};           // top, left, bottom, right
  int64_t stride_h = 1, stride_w = 1;
  int64_t phase_h = 0, phase_w = 0;         // size of one polyphase component (stride > 1)
  std::vector<int16_t> phases;              // polyphase input buffer (int8 data uses its bytes)
};

// w: [out][in * stride_h * stride_w][kh][kw] integers (int8 or int16), widened to int64
// for the transform. bits: 32 (F5), 48 or 64.
template <class T>
void qconv_dfnt_prepare(QConvDfnt& L, const T* w, int64_t out_channels, int64_t in_channels, int64_t kh,
                        int64_t kw, int bits, int n, Isa isa) {
  const int64_t count = out_channels * in_channels * kh * kw;
  std::vector<int64_t> wide(w, w + count);
  L.plan = dfnt::prepare_conv(wide.data(), out_channels, in_channels, kh, kw, dfnt::modulus_from_bits(bits), n,
                              isa, "", 0);
  L.elem_bytes = sizeof(T);
  if (L.stride_h > 1 || L.stride_w > 1) {
    const int64_t elems = L.batch * L.stride_h * L.stride_w * L.channels * L.phase_h * L.phase_w;
    L.phases.assign((elems * sizeof(T) + 1) / 2, 0);
  }
}

template <class Q>
void qconv_dfnt_gather_phases(const QConvDfnt& L, const Q* x, Q* out) {
  const int64_t sh = L.stride_h, sw = L.stride_w, C = L.channels, H = L.in_h, W = L.in_w;
  for (int64_t n = 0; n < L.batch; ++n)
    for (int64_t a = 0; a < sh; ++a)
      for (int64_t b = 0; b < sw; ++b)
        for (int64_t c = 0; c < C; ++c) {
          const Q* src = x + (n * C + c) * H * W;
          Q* dst = out + ((n * sh * sw + a * sw + b) * C + c) * L.phase_h * L.phase_w;
          for (int64_t i = 0; i < L.phase_h; ++i) {
            const int64_t r = sh * i + a - L.pads[0];
            Q* row = dst + i * L.phase_w;
            if (r < 0 || r >= H) {
              std::memset(row, 0, sizeof(Q) * L.phase_w);
              continue;
            }
            for (int64_t j = 0; j < L.phase_w; ++j) {
              const int64_t col = sw * j + b - L.pads[1];
              row[j] = col >= 0 && col < W ? src[r * W + col] : Q(0);
            }
          }
        }
}

// q: the quantized NCHW input; acc: NCHW int32 (F5) or int64 results.
template <class Q>
void qconv_dfnt_run(QConvDfnt& L, const Q* q, void* acc, int threads) {
  if (L.stride_h == 1 && L.stride_w == 1) {
    dfnt::run_conv(*L.plan, q, L.elem_bytes, L.batch, L.in_h, L.in_w, L.pads, acc, threads);
    return;
  }
  Q* phases = reinterpret_cast<Q*>(L.phases.data());
  qconv_dfnt_gather_phases(L, q, phases);
  const int64_t none[4] = {0, 0, 0, 0};
  dfnt::run_conv(*L.plan, phases, L.elem_bytes, L.batch, L.phase_h, L.phase_w, none, acc, threads);
}

}  // namespace edgecc::model
