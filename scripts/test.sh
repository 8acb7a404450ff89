#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs what is missing, builds minibert's tests in build/ and runs them with CTest (2 jobs); then the memory-safety
# checks of docs/reliability.md: the quick unit tests under ASan + UBSan + LSan (`--preset asan`) and every fuzz target
# (`--preset fuzz`: its seeds and reproducers replayed, then MINIBERT_FUZZ_SECONDS of fuzzing each, 10 s unless set;
# scripts/fuzz.sh runs longer campaigns).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
# the CUDA code compiles for sm_80 (its PTX runs on newer GPUs too) and sm_90a (the own GEMM's version 3); on a
# machine without a GPU, where no device code runs, its optimization is cut (MINIBERT_CUDA_QUICK_DEVICE_CODE:
# a third of the compile time)
quick_device_code=ON
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then quick_device_code=OFF; fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="80;90a" \
      -DMINIBERT_CUDA_QUICK_DEVICE_CODE="$quick_device_code"
cmake --build build -j "$(nproc)"
ctest --test-dir build --output-on-failure -j "$(nproc)"
cmake --preset asan >/dev/null
cmake --build --preset asan -j "$(nproc)"
ctest --preset asan -j "$(nproc)"
cmake --preset fuzz -DMINIBERT_FUZZ_SECONDS="${MINIBERT_FUZZ_SECONDS:-10}" >/dev/null
cmake --build --preset fuzz -j "$(nproc)"
ctest --preset fuzz -j "$(nproc)"
