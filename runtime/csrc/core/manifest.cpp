#include "mtedge/manifest.h"

#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "mtedge/errors.h"
#include "mtedge/sha256.h"

namespace mtedge {
namespace {

// ordered_json keeps the manifest's key order: `segments` order is the execution order.
using Json = nlohmann::ordered_json;

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw BundleError("manifest.json: " + where + ": " + what +
                    "; re-export the bundle or fix manifest.json (docs/bundle-format.md)");
}

// The JSON path of `key` inside `where`: the same spelling as mtedge_runtime/manifest.py, so the
// conformance corpus (tests/data/manifests) can hold both to one expected field per case.
std::string join_path(const std::string& where, const std::string& key) {
  return where == "top level" ? key : where + "." + key;
}

const Json& field(const Json& j, const char* key, const std::string& where) {
  if (!j.is_object()) fail(where, "expected an object");
  auto it = j.find(key);
  if (it == j.end()) fail(join_path(where, key), "missing required key");
  return *it;
}

// The optional `key` of `j`, or nullptr.
const Json* optional(const Json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

// Objects the format closes (the schema's additionalProperties: false) refuse unknown keys, so
// a misspelt optional key is an error in both languages instead of silently ignored.
void only_keys(const Json& j, const std::string& where, std::initializer_list<const char*> allowed) {
  if (!j.is_object()) fail(where, "expected an object, got " + j.dump());
  for (const auto& kv : j.items()) {
    bool ok = false;
    for (const char* a : allowed) ok = ok || kv.key() == a;
    if (!ok) {
      std::string names;
      for (const char* a : allowed) names += (names.empty() ? "" : ", ") + std::string(a);
      fail(join_path(where, kv.key()), "unknown key (this object has: " + names + ")");
    }
  }
}

bool is_ident(const std::string& s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-')) return false;
  return true;
}

// Keys that become file paths (engines/<target>/<variant>/<segment>.blob) must be plain names.
void check_ident(const std::string& name, const std::string& where) {
  if (!is_ident(name))
    fail(where, "\"" + name + "\" is not a name (a letter or '_', then letters, digits, '_', '.', '-')");
}

std::string one_of(const Json& j, const char* key, const std::string& where,
                   std::initializer_list<const char*> allowed) {
  const Json& v = field(j, key, where);
  std::string names;
  for (const char* a : allowed) {
    if (v.is_string() && v.get<std::string>() == a) return a;
    names += (names.empty() ? "" : ", ") + std::string(a);
  }
  fail(join_path(where, key), "expected one of " + names + ", got " + v.dump());
}

void check_number(const Json& v, const std::string& where, double minimum, bool exclusive) {
  if (!v.is_number()) fail(where, "expected a number, got " + v.dump());
  const double d = v.get<double>();
  if (exclusive ? d <= minimum : d < minimum)
    fail(where, std::string("expected a number ") + (exclusive ? "> " : ">= ") +
                    std::to_string(minimum) + ", got " + v.dump());
}

// What an optional key may hold when present.
enum class Expect { kBool, kString, kObject, kObjectOrNull, kCount, kNonNegative };

void check_optional(const Json& j, const char* key, const std::string& where, Expect expect) {
  const Json* v = optional(j, key);
  if (!v) return;
  const std::string w = join_path(where, key);
  switch (expect) {
    case Expect::kBool:
      if (!v->is_boolean()) fail(w, "expected true or false, got " + v->dump());
      break;
    case Expect::kString:
      if (!v->is_string()) fail(w, "expected a string, got " + v->dump());
      break;
    case Expect::kObject:
      if (!v->is_object()) fail(w, "expected an object, got " + v->dump());
      break;
    case Expect::kObjectOrNull:
      if (!v->is_object() && !v->is_null()) fail(w, "expected an object or null, got " + v->dump());
      break;
    case Expect::kCount:
      if (!v->is_number_integer() || v->get<std::int64_t>() < 0)
        fail(w, "expected an integer from 0 up, got " + v->dump());
      break;
    case Expect::kNonNegative:
      check_number(*v, w, 0, false);
      break;
  }
}

std::string str(const Json& j, const char* key, const std::string& where) {
  const Json& v = field(j, key, where);
  if (!v.is_string()) fail(join_path(where, key), "expected a string, got " + v.dump());
  return v.get<std::string>();
}

// A top-level table of named entries (segments, tasks, variants): an object with at least one.
const Json& named_entries(const Json& j, const char* key) {
  const Json& v = field(j, key, "top level");
  if (!v.is_object() || v.empty()) fail(key, "expected a non-empty object");
  for (const auto& kv : v.items()) check_ident(kv.key(), std::string(key) + "." + kv.key());
  return v;
}

std::vector<std::string> str_list(const Json& j, const char* key, const std::string& where) {
  const Json& v = field(j, key, where);
  const std::string w = join_path(where, key);
  if (!v.is_array() || v.empty()) fail(w, "expected a non-empty list of names");
  std::vector<std::string> out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string()) fail(w + "[" + std::to_string(i) + "]", "expected a string, got " + v[i].dump());
    out.push_back(v[i].get<std::string>());
  }
  return out;
}

