// The one binding file: C++ runtime -> Python module mtedge_runtime._runtime.
// It is also the only place where mtedge::Error exceptions become Python exceptions; each
// Python class derives from mtedge_runtime.errors (so both CLIs print it cleanly) and from the
// builtin a caller would expect (ValueError, KeyError, FileNotFoundError, RuntimeError).
#include <cstdint>
#include <cstring>

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

// ---- Caller tensors: numpy, __array_interface__, DLPack, __cuda_array_interface__ ------------
// The DLPack ABI (dmlc/dlpack, the data-api "__dlpack__" protocol), declared here from its spec:
// a capsule named "dltensor" holds a DLManagedTensor, one named "dltensor_versioned" (protocol
// 1.x, asked for with max_version) a DLManagedTensorVersioned. The runtime only reads the tensor
// while the capsule is alive and never renames it, so the capsule's own destructor frees it.
struct DLDevice {
  std::int32_t device_type;  // 1 CPU, 2 CUDA, 3 CUDA pinned host, 13 CUDA managed
  std::int32_t device_id;
};
struct DLDataType {
  std::uint8_t code;  // 0 int, 1 uint, 2 float, 4 bfloat, 5 complex, 6 bool
  std::uint8_t bits;
  std::uint16_t lanes;
};
struct DLTensor {
  void* data;
  DLDevice device;
  std::int32_t ndim;
  DLDataType dtype;
  std::int64_t* shape;
  std::int64_t* strides;  // in elements; NULL: C-contiguous
  std::uint64_t byte_offset;
};
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor*);
};
struct DLPackVersion {
  std::uint32_t major, minor;
};
struct DLManagedTensorVersioned {
  DLPackVersion version;
  void* manager_ctx;
  void (*deleter)(DLManagedTensorVersioned*);
  std::uint64_t flags;
  DLTensor dl_tensor;
};

// What the runtime reads plus the Python objects that keep that memory alive during the call.
struct HeldInput {
  mtedge::InputView view;
  py::object keep;
};

void set_float_type(mtedge::InputView& v, char kind, std::size_t itemsize, const std::string& name) {
  v.type_name = name;
  v.type = mtedge::ScalarType::kOther;
  if (kind == 'f' && itemsize == 4) v.type = mtedge::ScalarType::kFloat32;
  if (kind == 'f' && itemsize == 8) v.type = mtedge::ScalarType::kFloat64;
  if (kind == 'f' && itemsize == 2) v.type = mtedge::ScalarType::kFloat16;
}

HeldInput from_numpy(const py::array& a) {
  HeldInput h;
  h.keep = a;
  h.view.data = a.data();
  const py::dtype dt = a.dtype();
  set_float_type(h.view, dt.kind(), static_cast<std::size_t>(dt.itemsize()), std::string(py::str(dt)));
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    h.view.shape.push_back(a.shape(i));
    h.view.strides.push_back(a.strides(i));
  }
  return h;
}

HeldInput from_dlpack_capsule(py::handle capsule) {
  const char* name = PyCapsule_GetName(capsule.ptr());
  const DLTensor* t = nullptr;
  if (name && std::strcmp(name, "dltensor") == 0) {
    t = &static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule.ptr(), name))->dl_tensor;
  } else if (name && std::strcmp(name, "dltensor_versioned") == 0) {
    auto* m = static_cast<DLManagedTensorVersioned*>(PyCapsule_GetPointer(capsule.ptr(), name));
    if (m->version.major != 1)
      throw mtedge::InputError("input is a DLPack " + std::to_string(m->version.major) + "." +
                               std::to_string(m->version.minor) + " tensor; this runtime reads DLPack 1.x");
    t = &m->dl_tensor;
  } else {
    throw mtedge::InputError(std::string("input is a capsule named '") + (name ? name : "") +
                             "', not an unused DLPack tensor ('dltensor'); pass the tensor itself "
                             "or a fresh x.__dlpack__()");
  }
  HeldInput h;
  h.keep = py::reinterpret_borrow<py::object>(capsule);
  mtedge::InputView& v = h.view;
  v.data = static_cast<const char*>(t->data) + t->byte_offset;
  const std::size_t item = t->dtype.bits / 8;
  static const char* kinds[] = {"int", "uint", "float", "opaque", "bfloat", "complex", "bool"};
  const std::string tn = (t->dtype.code < 7 ? kinds[t->dtype.code] : "code" + std::to_string(t->dtype.code)) +
                         std::to_string(t->dtype.bits) + (t->dtype.lanes > 1 ? "x" + std::to_string(t->dtype.lanes) : "");
  if (t->dtype.lanes == 1 && t->dtype.code == 4 && t->dtype.bits == 16) {
    v.type = mtedge::ScalarType::kBFloat16;  // numpy has no bfloat16: only DLPack names it
    v.type_name = "bfloat16";
  } else {
    set_float_type(v, t->dtype.lanes == 1 && t->dtype.code == 2 ? 'f' : '?', item, tn);
  }
  for (std::int32_t i = 0; i < t->ndim; ++i) {
    v.shape.push_back(t->shape[i]);
    if (t->strides) v.strides.push_back(t->strides[i] * static_cast<std::int64_t>(item));
  }
  switch (t->device.device_type) {
    case 1: case 3: v.memory = mtedge::MemoryKind::kHost; break;  // CPU, CUDA pinned host
    case 2: case 13: v.memory = mtedge::MemoryKind::kDevice; break;  // CUDA, CUDA managed
    default:
      throw mtedge::InputError("input is a DLPack tensor on device type " + std::to_string(t->device.device_type) +
                               "; the runtime reads CPU (1) and CUDA (2) memory");
  }
  return h;
}

