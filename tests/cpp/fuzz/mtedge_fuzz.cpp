// mtedge_fuzz: deterministic mutation fuzzer for the runtime's input boundary (clang/libFuzzer
// is not installed on the build machines, so this driver does the mutating itself).
//
//   mtedge_fuzz --bundle DIR [--bundle DIR]... [--cases N] [--seed S] [--full-load-every K]
//               [--json OUT]
//
// Targets, in turn: the manifest parser (structured JSON mutations + byte mutations), the
// .npy reader (header, shape, length mutations), and bundle loading (a mutated copy of a real
// bundle on disk: manifest, truncated/flipped files, path tricks, symlinks out of the bundle;
// every K-th such case builds a full Runtime). A case passes when it ends in mtedge::Error or
// a correct load. Anything else (another exception type, a case slower than 10 s) is a finding;
// crashes and sanitizer reports end the process. Exit status: 0 no findings, 1 findings, 2 usage.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "mtedge/errors.h"
#include "mtedge/manifest.h"
#include "mtedge/npy.h"
#include "mtedge/runtime.h"

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

namespace {

struct Seed {
  fs::path dir;
  std::string manifest;
  std::vector<std::string> npys;  // golden files' bytes
};

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void spit(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(s.data(), static_cast<std::streamsize>(s.size()));
}

class Mutator {
 public:
  explicit Mutator(std::uint64_t seed) : rng_(seed) {}
  std::size_t below(std::size_t n) { return n ? std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_) : 0; }
  bool chance(int pct) { return below(100) < std::size_t(pct); }

  // Byte-level: truncation, bit flips, random bytes, duplicated spans, oversized digits.
  std::string bytes(std::string s) {
    switch (below(6)) {
      case 0: return s.substr(0, below(s.size() + 1));
      case 1:
        for (int i = 0, n = 1 + int(below(8)); i < n && !s.empty(); ++i) s[below(s.size())] ^= char(1 << below(8));
        return s;
      case 2:
        for (int i = 0, n = 1 + int(below(16)); i < n && !s.empty(); ++i) s[below(s.size())] = char(below(256));
        return s;
      case 3: {
        const std::size_t a = below(s.size() + 1), n = below(64);
        return s.insert(a, s.substr(a, n));
      }
      case 4: {  // replace a digit run with a huge or negative number
        std::size_t a = s.find_first_of("0123456789", below(s.size() + 1));
        if (a == std::string::npos) return s;
        const std::size_t b = s.find_first_not_of("0123456789", a);
        static const char* nums[] = {"99999999999999999999", "-1", "0", "4294967296", "9223372036854775807",
                                     "18446744073709551615", "1e308", "-9223372036854775808"};
        return s.replace(a, (b == std::string::npos ? s.size() : b) - a, nums[below(8)]);
      }
      default: return s + std::string(below(32), char(below(256)));
    }
  }

  // Structured: replace, delete or retype a random node; path tricks for file names.
  std::string json(const std::string& text) {
    Json j = Json::parse(text);
    for (int i = 0, n = 1 + int(below(3)); i < n; ++i) {
      // Walk again after every mutation: the previous one may have freed nodes.
      std::vector<Json*> nodes;
      std::vector<std::pair<Json*, std::string>> keyed;  // (object, key)
      walk(j, nodes, keyed);
      if (keyed.empty()) break;
      auto [obj, key] = keyed[below(keyed.size())];
      if (!obj->contains(key)) continue;
      switch (below(9)) {
        case 0: obj->erase(key); break;
        case 1: (*obj)[key] = value(); break;
        case 2:
          if (key == "file") (*obj)[key] = path_trick();
          else (*obj)[key] = value();
          break;
        case 3: (*obj)[key] = Json::array({(*obj)[key], value()}); break;
        case 4: {  // shapes: rank 9, zero, negative, huge
          static const Json shapes[] = {Json::array({1, 1, 1, 1, 1, 1, 1, 1, 1}), Json::array({1, 0, 3}),
                                        Json::array({-1, 3}), Json::array({65536, 65536, 65536}),
                                        Json::array({std::uint64_t(1) << 63, 1}), Json::array()};
          if (key == "shape") (*obj)[key] = shapes[below(6)];
          else (*obj)[key] = nullptr;
          break;
        }
        case 5: (*obj)["unexpected_" + std::to_string(below(9))] = value(); break;
        case 6: {  // point a file field at another file of the bundle
          if (key == "file") (*obj)[key] = below(2) ? "manifest.json" : "golden/input.npy";
          break;
        }
        case 7: (*obj)[key] = Json::parse(std::string(1 + below(200), '[') + std::string(1 + below(200), ']'), nullptr, false); break;
        default: {
          if ((*obj)[key].is_number_integer()) (*obj)[key] = (*obj)[key].get<std::int64_t>() + std::int64_t(below(3)) - 1;
          else if ((*obj)[key].is_string()) (*obj)[key] = (*obj)[key].get<std::string>() + "x";
        }
      }
    }
    return j.dump();
  }

