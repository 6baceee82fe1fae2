// The one binding file: C++ runtime -> Python module mtedge_runtime._runtime.
// It is also the only place where mtedge::Error exceptions become Python exceptions; each
// Python class derives from mtedge_runtime.errors (so both CLIs print it cleanly) and from the
// builtin a caller would expect (ValueError, KeyError, FileNotFoundError, RuntimeError).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "mtedge/errors.h"
#include "mtedge/runtime.h"
#include "mtedge/selfcheck.h"

namespace py = pybind11;

namespace {

// One row per C++ error class, most derived first: the first row whose class the exception is an
// instance of names the Python class it becomes. The classes live as long as the module (they are
// attributes of it).
struct ErrorRow {
  bool (*matches)(const mtedge::Error&);
  py::handle cls;
};
std::vector<ErrorRow> g_errors;

template <class E>
bool is_a(const mtedge::Error& e) {
  return dynamic_cast<const E*>(&e) != nullptr;
}

py::handle make_error(py::module_& m, const char* name, py::handle a, py::handle b, const char* doc,
                      bool plain_str = false) {
  py::dict ns;
  ns["__module__"] = "mtedge_runtime._runtime";
  ns["__doc__"] = doc;
  // KeyError's str() is repr(arg) with quotes; ours should print the message as written.
  if (plain_str) ns["__str__"] = py::module_::import("builtins").attr("BaseException").attr("__str__");
  py::object cls = py::module_::import("builtins").attr("type")(name, py::make_tuple(a, b), ns);
  m.attr(name) = cls;
  return cls.release();
}

std::string py_shape(const py::array& a) {
  std::string s = "[";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + "]";
}


py::dict run_tasks(mtedge::Runtime& rt, const py::array& input, const std::vector<std::string>& tasks,
                   const std::string& variant) {
  const mtedge::TensorSpec& in = rt.input_spec(variant);
  bool ok = input.dtype().equal(py::dtype::of<float>()) &&
            (input.flags() & py::array::c_style) && input.ndim() == py::ssize_t(in.shape.size());
  for (py::ssize_t i = 0; ok && i < input.ndim(); ++i) ok = input.shape(i) == in.shape[i];
  if (!ok)
    throw mtedge::InputError(
        "input '" + in.name + "' must be a C-contiguous float32 array of shape " +
        mtedge::shape_str(in.shape) + "; got " + std::string(py::str(input.dtype())) + " " +
        (input.flags() & py::array::c_style ? "" : "non-contiguous ") + "array of shape " +
        py_shape(input) + " (fix: np.ascontiguousarray(x, dtype=np.float32).reshape(" +
        mtedge::shape_str(in.shape) + "))");
  // Fresh arrays per call: the caller may keep them; the runtime copies outputs into them.
  std::vector<py::array_t<float>> arrays;
  std::vector<void*> ptrs;
  for (const auto& t : tasks) {
    const auto& spec = rt.output_spec(t, variant);
    arrays.emplace_back(std::vector<py::ssize_t>(spec.shape.begin(), spec.shape.end()));
    ptrs.push_back(arrays.back().mutable_data());
  }
  {
    py::gil_scoped_release nogil;  // `input` stays referenced by the caller's frame
    rt.run(input.data(), tasks, ptrs, variant);
  }
  py::dict out;
  for (std::size_t i = 0; i < tasks.size(); ++i) out[py::str(tasks[i])] = arrays[i];
  return out;
}

py::dict spec_dict(const mtedge::TensorSpec& s) {
  py::dict d;
  d["name"] = s.name;
  d["shape"] = py::tuple(py::cast(s.shape));
  d["dtype"] = mtedge::dtype_name(s.dtype);
  return d;
}

py::dict stats_dict(const mtedge::RuntimeStats& s) {
  py::dict d;
  d["backend"] = s.backend;
  d["load_ms"] = s.load_ms;
  d["verify_ms"] = s.verify_ms;
  d["compile_ms"] = s.compile_ms;
  d["runs"] = s.runs;
  d["total_run_ms"] = double(s.total_run_ns) / 1e6;
  d["last_run_us"] = double(s.last_run_ns) / 1e3;
  d["last_input_address"] = s.last_input_address;
  d["zero_copy_input"] = s.zero_copy_input;
  d["intermediate_bytes"] = s.intermediate_bytes;
  py::dict segs;
  for (const auto& seg : s.segments) {
    py::dict e;
    e["variant"] = seg.variant;
    e["segment"] = seg.segment;
    e["runs"] = seg.runs;
    e["total_ms"] = double(seg.total_ns) / 1e6;
    e["mean_us"] = seg.runs ? double(seg.total_ns) / 1e3 / double(seg.runs) : 0.0;
    segs[py::str(seg.variant + "/" + seg.segment)] = e;
  }
  d["segments"] = segs;
  return d;
}

}  // namespace

