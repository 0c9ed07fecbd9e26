// Python bindings of the DFNT kernels (edgecc/dfnt.h): ring ops and transforms for
// tests, and the prepared-weights convolution.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <array>
#include <stdexcept>
#include <string>

#include "edgecc/dfnt.h"
#include "registry.h"

namespace py = pybind11;

namespace {

using U64 = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>;
using U8 = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;

edgecc::dfnt::RingOp parse_op(const std::string& s) {
  using edgecc::dfnt::RingOp;
  if (s == "add") return RingOp::kAdd;
  if (s == "sub") return RingOp::kSub;
  if (s == "neg") return RingOp::kNeg;
  if (s == "shl") return RingOp::kShl;
  if (s == "mul") return RingOp::kMul;
  if (s == "to_d1") return RingOp::kToD1;
  if (s == "from_d1") return RingOp::kFromD1;
  throw std::invalid_argument("dfnt: unknown ring op '" + s + "' (add, sub, neg, shl, mul, to_d1, from_d1)");
}

void same_size(const py::array& a, const py::array& b, const char* what) {
  if (a.size() != b.size())
    throw std::invalid_argument(std::string("dfnt: ") + what + " lo and hi arrays differ in size (" +
                                std::to_string(a.size()) + " vs " + std::to_string(b.size()) + ")");
}

template <class T>
py::array_t<T> conv_output(const edgecc::dfnt::ConvPlan& p, const py::array& x, const std::array<int64_t, 4>& pads,
                           int threads, int elem_bytes) {
  const int64_t batch = x.shape(0), h = x.shape(2), w = x.shape(3);
  const int64_t oh = h + pads[0] + pads[2] - p.kernel_h + 1, ow = w + pads[1] + pads[3] - p.kernel_w + 1;
  if (oh < 1 || ow < 1)
    throw std::invalid_argument("dfnt: kernel " + std::to_string(p.kernel_h) + "x" + std::to_string(p.kernel_w) +
                                " is larger than the padded input");
  py::array_t<T> y({batch, p.out_channels, oh, ow});
  const void* xp = x.data();
  void* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    edgecc::dfnt::run_conv(p, xp, elem_bytes, batch, h, w, pads.data(), yp, threads);
  }
  return y;
}

}  // namespace

