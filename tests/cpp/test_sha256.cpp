#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "mtedge/errors.h"
#include "mtedge/sha256.h"

using mtedge::sha256_hex;

// FIPS 180-4 / NIST CAVP vectors.
TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// Block-boundary lengths (55/56/63/64/65 bytes) and chunked updates must agree.
TEST(Sha256, ChunkingAndPaddingBoundaries) {
  EXPECT_EQ(sha256_hex(std::string(55, 'x')), sha256_hex(std::string(55, 'x')));
  for (std::size_t n : {55u, 56u, 63u, 64u, 65u, 127u, 128u, 1000u}) {
    std::string s;
    for (std::size_t i = 0; i < n; ++i) s.push_back(static_cast<char>('a' + i % 26));
    mtedge::Sha256 h;
    for (std::size_t i = 0; i < n; i += 7) h.update(s.data() + i, std::min<std::size_t>(7, n - i));
    EXPECT_EQ(h.hex_digest(), sha256_hex(s)) << "length " << n;
  }
  EXPECT_EQ(sha256_hex(std::string(64, 'a')),
            "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

TEST(Sha256, FileMatchesMemoryAndMissingFileThrows) {
  const auto path = std::filesystem::temp_directory_path() / "mtedge_sha_test.bin";
  const std::string data(200000, '\x5a');
  std::ofstream(path, std::ios::binary) << data;
  EXPECT_EQ(mtedge::sha256_file(path.string()), sha256_hex(data));
  std::filesystem::remove(path);
  EXPECT_THROW(mtedge::sha256_file(path.string()), mtedge::FileMissingError);
}
