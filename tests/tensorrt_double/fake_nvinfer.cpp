// TEST DOUBLE of libnvinfer: IRuntime, ICudaEngine and IExecutionContext as the TensorRT backend
// uses them, built against the real TensorRT headers (10.x or 11.x: the public classes are
// inline wrappers over the apiv::V* interfaces, which this file implements).
//
// An engine is an engine_file.h blob; its ONNX runs in OpenVINO (CPU, f32) when the stream work
// queued by enqueueV3 runs, reading inputs from and writing outputs to the fake device memory.
// Checked like TensorRT: engine magic/version, tensor names, input shapes, 256-byte alignment
// of tensor addresses and activation memory, activation memory size, addresses set before
// enqueue. Checked beyond TensorRT (a device would corrupt data or fault silently): every bound
// tensor and the activation memory lie inside live allocations, and no two of them overlap.
// The activation memory is overwritten with garbage during each run, as real layers would.
// Several contexts of one engine may run at once on different streams (the runtime's callers);
// enqueueV3 faults when its memory overlaps memory that work still in flight on another stream
// writes (or reads, when it writes): shared activation scratch or boundary tensors between
// concurrent contexts would corrupt results on a device without any error.
#include <NvInferRuntime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include <openvino/openvino.hpp>

#include "engine_file.h"
#include "fake_device.h"

namespace fake_trt {
namespace {

using namespace nvinfer1;
using Severity = ILogger::Severity;

std::string dims_str(const Dims& d) {
  std::string s = "[";
  for (int i = 0; i < d.nbDims; ++i) s += (i ? "," : "") + std::to_string(d.d[i]);
  return s + "]";
}

bool same_dims(const Dims& a, const Dims& b) {
  if (a.nbDims != b.nbDims) return false;
  for (int i = 0; i < a.nbDims; ++i)
    if (a.d[i] != b.d[i]) return false;
  return true;
}

// Calls the double does not model: say so loudly and return a neutral value.
template <typename T = void>
T unsupported(const char* what) noexcept {
  std::fprintf(stderr, "[fake TensorRT] %s is not modeled by the test double\n", what);
  if constexpr (!std::is_void_v<T>) return T{};
}

struct IoTensor {
  std::string name;            // the name getIOTensorName reports
  std::vector<std::string> aliases;  // every name OpenVINO knows the port by (ONNX names)
  TensorIOMode mode;
  Dims dims;
  DataType type;
  ov::element::Type ov_type;
  std::size_t bytes;
};

bool to_trt_type(const ov::element::Type& t, DataType& out) {
  if (t == ov::element::f32) out = DataType::kFLOAT;
  else if (t == ov::element::f16) out = DataType::kHALF;
  else if (t == ov::element::bf16) out = DataType::kBF16;
  else if (t == ov::element::i8) out = DataType::kINT8;
  else if (t == ov::element::u8) out = DataType::kUINT8;
  else if (t == ov::element::i32) out = DataType::kINT32;
  else if (t == ov::element::i64) out = DataType::kINT64;
  else if (t == ov::element::boolean) out = DataType::kBOOL;
  else return false;
  return true;
}

class FakeEngine;

// ---- memory that enqueued work reads or writes until it runs (see the file comment) ----------
struct InFlight {
  std::uint64_t id;  // one enqueueV3 call
  cudaStream_t stream;
  std::uintptr_t begin, end;
  bool writes;
  std::string what;  // "activation memory of engine 'trunk'"
};
std::mutex g_flight_mu;
std::vector<InFlight> g_flight;
std::uint64_t g_next_flight = 1;

// Removes one enqueue's ranges when its queued work is gone: run, skipped after a fault, or
// dropped by cudaDeviceReset (the token lives in the queued closure).
struct FlightToken {
  std::uint64_t id;
  ~FlightToken() {
    std::lock_guard<std::mutex> lock(g_flight_mu);
    g_flight.erase(std::remove_if(g_flight.begin(), g_flight.end(), [&](const InFlight& f) { return f.id == id; }),
                   g_flight.end());
  }
};

// ------------------------------------------------------------------------------------------
class FakeContext final : public IExecutionContext, public apiv::VExecutionContext {
 public:
  FakeContext(FakeEngine& engine, ExecutionContextAllocationStrategy strategy);
  ~FakeContext() noexcept override;

