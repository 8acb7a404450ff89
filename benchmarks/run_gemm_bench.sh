#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# fp32 GEMM at BERT-base shapes: minibert (cpu::gemm) vs raw Eigen (bench_gemm) vs PyTorch/OpenBLAS
# (bench_gemm_torch.py), each in its own process. The machine may be shared, so the sides are interleaved:
# ROUNDS rounds, each running bench_gemm once and then bench_gemm_torch.py once, and every number printed is the
# median over rounds (a neighbour's compile then hits all three alike). Prints GFLOP/s per shape and the ratios
# minibert/torch and minibert/Eigen, plus the best round of each and the load before and after.
# usage: benchmarks/run_gemm_bench.sh [BUILD_DIR] [ROUNDS] [FILTER]
#   BUILD_DIR built with -DMINIBERT_BUILD_BENCHMARKS=ON (default build-gemm); ROUNDS default 5;
#   FILTER a substring of the shape name such as 4096/768/768 (default: all shapes).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gemm}
rounds=${2:-5}
filter=${3:-}
py=/usr/bin/python3
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, ${OMP_NUM_THREADS} threads; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
gb_filter="BM_Gemm"
[ -n "$filter" ] && gb_filter="BM_Gemm.*/${filter}"
for r in $(seq "$rounds"); do
  "$build/benchmarks/bench_gemm" --benchmark_filter="$gb_filter" --benchmark_min_time=0.3 \
    --benchmark_format=json --benchmark_out="$tmp/minibert.$r.json" --benchmark_out_format=json >/dev/null 2>"$tmp/gb.err" ||
    { cat "$tmp/gb.err"; exit 1; }
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $py benchmarks/bench_gemm_torch.py --repetitions 1 --min-time 0.3 \
    --filter "$filter" >"$tmp/torch.$r.jsonl"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
$py - "$tmp" "$rounds" <<'EOF'
import json, statistics, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
per = {}  # (impl, shape) -> GFLOP/s of each round
for r in range(1, rounds + 1):
    for b in json.load(open(f"{tmp}/minibert.{r}.json"))["benchmarks"]:
        impl, rest = b["run_name"].split("/", 1)
        impl = impl.replace("BM_GemmBatched_", "").replace("BM_Gemm_", "")
        per.setdefault((impl, rest.replace("/real_time", "")), []).append(b["items_per_second"] / 1e9)
    lines = [json.loads(l) for l in open(f"{tmp}/torch.{r}.jsonl")]
    if r == 1:
        print("torch:", lines[0]["torch"], "BLAS:", json.dumps(lines[0]["openblas"]))
    for l in lines[1:]:
        per.setdefault(("torch", l["name"]), []).append(l["gflops_median"])
shapes = sorted({s for (_, s) in per}, key=lambda s: (s.count("/"), [int(x) for x in s.split("/")]))
print(f"GFLOP/s, median of {rounds} rounds; shape = M/N/K/trans_a/trans_b (batched: batch/M/N/K/trans_a/trans_b)")
print("%-22s %9s %9s %9s %9s %9s   %s" % ("shape", "minibert", "Eigen", "torch", "mb/torch", "mb/Eigen",
                                        "best round: minibert, Eigen, torch"))
med = lambda v: statistics.median(v) if v else float("nan")
for s in shapes:
    m, e, t = (per.get((k, s), []) for k in ("CpuF32", "EigenF32", "torch"))
    print("%-22s %9.1f %9.1f %9.1f %8.2fx %8.2fx   %.0f, %.0f, %.0f" % (
        s, med(m), med(e), med(t), med(m) / med(t), med(m) / med(e), max(m or [0]), max(e or [0]), max(t or [0])))
EOF