 private:
  void walk(Json& j, std::vector<Json*>& nodes, std::vector<std::pair<Json*, std::string>>& keyed) {
    nodes.push_back(&j);
    if (j.is_object())
      for (auto& [k, v] : j.items()) {
        keyed.emplace_back(&j, k);
        walk(v, nodes, keyed);
      }
    else if (j.is_array())
      for (auto& v : j) walk(v, nodes, keyed);
  }
  Json value() {
    switch (below(9)) {
      case 0: return nullptr;
      case 1: return -1;
      case 2: return std::uint64_t(18446744073709551615ull);
      case 3: return 1e308;
      case 4: return "";
      case 5: return Json::object();
      case 6: return Json::array();
      case 7: return true;
      default: return std::string(below(300), 'a');
    }
  }
  std::string path_trick() {
    static const char* tricks[] = {"../manifest.json", "/etc/passwd", "segments/../../x", "a//b", "./x",
                                   "segments\\x.onnx", "", ".", "..", "segments/trunk.onnx/", "link_out"};
    return tricks[below(11)];
  }
  std::mt19937_64 rng_;
};

struct Tally {
  std::map<std::string, int> cases, loaded, errors;       // per target
  std::map<std::string, std::string> example;              // error kind -> first message
  std::vector<std::string> findings;
  double slowest_s = 0;
};

std::string kind_of(const mtedge::Error& e) {
  if (dynamic_cast<const mtedge::FileMissingError*>(&e)) return "FileMissingError";
  if (dynamic_cast<const mtedge::IntegrityError*>(&e)) return "IntegrityError";
  if (dynamic_cast<const mtedge::BundleError*>(&e)) return "BundleError";
  if (dynamic_cast<const mtedge::InputError*>(&e)) return "InputError";
  if (dynamic_cast<const mtedge::UnknownNameError*>(&e)) return "UnknownNameError";
  if (dynamic_cast<const mtedge::BackendError*>(&e)) return "BackendError";
  return "Error";
}

template <class F>
void one_case(Tally& t, const std::string& target, long idx, F&& body) {
  t.cases[target]++;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    body();
    t.loaded[target]++;
  } catch (const mtedge::Error& e) {
    t.errors[target]++;
    const std::string k = target + "/" + kind_of(e);
    if (!t.example.count(k)) t.example[k] = e.what();
    if (std::string(e.what()).empty()) t.findings.push_back(target + " case " + std::to_string(idx) + ": empty message");
  } catch (const std::exception& e) {
    t.findings.push_back(target + " case " + std::to_string(idx) + ": non-mtedge exception: " + e.what());
  } catch (...) {
    t.findings.push_back(target + " case " + std::to_string(idx) + ": unknown exception");
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  t.slowest_s = std::max(t.slowest_s, s);
  if (s > 10) t.findings.push_back(target + " case " + std::to_string(idx) + ": took " + std::to_string(s) + " s");
}

