// TensorRT backend (Jetson): one deserialized engine (.plan) per segment and one IRuntime, shared
// by every caller. Each lane (one per runtime execution context) has its own CUDA stream and
// one activation scratch block; its IExecutionContexts (one per engine, created at load with
// user-managed activation memory) all use that block, which is valid because one lane runs its
// segments one after another on its stream, while other lanes use their own blocks and
// streams. Boundary tensors live in device memory allocated per lane and are bound with
// setTensorAddress, so heads read the trunk's outputs in place; only the model input (H2D, or
// nothing when the caller passes device memory) and the requested task outputs (D2H) move.
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
  explicit TrtBuffer(const TensorSpec& spec) : Buffer(spec) {
    cuda_check(cudaMalloc(&dev_, spec.bytes()), "cudaMalloc for tensor '" + spec.name + "'");
  }
  ~TrtBuffer() override { cudaFree(dev_); }
  void* device() const { return dev_; }

 private:
  void* dev_ = nullptr;
};

// A caller's stream and activation scratch (sized by the backend to the hungriest engine).
class TrtLane final : public Lane {
 public:
  explicit TrtLane(std::int64_t scratch_bytes) : scratch_bytes_(scratch_bytes) {
    cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    if (scratch_bytes_ > 0)
      cuda_check(cudaMalloc(&scratch_, static_cast<std::size_t>(scratch_bytes_)),
                 "cudaMalloc of " + std::to_string(scratch_bytes_) + " bytes of activations");
  }
  ~TrtLane() override {
    if (scratch_) cudaFree(scratch_);
    if (stream_) cudaStreamDestroy(stream_);
  }
  cudaStream_t stream() const { return stream_; }
  void* scratch() const { return scratch_; }
  std::int64_t scratch_bytes() const { return scratch_bytes_; }

  void copy_to_host(const Buffer& src, void* dst) override {
    cuda_check(cudaMemcpyAsync(dst, static_cast<const TrtBuffer&>(src).device(), src.spec().bytes(),
                               cudaMemcpyDeviceToHost, stream_),
               "copy of '" + src.spec().name + "' to host");
    cuda_check(cudaStreamSynchronize(stream_), "stream sync");
  }
  void copy_from(const void* src, MemoryKind kind, Buffer& dst) override {
    cuda_check(cudaMemcpyAsync(static_cast<TrtBuffer&>(dst).device(), src, dst.spec().bytes(),
                               kind == MemoryKind::kHost ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToDevice,
                               stream_),
               "copy of input '" + dst.spec().name + "' to the device");
  }
  // The producer's stream (__cuda_array_interface__ v3 "stream") must finish writing the input
  // before this lane reads it; the two streams are unrelated, so wait on the host.
  void wait_for_producer(std::uintptr_t stream) override {
    if (stream == 0) return;
    cuda_check(cudaStreamSynchronize(reinterpret_cast<cudaStream_t>(stream)),
               "waiting for the input's producer stream");
  }

 private:
  cudaStream_t stream_ = nullptr;
  void* scratch_ = nullptr;
  std::int64_t scratch_bytes_ = 0;
};

struct TrtEngine {
  TrtPtr<nvinfer1::ICudaEngine> engine;
  std::string name;
  std::vector<TensorSpec> inputs, outputs;
};

// One lane's IExecutionContext of an engine.
class TrtRequest final : public Request {
 public:
  TrtRequest(TrtEngine& e, Logger& logger, TrtLane& lane) : e_(e), logger_(logger), lane_(lane) {
    context_.reset(e_.engine->createExecutionContext(nvinfer1::ExecutionContextAllocationStrategy::kUSER_MANAGED));
    if (!context_)
      throw BackendError("TensorRT cannot create a context for '" + e_.name + "'" + logger_.take_last_error());
    for (const auto& t : e_.inputs) check_io(t, nvinfer1::TensorIOMode::kINPUT);
    for (const auto& t : e_.outputs) check_io(t, nvinfer1::TensorIOMode::kOUTPUT);
    set_device_memory();
  }

  void bind(const std::string& tensor, Buffer& buf) override {
    void* dev = static_cast<TrtBuffer&>(buf).device();
    set_address(tensor, dev);
    own_[tensor] = dev;
  }

  void set_external_input(const std::string& tensor, const void* data) override {
    auto& cur = current_[tensor];
    if (cur == data) return;
    set_address(tensor, const_cast<void*>(data));
    cur = data;
  }

  void reset_input(const std::string& tensor) override {
    void* own = own_.at(tensor);
    auto& cur = current_[tensor];
    if (cur == nullptr || cur == own) return;
    set_address(tensor, own);
    cur = own;
  }

  void run() override {
    if (!context_->enqueueV3(lane_.stream()))
      throw BackendError("TensorRT enqueueV3 failed for segment '" + e_.name + "'" + logger_.take_last_error());
  }

 private:
  void set_address(const std::string& tensor, void* dev) {
    if (!context_->setTensorAddress(tensor.c_str(), dev))
      throw BackendError("segment '" + e_.name + "': cannot bind tensor '" + tensor + "'" +
                         logger_.take_last_error());
  }

  // TensorRT reports a rejected block (too small, misaligned) only through the logger.
  void set_device_memory() {
    if (lane_.scratch_bytes() == 0) return;
    logger_.take_last_error();
#if MTEDGE_TRT_VERSION >= 1001
    context_->setDeviceMemoryV2(lane_.scratch(), lane_.scratch_bytes());
#else
    context_->setDeviceMemory(lane_.scratch());
#endif
    const std::string err = logger_.take_last_error();
    if (!err.empty())
      throw BackendError("TensorRT rejected " + std::to_string(lane_.scratch_bytes()) +
                         " bytes of activation memory for segment '" + e_.name + "'" + err);
  }

