// TEST DOUBLE of libcudart: the subset of the CUDA runtime API the TensorRT backend calls,
// with the device modeled on host memory (see fake_device.h for the model).
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <vector>

#include "fake_device.h"

// The opaque stream handle of the CUDA headers, defined by the double.
struct CUstream_st {
  std::deque<std::pair<std::string, std::function<void()>>> pending;
  std::recursive_mutex draining;  // one drainer at a time keeps the stream's order
};

namespace fakecuda {
namespace {

struct Allocation {
  unsigned char* raw;   // [guard][body: size bytes][slack up to the alignment][guard]
  std::size_t size;
  std::size_t padded;   // body + slack
};

std::mutex g_mu;
std::map<std::uintptr_t, Allocation> g_allocs;  // by body address
std::set<cudaStream_t> g_streams;
cudaError_t g_sticky = cudaSuccess;
std::string g_detail;  // the double's diagnosis of the last error it returned

std::string hex(const void* p) {
  std::ostringstream s;
  s << p;
  return s.str();
}

unsigned char* body(const Allocation& a) { return a.raw + kGuardBytes; }

cudaError_t fail(cudaError_t e, const std::string& why) {  // caller holds g_mu
  g_detail = why;
  return e;
}

cudaError_t fail_locked(cudaError_t e, const std::string& why) {
  std::lock_guard<std::mutex> lock(g_mu);
  return fail(e, why);
}

// The first canary byte that changed, relative to the body start ("-3" or "+4097"), or "".
std::string damaged_guard(const Allocation& a) {
  for (std::size_t i = 0; i < kGuardBytes; ++i)
    if (a.raw[i] != kCanary) return "-" + std::to_string(kGuardBytes - i);
  const unsigned char* tail = body(a) + a.size;
  for (std::size_t i = 0; i < a.padded - a.size + kGuardBytes; ++i)
    if (tail[i] != kCanary) return "+" + std::to_string(a.size + i);
  return "";
}

void check_guards_locked() {
  for (const auto& kv : g_allocs) {
    const std::string at = damaged_guard(kv.second);
    if (!at.empty() && g_sticky == cudaSuccess) {
      g_sticky = cudaErrorIllegalAddress;
      g_detail = "guard zone of the " + std::to_string(kv.second.size) + "-byte allocation at " +
                 hex(body(kv.second)) + " was overwritten at offset " + at +
                 ": something wrote outside the allocation";
    }
  }
}

RangeCheck check_range_locked(const void* ptr, std::size_t bytes) {
  const auto p = reinterpret_cast<std::uintptr_t>(ptr);
  auto it = g_allocs.upper_bound(p);
  if (it == g_allocs.begin()) return {false, hex(ptr) + " is not device memory (below every allocation)"};
  --it;
  const std::uintptr_t base = it->first;
  const std::size_t size = it->second.size;
  if (p >= base + size + kGuardBytes)
    return {false, hex(ptr) + " is not inside any live device allocation"};
  if (p >= base + size)
    return {false, hex(ptr) + " starts " + std::to_string(p - base - size) + " byte(s) past the end of the " +
                       std::to_string(size) + "-byte allocation at " + hex(reinterpret_cast<void*>(base))};
  if (p + bytes > base + size)
    return {false, "[" + hex(ptr) + ", +" + std::to_string(bytes) + ") runs " +
                       std::to_string(p + bytes - base - size) + " byte(s) past the end of the " +
                       std::to_string(size) + "-byte allocation at " + hex(reinterpret_cast<void*>(base))};
  return {true, ""};
}

// Runs a stream's queued work in order, outside the lock (work may call back into the double).
// Only cudaStreamSynchronize delivers device->host copies: when the queue is drained by
// cudaFree or cudaStreamDestroy, the host already read (and may have freed) the destination
// without a sync, so the copy is dropped and reported instead of writing into stale memory.
void drain(cudaStream_t s, bool explicit_sync) {
  std::lock_guard<std::recursive_mutex> order(s->draining);
  for (;;) {
    std::function<void()> op;
    {
      std::lock_guard<std::mutex> lock(g_mu);
      if (s->pending.empty()) {
        check_guards_locked();
        return;
      }
      const std::string what = s->pending.front().first;
      op = std::move(s->pending.front().second);
      s->pending.pop_front();
      if (g_sticky != cudaSuccess) continue;  // a faulted device runs nothing more
      if (!explicit_sync && what == "D2H") {
        g_sticky = cudaErrorIllegalAddress;
        g_detail = "a device->host cudaMemcpyAsync was never followed by cudaStreamSynchronize: the host read "
                   "its destination before the copy ran";
        continue;
      }
    }
    op();
  }
}

}  // namespace

RangeCheck check_range(const void* ptr, std::size_t bytes) {
  std::lock_guard<std::mutex> lock(g_mu);
  return check_range_locked(ptr, bytes);
}

bool is_stream(cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_streams.count(stream) > 0;
}

void enqueue(cudaStream_t stream, std::string what, std::function<void()> op) {
  std::lock_guard<std::mutex> lock(g_mu);
  stream->pending.emplace_back(std::move(what), std::move(op));
}

void fault(const std::string& why) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_sticky == cudaSuccess) {
    g_sticky = cudaErrorIllegalAddress;
    g_detail = why;
  }
}

}  // namespace fakecuda

