#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Tokenizer throughput, minibert (bench_tokenizer) beside HF tokenizers' Python binding (PyPI `tokenizers`, the Rust
# library behind transformers' BertTokenizerFast; bench_tokenizer_hf.py), in one run on the same machine: SST-2
# train_full and the Amazon reviews, single thread and batch (all cores). Prints the CPU model, the versions and the
# load average, then the medians of REPS repetitions: lines/s, MB/s and the ratio minibert / HF.
# HF single thread = encode_batch with RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false; HF batch = encode_batch on
# all cores. minibert single thread = encode_into one text after another; batch = encode_batch on all cores
# (fresh encodings), batch_into = encode_batch_into (encodings reused between calls).
# usage: benchmarks/run_tokenizer_bench.sh [BUILD_DIR] [REPS]   (BUILD_DIR is configured here with
# -DMINIBERT_BUILD_BENCHMARKS=ON if needed). Python: $MINIBERT_PYTHON, else the repository's .venv (made by
# scripts/install_deps.sh). The machine may be shared: the load is printed before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-bench}
reps=${2:-5}
py=${MINIBERT_PYTHON:-$PWD/.venv/bin/python}
[ -x "$py" ] || { echo "run_tokenizer_bench.sh: no python at $py (run scripts/install_deps.sh or set MINIBERT_PYTHON)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ ! -x "$build/benchmarks/bench_tokenizer" ]; then
  cmake -S . -B "$build" -G Ninja -DMINIBERT_BUILD_BENCHMARKS=ON -DMINIBERT_BUILD_TESTS=OFF \
    -DMINIBERT_BUILD_EXAMPLES=OFF >/dev/null
fi
cmake --build "$build" --target bench_tokenizer -j2 >/dev/null

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $($py --version 2>&1), tokenizers $(
  $py -c 'import tokenizers; print(tokenizers.__version__)'); $(c++ --version | head -1)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$build/benchmarks/bench_tokenizer" --benchmark_filter='BM_Tokenizer_Encode' --benchmark_repetitions="$reps" \
  --benchmark_format=json --benchmark_out="$tmp/minibert.json" --benchmark_out_format=json >/dev/null 2>"$tmp/gb.err" ||
  { cat "$tmp/gb.err"; exit 1; }
RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false "$py" benchmarks/bench_tokenizer_hf.py single "$reps" >"$tmp/hf.jsonl"
TOKENIZERS_PARALLELISM=true "$py" benchmarks/bench_tokenizer_hf.py batch "$reps" >>"$tmp/hf.jsonl"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

$py - "$tmp/minibert.json" "$tmp/hf.jsonl" <<'EOF'
import json, statistics, sys
runs = [b for b in json.load(open(sys.argv[1]))["benchmarks"] if b.get("run_type") == "iteration"]
mb = {}  # (mode, corpus) -> [(lines/s, MB/s)]
for b in runs:
    name = b["run_name"]  # BM_Tokenizer_EncodeSingleThread/sst2_train_full/min_time:2.000/real_time
    mode = "single" if "SingleThread" in name else ("batch_into" if "BatchInto" in name else "batch")
    corpus = name.split("/")[1]
    mb.setdefault((mode, corpus), []).append((b["items_per_second"], b["bytes_per_second"] / 1e6))
hf = {(l["mode"], l["corpus"]): l for l in map(json.loads, open(sys.argv[2]))}
print()
print("| corpus | mode | minibert lines/s | minibert MB/s | HF lines/s | HF MB/s | ratio | HF without binding cost* |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for corpus in ("sst2_train_full", "amazon_reviews"):
    for mode in ("single", "batch", "batch_into"):
        m = mb[(mode, corpus)]
        lps = statistics.median(x[0] for x in m)
        mbs = statistics.median(x[1] for x in m)
        h = hf[("batch" if mode == "batch_into" else mode, corpus)]
        net = h["seconds_median"] - h["empty_texts_seconds_median"]
        bound = (h["bytes"] / 1e6 / net) if net > 0 else float("nan")
        print("| %s | %s | %.0f | %.1f | %.0f | %.2f | %.1fx | %.2f MB/s (ratio %.1fx) |" % (
            corpus, mode, lps, mbs, h["lines_per_s"], h["mb_per_s"], mbs / h["mb_per_s"], bound, mbs / bound))
print()
print("batch: all cores, fresh encodings per call (like HF's encode_batch); batch_into: encodings reused between calls.")
print("* HF's time minus the time of encode_batch on as many empty strings (the Python binding's per-text cost):")
print("  a generous upper bound of HF's own tokenization speed, for a conservative ratio.")
EOF
