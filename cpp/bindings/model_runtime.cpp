// Python face of compiled models: dlopen a model.so built by `edgecc compile`, call its
// C API (edgecc/model_api.h), numpy in / numpy out. Inputs are passed by pointer (the
// Python side has checked dtype, shape and contiguity); outputs are fresh numpy arrays
// the model writes into directly, so nothing is copied on either side. Calls on one
// library object are serialized (run and the read of its error text under one lock).
#include <dlfcn.h>
#include <elf.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "edgecc/model_api.h"
#include "registry.h"

namespace py = pybind11;

namespace {

// dlopen maps a truncated library and faults (SIGBUS) on first touch instead of failing:
// check that the file is a 64-bit x86-64 ELF whose loadable segments lie inside it.
void check_elf(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw std::invalid_argument("cannot load " + path + ": cannot open the file");
  const auto size = static_cast<uint64_t>(f.tellg());
  std::vector<char> data(size);
  f.seekg(0);
  f.read(data.data(), static_cast<std::streamsize>(size));
  const std::string bad = "cannot load " + path + ": ";
  Elf64_Ehdr eh;
  if (size < sizeof eh) throw std::invalid_argument(bad + "file too short for an ELF header (truncated?)");
  std::memcpy(&eh, data.data(), sizeof eh);
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
      eh.e_machine != EM_X86_64)
    throw std::invalid_argument(bad + "not an x86-64 ELF shared library");
  if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phoff + uint64_t(eh.e_phnum) * sizeof(Elf64_Phdr) > size)
    throw std::invalid_argument(bad + "program headers lie outside the file (truncated?)");
  for (int i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    std::memcpy(&ph, data.data() + eh.e_phoff + i * sizeof ph, sizeof ph);
    if (ph.p_type == PT_LOAD && ph.p_offset + ph.p_filesz > size)
      throw std::invalid_argument(bad + "a loadable segment ends at byte " + std::to_string(ph.p_offset + ph.p_filesz) +
                                  " of a " + std::to_string(size) + "-byte file (truncated?)");
  }
}

