#include "mtedge/selfcheck.h"

#ifdef MTEDGE_WITH_OPENVINO
#include <openvino/openvino.hpp>
#endif

namespace mtedge {

SelfCheck self_check() {
  SelfCheck out;
  out.mtedge_version = "0.1.0";
#ifdef MTEDGE_WITH_OPENVINO
  out.openvino_enabled = true;
  const ov::Version v = ov::get_openvino_version();
  out.openvino_version = v.buildNumber;
  ov::Core core;
  out.openvino_devices = core.get_available_devices();
#endif
#ifdef MTEDGE_WITH_TENSORRT
  out.tensorrt_enabled = true;
#endif
  return out;
}

}  // namespace mtedge
