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

// Limits every shape read from a file or a caller is held to before it is used: TensorRT's
// Dims hold 8 dimensions, and a cap on elements keeps a hostile count from allocating the machine.
constexpr std::size_t kMaxRank = 8;
constexpr std::int64_t kMaxElements = std::int64_t(1) << 31;  // 8 GiB of float32

// Empty when `s` has rank 1..kMaxRank, every dimension >= 1 and at most kMaxElements elements
// (computed without overflow); otherwise why not ("rank 9 > 8", "dimension 2 is 0", ...).
std::string shape_problem(const Shape& s);
// Throws BundleError "<what>: shape [..] is invalid (<why>)..." unless shape_problem(s) is empty.
void check_shape(const Shape& s, const std::string& what);
// Element count of a shape that passed check_shape (throws BundleError on one that did not).
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