  IExecutionContext* getPImpl() noexcept override { return this; }
  ICudaEngine const& getEngine() const noexcept override;
  bool setTensorAddress(char const* tensorName, void* data) noexcept override;
  void const* getTensorAddress(char const* tensorName) const noexcept override;
  bool setInputTensorAddress(char const* n, void const* d) noexcept override {
    return setTensorAddress(n, const_cast<void*>(d));
  }
  bool setOutputTensorAddress(char const* n, void* d) noexcept override { return setTensorAddress(n, d); }
  void* getOutputTensorAddress(char const* n) const noexcept override {
    return const_cast<void*>(getTensorAddress(n));
  }
  bool setInputShape(char const* tensorName, Dims const& dims) noexcept override;
  Dims getTensorShape(char const* tensorName) const noexcept override;
  void setDeviceMemory(void* memory) noexcept override;
  void setDeviceMemoryV2(void* memory, int64_t size) noexcept override;
  bool enqueueV3(cudaStream_t stream) noexcept override;
  bool allInputDimensionsSpecified() const noexcept override { return true; }
  void setName(char const* name) noexcept override { name_ = name ? name : ""; }
  char const* getName() const noexcept override { return name_.c_str(); }

  // Not used by the backend.
  void setDebugSync(bool) noexcept override { unsupported("setDebugSync"); }
  bool getDebugSync() const noexcept override { return unsupported<bool>("getDebugSync"); }
  void setProfiler(IProfiler*) noexcept override { unsupported("setProfiler"); }
  IProfiler* getProfiler() const noexcept override { return unsupported<IProfiler*>("getProfiler"); }
  int32_t getOptimizationProfile() const noexcept override { return 0; }
  void setErrorRecorder(IErrorRecorder*) noexcept override { unsupported("setErrorRecorder"); }
  IErrorRecorder* getErrorRecorder() const noexcept override { return nullptr; }
  bool executeV2(void* const*) noexcept override { return unsupported<bool>("executeV2"); }
  bool setOptimizationProfileAsync(int32_t, cudaStream_t) noexcept override {
    return unsupported<bool>("setOptimizationProfileAsync");
  }
  void setEnqueueEmitsProfile(bool) noexcept override { unsupported("setEnqueueEmitsProfile"); }
  bool getEnqueueEmitsProfile() const noexcept override { return unsupported<bool>("getEnqueueEmitsProfile"); }
  bool reportToProfiler() const noexcept override { return unsupported<bool>("reportToProfiler"); }
  Dims getTensorStrides(char const*) const noexcept override { return unsupported<Dims>("getTensorStrides"); }
  int32_t inferShapes(int32_t, char const**) noexcept override { return 0; }
  bool setInputConsumedEvent(cudaEvent_t) noexcept override { return unsupported<bool>("setInputConsumedEvent"); }
  cudaEvent_t getInputConsumedEvent() const noexcept override { return nullptr; }
  bool setOutputAllocator(char const*, IOutputAllocator*) noexcept override {
    return unsupported<bool>("setOutputAllocator");
  }
  IOutputAllocator* getOutputAllocator(char const*) noexcept override { return nullptr; }
  int64_t getMaxOutputSize(char const*) const noexcept override { return unsupported<int64_t>("getMaxOutputSize"); }
  bool setTemporaryStorageAllocator(IGpuAllocator*) noexcept override {
    return unsupported<bool>("setTemporaryStorageAllocator");
  }
  IGpuAllocator* getTemporaryStorageAllocator() const noexcept override { return nullptr; }
  void setPersistentCacheLimit(size_t) noexcept override { unsupported("setPersistentCacheLimit"); }
  size_t getPersistentCacheLimit() const noexcept override { return 0; }
  bool setNvtxVerbosity(ProfilingVerbosity) noexcept override { return unsupported<bool>("setNvtxVerbosity"); }
  ProfilingVerbosity getNvtxVerbosity() const noexcept override { return ProfilingVerbosity::kNONE; }
  void setAuxStreams(cudaStream_t*, int32_t) noexcept override { unsupported("setAuxStreams"); }
  bool setDebugListener(IDebugListener*) noexcept override { return unsupported<bool>("setDebugListener"); }
  IDebugListener* getDebugListener() noexcept override { return nullptr; }
  bool setTensorDebugState(char const*, bool) noexcept override { return unsupported<bool>("setTensorDebugState"); }
  bool getDebugState(char const*) const noexcept override { return false; }
  bool setAllTensorsDebugState(bool) noexcept override { return unsupported<bool>("setAllTensorsDebugState"); }
  size_t updateDeviceMemorySizeForShapes() noexcept override {
    return unsupported<size_t>("updateDeviceMemorySizeForShapes");
  }
#if NV_TENSORRT_MAJOR < 11
  bool allInputShapesSpecified() const noexcept override { return true; }
#else
  IRuntimeConfig* getRuntimeConfig() const noexcept override { return unsupported<IRuntimeConfig*>("getRuntimeConfig"); }
  bool setUnfusedTensorsDebugState(bool) noexcept override { return unsupported<bool>("setUnfusedTensorsDebugState"); }
  bool getUnfusedTensorsDebugState() const noexcept override { return false; }
  bool setCommunicator(void*) noexcept override { return unsupported<bool>("setCommunicator"); }
#endif