PYBIND11_MODULE(_runtime, m) {
  m.doc() = "mtedge C++ runtime (raw bindings; use mtedge_runtime.Runtime)";
  m.def("self_check", [] {
    const mtedge::SelfCheck s = mtedge::self_check();
    py::dict d;
    d["mtedge_version"] = s.mtedge_version;
    d["openvino_enabled"] = s.openvino_enabled;
    d["openvino_version"] = s.openvino_version;
    d["openvino_devices"] = s.openvino_devices;
    d["tensorrt_enabled"] = s.tensorrt_enabled;
    return d;
  });
  m.def("openvino_compiled", &mtedge::openvino_compiled);
  m.def("tensorrt_compiled", &mtedge::tensorrt_compiled);
  m.def("tensorrt_available", &mtedge::tensorrt_available);

  py::module_ errors = py::module_::import("mtedge_runtime.errors");
  py::module_ builtins = py::module_::import("builtins");
  py::handle bundle_err = errors.attr("BundleError"), mt_err = errors.attr("MtedgeError");
  auto add = [&](auto matches, const char* name, py::handle base, const char* builtin, const char* doc,
                 bool plain_str = false) {
    g_errors.push_back({matches, make_error(m, name, base, builtins.attr(builtin), doc, plain_str)});
  };
  add(is_a<mtedge::FileMissingError>, "BundleFileNotFoundError", bundle_err, "FileNotFoundError",
      "A bundle, its manifest or a file it references is missing.");
  add(is_a<mtedge::IntegrityError>, "BundleIntegrityError", bundle_err, "ValueError",
      "A bundle file's size or sha256 differs from the manifest.");
  add(is_a<mtedge::BundleError>, "BundleFormatError", bundle_err, "ValueError",
      "manifest.json is malformed or inconsistent.");
  add(is_a<mtedge::InputError>, "InputError", mt_err, "ValueError",
      "An input array or option has the wrong value, dtype or shape.");
  add(is_a<mtedge::UnknownNameError>, "UnknownNameError", mt_err, "KeyError",
      "A task, variant or engine target the bundle does not have.", true);
  add(is_a<mtedge::BackendError>, "BackendError", mt_err, "RuntimeError",
      "OpenVINO/TensorRT failed to compile or run a segment.");
  add(is_a<mtedge::Error>, "RuntimeFailure", mt_err, "RuntimeError", "Any other mtedge runtime error.");
  // Local: a second build of this module (the TensorRT test double's) keeps its own classes.
  py::register_local_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const mtedge::Error& e) {
      for (const auto& row : g_errors)
        if (row.matches(e)) return PyErr_SetString(row.cls.ptr(), e.what());
    }
  });

  // module_local: the TensorRT test double's build of this module can be loaded beside it.
  py::class_<mtedge::Runtime>(m, "Runtime", "Raw runtime; see mtedge_runtime.Runtime.", py::module_local())
      .def(py::init([](const std::string& bundle, const std::string& backend,
                       const std::vector<std::string>& variants, int threads,
                       const std::string& precision, const std::string& engine_target,
                       const std::string& device, const std::string& cache_dir, bool verify) {
             mtedge::RuntimeOptions o;
             o.backend = backend;
             o.variants = variants;
             o.engine_target = engine_target;
             o.backend_options.threads = threads;
             o.backend_options.precision = precision;
             o.backend_options.device = device;
             o.backend_options.cache_dir = cache_dir;
             o.verify = verify;
             py::gil_scoped_release nogil;  // verifying and compiling take a while
             return std::make_unique<mtedge::Runtime>(bundle, o);
           }),
           py::arg("bundle"), py::arg("backend") = "auto",
           py::arg("variants") = std::vector<std::string>{}, py::arg("threads") = 0,
           py::arg("precision") = "f32", py::arg("engine_target") = "", py::arg("device") = "CPU",
           py::arg("cache_dir") = "", py::arg("verify") = true)
      .def_property_readonly("tasks", &mtedge::Runtime::tasks)
      .def_property_readonly("variants", &mtedge::Runtime::variants)
      .def_property_readonly("default_variant", &mtedge::Runtime::default_variant)
      .def_property_readonly("name", [](const mtedge::Runtime& rt) { return rt.manifest().name; })
      .def("input_spec", [](const mtedge::Runtime& rt, const std::string& v) { return spec_dict(rt.input_spec(v)); },
           py::arg("variant") = "")
      .def("output_spec",
           [](const mtedge::Runtime& rt, const std::string& t, const std::string& v) {
             return spec_dict(rt.output_spec(t, v));
           },
           py::arg("task"), py::arg("variant") = "")
      .def("plan", &mtedge::Runtime::plan, py::arg("tasks"))
      .def("run", &run_tasks, py::arg("input"), py::arg("tasks"), py::arg("variant") = "")
      .def("stats", [](const mtedge::Runtime& rt) { return stats_dict(rt.stats()); })
      .def("reset_stats", &mtedge::Runtime::reset_stats)
      // Keeps the GIL: no other Python thread can be between input_spec() and run() meanwhile;
      // a run in progress (GIL released) finishes first, later ones get InputError.
      .def("close", &mtedge::Runtime::close)
      .def_property_readonly("closed", &mtedge::Runtime::closed);
}