HeldInput from_cuda_array_interface(py::handle obj) {
  py::dict cai = obj.attr("__cuda_array_interface__");
  HeldInput h;
  h.keep = py::reinterpret_borrow<py::object>(obj);
  mtedge::InputView& v = h.view;
  v.memory = mtedge::MemoryKind::kDevice;
  v.data = reinterpret_cast<const void*>(py::cast<std::uintptr_t>(py::tuple(cai["data"])[0]));
  const py::dtype dt(py::cast<std::string>(cai["typestr"]));
  set_float_type(v, dt.kind(), static_cast<std::size_t>(dt.itemsize()), std::string(py::str(dt)));
  for (auto d : py::tuple(cai["shape"])) v.shape.push_back(py::cast<std::int64_t>(d));
  if (cai.contains("strides") && !cai["strides"].is_none())
    for (auto s : py::tuple(cai["strides"])) v.strides.push_back(py::cast<std::int64_t>(s));
  if (cai.contains("stream") && !cai["stream"].is_none()) v.stream = py::cast<std::uintptr_t>(cai["stream"]);
  return h;
}

HeldInput hold_input(py::handle obj) {
  // numpy first: the common case, read straight from the array object (no protocol dicts).
  if (py::isinstance<py::array>(obj)) return from_numpy(py::reinterpret_borrow<py::array>(obj));
  // Device memory: torch/cupy CUDA tensors also have __dlpack__, but this one says which
  // stream produced them.
  if (py::hasattr(obj, "__cuda_array_interface__")) return from_cuda_array_interface(obj);
  if (PyCapsule_CheckExact(obj.ptr())) return from_dlpack_capsule(obj);
  if (py::hasattr(obj, "__dlpack__")) {
    py::object capsule;
    try {
      try {
        capsule = obj.attr("__dlpack__")(py::arg("max_version") = py::make_tuple(1, 0));
      } catch (py::error_already_set& e) {
        if (!e.matches(PyExc_TypeError)) throw;  // a producer older than DLPack 1.0
        capsule = obj.attr("__dlpack__")();
      }
    } catch (py::error_already_set& e) {
      throw mtedge::InputError(std::string("input.__dlpack__() failed: ") + e.what() +
                               " (torch: pass x.detach())");
    }
    return from_dlpack_capsule(capsule);
  }
  // Any other array-like with the numpy protocol: numpy views it without copying.
  if (py::hasattr(obj, "__array_interface__"))
    return from_numpy(py::module_::import("numpy").attr("asarray")(obj));
  throw mtedge::InputError("input must be a tensor: a numpy array or an object with __dlpack__, "
                           "__array_interface__ or __cuda_array_interface__; got " +
                           std::string(py::str(py::type::of(obj).attr("__name__"))));
}

py::dict run_tasks(mtedge::Runtime& rt, py::handle input, const std::vector<std::string>& tasks,
                   const std::string& variant, bool copy) {
  const HeldInput in = hold_input(input);  // `in.keep` holds the memory until the call returns
  mtedge::RunOptions opts;
  opts.variant = variant;
  opts.allow_copy = copy;
  // Fresh arrays per call: the caller may keep them; the runtime copies outputs into them.
  std::vector<py::array_t<float>> arrays;
  std::vector<void*> ptrs;
  for (const auto& t : tasks) {
    const auto& spec = rt.output_spec(t, variant);
    arrays.emplace_back(std::vector<py::ssize_t>(spec.shape.begin(), spec.shape.end()));
    ptrs.push_back(arrays.back().mutable_data());
  }
  {
    py::gil_scoped_release nogil;  // other Python threads run, and other callers' runs overlap
    rt.run(in.view, tasks, ptrs, opts);
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
  d["last_input_copy"] = s.last_input_copy;
  d["zero_copy_input"] = s.zero_copy_input;
  d["compiled_segments"] = s.compiled_segments;
  d["contexts"] = s.contexts;
  d["parallel_lanes"] = s.parallel_lanes;
  py::list per;
  for (const auto& c : s.per_context) {
    py::dict e;
    e["runs"] = c.runs;
    e["total_run_ms"] = double(c.total_run_ns) / 1e6;
    per.append(e);
  }
  d["per_context"] = per;
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
                       const std::string& device, const std::string& cache_dir, bool verify, int callers) {
             mtedge::RuntimeOptions o;
             o.backend = backend;
             o.callers = callers;
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
           py::arg("cache_dir") = "", py::arg("verify") = true, py::arg("callers") = 1)
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
      .def("run", &run_tasks, py::arg("input"), py::arg("tasks"), py::arg("variant") = "", py::arg("copy") = true)
      .def("stats", [](const mtedge::Runtime& rt) { return stats_dict(rt.stats()); })
      .def("reset_stats", &mtedge::Runtime::reset_stats)
      // Waits for the runs in progress without the GIL (other Python threads keep running);
      // waiting and later calls get InputError "closed", specs read meanwhile stay valid.
      .def("close", &mtedge::Runtime::close, py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("closed", &mtedge::Runtime::closed);
}
