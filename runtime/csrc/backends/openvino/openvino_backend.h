#pragma once
#include <memory>

#include "mtedge/backend.h"

namespace mtedge {

std::unique_ptr<Backend> make_openvino_backend(const BackendOptions& opts);

}  // namespace mtedge
