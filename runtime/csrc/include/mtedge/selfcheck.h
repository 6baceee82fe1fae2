#pragma once
#include <string>
#include <vector>

namespace mtedge {

// What the runtime was built against and what it can run on, for `mtedge doctor`.
struct SelfCheck {
  std::string mtedge_version;
  bool openvino_enabled = false;      // the OpenVINO backend was compiled in
  std::string openvino_version;      // empty without it
  std::vector<std::string> openvino_devices;
  bool tensorrt_enabled = false;     // the TensorRT backend was compiled in
};

SelfCheck self_check();

}  // namespace mtedge
