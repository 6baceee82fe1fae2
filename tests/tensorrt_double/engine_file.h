#pragma once
// TEST DOUBLE: the "serialized engine" the fake TensorRT accepts. The writer is Python
// (tests/doubles/fake_engine.py, used by the fake `tensorrt` module and the trtexec double);
// this is the one reader. Little-endian, no padding:
//
//   char[16] magic "mtedge-fake-trt\0"
//   u32 format (1)     u32 major   u32 minor   u32 patch      TensorRT version it was built by
//   i64 activation_bytes                                      getDeviceMemorySizeV2()
//   u32 name_len, name bytes                                  engine name (the segment)
//   u64 onnx_len       u64 onnx_fnv1a64                       the ONNX that runs on enqueueV3
//   onnx bytes
#include <cstdint>
#include <cstring>
#include <string>

namespace fake_trt {

constexpr char kMagic[16] = "mtedge-fake-trt";  // 15 chars + NUL
constexpr std::uint32_t kFormat = 1;

struct EngineFile {
  std::uint32_t major = 0, minor = 0, patch = 0;
  std::int64_t activation_bytes = 0;
  std::string name;
  const char* onnx = nullptr;
  std::size_t onnx_len = 0;
};

inline std::uint64_t fnv1a64(const char* p, std::size_t n) {
  std::uint64_t h = 1469598103934665603ull;
  for (std::size_t i = 0; i < n; ++i) h = (h ^ static_cast<unsigned char>(p[i])) * 1099511628211ull;
  return h;
}

// Parses `blob`; on failure returns false with `why` in the words TensorRT uses for the same
// condition (magic tag, version tag, size).
inline bool parse_engine_file(const void* blob, std::size_t size, EngineFile& out, std::string& why) {
  const char* p = static_cast<const char*>(blob);
  const char* end = p + size;
  auto take = [&](void* dst, std::size_t n) {
    if (static_cast<std::size_t>(end - p) < n) return false;
    std::memcpy(dst, p, n);
    p += n;
    return true;
  };
  char magic[16];
  std::uint32_t format = 0, name_len = 0;
  std::uint64_t onnx_len = 0, sum = 0;
  if (blob == nullptr || !take(magic, 16) || std::memcmp(magic, kMagic, 16) != 0) {
    why = "Serialization assertion magicTagRead == kMAGIC_TAG failed.Magic tag does not match";
    return false;
  }
  if (!take(&format, 4) || format != kFormat || !take(&out.major, 4) || !take(&out.minor, 4) ||
      !take(&out.patch, 4) || !take(&out.activation_bytes, 8) || !take(&name_len, 4) ||
      static_cast<std::size_t>(end - p) < name_len) {
    why = "Serialization assertion size >= kHEADER_SIZE failed.Engine header is truncated";
    return false;
  }
  out.name.assign(p, name_len);
  p += name_len;
  if (!take(&onnx_len, 8) || !take(&sum, 8) || static_cast<std::uint64_t>(end - p) != onnx_len ||
      fnv1a64(p, onnx_len) != sum) {
    why = "Serialization assertion plan->header.size == size failed.Engine payload is truncated or corrupt";
    return false;
  }
  out.onnx = p;
  out.onnx_len = onnx_len;
  return true;
}

}  // namespace fake_trt
