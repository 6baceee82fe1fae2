#pragma once
// The small interface every backend implements. What is compiled once (a Segment: OpenVINO
// CompiledModel, TensorRT ICudaEngine; read-only after load, holds the weights) is split from
// what each concurrent caller needs for itself (a Lane: TensorRT's CUDA stream and activation
// scratch; a Request per segment: OpenVINO InferRequest, TensorRT IExecutionContext; and the
// Buffers its boundary tensors live in). The runtime builds one lane with its requests and
// buffers per execution context at load, and wires them together once.
#include <cstdint>
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
  // Host-visible memory when the backend has it (OpenVINO), else nullptr (TensorRT: device).
  virtual void* host() { return nullptr; }

 private:
  TensorSpec spec_;
};

// Where a caller's input lives. Host memory is what numpy/torch CPU tensors give; device memory
// comes from __cuda_array_interface__ (or a CUDA DLPack tensor) and only TensorRT can read it.
enum class MemoryKind { kHost, kDevice };

// Per execution context: the order its segments run in. Requests made on one lane run one after
// another (TensorRT: on the lane's CUDA stream, sharing its activation scratch); requests on
// different lanes may run at the same time on different threads.
class Lane {
 public:
  Lane() = default;
  virtual ~Lane() = default;
  Lane(const Lane&) = delete;
  Lane& operator=(const Lane&) = delete;
  // Copies the whole tensor into caller (host) memory; waits for the lane's pending work.
  virtual void copy_to_host(const Buffer& src, void* dst) = 0;
  // Copies spec().bytes() bytes of caller memory of `kind` into `dst` (the lane's own input
  // buffer) on this lane; `src` is dense float32 in the buffer's shape.
  virtual void copy_from(const void* src, MemoryKind kind, Buffer& dst) = 0;
  // Waits for work the caller queued on its own CUDA stream before reading its device input
  // (__cuda_array_interface__'s "stream"); 0: nothing to wait for. No-op without streams.
  virtual void wait_for_producer(std::uintptr_t /*stream*/) {}
};

// A segment's per-caller execution state (OpenVINO InferRequest, TensorRT IExecutionContext).
class Request {
 public:
  Request() = default;
  virtual ~Request() = default;
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;
  // At load: make the request read/write `tensor` in place in `buf` (shared with the other
  // segments' requests of the same lane).
  virtual void bind(const std::string& tensor, Buffer& buf) = 0;
  // Per run: read a model input from caller memory of `kind` in place (dense float32 of the
  // tensor's shape, aligned as alignment() says). Only called when the backend said it can:
  // Backend::reads_in_place(kind). Rebinding costs a pointer comparison when it did not change.
  virtual void set_external_input(const std::string& tensor, const void* data) = 0;
  // Per run: read the model input from the buffer bound at load again (after a copy into it).
  virtual void reset_input(const std::string& tensor) = 0;
  virtual void run() = 0;
};

// A compiled segment: read-only after load, shared by every lane (the weights live here once).
class Segment {
 public:
  Segment() = default;
  virtual ~Segment() = default;
  Segment(const Segment&) = delete;  // owns a compiled model / engine
  Segment& operator=(const Segment&) = delete;
  virtual std::unique_ptr<Request> create_request(Lane& lane) = 0;
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
  Backend(const Backend&) = delete;  // owns the core / CUDA runtime
  Backend& operator=(const Backend&) = delete;
  virtual std::string name() const = 0;
  virtual std::unique_ptr<Buffer> allocate(const TensorSpec& spec) = 0;
  virtual std::unique_ptr<Segment> load(const SegmentSource& src) = 0;
  // Called once after every segment is loaded and before the first lane is created
  // (TensorRT sizes each lane's activation scratch here).
  virtual void finalize() {}
  virtual std::unique_ptr<Lane> create_lane() = 0;
  // True when a request can read caller memory of `kind` in place (set_external_input).
  virtual bool reads_in_place(MemoryKind kind) const = 0;
  // Address alignment in bytes an in-place input needs (TensorRT: 256; OpenVINO: the element's).
  virtual std::size_t input_alignment() const { return 4; }
  // How many lanes can compute at the same time (OpenVINO: the CPU plugin's streams, as compiled).
  virtual int parallel_lanes() const { return 1; }
  // True when `ptr` is memory the device can read (TensorRT: cudaPointerGetAttributes).
  virtual bool is_device_pointer(const void* /*ptr*/) const { return false; }
};

struct BackendOptions {
  std::string device = "CPU";   // OpenVINO device name
  int threads = 0;              // 0: backend default; with several callers, the total
  std::string precision = "f32";  // "f32" (parity) or "bf16" (OpenVINO CPU) / "f16"
  std::string cache_dir;        // OpenVINO model cache; empty: none
  int callers = 1;              // execution contexts: OpenVINO compiles this many CPU streams
};

// "openvino", "tensorrt" or "auto" (TensorRT when compiled in and a GPU is present, else
// OpenVINO when compiled in, else TensorRT, whose constructor then says why it cannot run).
std::unique_ptr<Backend> make_backend(const std::string& name, const BackendOptions& opts);
bool openvino_compiled();
bool tensorrt_compiled();
bool tensorrt_available();  // compiled in and a CUDA device is visible

}  // namespace mtedge
