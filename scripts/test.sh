#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs what is missing, builds minibert's tests in build/ and runs them with CTest (2 jobs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)"
ctest --test-dir build --output-on-failure -j "$(nproc)"
