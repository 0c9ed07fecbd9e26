// Each binding file registers its functions with EDGECC_BINDING(name) { ... }, so
// kernel families are added by adding a file, never by editing a central list.
#pragma once
#include <pybind11/pybind11.h>

namespace edgecc_py {
using BindFn = void (*)(pybind11::module_&);
int register_binding(const char* name, BindFn fn);
}  // namespace edgecc_py

#define EDGECC_BINDING(name)                                                        \
  static void edgecc_bind_##name(pybind11::module_& m);                             \
  static const int edgecc_registered_##name =                                       \
      edgecc_py::register_binding(#name, edgecc_bind_##name);                       \
  static void edgecc_bind_##name(pybind11::module_& m)
