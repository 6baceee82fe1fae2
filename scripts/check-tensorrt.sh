#!/usr/bin/env bash
# Compile-checks the TensorRT backend against every TensorRT header set we target
# (JetPack 6 = TensorRT 10.3, and TensorRT 11.1) plus the CUDA headers. No TensorRT or CUDA
# libraries exist on the build machine and nothing is linked or run: this proves the code
# compiles, not that it works on a device.
#
# Header sets: $MTEDGE_TRT_HEADERS (a directory holding tensorrt-*/include, or one include dir),
# else ../shared/third_party relative to the repo root. CUDA: $CUDA_INCLUDE, else the newest
# /usr/local/cuda*/include. Exits 1 when headers are absent (a check that cannot run has not
# passed) or when any version fails to compile; MTEDGE_SKIP_TENSORRT_CHECK=1 skips it on purpose
# (printed, exit 0) for machines that knowingly lack the headers.
set -u
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
base="${MTEDGE_TRT_HEADERS:-$root/../shared/third_party}"
cxx="${CXX:-g++}"
if [[ "${MTEDGE_SKIP_TENSORRT_CHECK:-0}" == 1 ]]; then
  echo "check-tensorrt: SKIPPED on request (MTEDGE_SKIP_TENSORRT_CHECK=1): the TensorRT backend was not compile-checked"
  exit 0
fi

cuda_inc="${CUDA_INCLUDE:-}"
if [[ -z "$cuda_inc" ]]; then
  for d in $(ls -d /usr/local/cuda*/include 2>/dev/null | sort -rV); do
    [[ -f "$d/cuda_runtime_api.h" ]] && { cuda_inc="$d"; break; }
  done
fi
if [[ -z "$cuda_inc" || ! -f "$cuda_inc/cuda_runtime_api.h" ]]; then
  echo "check-tensorrt: FAIL: no CUDA headers (cuda_runtime_api.h) found; set CUDA_INCLUDE (or MTEDGE_SKIP_TENSORRT_CHECK=1 to skip knowingly)"
  exit 1
fi

sets=()
if [[ -f "$base/NvInfer.h" ]]; then
  sets+=("$base")
else
  for d in "$base"/tensorrt-*/include; do [[ -f "$d/NvInferRuntime.h" ]] && sets+=("$d"); done
fi
if [[ ${#sets[@]} -eq 0 ]]; then
  echo "check-tensorrt: FAIL: no TensorRT headers under $base; set MTEDGE_TRT_HEADERS (or MTEDGE_SKIP_TENSORRT_CHECK=1 to skip knowingly)"
  exit 1
fi

units=(runtime/csrc/backends/tensorrt/tensorrt_backend.cpp runtime/csrc/core/backend_factory.cpp)
failed=0
for inc in "${sets[@]}"; do
  ver="$(sed -n 's/^#define \(NV_TENSORRT_MAJOR\|TRT_MAJOR_ENTERPRISE\|NV_TENSORRT_MINOR\|TRT_MINOR_ENTERPRISE\) \([0-9]*\).*/\2/p' "$inc/NvInferVersion.h" | head -2 | paste -sd.)"
  ok=1
  for u in "${units[@]}"; do
    if ! "$cxx" -std=c++17 -fsyntax-only -Wall -Wextra -Werror -Wno-deprecated-declarations \
        -DMTEDGE_WITH_TENSORRT -I"$root/runtime/csrc/include" -isystem "$inc" -isystem "$cuda_inc" \
        "$root/$u"; then
      ok=0
    fi
  done
  if [[ $ok == 1 ]]; then
    echo "check-tensorrt: PASS TensorRT $ver ($inc)"
  else
    echo "check-tensorrt: FAIL TensorRT $ver ($inc)"
    failed=1
  fi
done
echo "check-tensorrt: CUDA headers $cuda_inc; compile-only, never run on a device"
exit $failed
