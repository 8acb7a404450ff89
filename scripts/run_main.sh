#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The main job: installs what is missing (incl. the pretrained sentence-transformers/all-MiniLM-L6-v2, placed in the
# local Hugging Face cache), builds sentiment_trainer, and fine-tunes that pretrained BERT on ../shared's SST-2 with
# the reference protocol (../shared/docs/REFERENCE.md: train.tsv split 80/20 = 9,600/2,400 with seed 42, test.tsv;
# 3 epochs, batch 32, lr 2e-5 with 500 warmup steps then linear decay, max length 128).
# MINIBERT_MODEL: another model directory or cached hub id (e.g. bert-base-uncased). MINIBERT_DATA, MINIBERT_OUTPUT:
# the data folder and the output folder. Extra arguments go to `sentiment_trainer train` (e.g. --epochs 1,
# --threads 2, or --config CONFIG.json --tokenizer DIR for a randomly initialized model).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh --no-test-refs
# without a GPU the CUDA backend's device code never runs here: optimized less, it compiles in a third of the time
quick_device_code=ON
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then quick_device_code=OFF; fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMINIBERT_BUILD_TESTS=OFF \
      -DMINIBERT_CUDA_QUICK_DEVICE_CODE="$quick_device_code" > /dev/null
cmake --build build -j "$(nproc)" --target sentiment_trainer
data=${MINIBERT_DATA:-../shared/data/sentiment/sst2}
out=${MINIBERT_OUTPUT:-runs/sst2}
model=${MINIBERT_MODEL:-sentence-transformers/all-MiniLM-L6-v2}
args=(--model "$model")
for a in "$@"; do [ "$a" = --config ] && args=(); done   # --config: a random-init model instead of --model
exec build/examples/sentiment_trainer train "${args[@]}" --train "$data/train.tsv" --test "$data/test.tsv" \
  --output-dir "$out" --seed 42 --epochs 3 --batch-size 32 --learning-rate 2e-5 --warmup-steps 500 \
  --max-seq-length 128 "$@"
