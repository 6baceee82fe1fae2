#!/usr/bin/env bash
# System packages mtedge needs on Debian 12: compilers and CMake for the C++ runtime,
# nlohmann-json and GoogleTest for csrc/, and the real Fashion-MNIST images.
# `setup-system.sh photos`: the wallpaper packages whose photographs the ImageNet-scale benches
# use as real images (bench/effnet_mt.py's WALLPAPERS; benches only, not the tests).
# `setup-system.sh aarch64`: Debian's aarch64 cross compiler (its arm64 libc/libstdc++ under
# /usr/aarch64-linux-gnu are the sysroot) and qemu-user, for `make test-aarch64` (docs/device.md).
set -euo pipefail
PKGS=(g++ cmake ninja-build nlohmann-json3-dev libgtest-dev dataset-fashion-mnist)
if [ "${1:-}" = photos ]; then
  PKGS=(lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 mate-backgrounds plasma-workspace-wallpapers)
elif [ "${1:-}" = aarch64 ]; then
  PKGS=(g++-aarch64-linux-gnu qemu-user file googletest nlohmann-json3-dev cmake ninja-build)
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing system packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
