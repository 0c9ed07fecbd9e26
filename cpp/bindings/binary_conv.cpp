// Python bindings of the binary engine: activation packing, the convolution with its
// epilogues, and the peak microbenchmarks. edgecc/kernels/binary.py is the public API;
// these functions take the already-validated low-level description.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "edgecc/binary_conv.h"
#include "edgecc/binary_conv_tables.h"
#include "edgecc/binary_peak.h"
#include "edgecc/bitpack.h"
#include "registry.h"

namespace py = pybind11;
using edgecc::binary::Activation;
using edgecc::binary::ConvProblem;
using edgecc::binary::Epilogue;
using edgecc::binary::PackProblem;

namespace {

template <class T>
using CArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

void check_size(const py::array& a, py::ssize_t expected, const char* what) {
  if (a.size() != expected)
    throw std::invalid_argument(std::string(what) + " has " + std::to_string(a.size()) +
                                " elements, expected " + std::to_string(expected));
}

// Packs x ([n][c][h][w] if nchw else [n][h][w][c]) into uint64 [n][h][w][planes][words64].
template <class T, class Thr>
py::array pack(const CArray<T>& x, const CArray<Thr>& thr, bool nchw, int threads,
               const std::string& isa) {
  if (x.ndim() != 4) throw std::invalid_argument("pack_activations: x must be 4-D");
  if (thr.ndim() != 2) throw std::invalid_argument("pack_activations: thresholds must be [planes, c]");
  PackProblem p;
  p.n = static_cast<int>(x.shape(0));
  p.c = static_cast<int>(nchw ? x.shape(1) : x.shape(3));
  p.h = static_cast<int>(nchw ? x.shape(2) : x.shape(1));
  p.w = static_cast<int>(nchw ? x.shape(3) : x.shape(2));
  p.nchw = nchw;
  p.planes = static_cast<int>(thr.shape(0));
  if (thr.shape(1) != p.c) throw std::invalid_argument("pack_activations: thresholds are not [planes, c]");
  if (p.planes < 1 || p.planes > 16) throw std::invalid_argument("pack_activations: planes must be in 1..16");
  if (threads < 1) throw std::invalid_argument("pack_activations: threads must be >= 1");
  const int words64 = (p.c + 63) / 64;
  p.words = 2 * words64;
  p.threads = threads;
  py::array_t<uint64_t> out({static_cast<py::ssize_t>(p.n), static_cast<py::ssize_t>(p.h),
                             static_cast<py::ssize_t>(p.w), static_cast<py::ssize_t>(p.planes),
                             static_cast<py::ssize_t>(words64)});
  p.out = reinterpret_cast<uint32_t*>(out.mutable_data());
  const T* xd = x.data();
  const Thr* td = thr.data();
  {
    py::gil_scoped_release unlock;
    if constexpr (std::is_same_v<T, float>) edgecc::binary::pack_activations_f32(p, xd, td, isa.c_str());
    else if constexpr (std::is_same_v<T, double>) edgecc::binary::pack_activations_f64(p, xd, td);
    else if constexpr (std::is_same_v<T, int32_t>) edgecc::binary::pack_activations_i32(p, xd, td);
    else edgecc::binary::pack_activations_i64(p, xd, td);
  }
  return std::move(out);
}

Activation parse_activation(const std::string& a) {
  if (a == "none" || a.empty()) return Activation::kNone;
  if (a == "relu") return Activation::kRelu;
  if (a == "prelu") return Activation::kPrelu;
  throw std::invalid_argument("binary_conv: unknown activation '" + a + "' (none, relu, prelu)");
}

// The problem described by the binding's arguments, with the output allocated.
struct ConvCall {
  ConvProblem p;
  py::array result;
};

ConvCall make_call(py::ssize_t x_size, int n, int h, int w, int in_planes, int x_words,
                   int x_group_words, bool x_signed, const CArray<uint32_t>& wts, int groups, int cin_g,
                   int cout_g, int m_planes, int kh, int kw, bool w_signed, int stride_h, int stride_w,
                   int pad_top, int pad_left, int dil_h, int dil_w, int oh, int ow, const std::string& mode,
                   const std::optional<CArray<float>>& phi, const std::optional<CArray<float>>& bias,
                   const std::optional<CArray<float>>& residual, const std::string& activation,
                   const std::optional<CArray<float>>& prelu_slope, bool nchw,
                   const std::optional<CArray<float>>& out_thresholds, int threads, bool allocate) {
  ConvCall call;
  ConvProblem& p = call.p;
  p.n = n; p.h = h; p.w = w; p.in_planes = in_planes; p.x_words = x_words;
  p.x_group_words = x_group_words; p.x_signed = x_signed;
  p.groups = groups; p.cin_g = cin_g; p.cout_g = cout_g; p.m_planes = m_planes;
  p.kh = kh; p.kw = kw; p.w_signed = w_signed;
  p.k_words = (cin_g + 31) / 32;
  p.chunks = (cout_g + edgecc::binary::kLanes - 1) / edgecc::binary::kLanes;
  p.stride_h = stride_h; p.stride_w = stride_w; p.pad_top = pad_top; p.pad_left = pad_left;
  p.dil_h = dil_h; p.dil_w = dil_w; p.oh = oh; p.ow = ow;
  p.nchw = nchw; p.threads = threads;
  p.activation = parse_activation(activation);
  const py::ssize_t cout = static_cast<py::ssize_t>(groups) * cout_g;
  const py::ssize_t npix_out = static_cast<py::ssize_t>(n) * oh * ow;
  if (x_size != static_cast<py::ssize_t>(n) * h * w * in_planes * x_words)
    throw std::invalid_argument("x has " + std::to_string(x_size) + " words, expected n*h*w*planes*words");
  check_size(wts, static_cast<py::ssize_t>(groups) * p.chunks * m_planes * kh * kw * p.k_words *
                      edgecc::binary::kLanes, "weights");
  p.wts = wts.data();
  if (phi) { check_size(*phi, cout * m_planes * in_planes, "phi"); p.phi = phi->data(); }
  if (bias) { check_size(*bias, cout, "bias"); p.bias = bias->data(); }
  if (prelu_slope) { check_size(*prelu_slope, cout, "prelu_slope"); p.prelu_slope = prelu_slope->data(); }
  if (mode == "counts") {
    p.epilogue = Epilogue::kCounts;
    if (allocate) {
      py::array_t<int32_t> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(m_planes),
                                static_cast<py::ssize_t>(in_planes), cout, static_cast<py::ssize_t>(oh),
                                static_cast<py::ssize_t>(ow)});
      p.counts = out.mutable_data();
      call.result = out;
    }
  } else if (mode == "float") {
    p.epilogue = Epilogue::kFloat;
    if (allocate) {
      std::vector<py::ssize_t> shape = nchw ? std::vector<py::ssize_t>{n, cout, oh, ow}
                                            : std::vector<py::ssize_t>{n, oh, ow, cout};
      py::array_t<float> out(shape);
      p.out = out.mutable_data();
      call.result = out;
    }
  } else if (mode == "planes") {
    p.epilogue = Epilogue::kPlanes;
    if (!out_thresholds) throw std::invalid_argument("binary_conv: planes output needs thresholds");
    p.out_planes = static_cast<int>(out_thresholds->size() / std::max<py::ssize_t>(cout, 1));
    check_size(*out_thresholds, cout * p.out_planes, "out_thresholds");
    if (p.out_planes < 1 || p.out_planes > 16)
      throw std::invalid_argument("binary_conv: output planes must be in 1..16");
    p.out_thresholds = out_thresholds->data();
    const py::ssize_t words64 = (cout + 63) / 64;
    p.out_words = static_cast<int>(2 * words64);
    if (allocate) {
      py::array_t<uint64_t> out({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(oh),
                                 static_cast<py::ssize_t>(ow), static_cast<py::ssize_t>(p.out_planes), words64});
      std::memset(out.mutable_data(), 0, out.nbytes());
      p.out_bits = reinterpret_cast<uint32_t*>(out.mutable_data());
      call.result = out;
    }
  } else {
    throw std::invalid_argument("binary_conv: mode must be counts, float or planes");
  }
  if (residual) {
    if (p.epilogue == Epilogue::kCounts) throw std::invalid_argument("binary_conv: counts take no residual");
    check_size(*residual, npix_out * cout, "residual");
    p.residual = residual->data();
  }
  return call;
}

