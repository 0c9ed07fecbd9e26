// Python bindings of the direct convolution kernels. Arrays must already have the
// right dtype and be C-contiguous (edgecc/kernels/direct.py takes care of that);
// shapes and geometry are checked here and errors raise ValueError.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <array>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "edgecc/direct_conv.h"
#include "registry.h"

namespace py = pybind11;

namespace {

template <typename T>
using CArray = py::array_t<T, py::array::c_style>;

struct Geometry {
  std::array<int64_t, 2> stride;
  std::array<int64_t, 4> padding;  // top, left, bottom, right
  std::array<int64_t, 2> dilation;
  int64_t groups;
};

edgecc::Conv2dShape make_shape(const py::array& x, const py::array& w, const Geometry& g) {
  if (x.ndim() != 4) throw std::invalid_argument("conv2d: input must be 4-D NCHW, got rank " + std::to_string(x.ndim()));
  if (w.ndim() != 4) throw std::invalid_argument("conv2d: weight must be 4-D OIHW, got rank " + std::to_string(w.ndim()));
  edgecc::Conv2dShape s;
  s.batch = x.shape(0);
  s.in_channels = x.shape(1);
  s.in_h = x.shape(2);
  s.in_w = x.shape(3);
  s.out_channels = w.shape(0);
  s.kernel_h = w.shape(2);
  s.kernel_w = w.shape(3);
  s.stride_h = g.stride[0];
  s.stride_w = g.stride[1];
  s.pad_top = g.padding[0];
  s.pad_left = g.padding[1];
  s.pad_bottom = g.padding[2];
  s.pad_right = g.padding[3];
  s.dilation_h = g.dilation[0];
  s.dilation_w = g.dilation[1];
  s.groups = g.groups;
  s.validate();
  if (w.shape(1) * s.groups != s.in_channels)
    throw std::invalid_argument("conv2d: weight has " + std::to_string(w.shape(1)) + " input channels per group but input has " +
                                std::to_string(s.in_channels) + " channels and groups = " + std::to_string(s.groups) + " [" +
                                s.describe() + "]");
  return s;
}

template <typename Y>
CArray<Y> make_output(const edgecc::Conv2dShape& s) {
  return CArray<Y>({s.batch, s.out_channels, s.out_h(), s.out_w()});
}

// Binds fn(shape, x, w, y, threads) for integer kernels.
template <typename T, typename Y, typename Fn>
CArray<Y> run_int(const CArray<T>& x, const CArray<T>& w, const Geometry& g, int threads, Fn fn) {
  const edgecc::Conv2dShape s = make_shape(x, w, g);
  CArray<Y> y = make_output<Y>(s);
  const T* xp = x.data();
  const T* wp = w.data();
  Y* yp = y.mutable_data();
  {
    py::gil_scoped_release release;
    fn(s, xp, wp, yp, threads);
  }
  return y;
}

CArray<float> run_f32(const CArray<float>& x, const CArray<float>& w, const std::optional<CArray<float>>& bias,
                      const Geometry& g, int threads, bool naive, const std::string& isa) {
  const edgecc::Conv2dShape s = make_shape(x, w, g);
  if (bias && (bias->ndim() != 1 || bias->shape(0) != s.out_channels))
    throw std::invalid_argument("conv2d: bias must have shape (" + std::to_string(s.out_channels) + ",)");
  const edgecc::Isa chosen = edgecc::select_isa(isa);
  CArray<float> y = make_output<float>(s);
  const float* xp = x.data();
  const float* wp = w.data();
  const float* bp = bias ? bias->data() : nullptr;
  float* yp = y.mutable_data();
  {
    py::gil_scoped_release release;
    if (naive)
      edgecc::f32_conv2d_naive_scalar(s, xp, wp, bp, yp, threads);
    else
      edgecc::conv2d_direct_f32(s, xp, wp, bp, yp, threads, chosen);
  }
  return y;
}

// Binds DirectConv2d<T, Y> (weights packed once) as `name`.
template <typename T, typename Y>
void bind_plan(py::module_& m, const char* name, const char* doc) {
  using Plan = edgecc::DirectConv2d<T, Y>;
  py::class_<Plan>(m, name, doc)
      .def(py::init([](const CArray<T>& w, const std::optional<CArray<float>>& bias, std::array<int64_t, 2> stride,
                       std::array<int64_t, 4> padding, std::array<int64_t, 2> dilation, int64_t groups,
                       const std::string& isa) {
             if (w.ndim() != 4)
               throw std::invalid_argument("conv2d: weight must be 4-D OIHW, got rank " + std::to_string(w.ndim()));
             if (bias && (bias->ndim() != 1 || bias->shape(0) != w.shape(0)))
               throw std::invalid_argument("conv2d: bias must have shape (" + std::to_string(w.shape(0)) + ",)");
             if (bias && !std::is_same_v<T, float>) throw std::invalid_argument("conv2d: bias is for float32 only");
             edgecc::Conv2dShape g;
             g.out_channels = w.shape(0);
             g.in_channels = w.shape(1) * groups;
             g.kernel_h = w.shape(2);
             g.kernel_w = w.shape(3);
             g.stride_h = stride[0];
             g.stride_w = stride[1];
             g.pad_top = padding[0];
             g.pad_left = padding[1];
             g.pad_bottom = padding[2];
             g.pad_right = padding[3];
             g.dilation_h = dilation[0];
             g.dilation_w = dilation[1];
             g.groups = groups;
             const edgecc::Isa chosen = edgecc::select_isa(isa);
             const T* wp = w.data();
             const float* bp = bias ? bias->data() : nullptr;
             py::gil_scoped_release release;
             return new Plan(g, wp, bp, chosen);
           }),
           py::arg("w").noconvert(), py::arg("bias").noconvert(), py::arg("stride"), py::arg("padding"),
           py::arg("dilation"), py::arg("groups"), py::arg("isa") = "")
      .def(
          "run",
          [](const Plan& plan, const CArray<T>& x, int threads) {
            if (x.ndim() != 4)
              throw std::invalid_argument("conv2d: input must be 4-D NCHW, got rank " + std::to_string(x.ndim()));
            const edgecc::Conv2dShape s = plan.shape(x.shape(0), x.shape(2), x.shape(3));
            if (x.shape(1) != s.in_channels)
              throw std::invalid_argument("conv2d: input has " + std::to_string(x.shape(1)) + " channels, the weights expect " +
                                          std::to_string(s.in_channels));
            s.validate();
            CArray<Y> y = make_output<Y>(s);
            const T* xp = x.data();
            Y* yp = y.mutable_data();
            {
              py::gil_scoped_release release;
              plan.run(xp, s.batch, s.in_h, s.in_w, yp, threads);
            }
            return y;
          },
          py::arg("x").noconvert(), py::arg("threads") = 0)
      .def_property_readonly("kernel_name", &Plan::kernel_name)
      .def_property_readonly("isa", [](const Plan& p) { return std::string(edgecc::isa_name(p.isa())); });
}

}  // namespace

