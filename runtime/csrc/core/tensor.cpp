#include "mtedge/tensor.h"

#include "mtedge/errors.h"

namespace mtedge {

DType parse_dtype(const std::string& s) {
  if (s == "float32") return DType::kFloat32;
  if (s == "float16") return DType::kFloat16;
  throw BundleError("unsupported tensor dtype '" + s + "'; expected float32 or float16");
}

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::string shape_problem(const Shape& s) {
  if (s.empty()) return "rank 0; expected 1 to " + std::to_string(kMaxRank) + " dimensions";
  if (s.size() > kMaxRank)
    return "rank " + std::to_string(s.size()) + " > " + std::to_string(kMaxRank);
  std::int64_t n = 1;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] < 1) return "dimension " + std::to_string(i) + " is " + std::to_string(s[i]) + " < 1";
    // n * s[i] > kMaxElements, checked by division so it cannot overflow.
    if (s[i] > kMaxElements / n)
      return "more than " + std::to_string(kMaxElements) + " elements";
    n *= s[i];
  }
  return {};
}

void check_shape(const Shape& s, const std::string& what) {
  const std::string why = shape_problem(s);
  if (!why.empty())
    throw BundleError(what + ": shape " + shape_str(s) + " is invalid (" + why +
                      "); re-export the bundle with static shapes of 1 to " +
                      std::to_string(kMaxRank) + " positive dimensions");
}

std::int64_t numel(const Shape& s) {
  check_shape(s, "tensor");
  std::int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

}  // namespace mtedge
