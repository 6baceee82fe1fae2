// Where the C++ tests find their bundles: the environment ctest sets, or (in the TensorRT double's
// test binaries) the paths compiled in, where ctest builds the engines.
#pragma once

#include <cstdlib>
#include <string>

inline std::string test_env(const char* name) {
  const char* p = std::getenv(name);
#ifdef MTEDGE_TRT_BUNDLE_PATH
  if (!p && std::string(name) == "MTEDGE_TRT_BUNDLE") return MTEDGE_TRT_BUNDLE_PATH;
  if (!p && std::string(name) == "MTEDGE_OTHER_TRT_BUNDLE") return MTEDGE_OTHER_TRT_BUNDLE_PATH;
#endif
  return p ? p : "";
}
