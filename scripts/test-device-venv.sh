#!/usr/bin/env bash
# make test-device-venv: the device distribution installed as a Jetson user installs it, in a clean venv.
#   scripts/test-device-venv.sh HOST_PYTHON BUILD_DIR
# HOST_PYTHON is the host venv's python (toolchain, torch, openvino): it exports the bundle and
# "builds" its TensorRT engines with the test double, as `mtedge build` on a host would. The clean venv
# gets numpy and `pip install ./runtime` only, with TensorRT = the link-time double (build/cpp's
# fake libnvinfer/libcudart, standing for JetPack's; it runs engines with OpenVINO, which it finds
# through its own rpath in the HOST venv: the clean venv never sees openvino) and OpenVINO off.
# Then: nothing else in the venv, the extension has TensorRT only, golden parity through
# `mtedge-run --verify --backend tensorrt`, and vermin keeps mtedge_runtime valid for Python 3.8.
set -euo pipefail
HOST_PY=${1:?host venv python}
B=${2:-build/device-venv}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DOUBLE=$ROOT/build/cpp/tensorrt-double/trt10   # make test-cpp / tensorrt-double-py build it
TRT_INC=${MTEDGE_TRT10_HEADERS:-$ROOT/../shared/third_party/tensorrt-10.3.0/include}
CUDA_INC=${CUDA_INCLUDE:-/usr/local/cuda/include}
for f in "$DOUBLE/libnvinfer.so" "$DOUBLE/libcudart.so" "$TRT_INC/NvInferRuntime.h" "$CUDA_INC/cuda_runtime_api.h"; do
  [ -f "$f" ] || { echo "test-device-venv: $f not found; run make test-cpp first (it builds the TensorRT double), "\
"or set MTEDGE_TRT10_HEADERS / CUDA_INCLUDE"; exit 1; }
done
t0=$(date +%s)

# 1. vermin (in the host venv's test extra): mtedge_runtime uses no syntax or stdlib API newer than 3.8.
"$(dirname "$HOST_PY")/vermin" -t=3.8- --no-tips --violations "$ROOT/runtime/mtedge_runtime"

# 2. Python 3.10 as on JetPack 6 (pyenv's on this image), else the default python3, saying so.
PY310=""
for c in /root/.pyenv/versions/3.10.*/bin/python3.10 "$(command -v python3.10 || true)"; do
  if [ -x "$c" ] && "$c" -c 'import venv' 2>/dev/null; then PY310=$c; break; fi
done
if [ -z "$PY310" ]; then
  PY310=$(command -v python3)
  echo "test-device-venv: no working python3.10 (JetPack 6's version); using $PY310 ($("$PY310" -V))"
fi
rm -rf "$B" && mkdir -p "$B"
B=$(cd "$B" && pwd)
"$PY310" -m venv "$B/venv"
V=$B/venv/bin

# 3. TensorRT/CUDA prefixes as JetPack lays them out: headers + libnvinfer.so / libcudart.so.
mkdir -p "$B/tensorrt" "$B/cuda"
ln -sfn "$TRT_INC" "$B/tensorrt/include"; ln -sfn "$DOUBLE" "$B/tensorrt/lib"
ln -sfn "$CUDA_INC" "$B/cuda/include";    ln -sfn "$DOUBLE" "$B/cuda/lib64"

# 4. The device's install: numpy, then the runtime (build requirements come in pip's isolated build env).
"$V/pip" install -q --disable-pip-version-check numpy
CMAKE_ARGS="-DMTEDGE_WITH_OPENVINO=OFF -DMTEDGE_WITH_TENSORRT=ON -DTENSORRT_ROOT=$B/tensorrt -DCUDA_ROOT=$B/cuda" \
  nice -n 10 "$V/pip" install -q --disable-pip-version-check "$ROOT/runtime"
t1=$(date +%s)

# 5. Nothing but numpy and mtedge-runtime (and the venv's own pip/setuptools).
"$V/pip" list --format=freeze --disable-pip-version-check | tee "$B/pip-list.txt"
extra=$(cut -d= -f1 "$B/pip-list.txt" | tr A-Z a-z | grep -vxE 'numpy|mtedge-runtime|mtedge_runtime|pip|setuptools|wheel' || true)
[ -z "$extra" ] || { echo "test-device-venv: the device venv holds more than numpy: $extra"; exit 1; }

# JetPack's libnvinfer/libcudart sit in the loader's default path; the double's do not.
export LD_LIBRARY_PATH=$DOUBLE${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
cd "$B"  # never import the checkout's runtime/ by accident
"$V/python" - <<'EOF'
import importlib.util, sys
from mtedge_runtime import _runtime
s = _runtime.self_check()
print("self_check:", s, "python", sys.version.split()[0])
assert s["tensorrt_enabled"] and not s["openvino_enabled"], f"expected TensorRT only, got {s}"
for name in ("torch", "openvino", "onnx", "onnxruntime", "toolchain"):
    assert importlib.util.find_spec(name) is None, f"{name} is importable in the device venv"
EOF

# 6. A bundle exported on the host, with TensorRT engines built there (as ctest's make_engines_trt10).
"$HOST_PY" "$ROOT/scripts/make_toy_bundle.py" "$B/toy.mtb" >/dev/null
"$HOST_PY" "$ROOT/tests/tensorrt_double/make_engines.py" "$B/toy.mtb" "$B/toy-trt10.mtb" --tensorrt 10.3.0
t2=$(date +%s)
"$V/mtedge-run" "$B/toy-trt10.mtb" --verify --backend tensorrt --engine-target jetson-agx-orin-64gb
# OpenVINO is compiled out: asking for it is an error naming the fix (exit 2), not a crash.
set +e; "$V/mtedge-run" "$B/toy.mtb" --backend openvino 2>"$B/openvino.err"; rc=$?; set -e
grep -q "not compiled into this build" "$B/openvino.err" && [ $rc -eq 2 ] \
  || { echo "test-device-venv: --backend openvino gave exit $rc: $(cat "$B/openvino.err")"; exit 1; }
t3=$(date +%s)
echo "{\"install_s\": $((t1 - t0)), \"bundle_s\": $((t2 - t1)), \"parity_s\": $((t3 - t2)), \"python\": \"$("$V/python" -V 2>&1)\"}" \
  | tee "$B/figures.json"
