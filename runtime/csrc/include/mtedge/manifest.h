#pragma once
// manifest.json (docs/bundle-format.md, format_version 1): every rule checked, the part the
// runtime needs kept. The rules are those of the Python model (runtime/mtedge_runtime/manifest.py);
// both are held to the conformance corpus in tests/data/manifests, which names for each refusal
// the JSON path an error starts with ("manifest.json: <path>: <what>; <fix>").
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "mtedge/tensor.h"

namespace mtedge {

struct FileRef {
  std::string file;  // relative to the bundle directory, '/'-separated, no '..'
  std::string sha256;
  std::uint64_t bytes = 0;
};

struct Task {
  std::string name;
  std::string kind;
  std::string output;                 // tensor name
  std::vector<std::string> segments;  // as listed in the manifest
  std::vector<int> segment_ids;       // indices into Manifest::segments
};

// Logical DAG node (no files).
struct LogicalSegment {
  std::string name;
  std::vector<std::string> inputs, outputs;
};

struct VariantSegment {
  FileRef ref;
  std::vector<TensorSpec> inputs, outputs;
};

struct Variant {
  std::string name;
  std::string precision;
  std::map<std::string, VariantSegment> segments;  // by logical segment name
};

struct EngineSet {
  std::string target, backend, variant, device;
  std::map<std::string, FileRef> segments;
};

struct Manifest {
  std::string dir;  // bundle directory the manifest was read from
  std::string name;
  TensorSpec input;
  std::vector<Task> tasks;               // manifest order
  std::vector<LogicalSegment> segments;  // manifest order == topological order
  std::map<std::string, Variant> variants;
  std::string default_variant;
  std::map<std::string, EngineSet> engines;
  FileRef golden_input;
  std::map<std::string, FileRef> golden_outputs;
  int golden_samples = 0;

  int task_index(const std::string& name) const;  // -1 if absent
  int segment_index(const std::string& name) const;
  std::string task_names() const;     // "a, b, c" for error messages
  std::string variant_names() const;
  const Variant& variant(const std::string& name) const;  // throws UnknownNameError
};

// Parses and checks manifest text; `dir` is recorded for resolving files. Throws BundleError.
Manifest parse_manifest(const std::string& json_text, const std::string& dir);
// Reads DIR/manifest.json. Throws FileMissingError / BundleError.
Manifest load_manifest(const std::string& bundle_dir);

// Joins bundle dir and a manifest-relative path.
std::string bundle_path(const Manifest& m, const std::string& rel);
// Checks size then sha256 of one referenced file; names it on mismatch.
void verify_file(const Manifest& m, const FileRef& ref);
// Reads a referenced file once and returns exactly the bytes whose size and sha256 were checked
// (hash what you load, never load again what you hashed). The resolved path must stay inside the
// bundle directory (a symlink pointing out of it is refused). Throws FileMissingError /
// IntegrityError / BundleError.
std::string read_verified(const Manifest& m, const FileRef& ref);

constexpr std::size_t kMaxManifestBytes = 16 * 1024 * 1024;

}  // namespace mtedge
