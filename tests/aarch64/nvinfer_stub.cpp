// aarch64 LINK STUB of libnvinfer (there is no aarch64 TensorRT library on the build machines):
// the two entry points of NvInferRuntime.h that a TensorRT 10 program resolves from the library,
// compiled against the real TensorRT 10.3 headers. Every class method the backend calls is a
// virtual call through objects the library would create, so the backend links against these
// alone. createInferRuntime_INTERNAL returns null, as the real one does when it cannot start; the
// backend must then fail with its BackendError (tests/aarch64/CMakeLists.txt checks that under qemu).
#include <NvInferRuntime.h>

extern "C" TENSORRTAPI void* createInferRuntime_INTERNAL(void* /*logger*/, int32_t /*version*/) noexcept {
  return nullptr;
}

extern "C" TENSORRTAPI int32_t getInferLibVersion() noexcept { return NV_TENSORRT_VERSION; }