Shape shape(const Json& j, const std::string& where) {
  if (!j.is_array() || j.empty() || j.size() > kMaxRank)
    fail(where, "expected a list of 1 to " + std::to_string(kMaxRank) + " positive integers, got " +
                    j.dump());
  Shape s;
  for (const auto& d : j) {
    // An unsigned value above int64's range would wrap: bound it before converting.
    if (!d.is_number_integer() ||
        (d.is_number_unsigned() && d.get<std::uint64_t>() > std::uint64_t(kMaxElements)) ||
        d.get<std::int64_t>() < 1)
      fail(where, "expected positive integer dimensions, got " + j.dump());
    s.push_back(d.get<std::int64_t>());
  }
  const std::string why = shape_problem(s);
  if (!why.empty()) fail(where, "shape " + shape_str(s) + " is invalid (" + why + ")");
  return s;
}

FileRef file_ref_fields(const Json& j, const std::string& where) {
  FileRef r;
  r.file = str(j, "file", where);
  r.sha256 = str(j, "sha256", where);
  const Json& b = field(j, "bytes", where);
  if (!b.is_number_integer() || b.get<std::int64_t>() < 1)
    fail(where + ".bytes", "expected an integer from 1 up, got " + b.dump());
  r.bytes = b.get<std::uint64_t>();
  if (r.file.empty() || r.file.front() == '/' || r.file.find('\\') != std::string::npos)
    fail(where + ".file", "'" + r.file + "' must be a relative path with '/' separators");
  for (std::size_t pos = 0; pos <= r.file.size();) {
    const std::size_t end = std::min(r.file.find('/', pos), r.file.size());
    const std::string part = r.file.substr(pos, end - pos);
    if (part.empty() || part == "." || part == "..")
      fail(where + ".file", "'" + r.file + "' must stay inside the bundle (no '..', '.', '//')");
    pos = end + 1;
  }
  if (r.sha256.size() != 64 ||
      r.sha256.find_first_not_of("0123456789abcdef") != std::string::npos)
    fail(where + ".sha256", "expected 64 lowercase hex digits, got \"" + r.sha256 + "\"");
  return r;
}

FileRef file_ref(const Json& j, const std::string& where) {
  only_keys(j, where, {"file", "sha256", "bytes"});
  return file_ref_fields(j, where);
}

std::map<std::string, FileRef> file_refs(const Json& j, const std::string& where, bool named) {
  if (!j.is_object()) fail(where, "expected an object, got " + j.dump());
  std::map<std::string, FileRef> out;
  for (const auto& [k, r] : j.items()) {
    if (named) check_ident(k, where + "." + k);
    out.emplace(k, file_ref(r, where + "." + k));
  }
  return out;
}

std::vector<TensorSpec> specs(const Json& j, const char* key, const std::string& where) {
  const Json& v = field(j, key, where);
  if (!v.is_array() || v.empty()) fail(where + "." + key, "expected a non-empty list");
  std::vector<TensorSpec> out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const std::string w = where + "." + key + "[" + std::to_string(i) + "]";
    TensorSpec t;
    only_keys(v[i], w, {"name", "shape", "dtype"});
    t.name = str(v[i], "name", w);
    t.shape = shape(field(v[i], "shape", w), w + ".shape");
    const std::string dtype = str(v[i], "dtype", w);  // its own errors name the key
    if (dtype != "float32" && dtype != "float16")
      fail(w + ".dtype", "expected one of float32, float16, got \"" + dtype + "\"");
    t.dtype = parse_dtype(dtype);
    out.push_back(std::move(t));
  }
  return out;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// The variant's files must carry exactly the logical DAG's tensor names, and every tensor
