#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace mtedge {

// Streaming SHA-256 (FIPS 180-4). Used to verify every bundle file before it is used.
class Sha256 {
 public:
  Sha256();
  void update(const void* data, std::size_t len);
  std::string hex_digest();  // finalizes; lowercase hex, 64 chars

 private:
  void block(const std::uint8_t* p);
  std::uint32_t h_[8];
  std::uint8_t buf_[64];
  std::size_t buf_len_ = 0;
  std::uint64_t total_ = 0;
};

std::string sha256_hex(const void* data, std::size_t len);
std::string sha256_hex(const std::string& data);
// Hashes a file in chunks; throws FileMissingError if it cannot be opened.
std::string sha256_file(const std::string& path);

}  // namespace mtedge
