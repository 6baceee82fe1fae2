// TensorRT backend (Jetson): one deserialized engine (.plan) per segment, one IRuntime, one
// CUDA stream. Every IExecutionContext is created at load with user-managed activation memory;
// because the runtime runs segments one after another on that one stream, all contexts share
// a single scratch allocation sized to the largest engine's need. Boundary tensors live in
// device memory allocated at load and are bound with setTensorAddress, so heads read the
// trunk's outputs in place; only the model input (H2D) and requested task outputs (D2H) move.
//
// Status: compile-checked against the TensorRT 10.3 and 11.1 headers (scripts/check-tensorrt.sh)
// and run in CI against the link-time TensorRT/CUDA test double (tests/tensorrt_double: engines
// executed by OpenVINO on host memory with guard zones); it has never run on a device.
#include "tensorrt_backend.h"

#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <vector>

#include "mtedge/errors.h"

// V2 device-memory calls (int64 sizes) arrived in 10.1; 10.0 only has the size_t versions.
#define MTEDGE_TRT_VERSION (NV_TENSORRT_MAJOR * 100 + NV_TENSORRT_MINOR)

namespace mtedge {
namespace {

void cuda_check(cudaError_t err, const std::string& what) {
  if (err != cudaSuccess)
    throw BackendError("CUDA error in " + what + ": " + cudaGetErrorString(err));
}

// Prints warnings and keeps the last error, so an exception can say what TensorRT reported.
class Logger final : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* msg) noexcept override {
    if (severity <= Severity::kWARNING) std::fprintf(stderr, "[mtedge/tensorrt] %s\n", msg);
    if (severity <= Severity::kERROR) {
      std::lock_guard<std::mutex> lock(mu_);
      last_error_ = msg;
    }
  }
  // " (TensorRT: <last error>)" once, then forgotten; "" when TensorRT reported nothing.
  std::string take_last_error() {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out = last_error_.empty() ? "" : " (TensorRT: " + last_error_ + ")";
    last_error_.clear();
    return out;
  }

 private:
  std::mutex mu_;
  std::string last_error_;
};

nvinfer1::DataType trt_type(DType t) {
  return t == DType::kFloat32 ? nvinfer1::DataType::kFLOAT : nvinfer1::DataType::kHALF;
}

struct TrtDeleter {
  template <typename T>
  void operator()(T* p) const { delete p; }  // TensorRT 10+: objects are deleted, not destroy()ed
};
template <typename T>
using TrtPtr = std::unique_ptr<T, TrtDeleter>;

class TrtBuffer final : public Buffer {
 public:
  TrtBuffer(const TensorSpec& spec, cudaStream_t stream) : Buffer(spec), stream_(stream) {
    cuda_check(cudaMalloc(&dev_, spec.bytes()), "cudaMalloc for tensor '" + spec.name + "'");
  }
  ~TrtBuffer() override { cudaFree(dev_); }
  void copy_to_host(void* dst) const override {
    cuda_check(cudaMemcpyAsync(dst, dev_, spec().bytes(), cudaMemcpyDeviceToHost, stream_),
               "copy of '" + spec().name + "' to host");
    cuda_check(cudaStreamSynchronize(stream_), "stream sync");
  }
  void* device() const { return dev_; }

 private:
  void* dev_ = nullptr;
  cudaStream_t stream_;
};

