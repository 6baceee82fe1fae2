#pragma once
// Strict .npy reader (format 1.0/2.0/3.0, little-endian float32, C order) for golden files.
// Everything in the file is checked before it is used: magic, version, a bounded header that
// must be exactly {'descr': '<f4', 'fortran_order': False, 'shape': (...)}, the shape
// (check_shape limits), and the data length, which must equal the shape's bytes exactly.
#include <string>
#include <vector>

#include "mtedge/tensor.h"

namespace mtedge {

struct FileRef;
struct Manifest;

struct NpyArray {
  Shape shape;
  std::vector<float> data;
};

constexpr std::size_t kMaxNpyHeader = 64 * 1024;  // numpy writes ~128 bytes

// Parses .npy bytes; `name` is used in messages. Throws BundleError (never anything else).
NpyArray parse_npy(const std::string& bytes, const std::string& name);
// Reads and parses a file; throws FileMissingError / BundleError.
NpyArray read_npy(const std::string& path);
// Reads a bundle file once: checks size and sha256 of the bytes read, parses those same bytes,
// and, when `expect` is not empty, requires that exact shape. Throws FileMissingError /
// IntegrityError / BundleError.
NpyArray read_bundle_npy(const Manifest& m, const FileRef& ref, const Shape& expect = {});
// [samples] + the batch-free part of `per_call`: the shape golden files carry (bundle-format.md).
Shape golden_shape(int samples, const Shape& per_call);

}  // namespace mtedge