 private:
  void run_on_device();  // the queued work: OpenVINO on the fake device memory
  void log(Severity s, const std::string& msg) const noexcept;

  FakeEngine& engine_;
  ov::InferRequest request_;
  std::string name_;
  std::map<std::string, void*> addresses_;
  void* memory_ = nullptr;
  std::int64_t memory_size_ = 0;
  bool owns_memory_ = false;
  int pending_ = 0;                                        // queued enqueueV3 work not yet run
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // queued work checks it
};

// ------------------------------------------------------------------------------------------
class FakeEngine final : public ICudaEngine, public apiv::VCudaEngine {
 public:
  FakeEngine(ILogger* logger, EngineFile file, ov::CompiledModel model, std::vector<IoTensor> io)
      : logger_(logger), file_(std::move(file)), model_(std::move(model)), io_(std::move(io)) {
    mImpl = this;
  }

  ILogger* logger() const { return logger_; }
  ov::CompiledModel& model() { return model_; }
  const std::vector<IoTensor>& io() const { return io_; }
  const IoTensor* find(const char* name) const {
    for (const auto& t : io_)
      for (const auto& a : t.aliases)
        if (name && a == name) return &t;
    return nullptr;
  }
  void log_invalid_name(const char* api, const char* name) const noexcept {
    if (logger_)
      logger_->log(Severity::kERROR, (std::string(api) + ": Error Code 3: Internal Error (Given invalid tensor name: " +
                                      (name ? name : "(null)") +
                                      ". Get valid tensor names with getIOTensorName())").c_str());
  }

  ICudaEngine* getPImpl() noexcept override { return this; }
  IExecutionContext* createExecutionContext(ExecutionContextAllocationStrategy strategy) noexcept override {
    try {
      return new FakeContext(*this, strategy);
    } catch (const std::exception& e) {
      if (logger_) logger_->log(Severity::kERROR, (std::string("createExecutionContext: ") + e.what()).c_str());
      return nullptr;
    }
  }
  char const* getName() const noexcept override { return file_.name.c_str(); }
  Dims getTensorShape(char const* n) const noexcept override {
    if (const IoTensor* t = find(n)) return t->dims;
    log_invalid_name("ICudaEngine::getTensorShape", n);
    Dims d{};
    d.nbDims = -1;
    return d;
  }
  DataType getTensorDataType(char const* n) const noexcept override {
    if (const IoTensor* t = find(n)) return t->type;
    log_invalid_name("ICudaEngine::getTensorDataType", n);
    return DataType::kFLOAT;
  }
  TensorIOMode getTensorIOMode(char const* n) const noexcept override {
    const IoTensor* t = find(n);
    return t ? t->mode : TensorIOMode::kNONE;  // TensorRT answers kNONE for a non-I/O name
  }
  TensorLocation getTensorLocation(char const*) const noexcept override { return TensorLocation::kDEVICE; }
  int32_t getNbIOTensors() const noexcept override { return static_cast<int32_t>(io_.size()); }
  char const* getIOTensorName(int32_t i) const noexcept override {
    return i >= 0 && i < getNbIOTensors() ? io_[i].name.c_str() : nullptr;
  }
  int64_t getDeviceMemorySizeV2() const noexcept override { return file_.activation_bytes; }
  int64_t getDeviceMemorySizeForProfileV2(int32_t) const noexcept override { return file_.activation_bytes; }
  int32_t getNbOptimizationProfiles() const noexcept override { return 1; }
  int32_t getNbAuxStreams() const noexcept override { return 0; }
  bool isShapeInferenceIO(char const*) const noexcept override { return false; }
  TensorFormat getTensorFormat(char const*) const noexcept override { return TensorFormat::kLINEAR; }

