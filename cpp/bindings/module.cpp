#include <string>
#include <utility>
#include <vector>

#include "edgecc/cpu.h"
#include "registry.h"

namespace py = pybind11;

namespace edgecc_py {
static std::vector<std::pair<std::string, BindFn>>& bindings() {
  static std::vector<std::pair<std::string, BindFn>> all;  // function-local: safe init order
  return all;
}
int register_binding(const char* name, BindFn fn) {
  bindings().emplace_back(name, fn);
  return 0;
}
}  // namespace edgecc_py

PYBIND11_MODULE(_native, m) {
  m.doc() = "edgecc native kernels";
  m.def("cpu_features", [] {
    const edgecc::CpuFeatures& f = edgecc::cpu_features();
    py::dict d;
    d["avx2"] = f.avx2;
    d["fma"] = f.fma;
    d["avx512f"] = f.avx512f;
    d["avx512bw"] = f.avx512bw;
    d["avx512vl"] = f.avx512vl;
    d["avx512dq"] = f.avx512dq;
    d["avx512vpopcntdq"] = f.avx512vpopcntdq;
    d["avx512vnni"] = f.avx512vnni;
    d["avx512ifma"] = f.avx512ifma;
    d["avx512bitalg"] = f.avx512bitalg;
    return d;
  }, "CPU features detected with cpuid/xgetbv.");
  m.def("best_isa", [] { return std::string(edgecc::isa_name(edgecc::best_isa())); },
        "Best ISA path this CPU supports (ignores EDGECC_ISA).");
  m.def("selected_isa", [](const std::string& requested) {
    return std::string(edgecc::isa_name(edgecc::select_isa(requested)));
  }, py::arg("requested") = "",
     "ISA the kernels will use: `requested` ('avx512', 'avx2', 'scalar', '' = auto), else "
     "the EDGECC_ISA environment variable, else the best available. Raises if unsupported.");
  m.def("omp_max_threads", [] { return edgecc::omp_max_threads(); });
  for (auto& [name, fn] : edgecc_py::bindings()) fn(m);
}