  void check_io(const TensorSpec& t, nvinfer1::TensorIOMode mode) {
    const nvinfer1::ICudaEngine& engine = *e_.engine;
    const char* n = t.name.c_str();
    if (engine.getTensorIOMode(n) != mode)
      throw BundleError("engine for segment '" + e_.name + "' has no " +
                        (mode == nvinfer1::TensorIOMode::kINPUT ? "input" : "output") +
                        " tensor '" + t.name + "'; rebuild the engine from this bundle");
    if (engine.getTensorDataType(n) != trt_type(t.dtype))
      throw BundleError("engine for segment '" + e_.name + "': tensor '" + t.name +
                        "' has another dtype than the manifest's " + dtype_name(t.dtype) +
                        "; rebuild the engine from this bundle");
    const nvinfer1::Dims d = engine.getTensorShape(n);
    bool dynamic = false;
    for (int i = 0; i < d.nbDims; ++i) dynamic |= d.d[i] < 0;
    if (mode == nvinfer1::TensorIOMode::kINPUT && dynamic) {
      check_shape(t.shape, "segment '" + e_.name + "' input '" + t.name + "'");  // rank <= Dims::MAX_DIMS
      nvinfer1::Dims want{};
      want.nbDims = static_cast<std::int32_t>(t.shape.size());
      for (std::size_t i = 0; i < t.shape.size(); ++i) want.d[i] = t.shape[i];
      if (!context_->setInputShape(n, want))
        throw BackendError("engine for segment '" + e_.name + "' rejects input shape " +
                           shape_str(t.shape) + " for '" + t.name + "'" + logger_.take_last_error());
    } else if (!dynamic) {
      Shape got(d.d, d.d + d.nbDims);
      if (got != t.shape)
        throw BundleError("engine for segment '" + e_.name + "': tensor '" + t.name + "' is " +
                          shape_str(got) + ", the manifest says " + shape_str(t.shape) +
                          "; rebuild the engine from this bundle");
    }
  }

  TrtEngine& e_;
  Logger& logger_;
  TrtLane& lane_;
  TrtPtr<nvinfer1::IExecutionContext> context_;
  std::map<std::string, void*> own_;              // buffers bound at load
  std::map<std::string, const void*> current_;    // what each model input reads now
};

class TrtSegment final : public Segment {
 public:
  TrtSegment(nvinfer1::IRuntime& runtime, Logger& logger, const SegmentSource& src) : logger_(logger) {
    e_.name = src.name;
    e_.inputs = src.inputs;
    e_.outputs = src.outputs;
    std::ifstream f(src.path, std::ios::binary);
    if (!f)
      throw FileMissingError("TensorRT engine '" + src.path + "' of segment '" + e_.name +
                             "' cannot be read; rebuild the engines (`mtedge build --target ...`)");
    const std::vector<char> plan((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    e_.engine.reset(runtime.deserializeCudaEngine(plan.data(), plan.size()));
    if (!e_.engine)
      throw BackendError("TensorRT cannot deserialize '" + src.path + "' (segment '" + e_.name +
                         "'): the plan is corrupt or was built for another TensorRT version or GPU; "
                         "rebuild it on this device" + logger_.take_last_error());
  }

  std::unique_ptr<Request> create_request(Lane& lane) override {
    return std::make_unique<TrtRequest>(e_, logger_, static_cast<TrtLane&>(lane));
  }

  std::int64_t device_memory_size() const {
#if MTEDGE_TRT_VERSION >= 1001
    return e_.engine->getDeviceMemorySizeV2();
#else
    return static_cast<std::int64_t>(e_.engine->getDeviceMemorySize());
#endif
  }

 private:
  Logger& logger_;
  TrtEngine e_;  // the engine (weights) once, whatever the number of lanes
};

class TensorRtBackend final : public Backend {
 public:
  explicit TensorRtBackend(const BackendOptions& opts) : callers_(opts.callers) {
    if (opts.precision != "f32")
      throw InputError("precision '" + opts.precision + "' has no effect on TensorRT plans "
                       "(precision is fixed when the engine is built); use 'f32'");
    if (tensorrt_device_count() == 0)
      throw BackendError("no CUDA device is visible; use backend='openvino' on this machine");
    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    if (!runtime_) throw BackendError("TensorRT createInferRuntime failed");
  }

  std::string name() const override { return "tensorrt"; }
  bool reads_in_place(MemoryKind kind) const override { return kind == MemoryKind::kDevice; }
  std::size_t input_alignment() const override { return 256; }  // setTensorAddress requires it
  int parallel_lanes() const override { return callers_; }       // one stream each

  bool is_device_pointer(const void* ptr) const override {
    cudaPointerAttributes attr{};
    if (cudaPointerGetAttributes(&attr, ptr) != cudaSuccess) return false;
    return attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged;
  }

  std::unique_ptr<Buffer> allocate(const TensorSpec& spec) override {
    return std::make_unique<TrtBuffer>(spec);
  }

  std::unique_ptr<Segment> load(const SegmentSource& src) override {
    auto seg = std::make_unique<TrtSegment>(*runtime_, logger_, src);
    scratch_bytes_ = std::max(scratch_bytes_, seg->device_memory_size());
    return seg;
  }

  // One block per lane as large as the hungriest engine's activations (see the file comment).
  std::unique_ptr<Lane> create_lane() override { return std::make_unique<TrtLane>(scratch_bytes_); }

 private:
  Logger logger_;  // must outlive the runtime and every engine
  TrtPtr<nvinfer1::IRuntime> runtime_;
  int callers_ = 1;
  std::int64_t scratch_bytes_ = 0;
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
