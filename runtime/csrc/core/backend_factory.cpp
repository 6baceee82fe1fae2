#include "mtedge/backend.h"
#include "mtedge/errors.h"
#ifdef MTEDGE_WITH_OPENVINO
#include "../backends/openvino/openvino_backend.h"
#endif
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

bool openvino_compiled() {
#ifdef MTEDGE_WITH_OPENVINO
  return true;
#else
  return false;
#endif
}

std::unique_ptr<Backend> make_backend(const std::string& name, const BackendOptions& opts) {
  if (name != "auto" && name != "openvino" && name != "tensorrt")
    throw InputError("unknown backend '" + name + "'; expected 'auto', 'openvino' or 'tensorrt'");
  // auto: TensorRT where it can run (compiled in and a GPU visible), else OpenVINO if compiled in.
  const bool use_trt = name == "tensorrt" || (name == "auto" && (tensorrt_available() || !openvino_compiled()));
  if (!use_trt) {
#ifdef MTEDGE_WITH_OPENVINO
    return make_openvino_backend(opts);
#else
    throw InputError("backend 'openvino' is not compiled into this build of mtedge-runtime (it has: tensorrt); "
                     "use backend='tensorrt', or rebuild with OpenVINO installed (-DMTEDGE_WITH_OPENVINO=ON)");
#endif
  }
#ifdef MTEDGE_WITH_TENSORRT
  return make_tensorrt_backend(opts);
#else
  throw InputError("backend 'tensorrt' is not compiled into this build of mtedge-runtime (it has: openvino); "
                   "rebuild it on the device where TensorRT is installed (-DMTEDGE_WITH_TENSORRT=ON), "
                   "or use backend='openvino'");
#endif
}

}  // namespace mtedge