  // Not used by the backend.
  int32_t getNbLayers() const noexcept override { return unsupported<int32_t>("getNbLayers"); }
  IHostMemory* serialize() const noexcept override { return unsupported<IHostMemory*>("serialize"); }
  bool isRefittable() const noexcept override { return false; }
  EngineCapability getEngineCapability() const noexcept override { return EngineCapability::kSTANDARD; }
  void setErrorRecorder(IErrorRecorder*) noexcept override { unsupported("setErrorRecorder"); }
  IErrorRecorder* getErrorRecorder() const noexcept override { return nullptr; }
  TacticSources getTacticSources() const noexcept override { return 0; }
  ProfilingVerbosity getProfilingVerbosity() const noexcept override { return ProfilingVerbosity::kDETAILED; }
  IEngineInspector* createEngineInspector() const noexcept override {
    return unsupported<IEngineInspector*>("createEngineInspector");
  }
  int32_t getTensorBytesPerComponent(char const*) const noexcept override {
    return unsupported<int32_t>("getTensorBytesPerComponent");
  }
  int32_t getTensorComponentsPerElement(char const*) const noexcept override { return 1; }
  char const* getTensorFormatDesc(char const*) const noexcept override { return "linear"; }
  int32_t getTensorVectorizedDim(char const*) const noexcept override { return -1; }
  Dims getProfileShape(char const* n, int32_t, OptProfileSelector) const noexcept override { return getTensorShape(n); }
  HardwareCompatibilityLevel getHardwareCompatibilityLevel() const noexcept override {
    return static_cast<HardwareCompatibilityLevel>(0);  // kNONE (declared in NvInfer.h)
  }
  int32_t getTensorBytesPerComponentV2(char const*, int32_t) const noexcept override {
    return unsupported<int32_t>("getTensorBytesPerComponentV2");
  }
  int32_t getTensorComponentsPerElementV2(char const*, int32_t) const noexcept override { return 1; }
  TensorFormat getTensorFormatV2(char const*, int32_t) const noexcept override { return TensorFormat::kLINEAR; }
  char const* getTensorFormatDescV2(char const*, int32_t) const noexcept override { return "linear"; }
  int32_t getTensorVectorizedDimV2(char const*, int32_t) const noexcept override { return -1; }
  ISerializationConfig* createSerializationConfig() noexcept override {
    return unsupported<ISerializationConfig*>("createSerializationConfig");
  }
  IHostMemory* serializeWithConfig(ISerializationConfig&) const noexcept override {
    return unsupported<IHostMemory*>("serializeWithConfig");
  }
  IRefitter* createRefitter(ILogger&) noexcept override { return unsupported<IRefitter*>("createRefitter"); }
  int64_t getStreamableWeightsSize() const noexcept override { return 0; }
  bool isDebugTensor(char const*) const noexcept override { return false; }
  bool setWeightStreamingBudgetV2(int64_t) noexcept override { return unsupported<bool>("setWeightStreamingBudgetV2"); }
  int64_t getWeightStreamingBudgetV2() const noexcept override { return 0; }
  int64_t getWeightStreamingAutomaticBudget() const noexcept override { return 0; }
  int64_t getWeightStreamingScratchMemorySize() const noexcept override { return 0; }
#if NV_TENSORRT_MAJOR < 11
  IExecutionContext* createExecutionContextWithoutDeviceMemory() noexcept override {
    return createExecutionContext(ExecutionContextAllocationStrategy::kUSER_MANAGED);
  }
  size_t getDeviceMemorySize() const noexcept override { return static_cast<size_t>(file_.activation_bytes); }
  int32_t const* getProfileTensorValues(char const*, int32_t, OptProfileSelector) const noexcept override {
    return unsupported<int32_t const*>("getProfileTensorValues");
  }
  bool hasImplicitBatchDimension() const noexcept override { return false; }
  size_t getDeviceMemorySizeForProfile(int32_t) const noexcept override {
    return static_cast<size_t>(file_.activation_bytes);
  }
  bool setWeightStreamingBudget(int64_t) noexcept override { return unsupported<bool>("setWeightStreamingBudget"); }
  int64_t getWeightStreamingBudget() const noexcept override { return 0; }
  int64_t getMinimumWeightStreamingBudget() const noexcept override { return 0; }
#else
  int64_t const* getProfileTensorValuesV2(char const*, int32_t, OptProfileSelector) const noexcept override {
    return unsupported<int64_t const*>("getProfileTensorValuesV2");
  }
  IExecutionContext* createExecutionContextWithRuntimeConfig(IRuntimeConfig*) noexcept override {
    return unsupported<IExecutionContext*>("createExecutionContextWithRuntimeConfig");
  }
  IRuntimeConfig* createRuntimeConfig() noexcept override { return unsupported<IRuntimeConfig*>("createRuntimeConfig"); }
  int64_t getEngineStat(EngineStat) const noexcept override { return unsupported<int64_t>("getEngineStat"); }
  char const* getAliasedInputTensor(char const*) const noexcept override { return nullptr; }
#endif