class TrtSegment final : public Segment {
 public:
  TrtSegment(nvinfer1::IRuntime& runtime, Logger& logger, cudaStream_t stream, const SegmentSource& src)
      : logger_(logger), stream_(stream), name_(src.name) {
    std::ifstream f(src.path, std::ios::binary);
    if (!f)
      throw FileMissingError("TensorRT engine '" + src.path + "' of segment '" + name_ +
                             "' cannot be read; rebuild the engines (`mtedge build --target ...`)");
    const std::vector<char> plan((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    engine_.reset(runtime.deserializeCudaEngine(plan.data(), plan.size()));
    if (!engine_)
      throw BackendError("TensorRT cannot deserialize '" + src.path + "' (segment '" + name_ +
                         "'): the plan is corrupt or was built for another TensorRT version or GPU; "
                         "rebuild it on this device" + logger_.take_last_error());
    // Activation memory comes from the backend's shared scratch (set in finalize()).
    context_.reset(engine_->createExecutionContext(
        nvinfer1::ExecutionContextAllocationStrategy::kUSER_MANAGED));
    if (!context_)
      throw BackendError("TensorRT cannot create a context for '" + name_ + "'" + logger_.take_last_error());
    for (const auto& t : src.inputs) check_io(t, nvinfer1::TensorIOMode::kINPUT);
    for (const auto& t : src.outputs) check_io(t, nvinfer1::TensorIOMode::kOUTPUT);
  }

  void bind(const std::string& tensor, Buffer& buf) override {
    void* dev = static_cast<TrtBuffer&>(buf).device();
    if (!context_->setTensorAddress(tensor.c_str(), dev))
      throw BackendError("segment '" + name_ + "': cannot bind tensor '" + tensor + "'" +
                         logger_.take_last_error());
    bound_[tensor] = {dev, buf.spec().bytes()};
  }

  void set_external_input(const std::string& tensor, const void* host_data) override {
    const auto& b = bound_.at(tensor);
    cuda_check(cudaMemcpyAsync(b.first, host_data, b.second, cudaMemcpyHostToDevice, stream_),
               "copy of input '" + tensor + "' to the device");
  }

  void run() override {
    if (!context_->enqueueV3(stream_))
      throw BackendError("TensorRT enqueueV3 failed for segment '" + name_ + "'" + logger_.take_last_error());
  }

  std::int64_t device_memory_size() const {
#if MTEDGE_TRT_VERSION >= 1001
    return engine_->getDeviceMemorySizeV2();
#else
    return static_cast<std::int64_t>(engine_->getDeviceMemorySize());
#endif
  }

  // TensorRT reports a rejected block (too small, misaligned) only through the logger.
  void set_device_memory(void* mem, std::int64_t size) {
    logger_.take_last_error();
#if MTEDGE_TRT_VERSION >= 1001
    context_->setDeviceMemoryV2(mem, size);
#else
    (void)size;
    context_->setDeviceMemory(mem);
#endif
    const std::string err = logger_.take_last_error();
    if (!err.empty())
      throw BackendError("TensorRT rejected " + std::to_string(size) + " bytes of activation memory for segment '" +
                         name_ + "'" + err);
  }

 private:
  void check_io(const TensorSpec& t, nvinfer1::TensorIOMode mode) {
    const char* n = t.name.c_str();
    if (engine_->getTensorIOMode(n) != mode)
      throw BundleError("engine for segment '" + name_ + "' has no " +
                        (mode == nvinfer1::TensorIOMode::kINPUT ? "input" : "output") +
                        " tensor '" + t.name + "'; rebuild the engine from this bundle");
    if (engine_->getTensorDataType(n) != trt_type(t.dtype))
      throw BundleError("engine for segment '" + name_ + "': tensor '" + t.name +
                        "' has another dtype than the manifest's " + dtype_name(t.dtype) +
                        "; rebuild the engine from this bundle");
    const nvinfer1::Dims d = engine_->getTensorShape(n);
    bool dynamic = false;
    for (int i = 0; i < d.nbDims; ++i) dynamic |= d.d[i] < 0;
    if (mode == nvinfer1::TensorIOMode::kINPUT && dynamic) {
      check_shape(t.shape, "segment '" + name_ + "' input '" + t.name + "'");  // rank <= Dims::MAX_DIMS
      nvinfer1::Dims want{};
      want.nbDims = static_cast<std::int32_t>(t.shape.size());
      for (std::size_t i = 0; i < t.shape.size(); ++i) want.d[i] = t.shape[i];
      if (!context_->setInputShape(n, want))
        throw BackendError("engine for segment '" + name_ + "' rejects input shape " +
                           shape_str(t.shape) + " for '" + t.name + "'" + logger_.take_last_error());
    } else if (!dynamic) {
      Shape got(d.d, d.d + d.nbDims);
      if (got != t.shape)
        throw BundleError("engine for segment '" + name_ + "': tensor '" + t.name + "' is " +
                          shape_str(got) + ", the manifest says " + shape_str(t.shape) +
                          "; rebuild the engine from this bundle");
    }
  }

  Logger& logger_;
  cudaStream_t stream_;
  std::string name_;
  TrtPtr<nvinfer1::ICudaEngine> engine_;
  TrtPtr<nvinfer1::IExecutionContext> context_;
  std::map<std::string, std::pair<void*, std::size_t>> bound_;
};

class TensorRtBackend final : public Backend {
 public:
  explicit TensorRtBackend(const BackendOptions& opts) {
    if (opts.precision != "f32")
      throw InputError("precision '" + opts.precision + "' has no effect on TensorRT plans "
                       "(precision is fixed when the engine is built); use 'f32'");
    if (tensorrt_device_count() == 0)
      throw BackendError("no CUDA device is visible; use backend='openvino' on this machine");
    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    if (!runtime_) throw BackendError("TensorRT createInferRuntime failed");
    cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  }

  ~TensorRtBackend() override {
    if (scratch_) cudaFree(scratch_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "tensorrt"; }
  bool zero_copy_input() const override { return false; }

  std::unique_ptr<Buffer> allocate(const TensorSpec& spec) override {
    return std::make_unique<TrtBuffer>(spec, stream_);
  }

  std::unique_ptr<Segment> load(const SegmentSource& src) override {
    auto seg = std::make_unique<TrtSegment>(*runtime_, logger_, stream_, src);
    segments_.push_back(seg.get());
    return seg;
  }

  // Segments never run concurrently (one stream, one runtime mutex), so one scratch block
  // as large as the hungriest engine's activations serves every context.
  void finalize() override {
    std::int64_t need = 0;
    for (auto* s : segments_) need = std::max(need, s->device_memory_size());
    if (need > 0) cuda_check(cudaMalloc(&scratch_, static_cast<std::size_t>(need)),
                             "cudaMalloc of " + std::to_string(need) + " bytes of activations");
    for (auto* s : segments_) s->set_device_memory(scratch_, need);
  }

 private:
  Logger logger_;  // must outlive the runtime and every engine
  TrtPtr<nvinfer1::IRuntime> runtime_;
  cudaStream_t stream_ = nullptr;
  void* scratch_ = nullptr;
  std::vector<TrtSegment*> segments_;  // owned by the Runtime, destroyed before the backend
};

}  // namespace

int tensorrt_device_count() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

std::unique_ptr<Backend> make_tensorrt_backend(const BackendOptions& opts) {
  return std::make_unique<TensorRtBackend>(opts);
}

}  // namespace mtedge
