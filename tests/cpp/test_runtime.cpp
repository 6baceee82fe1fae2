#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "mtedge/errors.h"
#include "mtedge/npy.h"
#include "mtedge/runtime.h"
#include "test_env.h"

namespace fs = std::filesystem;

namespace {

// Every test runs once per backend. "tensorrt" exists in the binaries linked against the
// TensorRT/CUDA test double (tests/tensorrt_double); its bundle is the toy bundle plus engines
// built by the fake `tensorrt` Python module.
std::vector<std::string> backends() {
#ifdef MTEDGE_TEST_TENSORRT_DOUBLE
  return {"openvino", "tensorrt"};
#else
  return {"openvino"};
#endif
}

class RuntimeTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (bundle().empty() || !fs::exists(fs::path(bundle()) / "manifest.json"))
      GTEST_SKIP() << "MTEDGE_TOY_BUNDLE / MTEDGE_TRT_BUNDLE not set: run through ctest (its fixtures make them)";
  }
  bool trt() const { return GetParam() == "tensorrt"; }
  std::string bundle() const { return test_env(trt() ? "MTEDGE_TRT_BUNDLE" : "MTEDGE_TOY_BUNDLE"); }
  mtedge::RuntimeOptions f32() const {
    mtedge::RuntimeOptions o;
    o.backend = GetParam();
    o.backend_options.precision = "f32";
    return o;
  }
  // The file this backend loads for `segment` of `variant` (ONNX, or the TensorRT engine).
  std::string segment_file(const std::string& segment, const std::string& variant = "fp32") const {
    const mtedge::Manifest m = mtedge::load_manifest(bundle());
    if (!trt()) return m.variant(variant).segments.at(segment).ref.file;
    for (const auto& kv : m.engines)
      if (kv.second.backend == "tensorrt" && kv.second.variant == variant) return kv.second.segments.at(segment).file;
    throw std::runtime_error("no tensorrt engines for " + variant);
  }
  // A private copy of the bundle this test may damage.
  fs::path copy_bundle(const std::string& tag) const {
    const fs::path dst = fs::temp_directory_path() /
                         ("mtedge_" + tag + "_" + GetParam() + "_" + std::to_string(::getpid()) + ".mtb");
    fs::remove_all(dst);
    fs::copy(bundle(), dst, fs::copy_options::recursive);
    return dst;
  }
};

// NaN counts as infinitely wrong (std::max would drop it: an unsynchronized copy reads as NaN).
float max_abs_diff(const float* a, const float* b, std::size_t n) {
  float m = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const float d = std::fabs(a[i] - b[i]);
    if (std::isnan(d)) return INFINITY;
    m = std::max(m, d);
  }
  return m;
}

}  // namespace

TEST_P(RuntimeTest, MatchesGoldenForEveryTaskAloneAndTogether) {
  mtedge::Runtime rt(bundle(), f32());
  const auto& m = rt.manifest();
  ASSERT_EQ(rt.tasks(), (std::vector<std::string>{"cls", "seg", "depth", "normals"}));
  const auto in = mtedge::read_npy(mtedge::bundle_path(m, m.golden_input.file));
  const std::size_t n_in = static_cast<std::size_t>(rt.input_spec().numel());
  ASSERT_EQ(in.data.size(), n_in * m.golden_samples);
  for (int s = 0; s < m.golden_samples; ++s) {
    const std::vector<float> x(in.data.begin() + s * n_in, in.data.begin() + (s + 1) * n_in);
    const auto all = rt.run(x, rt.tasks());
    for (const auto& task : rt.tasks()) {
      const auto golden = mtedge::read_npy(mtedge::bundle_path(m, m.golden_outputs.at(task).file));
      const std::size_t n = static_cast<std::size_t>(rt.output_spec(task).numel());
      const float* g = golden.data.data() + s * n;
      EXPECT_LT(max_abs_diff(all.at(task).data(), g, n), 1e-4f) << task << " sample " << s;
      const auto alone = rt.run(x, {task});
      EXPECT_LT(max_abs_diff(alone.at(task).data(), g, n), 1e-4f) << task << " alone, sample " << s;
    }
  }
}

TEST_P(RuntimeTest, PlanIsUnionOfSegmentsEachOnceInManifestOrder) {
  mtedge::Runtime rt(bundle(), f32());
  using V = std::vector<std::string>;
  EXPECT_EQ(rt.plan({"normals", "seg"}), (V{"trunk", "neck", "seg", "normals"}));
  EXPECT_EQ(rt.plan({"depth", "cls"}), (V{"trunk", "cls", "depth"}));
  EXPECT_EQ(rt.plan({"cls", "cls"}), (V{"trunk", "cls"}));
  EXPECT_EQ(rt.plan(rt.tasks()), (V{"trunk", "neck", "cls", "seg", "depth", "normals"}));
}

TEST_P(RuntimeTest, TrunkAndSharedNeckRunOncePerCall) {
  mtedge::Runtime rt(bundle(), f32());
  const std::vector<float> x(static_cast<std::size_t>(rt.input_spec().numel()), 0.5f);
  rt.run(x, {"seg", "normals", "cls"});
  rt.run(x, {"depth"});
  std::map<std::string, std::uint64_t> runs;
  for (const auto& s : rt.stats().segments) runs[s.segment] = s.runs;
  EXPECT_EQ(runs["trunk"], 2u);
  EXPECT_EQ(runs["neck"], 1u);
  EXPECT_EQ(runs["seg"], 1u);
  EXPECT_EQ(runs["depth"], 1u);
  EXPECT_EQ(rt.stats().runs, 2u);
}