using namespace fakecuda;

extern "C" {

const char* CUDARTAPI cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    default: return "cudaErrorUnknown";
  }
}

const char* CUDARTAPI cudaGetErrorString(cudaError_t error) {
  const char* base = "unknown error";
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: base = "invalid argument"; break;
    case cudaErrorMemoryAllocation: base = "out of memory"; break;
    case cudaErrorIllegalAddress: base = "an illegal memory access was encountered"; break;
    case cudaErrorInvalidResourceHandle: base = "invalid resource handle"; break;
    case cudaErrorNoDevice: base = "no CUDA-capable device is detected"; break;
    default: break;
  }
  thread_local std::string text;
  std::lock_guard<std::mutex> lock(g_mu);
  text = g_detail.empty() ? base : std::string(base) + " [fake cudart: " + g_detail + "]";
  return text.c_str();
}

cudaError_t CUDARTAPI cudaGetDeviceCount(int* count) {
  // MTEDGE_FAKE_CUDA_DEVICES=0 models a machine without a GPU.
  const char* n = std::getenv("MTEDGE_FAKE_CUDA_DEVICES");
  *count = n ? std::atoi(n) : 1;
  return *count > 0 ? cudaSuccess : cudaErrorNoDevice;
}

cudaError_t CUDARTAPI cudaMalloc(void** devPtr, size_t size) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_sticky != cudaSuccess) return g_sticky;
  if (devPtr == nullptr) return fail(cudaErrorInvalidValue, "cudaMalloc: devPtr is null");
  const std::size_t padded = (size + kAlignment - 1) / kAlignment * kAlignment;
  auto* raw = static_cast<unsigned char*>(std::aligned_alloc(kAlignment, padded + 2 * kGuardBytes));
  if (raw == nullptr) return fail(cudaErrorMemoryAllocation, "host allocation failed");
  std::memset(raw, kCanary, kGuardBytes);
  std::memset(raw + kGuardBytes, kGarbage, size);
  std::memset(raw + kGuardBytes + size, kCanary, padded - size + kGuardBytes);
  Allocation a{raw, size, padded};
  g_allocs[reinterpret_cast<std::uintptr_t>(body(a))] = a;
  *devPtr = body(a);
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaFree(void* devPtr) {
  if (devPtr == nullptr) return cudaSuccess;
  std::vector<cudaStream_t> streams;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    streams.assign(g_streams.begin(), g_streams.end());
  }
  for (auto s : streams) drain(s, false);  // cudaFree synchronizes the device first
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = g_allocs.find(reinterpret_cast<std::uintptr_t>(devPtr));
  if (it == g_allocs.end())
    return fail(cudaErrorInvalidValue, "cudaFree(" + hex(devPtr) + "): not the start of a live allocation");
  const std::string at = damaged_guard(it->second);
  if (!at.empty() && g_sticky == cudaSuccess) {
    g_sticky = cudaErrorIllegalAddress;
    g_detail = "cudaFree: guard zone of the allocation at " + hex(devPtr) + " was overwritten at offset " + at;
  }
  std::free(it->second.raw);
  g_allocs.erase(it);
  return g_sticky;
}

cudaError_t CUDARTAPI cudaStreamCreateWithFlags(cudaStream_t* pStream, unsigned int) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_sticky != cudaSuccess) return g_sticky;
  *pStream = new CUstream_st();
  g_streams.insert(*pStream);
  return cudaSuccess;
}