using Tables = edgecc::binary::ConvTables;

py::tuple conv(const CArray<uint32_t>& x, int n, int h, int w, int in_planes, int x_words,
               int x_group_words, bool x_signed, const CArray<uint32_t>& wts, int groups, int cin_g,
               int cout_g, int m_planes, int kh, int kw, bool w_signed, int stride_h, int stride_w,
               int pad_top, int pad_left, int dil_h, int dil_w, int oh, int ow,
               const std::string& mode, std::optional<CArray<float>> phi,
               std::optional<CArray<float>> bias, std::optional<CArray<float>> residual,
               const std::string& activation, std::optional<CArray<float>> prelu_slope, bool nchw,
               std::optional<CArray<float>> out_thresholds, int threads, const std::string& isa,
               std::shared_ptr<Tables> tables) {
  ConvCall call = make_call(x.size(), n, h, w, in_planes, x_words, x_group_words, x_signed, wts, groups, cin_g,
                            cout_g, m_planes, kh, kw, w_signed, stride_h, stride_w, pad_top, pad_left, dil_h,
                            dil_w, oh, ow, mode, phi, bias, residual, activation, prelu_slope, nchw,
                            out_thresholds, threads, true);
  call.p.x = x.data();
  call.p.tables = tables.get();
  const char* used;
  {
    py::gil_scoped_release unlock;
    used = edgecc::binary::binary_conv(call.p, isa.c_str());
  }
  return py::make_tuple(call.result, std::string(used));
}

