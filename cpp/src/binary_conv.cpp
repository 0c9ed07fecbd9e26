// Argument checks and the ISA table of the binary convolution.
#include "edgecc/binary_conv.h"

#include <stdexcept>
#include <string>

#include "edgecc/binary_conv_tables.h"
#include "edgecc/cpu.h"

namespace edgecc::binary {

static void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("binary_conv: " + what);
}

void validate(const ConvProblem& p) {
  require(p.x && p.wts, "null input or weights");
  require(p.n >= 0 && p.h > 0 && p.w > 0, "input must have a positive height and width");
  require(p.in_planes >= 1 && p.m_planes >= 1, "need at least one plane of each operand");
  require(p.groups >= 1 && p.cin_g >= 1 && p.cout_g >= 1, "channels and groups must be positive");
  require(p.k_words == (p.cin_g + 31) / 32, "k_words must be ceil(cin_g / 32)");
  require(p.chunks == (p.cout_g + kLanes - 1) / kLanes, "chunks must be ceil(cout_g / 16)");
  require(p.x_group_words * (p.groups - 1) + p.k_words <= p.x_words,
          "input words per pixel do not hold every group");
  require(p.kh >= 1 && p.kw >= 1 && p.stride_h >= 1 && p.stride_w >= 1 && p.dil_h >= 1 &&
              p.dil_w >= 1,
          "kernel, stride and dilation must be positive");
  require(p.pad_top >= 0 && p.pad_left >= 0, "padding must be non-negative");
  require(p.oh >= 1 && p.ow >= 1, "empty output");
  // Every count fits int32 with room for the +-1 corrections.
  require(static_cast<long long>(p.cin_g) * p.kh * p.kw < (1LL << 28), "dot products too long");
  require(p.threads >= 1, "threads must be >= 1");
  switch (p.epilogue) {
    case Epilogue::kCounts:
      require(p.counts != nullptr, "no counts buffer");
      break;
    case Epilogue::kFloat:
      require(p.phi && p.out, "float epilogue needs phi and an output buffer");
      break;
    case Epilogue::kPlanes:
      require(p.phi && p.out_bits && p.out_thresholds, "plane epilogue needs phi, thresholds, output");
      require(p.out_planes >= 1 && p.out_words >= 2 * ((p.cout() + 63) / 64),
              "output planes or words per plane out of range");
      break;
  }
  require(p.activation != Activation::kPrelu || p.prelu_slope, "prelu needs a slope");
}

const char* binary_conv(const ConvProblem& p, const char* isa) {
  validate(p);
  const Isa chosen = select_isa(isa ? isa : "");
  ConvTables local;
  if (!p.tables) local = make_tables(p);
  else require(p.tables->key == table_key(p), "tables were built for another layer or input size");
  const ConvTables& tables = p.tables ? *p.tables : local;
  switch (chosen) {
    case Isa::kAvx512: binary_conv_avx512(p, tables); break;
    case Isa::kAvx2: binary_conv_avx2(p, tables); break;
    default: binary_conv_scalar(p, tables); break;
  }
  return isa_name(chosen);
}

}  // namespace edgecc::binary
