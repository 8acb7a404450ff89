#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The main job: installs what is missing, builds sentiment_trainer, and fine-tunes on ../shared's SST-2 with the
# reference protocol (train.tsv split 80/20 = 9,600/2,400, test.tsv; 3 epochs, batch 32, lr 2e-5 with 500 warmup
# steps then linear decay). Without pretrained weights on the machine it starts from a random-init BERT-mini
# (examples/sentiment/configs/bert-mini-random.json) and says so; set MINIBERT_MODEL to a Hugging Face model
# directory or hub id (e.g. bert-base-uncased in ~/.cache/huggingface) to run the real experiment.
# Extra arguments go to `sentiment_trainer train` (e.g. --epochs 1, --threads 2).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh --no-test-refs
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMINIBERT_BUILD_TESTS=OFF > /dev/null
cmake --build build -j "$(nproc)" --target sentiment_trainer
data=${MINIBERT_DATA:-../shared/data/sentiment/sst2}
out=${MINIBERT_OUTPUT:-runs/sst2}
if [ -n "${MINIBERT_MODEL:-}" ]; then
  model=(--model "$MINIBERT_MODEL")
else
  # a random-init BERT-mini learns faster with a larger peak learning rate than bert-base's 2e-5
  model=(--config examples/sentiment/configs/bert-mini-random.json --tokenizer ../shared/data/bert-base-uncased
         --learning-rate 1e-4)
fi
exec build/examples/sentiment_trainer train "${model[@]}" --train "$data/train.tsv" --test "$data/test.tsv" \
  --output-dir "$out" "$@"
