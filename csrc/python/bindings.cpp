// The one binding file: C++ runtime -> Python module toolchain._runtime.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "mtedge/selfcheck.h"

namespace py = pybind11;

PYBIND11_MODULE(_runtime, m) {
  m.doc() = "mtedge C++ runtime (raw bindings; use toolchain.runtime.Runtime)";
  m.def("self_check", [] {
    const mtedge::SelfCheck s = mtedge::self_check();
    py::dict d;
    d["mtedge_version"] = s.mtedge_version;
    d["openvino_version"] = s.openvino_version;
    d["openvino_devices"] = s.openvino_devices;
    d["tensorrt_enabled"] = s.tensorrt_enabled;
    return d;
  });
}
