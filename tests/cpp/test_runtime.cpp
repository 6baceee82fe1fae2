#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

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

// Golden inputs/outputs of the toy bundle, loaded once per test.
struct Golden {
  std::vector<std::vector<float>> in;                            // per sample
  std::map<std::string, std::vector<std::vector<float>>> out;    // task -> per sample
};

Golden load_golden(const mtedge::Runtime& rt) {
  const auto& m = rt.manifest();
  Golden g;
  const auto in = mtedge::read_npy(mtedge::bundle_path(m, m.golden_input.file));
  const std::size_t n_in = static_cast<std::size_t>(rt.input_spec().numel());
  for (int s = 0; s < m.golden_samples; ++s)
    g.in.emplace_back(in.data.begin() + s * n_in, in.data.begin() + (s + 1) * n_in);
  for (const auto& t : rt.tasks()) {
    const auto arr = mtedge::read_npy(mtedge::bundle_path(m, m.golden_outputs.at(t).file));
    const std::size_t n = static_cast<std::size_t>(rt.output_spec(t).numel());
    for (int s = 0; s < m.golden_samples; ++s)
      g.out[t].emplace_back(arr.data.begin() + s * n, arr.data.begin() + (s + 1) * n);
  }
  return g;
}

TEST_P(RuntimeTest, ConcurrentCallersMatchGoldenOnOneSetOfWeights) {
  auto opts = f32();
  opts.callers = 3;
  mtedge::Runtime rt(bundle(), opts);
  const Golden g = load_golden(rt);
  const auto tasks = rt.tasks();
  std::atomic<int> bad{0};
  std::vector<std::string> failures(6);
  std::vector<std::thread> threads;
  for (int k = 0; k < 6; ++k)  // more threads than contexts: some wait for one
    threads.emplace_back([&, k] {
      std::mt19937 rng(100 + k);
      for (int j = 0; j < 20; ++j) {
        std::vector<std::string> subset;
        const unsigned mask = 1 + rng() % 15;
        for (std::size_t i = 0; i < tasks.size(); ++i)
          if (mask & (1u << i)) subset.push_back(tasks[i]);
        const std::size_t s = rng() % g.in.size();
        const auto out = rt.run(g.in[s], subset);
        for (const auto& t : subset)
          if (max_abs_diff(out.at(t).data(), g.out.at(t)[s].data(), g.out.at(t)[s].size()) >= 1e-4f) {
            failures[k] = t + " sample " + std::to_string(s);
            ++bad;
          }
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0) << failures[0] << failures[1] << failures[2] << failures[3];
  const auto st = rt.stats();
  EXPECT_EQ(st.runs, 120u);
  ASSERT_EQ(st.per_context.size(), 3u);
  std::uint64_t sum = 0;
  for (const auto& c : st.per_context) sum += c.runs;
  EXPECT_EQ(sum, 120u);

  // Three contexts, the same compiled segments: what is compiled does not grow with callers.
  mtedge::Runtime one(bundle(), f32());
  EXPECT_EQ(st.compiled_segments, 6);
  EXPECT_EQ(one.stats().compiled_segments, 6);
  EXPECT_EQ(st.intermediate_bytes, 3 * one.stats().intermediate_bytes);
  if (!trt()) {  // OpenVINO: one CPU stream per caller as far as the cores go
    EXPECT_GE(st.parallel_lanes, std::thread::hardware_concurrency() >= 2 ? 2 : 1);
    EXPECT_LE(st.parallel_lanes, 3);
  }
}

TEST_P(RuntimeTest, CloseWaitsForRunsInFlightAndLaterCallsFail) {
  auto opts = f32();
  opts.callers = 2;
  mtedge::Runtime rt(bundle(), opts);
  const Golden g = load_golden(rt);
  std::atomic<int> wrong{0}, closed{0}, other{0}, ok{0};
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k)
    threads.emplace_back([&, k] {
      try {
        for (int j = 0;; ++j) {
          const std::size_t s = static_cast<std::size_t>(k + j) % g.in.size();
          const auto out = rt.run(g.in[s], {"seg"});
          if (max_abs_diff(out.at("seg").data(), g.out.at("seg")[s].data(), g.out.at("seg")[s].size()) >= 1e-4f)
            ++wrong;
          ++ok;
        }
      } catch (const mtedge::InputError& e) {
        if (std::string(e.what()).find("closed") != std::string::npos) {
          ++closed;
        } else {
          ++other;
          ADD_FAILURE() << e.what();
        }
      } catch (const std::exception& e) {
        ++other;
        ADD_FAILURE() << e.what();
      }
    });
  while (ok.load() < 8) std::this_thread::yield();
  rt.close();
  for (auto& t : threads) t.join();
  EXPECT_TRUE(rt.closed());
  EXPECT_EQ(closed.load(), 4);  // every thread ended on "closed", none on anything else
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_THROW(rt.run(g.in[0], {"seg"}), mtedge::InputError);
}

TEST_P(RuntimeTest, InputViewIsReadInPlaceOrCopiedWithAReason) {
  mtedge::Runtime rt(bundle(), f32());
  const Golden g = load_golden(rt);
  const auto& spec = rt.input_spec();  // [1, 3, 19, 23]
  const std::size_t n = g.in[0].size();
  std::vector<float> seg(static_cast<std::size_t>(rt.output_spec("seg").numel()));
  auto check = [&](const mtedge::InputView& v, const std::string& why) {
    rt.run(v, {"seg"}, {seg.data()});
    EXPECT_LT(max_abs_diff(seg.data(), g.out.at("seg")[0].data(), seg.size()), 1e-4f) << why;
    const auto st = rt.stats();
    EXPECT_EQ(st.last_input_address, reinterpret_cast<std::uintptr_t>(v.data));
    EXPECT_EQ(st.last_input_copy.substr(0, why.size()), why) << st.last_input_copy;
    mtedge::RunOptions no_copy;
    no_copy.allow_copy = false;
    if (why.empty()) {
      EXPECT_NO_THROW(rt.run(v, {"seg"}, {seg.data()}, no_copy));
    } else {
      try {
        rt.run(v, {"seg"}, {seg.data()}, no_copy);
        ADD_FAILURE() << "copy=false accepted a copy: " << why;
      } catch (const mtedge::InputError& e) {
        EXPECT_NE(std::string(e.what()).find("would be copied (" + why), std::string::npos) << e.what();
      }
    }
  };
  mtedge::InputView dense;
  dense.data = g.in[0].data();
  dense.shape = spec.shape;
  check(dense, trt() ? "host -> device (the tensorrt backend reads device memory)" : "");

  // float64, and float32 spread over every other row (strided view of a taller image).
  std::vector<double> f64(g.in[0].begin(), g.in[0].end());
  mtedge::InputView d = dense;
  d.data = f64.data();
  d.type = mtedge::ScalarType::kFloat64;
  d.type_name = "float64";
  check(d, "float64 -> float32");
  std::vector<float> tall(2 * n, NAN);
  for (std::size_t c = 0; c < 3; ++c)
    for (std::size_t h = 0; h < 19; ++h)
      for (std::size_t w = 0; w < 23; ++w) tall[(c * 38 + 2 * h) * 23 + w] = g.in[0][(c * 19 + h) * 23 + w];
  mtedge::InputView strided = dense;
  strided.data = tall.data();
  strided.strides = {3 * 38 * 23 * 4, 38 * 23 * 4, 2 * 23 * 4, 4};
  check(strided, "non-contiguous strides (10488, 3496, 184, 4) bytes");

  // What no copy can fix.
  mtedge::InputView wrong = dense;
  wrong.shape = {3, 19, 23};
  EXPECT_THROW(rt.run(wrong, {"seg"}, {seg.data()}), mtedge::InputError);
  mtedge::InputView u8 = dense;
  u8.type = mtedge::ScalarType::kOther;
  u8.type_name = "uint8";
  try {
    rt.run(u8, {"seg"}, {seg.data()});
    ADD_FAILURE() << "uint8 accepted";
  } catch (const mtedge::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("has dtype uint8; expected float32"), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, RuntimeTest, ::testing::ValuesIn(backends()),
                         [](const auto& info) { return info.param; });
