#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs everything minibert needs on a fresh Debian 12 machine, idempotently:
#   build:     cmake, ninja, g++, Eigen 3.4, utf8proc, nlohmann-json, doctest, Google Benchmark
#   test refs: python3-torch (+ OpenBLAS, OpenMP flavour) for numerics, npm `tokenizers` for tokenization
# Usage: scripts/install_deps.sh [--no-test-refs]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

want_refs=1
[ "${1:-}" = "--no-test-refs" ] && want_refs=0

pkgs=(cmake ninja-build g++ pkg-config libeigen3-dev libutf8proc-dev nlohmann-json3-dev doctest-dev libbenchmark-dev)
if [ "$want_refs" = 1 ]; then
  # libopenblas0-openmp: torch's strongest honest CPU BLAS here; the pthread flavour fights torch's threads
  pkgs+=(python3 python3-torch python3-numpy libopenblas0-openmp)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "$want_refs" = 1 ] && dpkg-query -W -f='${Status}' libopenblas0-pthread 2>/dev/null | grep -q "install ok installed"; then
  missing+=(libopenblas0-pthread-)   # remove the pthread flavour (trailing '-' tells apt to remove)
fi
# node/npm may come from outside Debian (nodesource); Debian's npm conflicts with those, so ask only if absent
if [ "$want_refs" = 1 ] && ! command -v npm >/dev/null 2>&1; then missing+=(nodejs npm); fi
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ "$want_refs" = 1 ]; then
  # HF tokenizers' official Node binding, pinned; installed into tests/node_modules (git-ignored)
  if [ ! -d "$here/tests/node/node_modules/tokenizers" ]; then
    (cd "$here/tests/node" && npm install --no-audit --no-fund --loglevel=error)
  fi
fi
echo "install_deps: all dependencies present"
