#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mtedge {

enum class DType { kFloat32, kFloat16 };

inline std::size_t dtype_size(DType t) { return t == DType::kFloat32 ? 4 : 2; }
inline const char* dtype_name(DType t) { return t == DType::kFloat32 ? "float32" : "float16"; }
DType parse_dtype(const std::string& s);  // throws BundleError

using Shape = std::vector<std::int64_t>;

std::string shape_str(const Shape& s);  // "[1, 3, 19, 23]"
std::int64_t numel(const Shape& s);

// A named boundary tensor exactly as the manifest describes it for one variant.
struct TensorSpec {
  std::string name;
  Shape shape;
  DType dtype = DType::kFloat32;

  std::int64_t numel() const { return mtedge::numel(shape); }
  std::size_t bytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype); }
};

}  // namespace mtedge