class CompiledModelLibrary {
 public:
  CompiledModelLibrary(const std::string& path, int threads) {
    check_elf(path);
    dlerror();
    lib_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib_) throw std::invalid_argument("cannot load " + path + ": " + last_dl_error());
    try {
      bind_symbols();
      if (abi_version_() != EDGECC_MODEL_ABI_VERSION)
        throw std::invalid_argument(path + ": model ABI version " + std::to_string(abi_version_()) +
                                    ", this edgecc expects " + std::to_string(EDGECC_MODEL_ABI_VERSION));
      if (open_(&model_, nullptr, 0) != EDGECC_OK) throw std::invalid_argument(path + ": " + open_error_());
      set_threads(threads);
    } catch (...) {
      dlclose(lib_);
      throw;
    }
  }
  CompiledModelLibrary(const CompiledModelLibrary&) = delete;
  CompiledModelLibrary& operator=(const CompiledModelLibrary&) = delete;
  ~CompiledModelLibrary() {
    if (model_) close_(model_);
    if (lib_) dlclose(lib_);
  }

  std::string build_info() const { return build_info_(); }
  std::string weights_sha256() const { return weights_sha256_(); }
  size_t workspace_size() const { return workspace_size_(); }
  // Closes the handle now (also done by the destructor); later calls raise ValueError.
  void close() {
    std::lock_guard<std::mutex> hold(lock_);
    if (model_) close_(model_);
    model_ = nullptr;
  }
  bool closed() const { return model_ == nullptr; }
  int threads() {
    std::lock_guard<std::mutex> hold(lock_);
    require_open();
    return threads_(model_);
  }
  void set_threads(int threads) {
    std::lock_guard<std::mutex> hold(lock_);
    require_open();
    if (set_threads_(model_, threads) != EDGECC_OK) throw std::invalid_argument(last_error_(model_));
  }

  // Per-step profiling (libraries built before it existed lack the symbols).
  bool has_profiling() const { return set_profiling_ && step_profile_ && num_steps_; }
  void set_profiling(bool on) {
    require_profiling();
    std::lock_guard<std::mutex> hold(lock_);
    require_open();
    if (set_profiling_(model_, on ? 1 : 0) != EDGECC_OK) throw std::invalid_argument(last_error_(model_));
  }
  // One dict per step: node, op, runs, last_ms, total_ms.
  py::list step_profiles() {
    require_profiling();
    std::lock_guard<std::mutex> hold(lock_);
    require_open();
    py::list out;
    for (int i = 0; i < num_steps_(); ++i) {
      edgecc_step_profile p;
      if (step_profile_(model_, i, &p) != EDGECC_OK) throw std::invalid_argument(last_error_(model_));
      py::dict row;
      row["step"] = i;
      row["node"] = p.node;
      row["op"] = p.op;
      row["runs"] = p.runs;
      row["last_ms"] = p.last_ms;
      row["total_ms"] = p.total_ms;
      out.append(row);
    }
    return out;
  }

  py::list descriptions(bool inputs) const {
    py::list out;
    const int count = inputs ? num_inputs_() : num_outputs_();
    for (int i = 0; i < count; ++i) {
      const edgecc_tensor_desc* d = inputs ? input_(i) : output_(i);
      py::list shape;
      for (int r = 0; r < d->rank; ++r) shape.append(d->shape[r]);
      py::dict item;
      item["name"] = d->name;
      item["dtype"] = d->dtype == EDGECC_DTYPE_F32 ? "f32" : "?";
      item["shape"] = py::tuple(shape);
      item["bytes"] = d->bytes;
      out.append(item);
    }
    return out;
  }

  // arrays: float32, C-contiguous, of the described shapes (checked here once more by size).
  py::list run(const std::vector<py::array>& arrays) {
    const int n_in = num_inputs_(), n_out = num_outputs_();
    if (static_cast<int>(arrays.size()) != n_in)
      throw std::invalid_argument("model takes " + std::to_string(n_in) + " input(s), got " +
                                  std::to_string(arrays.size()));
    std::vector<const void*> in(n_in);
    for (int i = 0; i < n_in; ++i) {
      const py::array& a = arrays[i];
      const edgecc_tensor_desc* d = input_(i);
      if (!a.dtype().is(py::dtype::of<float>()) || !(a.flags() & py::array::c_style) ||
          static_cast<size_t>(a.nbytes()) != d->bytes)
        throw std::invalid_argument(std::string("input '") + d->name +
                                    "': expected a C-contiguous float32 array of " + std::to_string(d->bytes) +
                                    " bytes");
      in[i] = a.data();
    }
    std::vector<py::array_t<float>> outs;
    std::vector<void*> out(n_out);
    for (int i = 0; i < n_out; ++i) {
      const edgecc_tensor_desc* d = output_(i);
      outs.emplace_back(std::vector<py::ssize_t>(d->shape, d->shape + d->rank));
      out[i] = outs.back().mutable_data();
    }
    edgecc_status s;
    std::string error;
    {
      py::gil_scoped_release unlock;
      std::lock_guard<std::mutex> hold(lock_);
      if (!model_) throw std::invalid_argument("the model is closed");
      s = run_(model_, in.data(), out.data());
      if (s != EDGECC_OK) error = last_error_(model_);
    }
    if (s != EDGECC_OK) throw std::runtime_error(error);
    py::list result;
    for (auto& a : outs) result.append(a);
    return result;
  }

 private:
  static std::string last_dl_error() {
    const char* e = dlerror();
    return e ? e : "unknown dlopen error";
  }
  template <class Fn>
  void bind(Fn& fn, const char* name) {
    dlerror();
    void* sym = dlsym(lib_, name);
    if (!sym) throw std::invalid_argument(std::string("not an edgecc model library: missing ") + name);
    fn = reinterpret_cast<Fn>(sym);
  }
  template <class Fn>
  void bind_optional(Fn& fn, const char* name) {
    fn = reinterpret_cast<Fn>(dlsym(lib_, name));
  }
  void require_open() const {
    if (!model_) throw std::invalid_argument("the model is closed");
  }
  void require_profiling() const {
    if (!has_profiling())
      throw std::invalid_argument("this model library has no profiling entry points; recompile it with this edgecc");
  }
  void bind_symbols() {
    bind(abi_version_, "edgecc_model_abi_version");
    bind(build_info_, "edgecc_model_build_info");
    bind(weights_sha256_, "edgecc_model_weights_sha256");
    bind(workspace_size_, "edgecc_model_workspace_size");
    bind(num_inputs_, "edgecc_model_num_inputs");
    bind(num_outputs_, "edgecc_model_num_outputs");
    bind(input_, "edgecc_model_input");
    bind(output_, "edgecc_model_output");
    bind(open_, "edgecc_model_open");
    bind(open_error_, "edgecc_model_open_error");
    bind(close_, "edgecc_model_close");
    bind(set_threads_, "edgecc_model_set_threads");
    bind(threads_, "edgecc_model_threads");
    bind(run_, "edgecc_model_run");
    bind(last_error_, "edgecc_model_last_error");
    bind_optional(num_steps_, "edgecc_model_num_steps");
    bind_optional(set_profiling_, "edgecc_model_set_profiling");
    bind_optional(step_profile_, "edgecc_model_step_profile");
  }

  std::mutex lock_;
  void* lib_ = nullptr;
  edgecc_model* model_ = nullptr;
  uint32_t (*abi_version_)() = nullptr;
  const char* (*build_info_)() = nullptr;
  const char* (*weights_sha256_)() = nullptr;
  size_t (*workspace_size_)() = nullptr;
  int32_t (*num_inputs_)() = nullptr;
  int32_t (*num_outputs_)() = nullptr;
  const edgecc_tensor_desc* (*input_)(int32_t) = nullptr;
  const edgecc_tensor_desc* (*output_)(int32_t) = nullptr;
  edgecc_status (*open_)(edgecc_model**, void*, size_t) = nullptr;
  const char* (*open_error_)() = nullptr;
  void (*close_)(edgecc_model*) = nullptr;
  edgecc_status (*set_threads_)(edgecc_model*, int32_t) = nullptr;
  int32_t (*threads_)(const edgecc_model*) = nullptr;
  edgecc_status (*run_)(edgecc_model*, const void* const*, void* const*) = nullptr;
  const char* (*last_error_)(const edgecc_model*) = nullptr;
  int32_t (*num_steps_)() = nullptr;
  edgecc_status (*set_profiling_)(edgecc_model*, int32_t) = nullptr;
  edgecc_status (*step_profile_)(const edgecc_model*, int32_t, edgecc_step_profile*) = nullptr;
};

}  // namespace