// must have one shape/dtype across its producer and all consumers.
void check_variant(const Manifest& m, const Variant& v) {
  std::map<std::string, const TensorSpec*> produced{{m.input.name, &m.input}};
  for (const auto& seg : m.segments) {
    const std::string where = "variants." + v.name + ".segments." + seg.name;
    auto it = v.segments.find(seg.name);
    if (it == v.segments.end())
      fail("variants." + v.name + ".segments", "no entry for segment '" + seg.name + "'");
    const VariantSegment& vs = it->second;
    auto same_names = [&](const std::vector<std::string>& logical,
                          const std::vector<TensorSpec>& given, const char* what) {
      std::set<std::string> a(logical.begin(), logical.end()), b;
      for (const auto& t : given) b.insert(t.name);
      if (a != b || given.size() != logical.size())
        fail(where + "." + what, "tensor names differ from segments." + seg.name + "." + what +
                                     " [" + join(logical) + "]");
    };
    same_names(seg.inputs, vs.inputs, "inputs");
    same_names(seg.outputs, vs.outputs, "outputs");
    for (const auto& in : vs.inputs) {
      const TensorSpec* p = produced.at(in.name);
      if (p->shape != in.shape || p->dtype != in.dtype)
        fail(where + ".inputs", "'" + in.name + "' is " + shape_str(in.shape) + " " +
                                    dtype_name(in.dtype) + " but its producer writes " +
                                    shape_str(p->shape) + " " + dtype_name(p->dtype));
    }
    for (const auto& out : vs.outputs) produced[out.name] = &out;
  }
  for (const auto& kv : v.segments)
    if (m.segment_index(kv.first) < 0)
      fail("variants." + v.name + ".segments." + kv.first, "'" + kv.first + "' is not in the segments DAG");
  for (const auto& t : m.tasks) {
    const TensorSpec* out = produced.at(t.output);
    if (out->dtype != DType::kFloat32) {
      // Named at the producing segment's outputs: the file to fix.
      std::string seg_name;
      for (const auto& s : m.segments)
        for (const auto& o : s.outputs)
          if (o == t.output) seg_name = s.name;
      fail("variants." + v.name + ".segments." + seg_name + ".outputs",
           "task output '" + t.output + "' must be float32 at the boundary");
    }
  }
}

}  // namespace

int Manifest::task_index(const std::string& n) const {
  for (std::size_t i = 0; i < tasks.size(); ++i)
    if (tasks[i].name == n) return static_cast<int>(i);
  return -1;
}

int Manifest::segment_index(const std::string& n) const {
  for (std::size_t i = 0; i < segments.size(); ++i)
    if (segments[i].name == n) return static_cast<int>(i);
  return -1;
}

std::string Manifest::task_names() const {
  std::vector<std::string> v;
  for (const auto& t : tasks) v.push_back(t.name);
  return join(v);
}

std::string Manifest::variant_names() const {
  std::vector<std::string> v;
  for (const auto& kv : variants) v.push_back(kv.first);
  return join(v);
}

const Variant& Manifest::variant(const std::string& n) const {
  auto it = variants.find(n);
  if (it == variants.end())
    throw UnknownNameError("unknown variant '" + n + "'; this bundle has variants: " +
                           variant_names());
  return it->second;
}