 private:
  ILogger* logger_;
  EngineFile file_;
  ov::CompiledModel model_;
  std::vector<IoTensor> io_;
};

// ------------------------------------------------------------------------------------------
FakeContext::FakeContext(FakeEngine& engine, ExecutionContextAllocationStrategy strategy)
    : engine_(engine), request_(engine.model().create_infer_request()) {
  mImpl = this;
  if (strategy != ExecutionContextAllocationStrategy::kUSER_MANAGED && engine.getDeviceMemorySizeV2() > 0) {
    memory_size_ = engine.getDeviceMemorySizeV2();
    if (cudaMalloc(&memory_, static_cast<size_t>(memory_size_)) != cudaSuccess)
      throw std::runtime_error("cudaMalloc of the context's activation memory failed");
    owns_memory_ = true;
  }
}

FakeContext::~FakeContext() noexcept {
  *alive_ = false;
  if (pending_ > 0)
    fakecuda::fault(std::string("IExecutionContext of engine '") + engine_.getName() + "' destroyed with " +
                    std::to_string(pending_) + " enqueueV3 call(s) still pending on the stream (missing "
                    "cudaStreamSynchronize)");
  if (owns_memory_) cudaFree(memory_);
}

ICudaEngine const& FakeContext::getEngine() const noexcept { return engine_; }

void FakeContext::log(Severity s, const std::string& msg) const noexcept {
  if (engine_.logger()) engine_.logger()->log(s, msg.c_str());
}

bool FakeContext::setTensorAddress(char const* n, void* data) noexcept {
  const IoTensor* t = engine_.find(n);
  if (!t) {
    engine_.log_invalid_name("IExecutionContext::setTensorAddress", n);
    return false;
  }
  if (reinterpret_cast<std::uintptr_t>(data) % fakecuda::kAlignment != 0) {
    log(Severity::kERROR, std::string("IExecutionContext::setTensorAddress: Error Code 3: API Usage Error "
                                      "(Parameter check failed, condition: (reinterpret_cast<uintptr_t>(data) "
                                      "% 256) == 0. Address of tensor ") + n + " is not 256-byte aligned.)");
    return false;
  }
  addresses_[t->name] = data;
  return true;
}

void const* FakeContext::getTensorAddress(char const* n) const noexcept {
  const IoTensor* t = engine_.find(n);
  auto it = t ? addresses_.find(t->name) : addresses_.end();
  return it == addresses_.end() ? nullptr : it->second;
}

bool FakeContext::setInputShape(char const* n, Dims const& dims) noexcept {
  const IoTensor* t = engine_.find(n);
  if (!t || t->mode != TensorIOMode::kINPUT) {
    engine_.log_invalid_name("IExecutionContext::setInputShape", n);
    return false;
  }
  if (!same_dims(dims, t->dims)) {
    log(Severity::kERROR, std::string("IExecutionContext::setInputShape: Error Code 3: API Usage Error (Parameter "
                                      "check failed, condition: engineDims.d[i] == dims.d[i]. Static dimension "
                                      "mismatch while setting input shape for ") + n + ". Set dimensions are " +
                              dims_str(dims) + ". Expected dimensions are " + dims_str(t->dims) + ".)");
    return false;
  }
  return true;
}

Dims FakeContext::getTensorShape(char const* n) const noexcept { return engine_.getTensorShape(n); }

void FakeContext::setDeviceMemory(void* memory) noexcept { setDeviceMemoryV2(memory, engine_.getDeviceMemorySizeV2()); }

void FakeContext::setDeviceMemoryV2(void* memory, int64_t size) noexcept {
  const int64_t need = engine_.getDeviceMemorySizeV2();
  if (size < need) {
    log(Severity::kERROR, "IExecutionContext::setDeviceMemoryV2: Error Code 3: API Usage Error (Parameter check "
                          "failed, condition: size >= mEngine.getDeviceMemorySizeV2(). Given " + std::to_string(size) +
                              " bytes, engine " + engine_.getName() + " needs " + std::to_string(need) + " bytes.)");
    return;
  }
  if (reinterpret_cast<std::uintptr_t>(memory) % fakecuda::kAlignment != 0) {
    log(Severity::kERROR, std::string("IExecutionContext::setDeviceMemoryV2: Error Code 3: API Usage Error "
                                      "(Parameter check failed, condition: (reinterpret_cast<uintptr_t>(memory) "
                                      "% 256) == 0. Device memory for engine ") + engine_.getName() +
                              " is not 256-byte aligned.)");
    return;
  }
  if (owns_memory_) {
    cudaFree(memory_);
    owns_memory_ = false;
  }
  memory_ = memory;
  memory_size_ = size;
}

bool FakeContext::enqueueV3(cudaStream_t stream) noexcept {
  const std::string who = std::string("engine '") + engine_.getName() + "'";
  if (!fakecuda::is_stream(stream)) {
    log(Severity::kERROR, "IExecutionContext::enqueueV3: Error Code 1: Cuda Runtime (invalid resource handle)");
    return false;
  }
  for (const auto& t : engine_.io())
    if (!getTensorAddress(t.name.c_str())) {
      log(Severity::kERROR, "IExecutionContext::enqueueV3: Error Code 3: API Usage Error (Parameter check failed, "
                            "condition: mContext.profileObliviousBindings.at(profileObliviousIndex) || "
                            "getPtrOrNull(mOutputAllocators, profileObliviousIndex). Address is not set for " +
                                std::string(t.mode == TensorIOMode::kINPUT ? "input" : "output") + " tensor " +
                                t.name + ". Call setInputTensorAddress or setTensorAddress before "
                                "enqueue/execute.)");
      return false;
    }
  if (engine_.getDeviceMemorySizeV2() > 0 && memory_ == nullptr) {
    log(Severity::kERROR, "IExecutionContext::enqueueV3: Error Code 3: API Usage Error (Parameter check failed, "
                          "condition: mDeviceMemory != nullptr. The context of " + who + " was created with "
                          "kUSER_MANAGED and setDeviceMemory was never called (or was rejected).)");
    return false;
  }
  // What a device would only show as corruption or a fault: checked here, reported as a fault
  // (the stream's next synchronize returns cudaErrorIllegalAddress with this diagnosis).
  struct Range {
    std::string what;
    std::uintptr_t begin, end;
    bool writes;
  };
  std::vector<Range> live;
  for (const auto& t : engine_.io()) {
    const void* p = getTensorAddress(t.name.c_str());
    const auto r = fakecuda::check_range(p, t.bytes);
    const std::string what = (t.mode == TensorIOMode::kINPUT ? "input '" : "output '") + t.name + "'";
    if (!r.ok) {
      fakecuda::fault("enqueueV3 of " + who + ": " + what + " (" + std::to_string(t.bytes) + " bytes): " + r.why);
      return true;
    }
    live.push_back({what, reinterpret_cast<std::uintptr_t>(p), reinterpret_cast<std::uintptr_t>(p) + t.bytes,
                    t.mode == TensorIOMode::kOUTPUT});
  }
  if (memory_size_ > 0 && engine_.getDeviceMemorySizeV2() > 0) {
    const auto r = fakecuda::check_range(memory_, static_cast<std::size_t>(memory_size_));
    if (!r.ok) {
      fakecuda::fault("enqueueV3 of " + who + ": activation memory (" + std::to_string(memory_size_) +
                      " bytes): " + r.why);
      return true;
    }
    const auto b = reinterpret_cast<std::uintptr_t>(memory_);
    live.push_back({"activation memory", b, b + static_cast<std::uintptr_t>(memory_size_), true});
  }
  for (std::size_t i = 0; i < live.size(); ++i)
    for (std::size_t j = i + 1; j < live.size(); ++j)
      if (live[i].begin < live[j].end && live[j].begin < live[i].end) {
        fakecuda::fault("enqueueV3 of " + who + ": " + live[i].what + " and " + live[j].what +
                        " overlap in device memory; two live tensors must never share bytes");
        return true;
      }
  std::string race;
  auto token = std::make_shared<FlightToken>();
  {
    std::lock_guard<std::mutex> lock(g_flight_mu);
    token->id = g_next_flight++;
    for (const auto& r : live) {
      for (const auto& f : g_flight)
        if (f.stream != stream && r.begin < f.end && f.begin < r.end && (r.writes || f.writes) && race.empty())
          race = "enqueueV3 of " + who + ": its " + r.what + " overlaps the " + f.what +
                 " of work still in flight on another stream; two streams would race on that memory "
                 "(each concurrent context needs its own activation memory and tensors)";
      g_flight.push_back({token->id, stream, r.begin, r.end, r.writes, r.what + " of " + who});
    }
  }
  if (!race.empty()) {
    fakecuda::fault(race);  // token goes out of scope here: nothing stays registered
    return true;
  }
  ++pending_;
  fakecuda::enqueue(stream, "enqueueV3 " + who, [this, alive = alive_, token] {
    if (!*alive) return;  // the context is gone (reported by its destructor)
    --pending_;
    run_on_device();
  });
  return true;
}

void FakeContext::run_on_device() {
  // Layers use the activation memory: whatever was there before is gone.
  if (memory_ && memory_size_ > 0) std::memset(memory_, fakecuda::kGarbage, static_cast<std::size_t>(memory_size_));
  try {
    for (const auto& t : engine_.io()) {
      ov::Shape shape(t.dims.d, t.dims.d + t.dims.nbDims);
      request_.set_tensor(t.name, ov::Tensor(t.ov_type, shape, addresses_.at(t.name)));
    }
    request_.infer();
  } catch (const std::exception& e) {
    fakecuda::fault(std::string("engine '") + engine_.getName() + "' failed in OpenVINO: " + e.what());
  }
  if (memory_ && memory_size_ > 0) std::memset(memory_, fakecuda::kGarbage, static_cast<std::size_t>(memory_size_));
}

// ------------------------------------------------------------------------------------------
class FakeRuntime final : public IRuntime, public apiv::VRuntime {
 public:
  explicit FakeRuntime(ILogger* logger) : logger_(logger) { mImpl = this; }