EDGECC_BINDING(model_runtime) {
  py::class_<CompiledModelLibrary>(m, "CompiledModelLibrary",
                                   "A model.so built by edgecc compile, opened (use edgecc.runtime.load).")
      .def(py::init<const std::string&, int>(), py::arg("path"), py::arg("threads") = 0)
      .def_property_readonly("build_info", &CompiledModelLibrary::build_info)
      .def_property_readonly("weights_sha256", &CompiledModelLibrary::weights_sha256)
      .def_property_readonly("workspace_size", &CompiledModelLibrary::workspace_size)
      .def_property("threads", &CompiledModelLibrary::threads, &CompiledModelLibrary::set_threads)
      .def("inputs", [](const CompiledModelLibrary& l) { return l.descriptions(true); })
      .def("outputs", [](const CompiledModelLibrary& l) { return l.descriptions(false); })
      .def_property_readonly("has_profiling", &CompiledModelLibrary::has_profiling)
      .def_property_readonly("closed", &CompiledModelLibrary::closed)
      .def("close", &CompiledModelLibrary::close, "Close the handle now (idempotent).")
      .def("set_profiling", &CompiledModelLibrary::set_profiling, py::arg("enabled"),
           "Time every step of the following runs (counters reset), or stop timing.")
      .def("step_profiles", &CompiledModelLibrary::step_profiles,
           "Per-step counters: [{step, node, op, runs, last_ms, total_ms}].")
      .def("run", &CompiledModelLibrary::run, py::arg("arrays"),
           "Run on float32 C-contiguous arrays; returns the outputs (fresh arrays).");
}
