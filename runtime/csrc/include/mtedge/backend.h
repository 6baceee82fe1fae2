#pragma once
// The small interface every backend implements. A backend allocates boundary tensors
// where its segments can read them (host memory for OpenVINO, device memory for TensorRT)
// and compiles segments; the runtime wires them together once at load.
#include <memory>
#include <string>
#include <vector>

#include "mtedge/tensor.h"

namespace mtedge {

class Buffer {
 public:
  explicit Buffer(TensorSpec spec) : spec_(std::move(spec)) {}
  virtual ~Buffer() = default;
  Buffer(const Buffer&) = delete;  // owns device/host memory: never copied
  Buffer& operator=(const Buffer&) = delete;
  const TensorSpec& spec() const { return spec_; }
  // Copies the whole tensor into caller memory (spec().bytes() bytes); waits for pending work.
  virtual void copy_to_host(void* dst) const = 0;

 private:
  TensorSpec spec_;
};

class Segment {
 public:
  Segment() = default;
  virtual ~Segment() = default;
  Segment(const Segment&) = delete;  // owns a compiled model / execution context
  Segment& operator=(const Segment&) = delete;
  // At load: make the segment read/write `tensor` in place in `buf` (shared with other segments).
  virtual void bind(const std::string& tensor, Buffer& buf) = 0;
  // Per run: feed caller memory for a model input. Zero-copy where the backend can
  // (OpenVINO wraps the pointer); otherwise copied into the buffer bound at load.
  virtual void set_external_input(const std::string& tensor, const void* host_data) = 0;
  virtual void run() = 0;
};

struct SegmentSource {
  std::string name;     // logical segment name, for messages
  std::string path;     // absolute file path (ONNX, OpenVINO blob or TensorRT plan)
  // The file's bytes as read once and sha256-checked by the runtime; empty when verification
  // is off. A backend that can load from memory uses these, so what runs is what was hashed.
  std::string data;
  std::vector<TensorSpec> inputs, outputs;
};

class Backend {
 public:
  Backend() = default;
  virtual ~Backend() = default;
  Backend(const Backend&) = delete;  // owns the core / CUDA stream
  Backend& operator=(const Backend&) = delete;
  virtual std::string name() const = 0;
  virtual std::unique_ptr<Buffer> allocate(const TensorSpec& spec) = 0;
  virtual std::unique_ptr<Segment> load(const SegmentSource& src) = 0;
  // Called once after every segment is loaded (TensorRT sizes shared activation memory here).
  virtual void finalize() {}
  // True when set_external_input reads caller memory directly.
  virtual bool zero_copy_input() const = 0;
};

struct BackendOptions {
  std::string device = "CPU";   // OpenVINO device name
  int threads = 0;              // 0: backend default
  std::string precision = "f32";  // "f32" (parity) or "bf16" (OpenVINO CPU) / "f16"
  std::string cache_dir;        // OpenVINO model cache; empty: none
};

// "openvino", "tensorrt" or "auto" (TensorRT when compiled in and a GPU is present, else
// OpenVINO when compiled in, else TensorRT, whose constructor then says why it cannot run).
std::unique_ptr<Backend> make_backend(const std::string& name, const BackendOptions& opts);
bool openvino_compiled();
bool tensorrt_compiled();
bool tensorrt_available();  // compiled in and a CUDA device is visible

}  // namespace mtedge
