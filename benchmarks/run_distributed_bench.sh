#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Data-parallel throughput on this machine, in one run: sentiment_trainer fine-tuning all-MiniLM-L6-v2 on SST-2 rows
#   1. one process, 1 thread, batch 32
#   2. mpirun -np 2, 1 thread each, batch 32 per process (global batch 64)
#   3. one process, 2 threads, batch 64 (the same global batch on the same cores, without communication)
# and the ratios docs/scaling.md quotes: samples/s per process of (2) against (1), and (2) against (3); with (2)'s
# exposed communication (rank 0's wait for all-reduces after its backward passes).
# usage: benchmarks/run_distributed_bench.sh [BUILD_DIR] [STEPS]   (BUILD_DIR: a build with MPI; default build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
steps=${2:-20}
prog=$build/examples/sentiment_trainer
shared=${MINIBERT_SHARED_DIR:-../shared}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HF_HUB_OFFLINE=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
head -n 4001 "$shared/data/sentiment/sst2/train.tsv" >"$work/train.tsv"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$(mpirun --version | head -1); $steps optimizer steps per case, all-MiniLM-L6-v2, max length 128"

# run NAME LAUNCHER... -- FLAGS...: trains into $work/NAME and prints its train_samples_per_second
run() {
  local name=$1
  shift
  local launcher=()
  while [ "$1" != "--" ]; do
    launcher+=("$1")
    shift
  done
  shift
  "${launcher[@]}" "$prog" train --model sentence-transformers/all-MiniLM-L6-v2 --train "$work/train.tsv" \
    --validation-split 0.05 --output-dir "$work/$name" --max-steps "$steps" --warmup-steps 0 --eval-strategy no \
    --save-strategy no --logging-steps "$steps" "$@" >"$work/$name.log" 2>&1 ||
    { tail -20 "$work/$name.log" >&2; exit 1; }
  python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['train_samples_per_second'])" \
    "$work/$name/train_results.json"
}
one=$(run one env OMP_NUM_THREADS=1 -- --threads 1 --batch-size 32)
echo "1 process x 1 thread, batch 32:               $one samples/s"
two=$(run two mpirun -np 2 --bind-to core -x OMP_NUM_THREADS=1 -- --threads 1 --batch-size 32)
echo "2 processes x 1 thread, batch 32 per process: $two samples/s (MPI)"
echo "  rank 0: $(sed -n 's/^Gradient all-reduce/gradient all-reduce/p' "$work/two.log")"
wide=$(run wide env OMP_NUM_THREADS=2 -- --threads 2 --batch-size 64)
echo "1 process x 2 threads, batch 64:              $wide samples/s"
python3 - "$one" "$two" "$wide" <<'PY'
import sys
one, two, wide = map(float, sys.argv[1:])
print(f"samples/s per process, 2 processes against 1 alone: {two / 2 / one:.3f}")
print(f"2 processes x 1 thread against 1 process x 2 threads: {two / wide:.3f}")
PY
