#pragma once
// TEST DOUBLE: the "device" behind the fake libcudart, and the few hooks the fake libnvinfer
// needs from it. Device memory is host memory: every cudaMalloc block sits between two guard
// zones filled with a canary, and its body starts filled with a garbage pattern (device memory
// is not zeroed). Work on a stream is queued and runs at cudaStreamSynchronize (cudaFree and
// cudaStreamDestroy also run it, as the device would, but drop device->host copies and report
// them), so a host read without a sync sees the poison written into its destination at enqueue.
//
// A fault the real GPU would report as an illegal address (an access outside every live
// allocation, a guard zone overwritten) becomes the sticky error cudaErrorIllegalAddress, whose
// cudaGetErrorString text carries the double's diagnosis.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace fakecuda {

constexpr std::size_t kAlignment = 256;    // cudaMalloc alignment; TensorRT requires it too
constexpr std::size_t kGuardBytes = 256;   // canary zone on each side of every allocation
constexpr unsigned char kCanary = 0xFD;
constexpr unsigned char kGarbage = 0xCD;   // fresh device memory and clobbered activations
constexpr unsigned char kUnsynced = 0xFF;  // host bytes of a D2H copy not yet synchronized (NaN)

// Where [ptr, ptr + bytes) lies: inside one live allocation, or a message saying why not
// ("runs 1 byte(s) past the end of the 4096-byte allocation at 0x...").
struct RangeCheck {
  bool ok = false;
  std::string why;
};
RangeCheck check_range(const void* ptr, std::size_t bytes);

// Queue `op` on `stream` (it runs at the next cudaStreamSynchronize, in order).
void enqueue(cudaStream_t stream, std::string what, std::function<void()> op);
bool is_stream(cudaStream_t stream);

// Record a device fault: the next CUDA call on any stream returns cudaErrorIllegalAddress.
void fault(const std::string& why);

}  // namespace fakecuda
