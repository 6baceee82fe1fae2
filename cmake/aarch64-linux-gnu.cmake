# CMake toolchain file: cross-compile for aarch64 Linux (Jetson's CPU, JetPack 6 = Ubuntu 22.04)
# with Debian's cross compiler (apt: g++-aarch64-linux-gnu). Its arm64 libc and libstdc++ live in
# /usr/aarch64-linux-gnu, which is also the directory qemu-aarch64 -L needs to run the binaries.
# Used by scripts/test-aarch64.sh (make test-aarch64); docs/device.md says what the build proves.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

# Libraries come from the arm64 sysroot or from explicit paths (TENSORRT_ROOT, CUDA_ROOT); header-only
# packages (nlohmann-json) from the host's arch-independent /usr/share/cmake. Never run host programs
# found in the sysroot.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# ctest and gtest_discover_tests run every test executable through qemu-user with the sysroot.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /usr/aarch64-linux-gnu)