EDGECC_BINDING(direct_conv) {
  bind_plan<float, float>(m, "DirectConv2dF32", "fp32 direct convolution with weights packed once.");
  bind_plan<int8_t, int32_t>(m, "DirectConv2dQs8",
                             "Exact int8 -> int32 direct convolution with weights packed once.");
  bind_plan<int16_t, int64_t>(m, "DirectConv2dQs16",
                              "Exact int16 -> int64 direct convolution with weights packed once.");
  const char* geometry_doc =
      " x: NCHW, w: OIHW (C-contiguous, exact dtype); stride (h, w); padding (top, left, bottom, right);"
      " dilation (h, w); threads <= 0: OpenMP default.";
  m.def(
      "direct_conv2d_f32",
      [](const CArray<float>& x, const CArray<float>& w, const std::optional<CArray<float>>& bias,
         std::array<int64_t, 2> stride, std::array<int64_t, 4> padding, std::array<int64_t, 2> dilation,
         int64_t groups, int threads, const std::string& isa) {
        return run_f32(x, w, bias, {stride, padding, dilation, groups}, threads, false, isa);
      },
      py::arg("x").noconvert(), py::arg("w").noconvert(), py::arg("bias").noconvert(), py::arg("stride"),
      py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("threads") = 0, py::arg("isa") = "",
      (std::string("fp32 direct convolution -> float32 NCHW.") + geometry_doc).c_str());
  m.def(
      "direct_conv2d_qs8",
      [](const CArray<int8_t>& x, const CArray<int8_t>& w, std::array<int64_t, 2> stride,
         std::array<int64_t, 4> padding, std::array<int64_t, 2> dilation, int64_t groups, int threads,
         const std::string& isa) {
        const edgecc::Isa chosen = edgecc::select_isa(isa);
        return run_int<int8_t, int32_t>(x, w, {stride, padding, dilation, groups}, threads,
                                        [chosen](const edgecc::Conv2dShape& s, const int8_t* xp, const int8_t* wp,
                                                 int32_t* yp, int t) { edgecc::conv2d_direct_qs8(s, xp, wp, yp, t, chosen); });
      },
      py::arg("x").noconvert(), py::arg("w").noconvert(), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups"), py::arg("threads") = 0, py::arg("isa") = "",
      (std::string("Exact int8 x int8 direct convolution -> int32 (reduction C/groups*KH*KW <= 131071).") +
       geometry_doc).c_str());
  m.def(
      "direct_conv2d_qs16",
      [](const CArray<int16_t>& x, const CArray<int16_t>& w, std::array<int64_t, 2> stride,
         std::array<int64_t, 4> padding, std::array<int64_t, 2> dilation, int64_t groups, int threads,
         const std::string& isa) {
        const edgecc::Isa chosen = edgecc::select_isa(isa);
        return run_int<int16_t, int64_t>(x, w, {stride, padding, dilation, groups}, threads,
                                         [chosen](const edgecc::Conv2dShape& s, const int16_t* xp, const int16_t* wp,
                                                  int64_t* yp, int t) { edgecc::conv2d_direct_qs16(s, xp, wp, yp, t, chosen); });
      },
      py::arg("x").noconvert(), py::arg("w").noconvert(), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups"), py::arg("threads") = 0, py::arg("isa") = "",
      (std::string("Exact int16 x int16 direct convolution -> int64.") + geometry_doc).c_str());

  m.def(
      "naive_conv2d_f32",
      [](const CArray<float>& x, const CArray<float>& w, const std::optional<CArray<float>>& bias,
         std::array<int64_t, 2> stride, std::array<int64_t, 4> padding, std::array<int64_t, 2> dilation,
         int64_t groups, int threads) {
        return run_f32(x, w, bias, {stride, padding, dilation, groups}, threads, true, "scalar");
      },
      py::arg("x").noconvert(), py::arg("w").noconvert(), py::arg("bias").noconvert(), py::arg("stride"),
      py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("threads") = 0,
      "Textbook seven-loop fp32 convolution (baseline).");
  m.def(
      "naive_conv2d_qs8_i32",
      [](const CArray<int8_t>& x, const CArray<int8_t>& w, std::array<int64_t, 2> stride,
         std::array<int64_t, 4> padding, std::array<int64_t, 2> dilation, int64_t groups, int threads) {
        return run_int<int8_t, int32_t>(x, w, {stride, padding, dilation, groups}, threads,
                                        edgecc::qs8_conv2d_naive_i32_scalar);
      },
      py::arg("x").noconvert(), py::arg("w").noconvert(), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups"), py::arg("threads") = 0,
      "Textbook seven-loop int8 convolution with int32 accumulation (baseline).");
  m.def(
      "naive_conv2d_qs8_i64",
      [](const CArray<int8_t>& x, const CArray<int8_t>& w, std::array<int64_t, 2> stride,
         std::array<int64_t, 4> padding, std::array<int64_t, 2> dilation, int64_t groups, int threads) {
        return run_int<int8_t, int64_t>(x, w, {stride, padding, dilation, groups}, threads,
                                        edgecc::qs8_conv2d_naive_i64_scalar);
      },
      py::arg("x").noconvert(), py::arg("w").noconvert(), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups"), py::arg("threads") = 0,
      "Textbook seven-loop int8 convolution with int64 accumulation (baseline).");
  m.def(
      "naive_conv2d_qs16_i64",
      [](const CArray<int16_t>& x, const CArray<int16_t>& w, std::array<int64_t, 2> stride,
         std::array<int64_t, 4> padding, std::array<int64_t, 2> dilation, int64_t groups, int threads) {
        return run_int<int16_t, int64_t>(x, w, {stride, padding, dilation, groups}, threads,
                                         edgecc::qs16_conv2d_naive_i64_scalar);
      },
      py::arg("x").noconvert(), py::arg("w").noconvert(), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups"), py::arg("threads") = 0,
      "Textbook seven-loop int16 convolution with int64 accumulation (baseline).");

  m.def(
      "direct_conv2d_kernel_name",
      [](const std::string& dtype, std::array<int64_t, 4> x_shape, std::array<int64_t, 4> w_shape,
         std::array<int64_t, 2> stride, std::array<int64_t, 4> padding, std::array<int64_t, 2> dilation,
         int64_t groups, const std::string& isa) {
        edgecc::Conv2dShape s;
        s.batch = x_shape[0];
        s.in_channels = x_shape[1];
        s.in_h = x_shape[2];
        s.in_w = x_shape[3];
        s.out_channels = w_shape[0];
        s.kernel_h = w_shape[2];
        s.kernel_w = w_shape[3];
        s.stride_h = stride[0];
        s.stride_w = stride[1];
        s.pad_top = padding[0];
        s.pad_left = padding[1];
        s.pad_bottom = padding[2];
        s.pad_right = padding[3];
        s.dilation_h = dilation[0];
        s.dilation_w = dilation[1];
        s.groups = groups;
        s.validate();
        return edgecc::conv2d_direct_kernel_name(dtype, s, edgecc::select_isa(isa));
      },
      py::arg("dtype"), py::arg("x_shape"), py::arg("w_shape"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups"), py::arg("isa") = "",
      "Name of the direct kernel run for dtype 'f32' | 'qs8' | 'qs16' on this shape and ISA.");
}
