#!/usr/bin/env bash
# make test-sanitize: the C++ runtime built with AddressSanitizer + UndefinedBehaviorSanitizer,
# then (1) ctest in that build (GoogleTest, mtedge_run, the fuzz batch) with leak checking, and
# (2) a Python subset that drives the sanitized extension (mtedge_runtime._runtime) with the sanitizer
# runtimes preloaded. Any report aborts the process that made it, so it fails its test; the
# summary line counts findings (0 expected). docs/reliability.md.
#
#   scripts/test-sanitize.sh PYTHON [BUILD_DIR] [JOBS]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
build="${2:-$root/build/asan}"
mkdir -p "$build" && build="$(cd "$build" && pwd)"
jobs="${3:-2}"
fuzz_cases="${MTEDGE_SANITIZE_FUZZ_CASES:-2000}"
log="$build/sanitize.log"

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMTEDGE_SANITIZE=address,undefined \
  -DMTEDGE_BUILD_TESTS=ON -DMTEDGE_BUILD_PYTHON=ON -DMTEDGE_FUZZ_CASES="$fuzz_cases" \
  -DMTEDGE_WITH_OPENVINO=ON -DMTEDGE_WITH_TENSORRT=OFF \
  -DPython_EXECUTABLE="$py" -Dpybind11_DIR="$("$py" -m pybind11 --cmakedir)" >/dev/null
t0=$(date +%s)
cmake --build "$build" -j "$jobs"
echo "test-sanitize: build $(( $(date +%s) - t0 )) s"

LSAN_SUPP="$(cd "$(dirname "$0")" && pwd)/lsan.supp"  # third-party leaks only (oneTBB)
# Reports go to files as well as stderr so they can be counted.
rm -rf "$build/reports" && mkdir -p "$build/reports"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$build/reports/ubsan"
status=0
(cd "$build" && ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:log_path=$build/reports/asan" \
  LSAN_OPTIONS="suppressions=$LSAN_SUPP" \
  MTEDGE_PYTHON="$py" ctest --output-on-failure -j "$jobs") || status=1

# Python: the installed packages with the runtime's extension swapped for the sanitized one.
site="$(cd /tmp && "$py" -c 'import os, toolchain; print(os.path.dirname(os.path.dirname(toolchain.__file__)))')"
overlay="$build/py"
rm -rf "$overlay" && mkdir -p "$overlay"
cp -r "$site/toolchain" "$site/mtedge_runtime" "$overlay/"
ln -s "$site/openvino" "$overlay/openvino"  # the extension's rpath is $ORIGIN/../openvino/libs
rm -f "$overlay"/mtedge_runtime/_runtime*.so
cp "$build"/runtime/_runtime*.so "$overlay/mtedge_runtime/"
# CPython itself is not sanitized: leak checking is off here (it reports the interpreter's own
# allocations); the no_deepbind shim comes first so TBB's RTLD_DEEPBIND dlopen does not abort.
export LD_PRELOAD="$build/libmtedge_no_deepbind.so $(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS="detect_leaks=0:verify_asan_link_order=0:abort_on_error=1:log_path=$build/reports/asan-py"
export PYTHONPATH="$overlay"
# The subset must really drive the sanitized extension, not the installed one.
(cd "$root/tests" && "$py" -c "import sys, mtedge_runtime._runtime as r; sys.exit(0 if r.__file__.startswith('$overlay') else 1)") \
  || { echo "test-sanitize: python does not import the sanitized mtedge_runtime._runtime"; exit 1; }
(cd "$root/tests" && "$py" -m pytest -q -p no:cacheprovider test_runtime.py test_reliability.py \
  -k "not unwritable and not compress") || status=1
unset LD_PRELOAD ASAN_OPTIONS PYTHONPATH

findings=$(cat "$build"/reports/* 2>/dev/null | grep -c "ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:" || true)
echo "test-sanitize: sanitizer findings: $findings"
[[ $findings == 0 ]] || { cat "$build"/reports/* | head -80; status=1; }
printf '{"findings": %d, "tests_passed": %s, "sanitizers": "address,undefined", "seconds": %d, "fuzz_cases": %d}\n' \
  "$findings" "$([[ $status == 0 ]] && echo true || echo false)" "$(( $(date +%s) - t0 ))" "$fuzz_cases" \
  > "$build/sanitize-summary.json"
exit $status
