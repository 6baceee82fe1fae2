#include "mtedge/backend.h"
#include "mtedge/errors.h"
#include "../backends/openvino/openvino_backend.h"
#ifdef MTEDGE_WITH_TENSORRT
#include "../backends/tensorrt/tensorrt_backend.h"
#endif

namespace mtedge {

bool tensorrt_compiled() {
#ifdef MTEDGE_WITH_TENSORRT
  return true;
#else
  return false;
#endif
}

bool tensorrt_available() {
#ifdef MTEDGE_WITH_TENSORRT
  return tensorrt_device_count() > 0;
#else
  return false;
#endif
}

std::unique_ptr<Backend> make_backend(const std::string& name, const BackendOptions& opts) {
  if (name == "openvino" || (name == "auto" && !tensorrt_available()))
    return make_openvino_backend(opts);
  if (name == "tensorrt" || name == "auto") {
#ifdef MTEDGE_WITH_TENSORRT
    return make_tensorrt_backend(opts);
#else
    throw InputError("backend 'tensorrt' is not compiled into this build; rebuild with "
                     "-DMTEDGE_WITH_TENSORRT=ON on the device, or use backend='openvino'");
#endif
  }
  throw InputError("unknown backend '" + name + "'; expected 'auto', 'openvino' or 'tensorrt'");
}

}  // namespace mtedge