  IRuntime* getPImpl() noexcept override { return this; }
  ICudaEngine* deserializeCudaEngine(void const* blob, std::size_t size) noexcept override {
    EngineFile file;
    std::string why;
    if (!parse_engine_file(blob, size, file, why)) return error("Error Code 1: Serialization (" + why + ")");
    if (file.major != NV_TENSORRT_MAJOR || file.minor != NV_TENSORRT_MINOR || file.patch != NV_TENSORRT_PATCH)
      return error("Error Code 1: Serialization (Serialization assertion stdVersionRead == kSERIALIZATION_VERSION "
                   "failed.Version tag does not match. Note: Current Version: " + version(NV_TENSORRT_MAJOR,
                   NV_TENSORRT_MINOR, NV_TENSORRT_PATCH) + ", Serialized Engine Version: " +
                   version(file.major, file.minor, file.patch) + ")");
    try {
      std::shared_ptr<ov::Model> model = core_.read_model(std::string(file.onnx, file.onnx_len), ov::Tensor());
      std::vector<IoTensor> io;
      auto add = [&](const ov::Output<const ov::Node>& port, TensorIOMode mode) {
        IoTensor t{port.get_any_name(), {}, mode, Dims{}, DataType::kFLOAT, port.get_element_type(), 0};
        t.aliases.assign(port.get_names().begin(), port.get_names().end());
        if (!to_trt_type(t.ov_type, t.type)) throw std::runtime_error("unsupported element type of " + t.name);
        const ov::PartialShape& ps = port.get_partial_shape();
        if (ps.is_dynamic() || ps.size() > static_cast<std::size_t>(Dims::MAX_DIMS))
          throw std::runtime_error("tensor " + t.name + " has a dynamic shape or rank > 8; the double models "
                                   "static-shape engines only");
        t.dims.nbDims = static_cast<int32_t>(ps.size());
        std::size_t n = 1;
        for (std::size_t i = 0; i < ps.size(); ++i) n *= static_cast<std::size_t>(t.dims.d[i] = ps[i].get_length());
        t.bytes = n * t.ov_type.size();
        io.push_back(t);
      };
      std::shared_ptr<const ov::Model> cmodel = model;
      for (const auto& p : cmodel->inputs()) add(p, TensorIOMode::kINPUT);
      for (const auto& p : cmodel->outputs()) add(p, TensorIOMode::kOUTPUT);
      ov::CompiledModel compiled = core_.compile_model(
          model, "CPU", ov::AnyMap{ov::hint::inference_precision(ov::element::f32), ov::inference_num_threads(1)});
      return new FakeEngine(logger_, std::move(file), std::move(compiled), std::move(io));
    } catch (const std::exception& e) {
      return error(std::string("Error Code 1: Serialization (engine payload cannot be loaded: ") + e.what() + ")");
    }
  }
  ILogger* getLogger() const noexcept override { return logger_; }
  int32_t getNbDLACores() const noexcept override { return 0; }