// A loaded manifest must be fully usable: every golden file verifies with the shape it implies.
void load_bundle(const fs::path& dir, bool full) {
  const mtedge::Manifest m = mtedge::load_manifest(dir.string());
  for (const auto& [name, v] : m.variants)
    for (const auto& [s, seg] : v.segments) mtedge::read_verified(m, seg.ref);
  mtedge::read_bundle_npy(m, m.golden_input, mtedge::golden_shape(m.golden_samples, m.input.shape));
  for (const auto& [task, ref] : m.golden_outputs) mtedge::read_bundle_npy(m, ref);
  if (!full) return;
  mtedge::RuntimeOptions o;
  o.backend = "openvino";
  o.backend_options.threads = 1;
  mtedge::Runtime rt(dir.string(), o);
  std::vector<float> x(static_cast<std::size_t>(rt.input_spec().numel()), 0.5f);
  rt.run(x, rt.tasks());
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<fs::path> bundles;
  long cases = 10000, full_every = 250;
  std::uint64_t seed = 1;
  std::string json_out;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return std::fprintf(stderr, "%s needs a value\n", a.c_str()), 2;
    const std::string v = argv[++i];
    if (a == "--bundle") bundles.emplace_back(v);
    else if (a == "--cases") cases = std::atol(v.c_str());
    else if (a == "--seed") seed = std::strtoull(v.c_str(), nullptr, 10);
    else if (a == "--full-load-every") full_every = std::max(1L, std::atol(v.c_str()));
    else if (a == "--json") json_out = v;
    else return std::fprintf(stderr, "unknown option %s\n", a.c_str()), 2;
  }
  if (bundles.empty() || cases < 1) {
    std::fprintf(stderr, "usage: mtedge_fuzz --bundle DIR [--bundle DIR]... [--cases N] [--seed S] "
                         "[--full-load-every K] [--json OUT]\n");
    return 2;
  }
  std::vector<Seed> corpus;
  for (const auto& b : bundles) {
    Seed s{fs::absolute(b), slurp(b / "manifest.json"), {}};
    for (const auto& e : fs::recursive_directory_iterator(b / "golden"))
      if (e.path().extension() == ".npy") s.npys.push_back(slurp(e.path()));
    if (s.manifest.empty() || s.npys.empty())
      return std::fprintf(stderr, "%s is not a bundle with golden files\n", b.c_str()), 2;
    mtedge::load_manifest(b.string());  // the seeds themselves must load
    corpus.push_back(std::move(s));
  }

  Mutator mut(seed);
  Tally t;
  const fs::path work = fs::temp_directory_path() / ("mtedge_fuzz_" + std::to_string(::getpid()));
  fs::remove_all(work);
  fs::create_directories(work);
  spit(work / "outside.npy", corpus[0].npys[0]);
  long bundle_cases = 0;
  for (long i = 0; i < cases; ++i) {
    const Seed& s = corpus[mut.below(corpus.size())];
    switch (i % 3) {
      case 0:
        one_case(t, "manifest", i, [&] {
          const std::string text = mut.chance(60) ? mut.json(s.manifest) : mut.bytes(s.manifest);
          mtedge::parse_manifest(text, s.dir.string());
        });
        break;
      case 1:
        one_case(t, "npy", i, [&] { mtedge::parse_npy(mut.bytes(s.npys[mut.below(s.npys.size())]), "fuzz.npy"); });
        break;
      default: {
        const fs::path dir = work / "b.mtb";
        fs::remove_all(dir);
        fs::copy(s.dir, dir, fs::copy_options::recursive);
        std::vector<fs::path> files;
        for (const auto& e : fs::recursive_directory_iterator(dir))
          if (e.is_regular_file() && e.path().filename() != "manifest.json") files.push_back(e.path());
        std::sort(files.begin(), files.end());
        const fs::path victim = files[mut.below(files.size())];
        switch (mut.below(5)) {
          case 0: spit(dir / "manifest.json", mut.json(s.manifest)); break;
          case 1: spit(dir / "manifest.json", mut.bytes(s.manifest)); break;
          case 2: spit(victim, mut.bytes(slurp(victim))); break;
          case 3:  // same bytes, but through a symlink out of the bundle: must be refused
            fs::copy_file(victim, work / "outside.bin", fs::copy_options::overwrite_existing);
            fs::remove(victim);
            fs::create_symlink(work / "outside.bin", victim);
            break;
          default: fs::remove(mut.chance(50) ? victim : dir / "manifest.json");
        }
        const bool full = ++bundle_cases % full_every == 0;
        one_case(t, full ? "bundle_runtime" : "bundle", i, [&] { load_bundle(dir, full); });
      }
    }
  }
  fs::remove_all(work);

  long total = 0;
  std::printf("%-16s %8s %8s %8s\n", "target", "cases", "loaded", "errors");
  for (const auto& [k, n] : t.cases) {
    total += n;
    std::printf("%-16s %8d %8d %8d\n", k.c_str(), n, t.loaded[k], t.errors[k]);
  }
  std::printf("cases %ld, seed %llu, findings %zu, slowest case %.3f s\n", total,
              static_cast<unsigned long long>(seed), t.findings.size(), t.slowest_s);
  for (const auto& f : t.findings) std::printf("FINDING %s\n", f.c_str());
  if (!json_out.empty()) {
    Json out = {{"cases", total}, {"seed", seed}, {"findings", t.findings}, {"crashes", 0},
                {"slowest_case_s", t.slowest_s}, {"targets", Json::object()}, {"error_examples", t.example}};
    for (const auto& [k, n] : t.cases)
      out["targets"][k] = {{"cases", n}, {"loaded", t.loaded[k]}, {"errors", t.errors[k]}};
    // Error examples quote mutated bytes, which need not be UTF-8: replace those (U+FFFD) rather
    // than let dump() throw after the whole batch ran.
    spit(json_out, out.dump(2, ' ', false, Json::error_handler_t::replace));
  }
  return t.findings.empty() ? 0 : 1;
}
