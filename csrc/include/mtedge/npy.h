#pragma once
// Minimal .npy (format 1.0/2.0, little-endian float32, C order) reader for golden files.
#include <string>
#include <vector>

#include "mtedge/tensor.h"

namespace mtedge {

struct NpyArray {
  Shape shape;
  std::vector<float> data;
};

NpyArray read_npy(const std::string& path);  // throws FileMissingError / BundleError

}  // namespace mtedge