  // Not used by the backend.
  void setDLACore(int32_t) noexcept override { unsupported("setDLACore"); }
  int32_t getDLACore() const noexcept override { return -1; }
  void setGpuAllocator(IGpuAllocator*) noexcept override { unsupported("setGpuAllocator"); }
  void setErrorRecorder(IErrorRecorder*) noexcept override { unsupported("setErrorRecorder"); }
  IErrorRecorder* getErrorRecorder() const noexcept override { return nullptr; }
  bool setMaxThreads(int32_t) noexcept override { return true; }
  int32_t getMaxThreads() const noexcept override { return 1; }
  void setTemporaryDirectory(char const*) noexcept override { unsupported("setTemporaryDirectory"); }
  char const* getTemporaryDirectory() const noexcept override { return nullptr; }
  void setTempfileControlFlags(TempfileControlFlags) noexcept override { unsupported("setTempfileControlFlags"); }
  TempfileControlFlags getTempfileControlFlags() const noexcept override { return 0; }
  IPluginRegistry& getPluginRegistry() noexcept override {
    unsupported("getPluginRegistry");
    std::abort();
  }
  void setPluginRegistryParent(IPluginRegistry*) noexcept override { unsupported("setPluginRegistryParent"); }
  IRuntime* loadRuntime(char const*) noexcept override { return unsupported<IRuntime*>("loadRuntime"); }
  void setEngineHostCodeAllowed(bool) noexcept override { unsupported("setEngineHostCodeAllowed"); }
  bool getEngineHostCodeAllowed() const noexcept override { return false; }
#if NV_TENSORRT_MAJOR < 11
  ICudaEngine* deserializeCudaEngine(IStreamReader&) noexcept override {
    return unsupported<ICudaEngine*>("deserializeCudaEngine(IStreamReader&)");
  }
#else
  ICudaEngine* deserializeCudaEngineV2(IStreamReaderV2&) noexcept override {
    return unsupported<ICudaEngine*>("deserializeCudaEngineV2");
  }
#endif