// The per-layer tables of the same call (without x), to pass to later calls.
std::shared_ptr<Tables> conv_tables(int n, int h, int w, int in_planes, int x_words, int x_group_words,
                                    bool x_signed, const CArray<uint32_t>& wts, int groups, int cin_g, int cout_g,
                                    int m_planes, int kh, int kw, bool w_signed, int stride_h, int stride_w,
                                    int pad_top, int pad_left, int dil_h, int dil_w, int oh, int ow,
                                    const std::string& mode, std::optional<CArray<float>> phi,
                                    std::optional<CArray<float>> bias, std::optional<CArray<float>> prelu_slope,
                                    std::optional<CArray<float>> out_thresholds) {
  ConvCall call = make_call(static_cast<py::ssize_t>(n) * h * w * in_planes * x_words, n, h, w, in_planes,
                            x_words, x_group_words, x_signed, wts, groups, cin_g, cout_g, m_planes, kh, kw,
                            w_signed, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w, oh, ow, mode, phi,
                            bias, std::nullopt, "none", prelu_slope, true, out_thresholds, 1, false);
  static const uint32_t dummy = 0;
  call.p.x = &dummy;
  // validate() needs output buffers; point them at a dummy (never written).
  static float fdummy;
  static int32_t idummy;
  static uint32_t bdummy;
  call.p.out = &fdummy;
  call.p.counts = &idummy;
  call.p.out_bits = &bdummy;
  edgecc::binary::validate(call.p);
  return std::make_shared<Tables>(edgecc::binary::make_tables(call.p));
}

}  // namespace

EDGECC_BINDING(binary_conv) {
  m.def("binary_pack_f32", &pack<float, float>, py::arg("x"), py::arg("thresholds"),
        py::arg("nchw"), py::arg("threads"), py::arg("isa") = "",
        "Pack float32 activations into one-hot interval planes (uint64 [n,h,w,planes,words]).");
  m.def("binary_pack_f64", &pack<double, double>, py::arg("x"), py::arg("thresholds"),
        py::arg("nchw"), py::arg("threads"), py::arg("isa") = "");
  m.def("binary_pack_i32", &pack<int32_t, int64_t>, py::arg("x"), py::arg("thresholds"),
        py::arg("nchw"), py::arg("threads"), py::arg("isa") = "");
  m.def("binary_pack_i64", &pack<int64_t, int64_t>, py::arg("x"), py::arg("thresholds"),
        py::arg("nchw"), py::arg("threads"), py::arg("isa") = "");
  py::class_<Tables, std::shared_ptr<Tables>>(m, "BinaryConvTables",
                                              "Per-layer tables of a binary convolution (opaque).");
  m.def("binary_conv2d_tables", &conv_tables, py::arg("n"), py::arg("h"), py::arg("w"), py::arg("in_planes"),
        py::arg("x_words"), py::arg("x_group_words"), py::arg("x_signed"), py::arg("wts"), py::arg("groups"),
        py::arg("cin_g"), py::arg("cout_g"), py::arg("m_planes"), py::arg("kh"), py::arg("kw"),
        py::arg("w_signed"), py::arg("stride_h"), py::arg("stride_w"), py::arg("pad_top"), py::arg("pad_left"),
        py::arg("dil_h"), py::arg("dil_w"), py::arg("oh"), py::arg("ow"), py::arg("mode"),
        py::arg("phi") = py::none(), py::arg("bias") = py::none(), py::arg("prelu_slope") = py::none(),
        py::arg("out_thresholds") = py::none(),
        "Build the per-layer tables once (same arguments as binary_conv2d, without x).");
  m.def("binary_conv2d", &conv, py::arg("x"), py::arg("n"), py::arg("h"), py::arg("w"),
        py::arg("in_planes"), py::arg("x_words"), py::arg("x_group_words"), py::arg("x_signed"),
        py::arg("wts"), py::arg("groups"), py::arg("cin_g"), py::arg("cout_g"), py::arg("m_planes"),
        py::arg("kh"), py::arg("kw"), py::arg("w_signed"), py::arg("stride_h"), py::arg("stride_w"),
        py::arg("pad_top"), py::arg("pad_left"), py::arg("dil_h"), py::arg("dil_w"), py::arg("oh"),
        py::arg("ow"), py::arg("mode"), py::arg("phi") = py::none(), py::arg("bias") = py::none(),
        py::arg("residual") = py::none(), py::arg("activation") = "none",
        py::arg("prelu_slope") = py::none(), py::arg("nchw") = true,
        py::arg("out_thresholds") = py::none(), py::arg("threads") = 1, py::arg("isa") = "",
        py::arg("tables") = py::none(),
        "Binary convolution on packed planes; returns (output, isa used).");
  m.def("binary_peak", &edgecc::binary::binary_peak, py::arg("form"), py::arg("seconds"),
        py::arg("threads") = 1, py::arg("cpu_time") = false, py::call_guard<py::gil_scoped_release>(),
        "Rate of one peak microbenchmark form (ops/s summed over threads).");
  m.def("binary_peak_forms", &edgecc::binary::binary_peak_forms);
}