EDGECC_BINDING(dfnt) {
  using namespace edgecc;
  m.def(
      "dfnt_ring_op",
      [](int bits, const std::string& op, U64 x_lo, U8 x_hi, U64 y_lo, U8 y_hi, int shift, const std::string& isa) {
        const dfnt::Modulus mod = dfnt::modulus_from_bits(bits);
        const dfnt::RingOp o = parse_op(op);
        same_size(x_lo, x_hi, "x");
        const bool binary = o == dfnt::RingOp::kAdd || o == dfnt::RingOp::kSub || o == dfnt::RingOp::kMul;
        if (binary) {
          same_size(y_lo, y_hi, "y");
          same_size(x_lo, y_lo, "x and y");
        }
        const Isa is = select_isa(isa);
        const int64_t n = x_lo.size();
        U64 z_lo(n);
        U8 z_hi(n);
        dfnt::ring_op(mod, o, x_lo.data(), x_hi.data(), binary ? y_lo.data() : nullptr, binary ? y_hi.data() : nullptr,
                      n, shift, z_lo.mutable_data(), z_hi.mutable_data(), is);
        return py::make_tuple(z_lo, z_hi);
      },
      py::arg("bits"), py::arg("op"), py::arg("x_lo"), py::arg("x_hi"), py::arg("y_lo"), py::arg("y_hi"),
      py::arg("shift") = 0, py::arg("isa") = "",
      "Element-wise diminished-1 op modulo 2^bits+1 on (b+1)-bit words given as (lo uint64, hi uint8) pairs.");

  m.def(
      "dfnt_fnt",
      [](int bits, U64 lo, U8 hi, int length, int dims, bool inverse, const std::string& isa) {
        const dfnt::Modulus mod = dfnt::modulus_from_bits(bits);
        same_size(lo, hi, "x");
        const int64_t size = dims == 2 ? int64_t(length) * length : length;
        if (size <= 0 || lo.size() % size != 0)
          throw std::invalid_argument("dfnt: " + std::to_string(lo.size()) + " residues is not a whole number of " +
                                      std::to_string(dims) + "-D transforms of length " + std::to_string(length));
        const Isa is = select_isa(isa);
        U64 out_lo(lo.size());
        U8 out_hi(lo.size());
        dfnt::fnt(mod, lo.data(), hi.data(), lo.size() / size, length, dims, inverse, out_lo.mutable_data(),
                  out_hi.mutable_data(), is);
        return py::make_tuple(out_lo, out_hi);
      },
      py::arg("bits"), py::arg("lo"), py::arg("hi"), py::arg("length"), py::arg("dims") = 1,
      py::arg("inverse") = false, py::arg("isa") = "",
      "Forward (DIT) or inverse (DIF, scaled) FNT of nb residues in natural order, root 2^(2b/length).");

  m.def("dfnt_last_stage_times", [] {
    const dfnt::StageTimes t = dfnt::last_stage_times();
    py::dict d;
    d["pad"] = t.pad, d["forward"] = t.forward, d["pointwise"] = t.pointwise, d["inverse"] = t.inverse;
    return d;
  }, "Seconds per stage of the last dfnt_run_conv on this thread (pad, forward, pointwise, inverse).");
  m.def("dfnt_max_transform_length", [](int bits) { return dfnt::max_transform_length(dfnt::modulus_from_bits(bits)); });
  m.def("dfnt_root_shift", [](int bits, int length) { return dfnt::root_shift(dfnt::modulus_from_bits(bits), length); });

  py::class_<dfnt::ConvPlan, std::shared_ptr<dfnt::ConvPlan>>(m, "DfntConvPlan",
                                                              "Weights transformed once for DFNT convolution.")
      .def_property_readonly("bits", [](const dfnt::ConvPlan& p) { return dfnt::modulus_bits(p.modulus); })
      .def_property_readonly("isa", [](const dfnt::ConvPlan& p) { return std::string(isa_name(p.isa)); })
      .def_readonly("transform_size", &dfnt::ConvPlan::n)
      .def_readonly("out_channels", &dfnt::ConvPlan::out_channels)
      .def_readonly("in_channels", &dfnt::ConvPlan::in_channels)
      .def_readonly("kernel_h", &dfnt::ConvPlan::kernel_h)
      .def_readonly("kernel_w", &dfnt::ConvPlan::kernel_w)
      .def_readonly("gemm_kernel", &dfnt::ConvPlan::gemm_kernel)
      .def_property_readonly("transformed_weight_bytes",
                             [](const dfnt::ConvPlan& p) { return int64_t(p.wf.size() * sizeof(uint64_t)); });

  m.def(
      "dfnt_prepare_conv",
      [](py::array_t<int64_t, py::array::c_style | py::array::forcecast> w, int bits, int n, const std::string& isa,
         const std::string& gemm, int threads) {
        if (w.ndim() != 4)
          throw std::invalid_argument("dfnt: weights must be 4-D [out, in, kh, kw], got " + std::to_string(w.ndim()) +
                                      "-D");
        const dfnt::Modulus mod = dfnt::modulus_from_bits(bits);
        const Isa is = select_isa(isa);
        const int64_t* wp = w.data();
        const int64_t o = w.shape(0), c = w.shape(1), kh = w.shape(2), kw = w.shape(3);
        py::gil_scoped_release nogil;
        return dfnt::prepare_conv(wp, o, c, kh, kw, mod, n, is, gemm, threads);
      },
      py::arg("w"), py::arg("bits"), py::arg("transform_size"), py::arg("isa") = "", py::arg("gemm") = "",
      py::arg("threads") = 0, "Transform int64 OIHW weights once for DFNT convolution.");

  m.def(
      "dfnt_run_conv",
      [](const dfnt::ConvPlan& p, py::array x, std::array<int64_t, 4> pads, int threads) -> py::array {
        if (x.ndim() != 4 || x.shape(1) != p.in_channels)
          throw std::invalid_argument("dfnt: input must be NCHW with " + std::to_string(p.in_channels) + " channels");
        int elem_bytes = 0;
        if (x.dtype().is(py::dtype::of<int8_t>())) elem_bytes = 1;
        else if (x.dtype().is(py::dtype::of<int16_t>())) elem_bytes = 2;
        else throw std::invalid_argument("dfnt: input dtype must be int8 or int16");
        py::array xc = py::array::ensure(x, py::array::c_style);
        if (p.modulus == dfnt::Modulus::kF5) return conv_output<int32_t>(p, xc, pads, threads, elem_bytes);
        return conv_output<int64_t>(p, xc, pads, threads, elem_bytes);
      },
      py::arg("plan"), py::arg("x"), py::arg("pads"), py::arg("threads") = 0,
      "Stride-1 DFNT convolution of int8/int16 NCHW input; pads = (top, left, bottom, right). "
      "int32 output on F5, int64 otherwise. The caller checks the overflow bound.");
}
