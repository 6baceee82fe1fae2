#pragma once
// One error strategy inside csrc/: exceptions derived from mtedge::Error.
// Messages name the bad thing, what was expected, and a fix; the Python binding
// (csrc/python/bindings.cpp) is the only place that turns them into Python exceptions.
#include <stdexcept>
#include <string>

namespace mtedge {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The manifest is malformed or inconsistent (unknown format, dangling segment, bad shape...).
class BundleError : public Error {
 public:
  using Error::Error;
};

// A file the bundle references (or the bundle directory itself) does not exist.
class FileMissingError : public BundleError {
 public:
  using BundleError::BundleError;
};

// A referenced file exists but its size or sha256 differs from the manifest.
class IntegrityError : public BundleError {
 public:
  using BundleError::BundleError;
};

// The caller passed an input of the wrong shape/dtype/size, or a bad option value.
class InputError : public Error {
 public:
  using Error::Error;
};

// A task or variant name the bundle does not have (or the runtime did not load).
class UnknownNameError : public Error {
 public:
  using Error::Error;
};

// The backend (OpenVINO, TensorRT, CUDA) failed to compile or run a segment.
class BackendError : public Error {
 public:
  using Error::Error;
};

}  // namespace mtedge
