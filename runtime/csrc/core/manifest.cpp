#include "mtedge/manifest.h"

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

const Json& field(const Json& j, const char* key, const std::string& where) {
  if (!j.is_object()) fail(where, "expected an object");
  auto it = j.find(key);
  if (it == j.end()) fail(where, std::string("missing required key '") + key + "'");
  return *it;
}

std::string str(const Json& j, const char* key, const std::string& where) {
  const Json& v = field(j, key, where);
  if (!v.is_string()) fail(where + "." + key, "expected a string, got " + v.dump());
  return v.get<std::string>();
}

// A top-level table of named entries (segments, tasks, variants): an object with at least one.
const Json& named_entries(const Json& j, const char* key) {
  const Json& v = field(j, key, "top level");
  if (!v.is_object() || v.empty()) fail(key, "expected a non-empty object");
  return v;
}

std::vector<std::string> str_list(const Json& j, const char* key, const std::string& where) {
  const Json& v = field(j, key, where);
  if (!v.is_array() || v.empty()) fail(where + "." + key, "expected a non-empty list of names");
  std::vector<std::string> out;
  for (const auto& e : v) {
    if (!e.is_string()) fail(where + "." + key, "expected strings, got " + e.dump());
    out.push_back(e.get<std::string>());
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

FileRef file_ref(const Json& j, const std::string& where) {
  FileRef r;
  r.file = str(j, "file", where);
  r.sha256 = str(j, "sha256", where);
  const Json& b = field(j, "bytes", where);
  if (!b.is_number_integer() || b.get<std::int64_t>() < 1)
    fail(where + ".bytes", "expected a positive integer");
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
    fail(where + ".sha256", "expected 64 lowercase hex digits, got '" + r.sha256 + "'");
  return r;
}

std::vector<TensorSpec> specs(const Json& j, const char* key, const std::string& where) {
  const Json& v = field(j, key, where);
  if (!v.is_array() || v.empty()) fail(where + "." + key, "expected a non-empty list");
  std::vector<TensorSpec> out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const std::string w = where + "." + key + "[" + std::to_string(i) + "]";
    TensorSpec t;
    t.name = str(v[i], "name", w);
    t.shape = shape(field(v[i], "shape", w), w + ".shape");
    try {
      t.dtype = parse_dtype(str(v[i], "dtype", w));
    } catch (const BundleError& e) {
      fail(w + ".dtype", e.what());
    }
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
    if (it == v.segments.end()) fail("variants." + v.name, "no entry for segment '" + seg.name + "'");
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
  for (const auto& t : m.tasks) {
    const TensorSpec* out = produced.at(t.output);
    if (out->dtype != DType::kFloat32)
      fail("variants." + v.name, "task output '" + t.output + "' must be float32 at the boundary");
  }
  for (const auto& kv : v.segments)
    if (m.segment_index(kv.first) < 0)
      fail("variants." + v.name + ".segments", "'" + kv.first + "' is not in the segments DAG");
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
  m.name = str(j, "name", "top level");

  const Json& in = field(j, "input", "top level");
  m.input.name = str(in, "name", "input");
  m.input.shape = shape(field(in, "shape", "input"), "input.shape");
  if (str(in, "dtype", "input") != "float32") fail("input.dtype", "expected float32");

  for (const auto& [name, s] : named_entries(j, "segments").items()) {
    LogicalSegment ls;
    ls.name = name;
    ls.inputs = str_list(s, "inputs", "segments." + name);
    ls.outputs = str_list(s, "outputs", "segments." + name);
    m.segments.push_back(std::move(ls));
  }
  // Topological order: every segment reads only the model input or earlier outputs.
  std::map<std::string, int> producer{{m.input.name, -1}};
  for (int i = 0; i < static_cast<int>(m.segments.size()); ++i) {
    const auto& s = m.segments[i];
    for (const auto& t : s.inputs)
      if (!producer.count(t))
        fail("segments." + s.name, "reads '" + t + "', which no earlier segment produces "
                                   "(segments must be listed in topological order)");
    for (const auto& t : s.outputs)
      if (!producer.emplace(t, i).second)
        fail("segments." + s.name, "writes '" + t + "', which is already produced elsewhere");
  }

  for (const auto& [name, t] : named_entries(j, "tasks").items()) {
    const std::string where = "tasks." + name;
    Task task;
    task.name = name;
    task.kind = str(t, "kind", where);
    task.output = str(t, "output", where);
    task.segments = str_list(t, "segments", where);
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
    m.tasks.push_back(std::move(task));
  }

  for (const auto& [vname, v] : named_entries(j, "variants").items()) {
    const std::string where = "variants." + vname;
    Variant var;
    var.name = vname;
    var.precision = str(v, "precision", where);
    const Json& vs = field(v, "segments", where);
    if (!vs.is_object()) fail(where + ".segments", "expected an object");
    for (const auto& [sname, s] : vs.items()) {
      const std::string w = where + ".segments." + sname;
      VariantSegment seg;
      seg.ref = file_ref(s, w);
      seg.inputs = specs(s, "inputs", w);
      seg.outputs = specs(s, "outputs", w);
      var.segments.emplace(sname, std::move(seg));
    }
    m.variants.emplace(vname, std::move(var));
  }
  m.default_variant = str(j, "default_variant", "top level");
  if (!m.variants.count(m.default_variant))
    fail("default_variant", "'" + m.default_variant + "' is not one of the variants (" +
                                m.variant_names() + ")");
  // check_variant also holds the model input to input.shape/float32 (it is the first producer).
  for (const auto& kv : m.variants) {
    check_variant(m, kv.second);
  }

  if (auto it = j.find("engines"); it != j.end()) {
    if (!it->is_object()) fail("engines", "expected an object");
    for (const auto& [target, e] : it->items()) {
      const std::string where = "engines." + target;
      EngineSet es;
      es.target = target;
      es.backend = str(e, "backend", where);
      es.variant = str(e, "variant", where);
      if (auto d = e.find("device"); d != e.end() && d->is_string()) es.device = d->get<std::string>();
      if (!m.variants.count(es.variant))
        fail(where + ".variant", "unknown variant '" + es.variant + "'");
      const Json& es_segs = field(e, "segments", where);
      if (!es_segs.is_object()) fail(where + ".segments", "expected an object");
      for (const auto& [sname, s] : es_segs.items())
        es.segments.emplace(sname, file_ref(s, where + ".segments." + sname));
      m.engines.emplace(target, std::move(es));
    }
  }

  const Json& golden = field(j, "golden", "top level");
  m.golden_input = file_ref(field(golden, "input", "golden"), "golden.input");
  const Json& gouts = field(golden, "outputs", "golden");
  if (!gouts.is_object()) fail("golden.outputs", "expected an object");
  for (const auto& [task, r] : gouts.items())
    m.golden_outputs.emplace(task, file_ref(r, "golden.outputs." + task));
  const Json& samples = field(golden, "samples", "golden");
  if (!samples.is_number_integer() || samples.get<std::int64_t>() < 1 ||
      samples.get<std::int64_t>() > 1000000)
    fail("golden.samples", "expected an integer from 1 to 1000000, got " + samples.dump());
  m.golden_samples = static_cast<int>(samples.get<std::int64_t>());
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