namespace {

void parse_input(const Json& j, Manifest& m) {
  const Json& in = field(j, "input", "top level");
  only_keys(in, "input", {"name", "shape", "dtype", "layout", "normalization", "dynamic_batch", "color"});
  m.input.name = str(in, "name", "input");
  m.input.shape = shape(field(in, "shape", "input"), "input.shape");
  one_of(in, "dtype", "input", {"float32"});
  one_of(in, "layout", "input", {"NCHW"});
  check_optional(in, "dynamic_batch", "input", Expect::kBool);
  if (optional(in, "color")) one_of(in, "color", "input", {"rgb", "bgr", "gray"});
  // The runtime does not normalize (the caller does), but a bundle without a usable recipe for it
  // is refused here as in Python: a std of 0 would divide by zero on the caller's side.
  const Json& norm = field(in, "normalization", "input");
  only_keys(norm, "input.normalization", {"scale", "mean", "std"});
  const Json& scale = field(norm, "scale", "input.normalization");
  if (!scale.is_number()) fail("input.normalization.scale", "expected a number, got " + scale.dump());
  for (const char* key : {"mean", "std"}) {
    const std::string w = std::string("input.normalization.") + key;
    const Json& v = field(norm, key, "input.normalization");
    if (!v.is_array() || v.empty()) fail(w, "expected a list of at least 1 number, got " + v.dump());
    for (std::size_t i = 0; i < v.size(); ++i) {
      const std::string wi = w + "[" + std::to_string(i) + "]";
      if (std::string(key) == "std") check_number(v[i], wi, 0, true);  // divides: > 0
      else if (!v[i].is_number()) fail(wi, "expected a number, got " + v[i].dump());
    }
  }
}

void parse_segments(const Json& j, Manifest& m) {
  for (const auto& [name, s] : named_entries(j, "segments").items()) {
    const std::string where = "segments." + name;
    only_keys(s, where, {"inputs", "outputs", "tasks", "shared", "flops", "params"});
    LogicalSegment ls;
    ls.name = name;
    ls.inputs = str_list(s, "inputs", where);
    ls.outputs = str_list(s, "outputs", where);
    str_list(s, "tasks", where);
    if (!field(s, "shared", where).is_boolean()) fail(where + ".shared", "expected true or false");
    check_optional(s, "flops", where, Expect::kCount);
    check_optional(s, "params", where, Expect::kCount);
    m.segments.push_back(std::move(ls));
  }
}

void parse_tasks(const Json& j, Manifest& m) {
  for (const auto& [name, t] : named_entries(j, "tasks").items()) {
    const std::string where = "tasks." + name;
    only_keys(t, where, {"kind", "metric", "higher_is_better", "allowed_drop", "output", "segments"});
    Task task;
    task.name = name;
    task.kind = one_of(t, "kind", where, {"classification", "segmentation", "depth", "regression",
                                          "keypoints", "reconstruction"});
    str(t, "metric", where);
    task.output = str(t, "output", where);
    task.segments = str_list(t, "segments", where);
    check_optional(t, "higher_is_better", where, Expect::kBool);
    check_optional(t, "allowed_drop", where, Expect::kNonNegative);
    m.tasks.push_back(std::move(task));
  }
}

Variant parse_variant(const std::string& vname, const Json& v) {
  const std::string where = "variants." + vname;
  only_keys(v, where, {"precision", "config", "tolerance", "calibration", "metrics", "flops",
                       "latency_ms", "golden", "segments"});
  Variant var;
  var.name = vname;
  var.precision = one_of(v, "precision", where, {"fp32", "fp16", "int8", "mixed"});
  check_optional(v, "config", where, Expect::kObjectOrNull);
  check_optional(v, "calibration", where, Expect::kObjectOrNull);
  check_optional(v, "metrics", where, Expect::kObject);
  check_optional(v, "flops", where, Expect::kCount);
  check_optional(v, "latency_ms", where, Expect::kNonNegative);
  if (const Json* tol = optional(v, "tolerance")) {
    if (!tol->is_object()) fail(where + ".tolerance", "expected an object, got " + tol->dump());
    for (const auto& [task, x] : tol->items()) check_number(x, where + ".tolerance." + task, 0, false);
  }
  if (const Json* g = optional(v, "golden")) {
    only_keys(*g, where + ".golden", {"outputs"});
    file_refs(field(*g, "outputs", where + ".golden"), where + ".golden.outputs", false);
  }
  const Json& vs = field(v, "segments", where);
  if (!vs.is_object() || vs.empty()) fail(where + ".segments", "expected a non-empty object");
  for (const auto& [sname, s] : vs.items()) {
    const std::string w = where + ".segments." + sname;
    only_keys(s, w, {"file", "sha256", "bytes", "inputs", "outputs", "precision", "float_layers"});
    VariantSegment seg;
    seg.ref = file_ref_fields(s, w);
    seg.inputs = specs(s, "inputs", w);
    seg.outputs = specs(s, "outputs", w);
    if (optional(s, "precision")) one_of(s, "precision", w, {"fp32", "fp16", "int8", "mixed"});
    if (const Json* fl = optional(s, "float_layers")) {
      if (!fl->is_array()) fail(w + ".float_layers", "expected a list of ONNX node names");
      for (std::size_t i = 0; i < fl->size(); ++i)
        if (!(*fl)[i].is_string())
          fail(w + ".float_layers[" + std::to_string(i) + "]", "expected a string, got " + (*fl)[i].dump());
    }
    var.segments.emplace(sname, std::move(seg));
  }
  return var;
}

void parse_engines(const Json& j, Manifest& m) {
  const Json* engines = optional(j, "engines");
  if (!engines) return;
  if (!engines->is_object()) fail("engines", "expected an object");
  // Entries stay open (build records grow); the keys the runtime reads are checked.
  for (const auto& [target, e] : engines->items()) {
    const std::string where = "engines." + target;
    EngineSet es;
    es.target = target;
    es.backend = one_of(e, "backend", where, {"openvino", "tensorrt"});
    es.variant = str(e, "variant", where);
    for (const char* key : {"target", "device"}) check_optional(e, key, where, Expect::kString);
    for (const char* key : {"built_with", "verification"}) check_optional(e, key, where, Expect::kObject);
    if (optional(e, "precision")) one_of(e, "precision", where, {"fp32", "fp16", "int8", "mixed"});
    if (const Json* d = optional(e, "device")) es.device = d->get<std::string>();
    es.segments = file_refs(field(e, "segments", where), where + ".segments", false);
    m.engines.emplace(target, std::move(es));
  }
}

void parse_golden(const Json& j, Manifest& m) {
  const Json& golden = field(j, "golden", "top level");
  only_keys(golden, "golden", {"input", "outputs", "samples", "source"});
  m.golden_input = file_ref(field(golden, "input", "golden"), "golden.input");
  m.golden_outputs = file_refs(field(golden, "outputs", "golden"), "golden.outputs", false);
  const Json& samples = field(golden, "samples", "golden");
  if (!samples.is_number_integer() || samples.get<std::int64_t>() < 1 ||
      samples.get<std::int64_t>() > 1000000 ||
      (samples.is_number_unsigned() && samples.get<std::uint64_t>() > 1000000))
    fail("golden.samples", "expected an integer from 1 to 1000000, got " + samples.dump());
  m.golden_samples = static_cast<int>(samples.get<std::int64_t>());
  check_optional(golden, "source", "golden", Expect::kString);
}

// The runtime reads no provenance, but a manifest without it is not one mtedge wrote: refused in
// both languages so `mtedge verify` and the runtime agree.
void check_provenance(const Json& j) {
  const Json& p = field(j, "provenance", "top level");
  if (!p.is_object()) fail("provenance", "expected an object, got " + p.dump());
  str(p, "model", "provenance");
  const std::string sha = str(p, "model_sha256", "provenance");
  if (sha.size() != 64 || sha.find_first_not_of("0123456789abcdef") != std::string::npos)
    fail("provenance.model_sha256", "expected 64 lowercase hex digits, got \"" + sha + "\"");
  str(p, "created", "provenance");
  const Json& tools = field(p, "tools", "provenance");
  if (!tools.is_object()) fail("provenance.tools", "expected an object, got " + tools.dump());
  for (const auto& [k, v] : tools.items())
    if (!v.is_string()) fail("provenance.tools." + k, "expected a string, got " + v.dump());
  check_optional(p, "recipe", "provenance", Expect::kObjectOrNull);
}

Manifest parse_checked(const std::string& text, const std::string& dir) {
  Json j;
  try {
    j = Json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw BundleError(std::string("manifest.json is not valid JSON (") + e.what() +
                      "); re-export the bundle");
  }
  Manifest m;
  m.dir = dir;
  if (!j.is_object()) fail("top level", "expected an object");
  if (str(j, "format", "top level") != "mtedge-bundle")
    fail("format", "expected 'mtedge-bundle', got '" + j["format"].get<std::string>() + "'");
  const Json& ver = field(j, "format_version", "top level");
  if (!ver.is_number_integer() || ver.get<std::int64_t>() != 1)
    fail("format_version", "this runtime reads format_version 1, got " + ver.dump() +
                               " (upgrade mtedge to read newer bundles)");
  only_keys(j, "top level", {"format", "format_version", "name", "input", "tasks", "segments",
                             "default_variant", "variants", "golden", "provenance", "engines",
                             "task_models"});
  m.name = str(j, "name", "top level");
  const bool name_ok = !m.name.empty() && std::isalnum(static_cast<unsigned char>(m.name[0])) &&
                       m.name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                "0123456789._-") == std::string::npos;
  if (!name_ok) fail("name", "\"" + m.name + "\" is not a bundle name (letters, digits, '.', '_', '-')");
  parse_input(j, m);
  parse_segments(j, m);
  parse_tasks(j, m);
  for (const auto& [vname, v] : named_entries(j, "variants").items())
    m.variants.emplace(vname, parse_variant(vname, v));
  m.default_variant = str(j, "default_variant", "top level");
  parse_engines(j, m);
  parse_golden(j, m);
  check_provenance(j);
  if (const Json* tm = optional(j, "task_models")) file_refs(*tm, "task_models", true);

