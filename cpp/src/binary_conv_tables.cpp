// Per-layer tables of the binary convolution (see binary_conv_tables.h).
#include "edgecc/binary_conv_tables.h"

#include <limits>
#include <map>

namespace edgecc::binary {
namespace {

int popcount32(uint32_t v) {
  v = v - ((v >> 1) & 0x55555555u);
  v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
  return static_cast<int>((((v + (v >> 4)) & 0x0f0f0f0fu) * 0x01010101u) >> 24);
}

// The valid kernel-tap range [first, last) of output position o along one axis.
std::pair<int, int> valid_taps(int o, int stride, int pad, int dil, int k, int in) {
  int first = 0, last = k;
  const int base = o * stride - pad;
  while (first < k && base + first * dil < 0) ++first;
  while (last > first && base + (last - 1) * dil >= in) --last;
  return {first, last};
}

// Output positions along one axis grouped by their valid-tap range (few distinct ones:
// the borders and the interior).
void tap_patterns(int out, int stride, int pad, int dil, int k, int in, std::vector<int>& pat,
                  std::vector<std::pair<int, int>>& ranges) {
  std::map<std::pair<int, int>, int> ids;
  pat.resize(out);
  for (int o = 0; o < out; ++o) {
    const auto r = valid_taps(o, stride, pad, dil, k, in);
    auto it = ids.find(r);
    if (it == ids.end()) {
      it = ids.emplace(r, static_cast<int>(ranges.size())).first;
      ranges.push_back(r);
    }
    pat[o] = it->second;
  }
}

}  // namespace

std::vector<long> table_key(const ConvProblem& p) {
  return {p.h, p.w, p.oh, p.ow, p.kh, p.kw, p.stride_h, p.stride_w, p.pad_top, p.pad_left, p.dil_h, p.dil_w,
          p.groups, p.cin_g, p.cout_g, p.m_planes, p.in_planes, p.x_signed, p.w_signed,
          static_cast<long>(p.epilogue), p.out_planes, reinterpret_cast<long>(p.wts)};
}

ConvTables make_tables(const ConvProblem& p) {
  ConvTables t;
  t.key = table_key(p);
  const int M = p.m_planes, P = p.in_planes, G = p.groups, CH = p.chunks, taps = p.taps();
  const int lanes_g = CH * kLanes;
  t.rows_g = CH * M * kLanes;
  t.groups = G;
  t.xor_counts = p.x_signed && p.w_signed;
  t.mul = t.xor_counts ? -2 : (p.x_signed || p.w_signed ? 2 : 1);
  auto oc_of = [&](int g, int lane_g) { return lane_g < p.cout_g ? g * p.cout_g + lane_g : -1; };
  if (p.epilogue != Epilogue::kCounts) {
    t.phi.assign(static_cast<size_t>(G) * CH * M * P * kLanes, 0.0f);
    t.bias.assign(static_cast<size_t>(G) * lanes_g, 0.0f);
    t.slope.assign(static_cast<size_t>(G) * lanes_g, 0.0f);
    for (int g = 0; g < G; ++g)
      for (int lg = 0; lg < lanes_g; ++lg) {
        const int oc = oc_of(g, lg);
        if (oc < 0) continue;
        const int ch = lg / kLanes, l = lg % kLanes;
        for (int i = 0; i < M; ++i)
          for (int j = 0; j < P; ++j)
            t.phi[((((size_t)g * CH + ch) * M + i) * P + j) * kLanes + l] = p.phi[((size_t)oc * M + i) * P + j];
        if (p.bias) t.bias[(size_t)g * lanes_g + lg] = p.bias[oc];
        if (p.prelu_slope) t.slope[(size_t)g * lanes_g + lg] = p.prelu_slope[oc];
      }
    if (p.epilogue == Epilogue::kPlanes) {
      t.thr.assign(static_cast<size_t>(p.out_planes) * G * lanes_g, std::numeric_limits<float>::quiet_NaN());
      for (int q = 0; q < p.out_planes; ++q)
        for (int g = 0; g < G; ++g)
          for (int lg = 0; lg < lanes_g; ++lg) {
            const int oc = oc_of(g, lg);
            if (oc >= 0) t.thr[((size_t)q * G + g) * lanes_g + lg] = p.out_thresholds[(size_t)q * p.cout() + oc];
          }
    }
  }
  tap_patterns(p.oh, p.stride_h, p.pad_top, p.dil_h, p.kh, p.h, t.hpat, t.hrange);
  tap_patterns(p.ow, p.stride_w, p.pad_left, p.dil_w, p.kw, p.w, t.wpat, t.wrange);
  if (!p.x_signed) return t;
  // Weight bits per (group, row, tap), then summed per valid-tap pattern: for AND counts
  // the term cw*da*(bits on valid taps) = -(bits); for XOR counts 2*(bits on padded taps).
  std::vector<int32_t> bits(static_cast<size_t>(G) * t.rows_g * taps, 0);
  for (int g = 0; g < G; ++g)
    for (int blk = 0; blk < CH * M; ++blk)
      for (int tap = 0; tap < taps; ++tap) {
        const uint32_t* wb = p.wts + ((((size_t)g * CH * M + blk) * taps + tap) * p.k_words) * kLanes;
        for (int k = 0; k < p.k_words; ++k)
          for (int l = 0; l < kLanes; ++l)
            bits[((size_t)g * t.rows_g + blk * kLanes + l) * taps + tap] += popcount32(wb[k * kLanes + l]);
      }
  const size_t nh = t.hrange.size(), nw = t.wrange.size();
  t.sb.assign(nh * nw * G * t.rows_g, 0);
  for (size_t hp = 0; hp < nh; ++hp)
    for (size_t wp = 0; wp < nw; ++wp)
      for (int g = 0; g < G; ++g)
        for (int r = 0; r < t.rows_g; ++r) {
          const int32_t* b = &bits[((size_t)g * t.rows_g + r) * taps];
          int32_t valid = 0, all = 0;
          for (int ky = 0; ky < p.kh; ++ky)
            for (int kx = 0; kx < p.kw; ++kx) {
              all += b[ky * p.kw + kx];
              if (ky >= t.hrange[hp].first && ky < t.hrange[hp].second && kx >= t.wrange[wp].first &&
                  kx < t.wrange[wp].second)
                valid += b[ky * p.kw + kx];
            }
          t.sb[((hp * nw + wp) * G + g) * t.rows_g + r] = t.xor_counts ? 2 * (all - valid) : -valid;
        }
  return t;
}

}  // namespace edgecc::binary