 private:
  static std::string version(std::uint32_t a, std::uint32_t b, std::uint32_t c) {
    return std::to_string(a) + "." + std::to_string(b) + "." + std::to_string(c);
  }
  ICudaEngine* error(const std::string& msg) noexcept {
    if (logger_) logger_->log(Severity::kERROR, ("IRuntime::deserializeCudaEngine: " + msg).c_str());
    return nullptr;
  }

  ILogger* logger_;
  ov::Core core_;
};

}  // namespace
}  // namespace fake_trt

extern "C" TENSORRTAPI void* createInferRuntime_INTERNAL(void* logger, int32_t version) noexcept {
  auto* log = static_cast<nvinfer1::ILogger*>(logger);
  if (version != NV_TENSORRT_VERSION) {
    if (log)
      log->log(nvinfer1::ILogger::Severity::kERROR,
               ("createInferRuntime: Error Code 6: API Usage Error (The application was compiled against TensorRT " +
                std::to_string(version) + " but linked against " + std::to_string(NV_TENSORRT_VERSION) + ")")
                   .c_str());
    return nullptr;
  }
  try {
    return static_cast<nvinfer1::IRuntime*>(new fake_trt::FakeRuntime(log));
  } catch (const std::exception&) {
    return nullptr;
  }
}

extern "C" TENSORRTAPI int32_t getInferLibVersion() noexcept { return NV_TENSORRT_VERSION; }