  // Cross rules, once every field is known to be well formed.
  // Topological order: every segment reads only the model input or earlier outputs.
  std::map<std::string, int> producer{{m.input.name, -1}};
  for (int i = 0; i < static_cast<int>(m.segments.size()); ++i) {
    const auto& s = m.segments[i];
    for (const auto& t : s.inputs)
      if (!producer.count(t))
        fail("segments." + s.name + ".inputs", "reads '" + t + "', which no earlier segment produces "
                                               "(segments must be listed in topological order)");
    for (const auto& t : s.outputs)
      if (!producer.emplace(t, i).second)
        fail("segments." + s.name + ".outputs", "writes '" + t + "', which is already produced elsewhere");
  }
  for (auto& task : m.tasks) {
    const std::string where = "tasks." + task.name;
    std::set<int> have;
    for (const auto& sn : task.segments) {
      const int id = m.segment_index(sn);
      if (id < 0) fail(where + ".segments", "unknown segment '" + sn + "'");
      task.segment_ids.push_back(id);
      have.insert(id);
    }
    // The list must be closed: whatever its segments read is produced inside it.
    for (int id : task.segment_ids)
      for (const auto& tn : m.segments[id].inputs) {
        const int p = producer.at(tn);
        if (p >= 0 && !have.count(p))
          fail(where + ".segments", "segment '" + m.segments[id].name + "' reads '" + tn +
                                        "' from segment '" + m.segments[p].name +
                                        "', which the task does not list");
      }
    auto pit = producer.find(task.output);
    if (pit == producer.end() || pit->second < 0 || !have.count(pit->second))
      fail(where + ".output", "'" + task.output + "' is not produced by the task's segments");
  }
  // check_variant also holds the model input to input.shape/float32 (it is the first producer).
  // In manifest order, as Python checks them: with two broken variants both name the first.
  for (const auto& kv : j.at("variants").items()) check_variant(m, m.variants.at(kv.key()));
  if (!m.variants.count(m.default_variant))
    fail("default_variant", "'" + m.default_variant + "' is not one of the variants (" +
                                m.variant_names() + ")");
  if (const Json* engines = optional(j, "engines"))
    for (const auto& kv : engines->items()) {
      const EngineSet& es = m.engines.at(kv.key());
      if (!m.variants.count(es.variant))
        throw BundleError("manifest.json: engines." + kv.key() + ".variant: unknown variant '" +
                          es.variant + "' (this bundle has " + m.variant_names() +
                          "); rebuild the engines with `mtedge build`");
    }
  for (const auto& kv : j.at("golden").at("outputs").items())
    if (m.task_index(kv.key()) < 0)
      fail("golden.outputs." + kv.key(), "'" + kv.key() + "' is not a task (this bundle has " +
                                             m.task_names() + ")");
  return m;
}

}  // namespace

