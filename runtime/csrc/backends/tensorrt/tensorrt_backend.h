#pragma once
#include <memory>

#include "mtedge/backend.h"

namespace mtedge {

std::unique_ptr<Backend> make_tensorrt_backend(const BackendOptions& opts);
int tensorrt_device_count();  // CUDA devices visible; 0 when none or no driver

}  // namespace mtedge
