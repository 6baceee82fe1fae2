#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "mtedge/errors.h"
#include "mtedge/manifest.h"

namespace {

using Json = nlohmann::ordered_json;
const std::string kSha(64, 'a');

Json spec(const std::string& n, std::vector<int> shape) {
  return {{"name", n}, {"shape", shape}, {"dtype", "float32"}};
}

// A small valid manifest: segments deliberately not in alphabetical order.
Json valid() {
  Json m = {{"format", "mtedge-bundle"}, {"format_version", 1}, {"name", "t"},
            {"input", {{"name", "image"}, {"shape", {1, 3, 5, 7}}, {"dtype", "float32"}, {"layout", "NCHW"},
                       {"normalization", {{"scale", 1.0}, {"mean", {0.0}}, {"std", {1.0}}}}}}};
  m["segments"]["trunk"] = {{"inputs", {"image"}}, {"outputs", {"feat"}}, {"tasks", {"b", "a"}}, {"shared", true}};
  m["segments"]["zhead"] = {{"inputs", {"feat"}}, {"outputs", {"b"}}, {"tasks", {"b"}}, {"shared", false}};
  m["segments"]["ahead"] = {{"inputs", {"feat"}}, {"outputs", {"a"}}, {"tasks", {"a"}}, {"shared", false}};
  m["tasks"]["b"] = {{"kind", "classification"}, {"metric", "acc"}, {"output", "b"}, {"segments", {"trunk", "zhead"}}};
  m["tasks"]["a"] = {{"kind", "depth"}, {"metric", "mae"}, {"output", "a"}, {"segments", {"trunk", "ahead"}}};
  auto seg = [](std::string file, Json ins, Json outs) {
    return Json{{"file", file}, {"sha256", kSha}, {"bytes", 10}, {"inputs", ins}, {"outputs", outs}};
  };
  m["variants"]["fp32"] = {{"precision", "fp32"}, {"config", nullptr}, {"segments", {
      {"trunk", seg("segments/trunk.onnx", {spec("image", {1, 3, 5, 7})}, {spec("feat", {1, 4, 5, 7})})},
      {"zhead", seg("segments/zhead.onnx", {spec("feat", {1, 4, 5, 7})}, {spec("b", {1, 2})})},
      {"ahead", seg("segments/ahead.onnx", {spec("feat", {1, 4, 5, 7})}, {spec("a", {1, 1, 5, 7})})}}}};
  m["default_variant"] = "fp32";
  m["golden"] = {{"input", {{"file", "golden/input.npy"}, {"sha256", kSha}, {"bytes", 1}}},
                 {"outputs", Json::object()}, {"samples", 1}};
  m["provenance"] = {{"model", "x"}, {"model_sha256", kSha}, {"created", "now"}, {"tools", Json::object()}};
  return m;
}

// Parses and expects a BundleError whose message contains every fragment.
void expect_bundle_error(const Json& m, std::initializer_list<const char*> fragments) {
  try {
    mtedge::parse_manifest(m.dump(), "/b");
    FAIL() << "expected BundleError";
  } catch (const mtedge::BundleError& e) {
    for (const char* f : fragments) EXPECT_NE(std::string(e.what()).find(f), std::string::npos)
        << "message '" << e.what() << "' lacks '" << f << "'";
  }
}

}  // namespace

TEST(Manifest, ParsesAndKeepsSegmentOrder) {
  const auto m = mtedge::parse_manifest(valid().dump(), "/b");
  ASSERT_EQ(m.segments.size(), 3u);
  EXPECT_EQ(m.segments[0].name, "trunk");
  EXPECT_EQ(m.segments[1].name, "zhead");
  EXPECT_EQ(m.segments[2].name, "ahead");
  ASSERT_EQ(m.tasks.size(), 2u);
  EXPECT_EQ(m.tasks[0].name, "b");
  EXPECT_EQ(m.tasks[1].segment_ids, (std::vector<int>{0, 2}));
  EXPECT_EQ(m.input.shape, (mtedge::Shape{1, 3, 5, 7}));
  EXPECT_EQ(m.variant("fp32").segments.at("ahead").outputs[0].shape, (mtedge::Shape{1, 1, 5, 7}));
  EXPECT_THROW(m.variant("int8"), mtedge::UnknownNameError);
}

TEST(Manifest, RejectsMalformed) {
  EXPECT_THROW(mtedge::parse_manifest("{not json", "/b"), mtedge::BundleError);
  Json m = valid();
  m["format_version"] = 2;
  expect_bundle_error(m, {"format_version", "2"});
  m = valid();
  m["format"] = "onnx";
  expect_bundle_error(m, {"format", "mtedge-bundle"});
  m = valid();
  m["tasks"]["a"]["segments"] = {"trunk", "nope"};
  expect_bundle_error(m, {"tasks.a", "nope"});
  m = valid();
  m.erase("default_variant");
  expect_bundle_error(m, {"default_variant"});
  m = valid();
  m["default_variant"] = "int8";
  expect_bundle_error(m, {"int8", "fp32"});
  m = valid();
  m["input"]["shape"] = {1, 0, 5, 7};
  expect_bundle_error(m, {"input.shape"});
}