TEST_P(RuntimeTest, UnknownTaskAndVariantNameTheChoices) {
  mtedge::Runtime rt(bundle(), f32());
  const std::vector<float> x(static_cast<std::size_t>(rt.input_spec().numel()), 0.f);
  try {
    rt.run(x, {"sgm"});
    FAIL();
  } catch (const mtedge::UnknownNameError& e) {
    EXPECT_STREQ(e.what(), "unknown task 'sgm'; this bundle has tasks: cls, seg, depth, normals");
  }
  EXPECT_THROW(rt.run(x, {"seg"}, "c50"), mtedge::UnknownNameError);  // not loaded
  EXPECT_THROW(rt.run(x, {"seg"}, "int8"), mtedge::UnknownNameError);  // not in the bundle
  auto opts = f32();
  opts.variants = {"int8"};
  EXPECT_THROW(mtedge::Runtime(bundle(), opts), mtedge::UnknownNameError);
  EXPECT_THROW(rt.run(x.data(), {"seg", "cls"}, {nullptr}), mtedge::InputError);
  EXPECT_THROW(rt.run(std::vector<float>(7), {"seg"}), mtedge::InputError);
}

TEST_P(RuntimeTest, SeveralVariantsStayResident) {
  auto opts = f32();
  opts.variants = {"fp32", "c50"};
  mtedge::Runtime rt(bundle(), opts);
  EXPECT_EQ(rt.variants(), (std::vector<std::string>{"fp32", "c50"}));
  const std::vector<float> x(static_cast<std::size_t>(rt.input_spec().numel()), 0.25f);
  const auto a = rt.run(x, {"seg"}, "fp32");
  const auto b = rt.run(x, {"seg"}, "c50");
  ASSERT_EQ(a.at("seg").size(), b.at("seg").size());  // same task shape, other width inside
  EXPECT_GT(max_abs_diff(a.at("seg").data(), b.at("seg").data(), a.at("seg").size()), 1e-3f);
  EXPECT_EQ(rt.run(x, {"seg"}, "fp32").at("seg"), a.at("seg"));  // switching back: same result
}

TEST_P(RuntimeTest, TamperedTruncatedOrMissingFilesAreNamed) {
  const fs::path b = copy_bundle("tamper");
  const std::string rel = segment_file("neck");
  {
    std::fstream f(b / rel, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);
    char c;
    f.read(&c, 1);
    f.seekp(40);
    c = static_cast<char>(c ^ 0x1);
    f.write(&c, 1);
  }
  try {
    mtedge::Runtime rt(b.string(), f32());
    FAIL() << "tampered file accepted";
  } catch (const mtedge::IntegrityError& e) {
    EXPECT_NE(std::string(e.what()).find(rel), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("sha256"), std::string::npos) << e.what();
  }
  fs::resize_file(b / rel, 10);
  try {
    mtedge::Runtime rt(b.string(), f32());
    FAIL() << "truncated file accepted";
  } catch (const mtedge::IntegrityError& e) {
    EXPECT_NE(std::string(e.what()).find("bytes"), std::string::npos) << e.what();
  }
  fs::remove(b / rel);
  try {
    mtedge::Runtime rt(b.string(), f32());
    FAIL() << "missing file accepted";
  } catch (const mtedge::FileMissingError& e) {
    EXPECT_NE(std::string(e.what()).find(rel), std::string::npos) << e.what();
  }
  fs::remove_all(b);
}

TEST_P(RuntimeTest, EveryTaskSubsetMatchesGoldenInOneRuntime) {
  mtedge::Runtime rt(bundle(), f32());
  const auto& m = rt.manifest();
  const auto in = mtedge::read_npy(mtedge::bundle_path(m, m.golden_input.file));
  const std::size_t n_in = static_cast<std::size_t>(rt.input_spec().numel());
  const auto tasks = rt.tasks();
  std::map<std::string, mtedge::NpyArray> golden;
  for (const auto& t : tasks) golden.emplace(t, mtedge::read_npy(mtedge::bundle_path(m, m.golden_outputs.at(t).file)));
  int subsets = 0;
  for (unsigned mask = 1; mask < (1u << tasks.size()); ++mask, ++subsets) {
    std::vector<std::string> subset;
    for (std::size_t i = 0; i < tasks.size(); ++i)
      if (mask & (1u << i)) subset.push_back(tasks[i]);
    const int s = static_cast<int>(mask) % m.golden_samples;  // alternate samples between calls
    const std::vector<float> x(in.data.begin() + s * n_in, in.data.begin() + (s + 1) * n_in);
    const auto out = rt.run(x, subset);
    ASSERT_EQ(out.size(), subset.size());
    for (const auto& t : subset) {
      const std::size_t n = static_cast<std::size_t>(rt.output_spec(t).numel());
      EXPECT_LT(max_abs_diff(out.at(t).data(), golden.at(t).data.data() + s * n, n), 1e-4f)
          << t << " in subset " << mask << ", sample " << s;
    }
  }
  EXPECT_EQ(subsets, 15);
}

INSTANTIATE_TEST_SUITE_P(Backends, RuntimeTest, ::testing::ValuesIn(backends()),
                         [](const auto& info) { return info.param; });
