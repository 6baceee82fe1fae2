#pragma once
// mtedge::Runtime: loads a bundle once (verify, compile, allocate, wire) and runs any set of
// tasks per call, the shared segments once, with no reload when the task set changes.
#include <chrono>
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

struct RuntimeStats {
  std::string backend;
  double load_ms = 0, verify_ms = 0, compile_ms = 0;
  std::uint64_t runs = 0;
  std::uint64_t total_run_ns = 0, last_run_ns = 0;
  std::uintptr_t last_input_address = 0;  // caller pointer handed to the backend
  bool zero_copy_input = false;
  std::size_t intermediate_bytes = 0;  // all boundary tensors allocated at load
  std::vector<SegmentStats> segments;
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

  // Runs `tasks` on one input (input_spec() bytes, float32) and copies task i's output
  // into outputs[i] (output_spec(tasks[i]) bytes). Allocates nothing; thread-safe (one mutex
  // per Runtime: calls are serialized). Throws UnknownNameError / InputError / BackendError.
  void run(const void* input, const std::vector<std::string>& tasks,
           const std::vector<void*>& outputs, const std::string& variant = {});

  // Convenience for tools and tests: allocates and returns one float vector per task.
  std::map<std::string, std::vector<float>> run(const std::vector<float>& input,
                                                const std::vector<std::string>& tasks,
                                                const std::string& variant = {});

  RuntimeStats stats() const;
  void reset_stats();

  // Releases every compiled segment and buffer; waits for a run in progress. Later calls to
  // run() throw InputError ("closed"). Must not race with input_spec()/output_spec(), whose
  // references it invalidates (the Python binding holds the GIL around both).
  void close();
  bool closed() const;

 private:
  struct LoadedVariant;
  const LoadedVariant& find_variant(const std::string& name) const;
  void load();
  void load_variant(const std::string& name, const std::string& engine_target);

  Manifest manifest_;
  RuntimeOptions opts_;
  std::unique_ptr<Backend> backend_;
  std::vector<std::unique_ptr<LoadedVariant>> variants_;
  std::vector<std::vector<bool>> task_masks_;  // per task: which segments it needs
  std::vector<bool> scratch_mask_;             // reused by run(), guarded by mu_
  mutable std::mutex mu_;
  bool closed_ = false;                        // guarded by mu_
  RuntimeStats stats_;
};

}  // namespace mtedge