Manifest parse_manifest(const std::string& text, const std::string& dir) {
  try {
    return parse_checked(text, dir);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {  // only mtedge::Error leaves csrc
    throw BundleError(std::string("manifest.json: cannot be read (") + e.what() +
                      "); re-export the bundle (docs/bundle-format.md)");
  }
}

Manifest load_manifest(const std::string& bundle_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(bundle_dir, ec))
    throw FileMissingError("bundle '" + bundle_dir +
                           "' is not a directory; pass the NAME.mtb directory written by "
                           "`mtedge export`");
  const fs::path path = fs::path(bundle_dir) / "manifest.json";
  std::ifstream f(path, std::ios::binary);
  if (!f)
    throw FileMissingError("bundle '" + bundle_dir +
                           "' has no manifest.json (an interrupted export leaves none); "
                           "re-export it");
  std::string text;
  char buf[1 << 16];
  while (f.read(buf, sizeof buf) || f.gcount() > 0) {
    text.append(buf, static_cast<std::size_t>(f.gcount()));
    if (text.size() > kMaxManifestBytes)
      throw BundleError("manifest.json in '" + bundle_dir + "' is larger than " +
                        std::to_string(kMaxManifestBytes) + " bytes; it is not a manifest "
                        "mtedge wrote: re-export the bundle");
  }
  const fs::path dir = fs::absolute(bundle_dir, ec).lexically_normal();
  if (ec) throw FileMissingError("cannot resolve bundle '" + bundle_dir + "': " + ec.message());
  return parse_manifest(text, dir.string());
}

