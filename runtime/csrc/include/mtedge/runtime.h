#pragma once
// mtedge::Runtime: loads a bundle once (verify, compile, allocate, wire) and runs any set of
// tasks per call, the shared segments once, with no reload when the task set changes.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "mtedge/backend.h"
#include "mtedge/manifest.h"

namespace mtedge {

struct RuntimeOptions {
  std::string backend = "auto";       // "auto" | "openvino" | "tensorrt"
  // Execution contexts: how many calls may run at the same time on the one set of compiled
  // segments (each context has its own requests, boundary tensors and, on TensorRT, CUDA stream
  // and activation memory). A call waits while all are busy. Copied into backend_options.callers.
  int callers = 1;
  std::vector<std::string> variants;  // empty: the manifest's default_variant
  std::string engine_target;          // engines.<target> to load instead of ONNX; empty: ONNX
                                      // (TensorRT: first tensorrt target of the variant)
  BackendOptions backend_options;
  bool verify = true;                 // sha256 + size of every file before use
};

struct SegmentStats {
  std::string variant, segment;
  std::uint64_t runs = 0;
  std::uint64_t total_ns = 0;
};

struct ContextStats {
  std::uint64_t runs = 0;
  std::uint64_t total_run_ns = 0;
};

struct RuntimeStats {
  std::string backend;
  double load_ms = 0, verify_ms = 0, compile_ms = 0;
  int compiled_segments = 0;   // Backend::load calls: segments x variants, whatever `callers` is
  int contexts = 0;            // execution contexts (RuntimeOptions::callers)
  int parallel_lanes = 0;      // how many the backend can compute at once (OpenVINO streams)
  std::uint64_t runs = 0;
  std::uint64_t total_run_ns = 0, last_run_ns = 0;
  std::uintptr_t last_input_address = 0;  // the caller's pointer (of the last finished run)
  std::string last_input_copy;            // "" when read in place, else why it was copied
  bool zero_copy_input = false;           // host input can be read in place by this backend
  std::size_t intermediate_bytes = 0;  // all boundary tensors allocated at load, all contexts
  std::vector<SegmentStats> segments;
  std::vector<ContextStats> per_context;
};

// The caller's input tensor as it is (from numpy, __array_interface__, DLPack or
// __cuda_array_interface__). The runtime reads it in place when it already is what the model
// takes (float32, C-contiguous, the input's shape, aligned, memory the backend reads), and
// otherwise converts/copies it into the context's own input buffer, saying why.
enum class ScalarType { kFloat32, kFloat64, kFloat16, kBFloat16, kOther };
struct InputView {
  const void* data = nullptr;
  ScalarType type = ScalarType::kFloat32;
  std::string type_name = "float32";   // for messages ("uint8", "int64", ...)
  Shape shape;
  std::vector<std::int64_t> strides;   // in bytes; empty: C-contiguous
  MemoryKind memory = MemoryKind::kHost;
  std::uintptr_t stream = 0;           // device input: the producer's CUDA stream to wait for
};

struct RunOptions {
  std::string variant;     // empty: the default (first loaded) variant
  bool allow_copy = true;  // false: throw InputError naming why a copy would be needed
};

class Runtime {
 public:
  Runtime(const std::string& bundle_dir, RuntimeOptions opts = {});
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  const Manifest& manifest() const { return manifest_; }
  std::vector<std::string> tasks() const;
  std::vector<std::string> variants() const;  // loaded variants, load order
  const std::string& default_variant() const;  // the first loaded variant
  const TensorSpec& input_spec(const std::string& variant = {}) const;
  const TensorSpec& output_spec(const std::string& task, const std::string& variant = {}) const;

  // The segments `tasks` need, each once, in manifest (topological) order.
  std::vector<std::string> plan(const std::vector<std::string>& tasks) const;

  // Runs `tasks` on one input and copies task i's output into outputs[i] (output_spec(tasks[i])
  // bytes). Allocates nothing. Thread-safe: takes a free execution context (waits while all
  // `callers` are busy), so up to `callers` calls compute at once on the same compiled segments.
  // Throws UnknownNameError / InputError / BackendError.
  void run(const InputView& input, const std::vector<std::string>& tasks,
           const std::vector<void*>& outputs, const RunOptions& opts = {});
  // The same for dense float32 host memory of input_spec()'s shape.
  void run(const void* input, const std::vector<std::string>& tasks,
           const std::vector<void*>& outputs, const std::string& variant = {});

  // Convenience for tools and tests: allocates and returns one float vector per task.
  std::map<std::string, std::vector<float>> run(const std::vector<float>& input,
                                                const std::vector<std::string>& tasks,
                                                const std::string& variant = {});

  RuntimeStats stats() const;
  void reset_stats();

  // Releases every compiled segment and buffer; waits for the runs in progress (calls waiting
  // for a context give up). Later calls to run(), input_spec() and output_spec() throw
  // InputError ("closed"); references they returned before stay valid (specs are kept).
  void close();
  bool closed() const;

 private:
  struct LoadedVariant;
  struct Context;
  class Lease;
  const LoadedVariant& find_variant(const std::string& name) const;
  std::size_t variant_index(const std::string& name) const;
  void load();
  void load_variant(const std::string& name, const std::string& engine_target);
  std::unique_ptr<Context> make_context();
  std::string input_copy_reason(const InputView& in, const TensorSpec& spec) const;
  void feed_input(Context& c, std::size_t vi, const InputView& in, const std::string& why);

  Manifest manifest_;
  RuntimeOptions opts_;
  std::unique_ptr<Backend> backend_;
  std::vector<std::unique_ptr<LoadedVariant>> variants_;   // compiled once, read-only after load
  std::vector<std::unique_ptr<Context>> contexts_;         // per caller, built at load
  std::vector<std::vector<bool>> task_masks_;  // per task: which segments it needs
  mutable std::mutex mu_;                      // guards everything below
  std::condition_variable cv_;                 // a context came free, a run ended, or closed
  std::vector<Context*> free_;                 // contexts not running
  int active_ = 0;                             // runs holding a context
  std::atomic<bool> closed_{false};            // set under mu_; read without it by the spec getters
  RuntimeStats stats_;
};

}  // namespace mtedge
