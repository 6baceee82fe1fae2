#!/usr/bin/env bash
# make test-aarch64: proof that the device runtime builds and runs for aarch64 without a device.
#   scripts/test-aarch64.sh PYTHON BUILD_DIR JOBS
# 1. Debian's cross compiler and qemu-user (scripts/setup-system.sh aarch64).
# 2. Stand-ins for the device's TensorRT/CUDA libraries, for aarch64: the real TensorRT 10.3 and
#    CUDA headers, libnvinfer = tests/aarch64/nvinfer_stub.cpp (a link stub), libcudart = the test
#    double's fake_cudart.cpp (it needs no OpenVINO). Laid out as TENSORRT_ROOT / CUDA_ROOT prefixes so
#    runtime/cmake/backends.cmake finds them the way it finds JetPack's.
# 3. Cross build of tests/aarch64 (runtime core + TensorRT backend, no OpenVINO; mtedge_run; the
#    backend-free GoogleTest suite; the fuzz driver), `file` must say ARM aarch64.
# 4. ctest under qemu-aarch64; figures (build time, test counts, run time) go to BUILD_DIR/figures.json.
set -euo pipefail
PY=${1:?python of the host venv (writes the toy bundle)}
B=${2:-build/aarch64}
JOBS=${3:-2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TRT_INC=${MTEDGE_TRT10_HEADERS:-$ROOT/../shared/third_party/tensorrt-10.3.0/include}
CUDA_INC=${CUDA_INCLUDE:-/usr/local/cuda/include}
for f in "$TRT_INC/NvInferRuntime.h" "$CUDA_INC/cuda_runtime_api.h"; do
  [ -f "$f" ] || { echo "test-aarch64: $f not found; set MTEDGE_TRT10_HEADERS (TensorRT 10.3 include dir) / CUDA_INCLUDE"; exit 1; }
done

bash "$ROOT/scripts/setup-system.sh" aarch64
mkdir -p "$B"
B=$(cd "$B" && pwd)
t0=$(date +%s)

# 2. aarch64 TensorRT/CUDA prefixes. Rebuilt only when their source changed: a new library would
#    relink every executable.
CXX=aarch64-linux-gnu-g++
mkdir -p "$B/tensorrt/lib" "$B/cuda/lib64"
ln -sfn "$TRT_INC" "$B/tensorrt/include"
ln -sfn "$CUDA_INC" "$B/cuda/include"
so() {  # so SOURCE OUTPUT: an aarch64 shared library from one file
  [ "$1" -nt "$2" ] || return 0
  $CXX -std=c++17 -O2 -fPIC -shared -Wno-deprecated-declarations -I"$TRT_INC" -I"$CUDA_INC" "$1" -o "$2"
}
so "$ROOT/tests/aarch64/nvinfer_stub.cpp" "$B/tensorrt/lib/libnvinfer.so"
so "$ROOT/tests/tensorrt_double/fake_cudart.cpp" "$B/cuda/lib64/libcudart.so"

# 3. The cross build. The libraries' directories go into the executables' rpath (CMake's default for
#    the build tree), so qemu finds them as the device's loader finds JetPack's.
cmake -S "$ROOT/tests/aarch64" -B "$B/build" -G Ninja \
  -DCMAKE_TOOLCHAIN_FILE="$ROOT/cmake/aarch64-linux-gnu.cmake" -DCMAKE_BUILD_TYPE=Release \
  -Dnlohmann_json_DIR=/usr/share/cmake/nlohmann_json \
  -DMTEDGE_WITH_OPENVINO=OFF -DMTEDGE_WITH_TENSORRT=ON \
  -DTENSORRT_ROOT="$B/tensorrt" -DCUDA_ROOT="$B/cuda" -DMTEDGE_PYTHON="$PY" >"$B/configure.log" \
  || { cat "$B/configure.log"; exit 1; }
grep -q "backends: OpenVINO OFF, TensorRT ON" "$B/configure.log"
nice -n 10 cmake --build "$B/build" -j "$JOBS"
t1=$(date +%s)
for exe in mtedge_unit_tests mtedge_fuzz runtime/mtedge_run; do
  desc=$(file -b "$B/build/$exe")
  echo "$exe: $desc"
  case "$desc" in *"ARM aarch64"*) ;; *) echo "test-aarch64: $exe is not an aarch64 executable"; exit 1 ;; esac
done
# The TensorRT backend is inside mtedge_run (it names the backend's symbols and links libnvinfer).
aarch64-linux-gnu-readelf -d "$B/build/runtime/mtedge_run" | grep -q 'libnvinfer.so' \
  || { echo "test-aarch64: mtedge_run does not link libnvinfer: the TensorRT backend is not in the build"; exit 1; }

# 4. ctest: every test executable runs under qemu-aarch64 (CMAKE_CROSSCOMPILING_EMULATOR).
(cd "$B/build" && ctest --output-on-failure -j "$JOBS" 2>&1 | tee "$B/ctest.log")
t2=$(date +%s)
# Figures: ctest's summary, the GoogleTest cases that passed, the fuzz driver's --json report.
total=$(sed -n 's/.*tests passed, [0-9]* tests failed out of \([0-9]*\)/\1/p' "$B/ctest.log")
gtests=$(grep -c 'Test *#[0-9]*: [A-Za-z0-9]*\.[A-Za-z0-9]* .*Passed' "$B/ctest.log" || true)
fuzz=$("$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(json.dumps({k: d[k] for k in ("cases", "seed", "findings", "slowest_case_s")}))' "$B/build/fuzz.json")
printf '{"build_s": %d, "qemu_tests_s": %d, "ctest_tests": %s, "gtest_cases": %s, "fuzz": %s}\n' \
  $((t1 - t0)) $((t2 - t1)) "${total:-0}" "$gtests" "$fuzz" | tee "$B/figures.json"
