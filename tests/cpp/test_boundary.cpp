// The runtime's input boundary: shapes, .npy parsing and manifest numbers from hostile files.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "mtedge/errors.h"
#include "mtedge/manifest.h"
#include "mtedge/npy.h"
#include "mtedge/tensor.h"
#include "mtedge/sha256.h"

namespace {

// A .npy v1.0 file as numpy writes it, with a header dict and data bytes of our choosing.
std::string npy(const std::string& dict, std::size_t floats, int major = 1) {
  std::string header = dict;
  const std::size_t pre = major == 1 ? 10 : 12;
  while ((pre + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += char(major);
  out += char(0);
  const std::size_t n = header.size();
  out += char(n & 0xff);
  out += char((n >> 8) & 0xff);
  if (major != 1) out += std::string(2, '\0');
  out += header;
  out += std::string(floats * 4, '\0');
  return out;
}

const char* kDict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";

void expect_npy_error(const std::string& bytes, const char* fragment) {
  try {
    mtedge::parse_npy(bytes, "x.npy");
    FAIL() << "expected BundleError containing '" << fragment << "'";
  } catch (const mtedge::BundleError& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("x.npy"), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(Shape, LimitsRankDimensionsAndElementCount) {
  EXPECT_EQ(mtedge::shape_problem({1, 3, 224, 224}), "");
  EXPECT_NE(mtedge::shape_problem({}).find("rank 0"), std::string::npos);
  EXPECT_NE(mtedge::shape_problem(mtedge::Shape(9, 1)).find("rank 9 > 8"), std::string::npos);
  EXPECT_NE(mtedge::shape_problem({1, 0, 3}).find("dimension 1 is 0"), std::string::npos);
  EXPECT_NE(mtedge::shape_problem({4, -2}).find("dimension 1 is -2"), std::string::npos);
  // 2^32 * 2^32 overflows int64 if multiplied naively; it must be reported, not wrapped.
  EXPECT_NE(mtedge::shape_problem({std::int64_t(1) << 32, std::int64_t(1) << 32}).find("more than"),
            std::string::npos);
  EXPECT_NE(mtedge::shape_problem({mtedge::kMaxElements, 2}).find("more than"), std::string::npos);
  EXPECT_EQ(mtedge::shape_problem({mtedge::kMaxElements}), "");
  EXPECT_THROW(mtedge::numel({3, 0}), mtedge::BundleError);
  EXPECT_EQ(mtedge::numel({2, 3, 4}), 24);
}

TEST(Npy, ParsesWhatNumpyWrites) {
  for (int major : {1, 2}) {
    const auto a = mtedge::parse_npy(npy(kDict, 6, major), "x.npy");
    EXPECT_EQ(a.shape, (mtedge::Shape{2, 3}));
    EXPECT_EQ(a.data.size(), 6u);
  }
  const auto one = mtedge::parse_npy(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }", 5), "x.npy");
  EXPECT_EQ(one.shape, (mtedge::Shape{5}));
}

TEST(Npy, RejectsEveryMalformedPartByName) {
  expect_npy_error("\x93NUMPZ\x01\x00\x10\x00", "bad magic");
  expect_npy_error("", "bad magic");
  std::string v = npy(kDict, 6);
  v[6] = 9;
  expect_npy_error(v, "format version 9.0");
  std::string huge = npy(kDict, 6, 2);
  huge[8] = huge[9] = huge[10] = huge[11] = char(0xff);  // header length 4 GiB
  expect_npy_error(huge, "header length 4294967295");
  expect_npy_error(npy(kDict, 6).substr(0, 30), "truncated header");
  expect_npy_error(npy(kDict, 5), "needs 24 data bytes, the file has 20");
  expect_npy_error(npy(kDict, 7), "needs 24 data bytes, the file has 28");
  expect_npy_error(npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", 6), "dtype is '<f8'");
  expect_npy_error(npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 6), "Fortran order");
  expect_npy_error(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }", 6), "non-integer");
  expect_npy_error(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }", 0), "dimension 0 is 0");
  expect_npy_error(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", 1), "rank > 8");
  expect_npy_error(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 1),
                   "exceeds");
  expect_npy_error(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (65536, 65536), }", 1), "more than");
  expect_npy_error(npy("{'descr': '<f4', 'shape': (2, 3), }", 6), "no 'fortran_order'");
  expect_npy_error(npy("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}", 6),
                   "appears twice");
  expect_npy_error(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}", 6), "unexpected key");
  expect_npy_error(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)} junk", 6), "text after");
  expect_npy_error(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)", 6), "expected a quoted key");
}

TEST(Npy, MissingFileIsFileMissingError) {
  EXPECT_THROW(mtedge::read_npy("/nonexistent/x.npy"), mtedge::FileMissingError);
}

TEST(Npy, GoldenShapeReplacesTheBatch) {
  EXPECT_EQ(mtedge::golden_shape(4, {1, 3, 5, 7}), (mtedge::Shape{4, 3, 5, 7}));
  EXPECT_EQ(mtedge::golden_shape(4, {1, 2}), (mtedge::Shape{4, 2}));
}

TEST(BundleFiles, ReadOnceCheckShapeAndStayInsideTheBundle) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("mtedge_files_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "golden");
  const std::string bytes = npy(kDict, 6);
  std::ofstream(dir / "golden" / "t.npy", std::ios::binary) << bytes;
  mtedge::Manifest m;
  m.dir = dir.string();
  mtedge::FileRef ref{"golden/t.npy", mtedge::sha256_hex(bytes), bytes.size()};
  EXPECT_EQ(mtedge::read_bundle_npy(m, ref, {2, 3}).data.size(), 6u);
  try {  // a golden file shorter than the manifest implies (the old "no golden output" exit 0)
    mtedge::read_bundle_npy(m, ref, {3, 3});
    FAIL() << "expected BundleError";
  } catch (const mtedge::BundleError& e) {
    EXPECT_NE(std::string(e.what()).find("the manifest implies [3, 3]"), std::string::npos) << e.what();
  }
  auto other = ref;
  other.bytes += 1;
  EXPECT_THROW(mtedge::read_verified(m, other), mtedge::IntegrityError);
  // Same bytes, but reached through a symlink that leaves the bundle: refused before reading.
  std::ofstream(dir.string() + "_outside.npy", std::ios::binary) << bytes;
  fs::remove(dir / "golden" / "t.npy");
  fs::create_symlink(dir.string() + "_outside.npy", dir / "golden" / "t.npy");
  try {
    mtedge::read_verified(m, ref);
    FAIL() << "expected BundleError";
  } catch (const mtedge::BundleError& e) {
    EXPECT_NE(std::string(e.what()).find("outside the bundle"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
  fs::remove(dir.string() + "_outside.npy");
}
