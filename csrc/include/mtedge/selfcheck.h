#pragma once
#include <string>
#include <vector>

namespace mtedge {

// What the runtime was built against and what it can run on, for `mtedge doctor`.
struct SelfCheck {
  std::string mtedge_version;
  std::string openvino_version;
  std::vector<std::string> openvino_devices;
  bool tensorrt_enabled = false;
};

SelfCheck self_check();

}  // namespace mtedge