TEST(Manifest, RejectsInconsistentGraph) {
  Json m = valid();
  // A head listed before the trunk that produces its input.
  Json segs = Json::object();
  segs["zhead"] = m["segments"]["zhead"];
  segs["trunk"] = m["segments"]["trunk"];
  segs["ahead"] = m["segments"]["ahead"];
  m["segments"] = segs;
  expect_bundle_error(m, {"zhead", "feat", "topological"});

  m = valid();
  m["tasks"]["a"]["segments"] = {"ahead"};  // needs the trunk but does not list it
  expect_bundle_error(m, {"tasks.a", "trunk", "does not list"});

  m = valid();
  m["tasks"]["a"]["output"] = "b";  // produced, but not by the task's segments
  expect_bundle_error(m, {"tasks.a.output"});

  m = valid();  // the consumer expects another shape than the producer writes
  m["variants"]["fp32"]["segments"]["ahead"]["inputs"][0]["shape"] = {1, 8, 5, 7};
  expect_bundle_error(m, {"variants.fp32.segments.ahead", "feat", "[1, 8, 5, 7]", "[1, 4, 5, 7]"});

  m = valid();
  m["variants"]["fp32"]["segments"].erase("zhead");
  expect_bundle_error(m, {"variants.fp32", "zhead"});

  m = valid();
  m["variants"]["fp32"]["segments"]["trunk"]["outputs"][0]["name"] = "other";
  expect_bundle_error(m, {"variants.fp32.segments.trunk.outputs", "feat"});
}

TEST(Manifest, RejectsUnsafePathsAndBadHashes) {
  Json m = valid();
  m["variants"]["fp32"]["segments"]["trunk"]["file"] = "../outside.onnx";
  expect_bundle_error(m, {"../outside.onnx", "inside the bundle"});
  m = valid();
  m["variants"]["fp32"]["segments"]["trunk"]["file"] = "/abs/trunk.onnx";
  expect_bundle_error(m, {"/abs/trunk.onnx"});
  m = valid();
  m["variants"]["fp32"]["segments"]["trunk"]["sha256"] = "ABC";
  expect_bundle_error(m, {"sha256", "ABC"});
}

TEST(Manifest, MissingBundleOrManifest) {
  namespace fs = std::filesystem;
  EXPECT_THROW(mtedge::load_manifest("/nonexistent/x.mtb"), mtedge::FileMissingError);
  const auto dir = fs::temp_directory_path() / "mtedge_empty.mtb";
  fs::create_directories(dir);
  try {
    mtedge::load_manifest(dir.string());
    FAIL() << "expected FileMissingError";
  } catch (const mtedge::FileMissingError& e) {
    EXPECT_NE(std::string(e.what()).find("manifest.json"), std::string::npos);
  }
  fs::remove_all(dir);
}

TEST(Manifest, RejectsShapesBeyondTheRuntimeLimits) {
  Json m = valid();
  m["input"]["shape"] = std::vector<int>(9, 1);
  expect_bundle_error(m, {"input.shape", "1 to 8"});
  m = valid();
  m["input"]["shape"] = Json::array({1, 3, std::uint64_t(1) << 63, 7});  // wraps to negative as int64
  expect_bundle_error(m, {"input.shape", "positive integer"});
  m = valid();
  m["input"]["shape"] = Json::array({65536, 65536, 65536});
  expect_bundle_error(m, {"input.shape", "more than"});
  m = valid();
  m["golden"]["samples"] = std::uint64_t(1) << 40;
  expect_bundle_error(m, {"golden.samples", "1 to 1000000"});
}

TEST(Manifest, AnyTypeConfusionIsABundleError) {
  // Wrong JSON types anywhere must end in BundleError, never nlohmann's exceptions.
  for (const char* key : {"format", "name", "input", "segments", "tasks", "variants", "default_variant", "golden"}) {
    for (const Json& v : {Json(nullptr), Json(1), Json("x"), Json::array(), Json::object(), Json(true)}) {
      if (v.is_string() && std::string(key) == "name") continue;  // a valid name
      Json m = valid();
      m[key] = v;
      EXPECT_THROW(mtedge::parse_manifest(m.dump(), "/b"), mtedge::BundleError) << key << "=" << v.dump();
    }
  }
}

// ---- the conformance corpus (tests/data/manifests, shared with pytest) ----------------------
// Every case must be accepted or refused as cases.json says, a refusal naming the same JSON path
// as the Python validator: "manifest.json: <field>: <what>; <fix>".
namespace {

std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

TEST(ManifestConformance, AgreesWithTheCorpus) {
  const std::filesystem::path dir = MTEDGE_MANIFEST_CORPUS;
  const Json cases = Json::parse(slurp(dir / "cases.json"));
  ASSERT_GE(cases.size(), 30u);
  int refused = 0;
  for (const auto& [file, expect] : cases.items()) {
    SCOPED_TRACE(file);
    const std::string text = slurp(dir / file);
    ASSERT_FALSE(text.empty()) << "corpus file missing";
    const bool accept = expect["accept"].get<bool>();
    try {
      mtedge::parse_manifest(text, dir.string());
      EXPECT_TRUE(accept) << "accepted; expected a refusal naming " << expect["field"].dump();
    } catch (const mtedge::BundleError& e) {
      const std::string msg = e.what();
      EXPECT_FALSE(accept) << "refused: " << msg;
      if (accept) continue;
      ++refused;
      const std::string prefix = "manifest.json: " + expect["field"].get<std::string>() + ": ";
      EXPECT_EQ(msg.rfind(prefix, 0), 0u) << "message '" << msg << "' does not start with '" << prefix << "'";
      // Every refusal names a fix, not just the fault.
      EXPECT_NE(msg.find("; "), std::string::npos) << msg;
    }
  }
  EXPECT_GE(refused, 25);
}