std::string bundle_path(const Manifest& m, const std::string& rel) {
  return (std::filesystem::path(m.dir) / rel).string();
}

std::string read_verified(const Manifest& m, const FileRef& ref) {
  namespace fs = std::filesystem;
  const std::string path = bundle_path(m, ref.file);
  std::error_code ec;
  // Symlinks are resolved before anything is read: the real file must live inside the bundle.
  const fs::path real = fs::canonical(path, ec);
  if (ec)
    throw FileMissingError("bundle file '" + ref.file + "' is missing from " + m.dir +
                           "; re-export or re-copy the whole bundle");
  const fs::path root = fs::canonical(m.dir, ec);
  const std::string r = root.string() + "/";
  if (ec || real.string().compare(0, r.size(), r) != 0)
    throw BundleError("bundle file '" + ref.file + "' resolves to '" + real.string() +
                      "', outside the bundle " + m.dir +
                      "; bundles must hold their files (copy it without symlinks)");
  if (!fs::is_regular_file(real, ec))
    throw BundleError("bundle file '" + ref.file + "' is not a regular file; re-export the bundle");
  std::ifstream f(real, std::ios::binary);
  if (!f) throw FileMissingError("cannot open bundle file '" + ref.file + "' in " + m.dir +
                                 "; check its permissions");
  std::string bytes;
  char buf[1 << 16];
  Sha256 h;
  while (f.read(buf, sizeof buf) || f.gcount() > 0) {
    const auto n = static_cast<std::size_t>(f.gcount());
    if (bytes.size() + n > ref.bytes) break;  // longer than the manifest says: size error below
    h.update(buf, n);
    bytes.append(buf, n);
  }
  const auto size = fs::file_size(real, ec);
  if (ec || size != ref.bytes || bytes.size() != ref.bytes)
    throw IntegrityError("bundle file '" + ref.file + "' has " + std::to_string(ec ? bytes.size() : size) +
                         " bytes, the manifest expects " + std::to_string(ref.bytes) +
                         "; the bundle is truncated or modified: re-export or re-copy it");
  const std::string got = h.hex_digest();
  if (got != ref.sha256)
    throw IntegrityError("bundle file '" + ref.file + "' has sha256 " + got +
                         ", the manifest expects " + ref.sha256 +
                         "; the file was modified: re-export or re-copy the bundle");
  return bytes;
}

void verify_file(const Manifest& m, const FileRef& ref) { read_verified(m, ref); }

}  // namespace mtedge
