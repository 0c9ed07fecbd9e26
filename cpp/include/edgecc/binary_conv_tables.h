// Tables of one binary convolution that do not depend on the tile: per-lane copies of
// phi, bias, slopes and thresholds padded to whole 16-lane chunks, how the integer
// result is formed from the kernel counts, and the +-1 terms that depend on the weights
// (see binary_conv.h). They depend on the layer and the input size only, so a prepared
// layer builds them once and passes them with every call.
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "edgecc/binary_conv.h"

namespace edgecc::binary {

struct ConvTables {
  std::vector<long> key;           // the problem fields the tables were built for
  // Result D = mul * count + sb[pattern][row] + base[column]:
  //  - {0,1} x {0,1}: AND counts, mul 1;
  //  - one operand +-1: AND counts, mul 2, plus the other operand's bits (sb or base);
  //  - +-1 x +-1: XOR counts over all taps (padded taps read zero words), mul -2,
  //    sb = 2 * weight bits on the padded taps, base = number of valid products.
  bool xor_counts = false;
  int mul = 1;
  int groups = 1;
  int rows_g = 0;                  // chunks * m_planes * 16 rows per group
  std::vector<float> phi;          // [g][chunk][m][p][16]
  std::vector<float> bias;         // [g][chunk*16]
  std::vector<float> slope;        // [g][chunk*16]
  std::vector<float> thr;          // [q][g][chunk*16], NaN in padded lanes
  std::vector<int> hpat, wpat;     // pattern id of each output row / column
  std::vector<std::pair<int, int>> hrange, wrange;  // valid tap ranges per pattern
  std::vector<int32_t> sb;         // [hp][wp][g][rows_g], empty when unused

  // The weight-bit terms of output pixel (oy, ox) in group g, [rows_g]; null if unused.
  const int32_t* sb_row(int oy, int ox, int g) const {
    if (sb.empty()) return nullptr;
    return &sb[((static_cast<size_t>(hpat[oy]) * wrange.size() + wpat[ox]) * groups + g) * rows_g];
  }
  // Valid products of output pixel (oy, ox): valid taps x input channels per group.
  int32_t valid_products(int oy, int ox, int cin_g) const {
    const auto h = hrange[hpat[oy]], w = wrange[wpat[ox]];
    return (h.second - h.first) * (w.second - w.first) * cin_g;
  }
};

// Builds the tables of `p` (weights, epilogue parameters and geometry).
ConvTables make_tables(const ConvProblem& p);
// The fields of `p` that tables depend on (besides the weight and epilogue values).
std::vector<long> table_key(const ConvProblem& p);

}  // namespace edgecc::binary