cudaError_t CUDARTAPI cudaStreamDestroy(cudaStream_t stream) {
  if (!is_stream(stream)) return fail_locked(cudaErrorInvalidResourceHandle, "cudaStreamDestroy: unknown stream");
  drain(stream, false);  // pending work completes, as on the device
  std::lock_guard<std::mutex> lock(g_mu);
  g_streams.erase(stream);
  delete stream;
  return cudaSuccess;
}

// The built-in streams (the NULL stream, cudaStreamLegacy, cudaStreamPerThread) are what a
// producer such as torch names in __cuda_array_interface__["stream"]; the double queues nothing
// on them (its streams are created non-blocking), so synchronizing one only reports a fault.
bool builtin_stream(cudaStream_t s) {
  return s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread;
}

cudaError_t CUDARTAPI cudaStreamSynchronize(cudaStream_t stream) {
  if (builtin_stream(stream)) {
    std::lock_guard<std::mutex> lock(g_mu);
    return g_sticky;
  }
  if (!is_stream(stream)) return fail_locked(cudaErrorInvalidResourceHandle, "cudaStreamSynchronize: unknown stream");
  drain(stream, true);
  std::lock_guard<std::mutex> lock(g_mu);
  return g_sticky;
}

cudaError_t CUDARTAPI cudaMemcpyAsync(void* dst, const void* src, size_t count, enum cudaMemcpyKind kind,
                                      cudaStream_t stream) {
  if (!is_stream(stream)) return fail_locked(cudaErrorInvalidResourceHandle, "cudaMemcpyAsync: unknown stream");
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_sticky != cudaSuccess) return g_sticky;
  if (kind == cudaMemcpyHostToDevice) {
    const RangeCheck r = check_range_locked(dst, count);
    if (!r.ok) return fail(cudaErrorInvalidValue, "cudaMemcpyAsync host->device: destination " + r.why);
    // Pageable host memory is staged at the call, so the caller may reuse it on return.
    auto staged = std::make_shared<std::vector<unsigned char>>(static_cast<const unsigned char*>(src),
                                                               static_cast<const unsigned char*>(src) + count);
    stream->pending.emplace_back("H2D", [dst, staged] { std::memcpy(dst, staged->data(), staged->size()); });
  } else if (kind == cudaMemcpyDeviceToHost) {
    const RangeCheck r = check_range_locked(src, count);
    if (!r.ok) return fail(cudaErrorInvalidValue, "cudaMemcpyAsync device->host: source " + r.why);
    // Until the stream is synchronized the host sees poison (NaN as float), not the result.
    std::memset(dst, kUnsynced, count);
    stream->pending.emplace_back("D2H", [dst, src, count] { std::memcpy(dst, src, count); });
  } else if (kind == cudaMemcpyDeviceToDevice) {
    const RangeCheck a = check_range_locked(src, count), b = check_range_locked(dst, count);
    if (!a.ok || !b.ok)
      return fail(cudaErrorInvalidValue, "cudaMemcpyAsync device->device: " + (a.ok ? "destination " + b.why
                                                                                     : "source " + a.why));
    stream->pending.emplace_back("D2D", [dst, src, count] { std::memmove(dst, src, count); });
  } else {
    return fail(cudaErrorInvalidValue, "cudaMemcpyAsync: the double models only H2D, D2H and D2D copies");
  }
  return cudaSuccess;
}

// Device memory is what the double's cudaMalloc returned (anywhere inside a live allocation);
// anything else is unregistered host memory, as CUDA >= 11 reports it (with cudaSuccess).
cudaError_t CUDARTAPI cudaPointerGetAttributes(struct cudaPointerAttributes* attributes, const void* ptr) {
  if (attributes == nullptr) return fail_locked(cudaErrorInvalidValue, "cudaPointerGetAttributes: attributes is null");
  std::lock_guard<std::mutex> lock(g_mu);
  *attributes = cudaPointerAttributes{};
  if (check_range_locked(ptr, 1).ok) {
    attributes->type = cudaMemoryTypeDevice;
    attributes->device = 0;
    attributes->devicePointer = const_cast<void*>(ptr);
  } else {
    attributes->type = cudaMemoryTypeUnregistered;
    attributes->device = -2;
  }
  return cudaSuccess;
}

// Destroys the (fake) context: clears a sticky fault so one test's deliberate fault does not
// poison the next test in the same process. Live allocations stay (unlike a real reset).
cudaError_t CUDARTAPI cudaDeviceReset(void) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_sticky = cudaSuccess;
  g_detail.clear();
  for (auto s : g_streams) s->pending.clear();
  return cudaSuccess;
}

}  // extern "C"
