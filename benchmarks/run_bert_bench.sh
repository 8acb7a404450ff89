#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bert-base inference and training step, minibert vs PyTorch, on this machine in one run, each in its own process
# (so peak RSS is per framework). usage: benchmarks/run_bert_bench.sh [BUILD_DIR] (built with
# -DMINIBERT_BUILD_BENCHMARKS=ON). Prints each side's JSON and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-bench}
py=${MINIBERT_PYTHON:-.venv/bin/python}  # the venv of scripts/install_deps.sh (transformers over Debian torch)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $py -c \
  "import torch,time; torch.set_num_threads($OMP_NUM_THREADS); a=torch.randn(2048,2048); b=torch.randn(2048,2048); a@b; t=time.perf_counter(); [a@b for _ in range(10)]; print('torch GEMM 2048^3: %.0f GFLOP/s' % (2*2048**3*10/(time.perf_counter()-t)/1e9))"
# each case: minibert fp32 and bf16 (autocast), PyTorch fp32 and bf16 (torch.autocast); ratios against PyTorch fp32
json_of_bench='import json,sys; b=json.load(sys.stdin)["benchmarks"][0]; print(json.dumps({"samples_per_s": b["samples_per_s"], "peak_rss_mb": b["peak_rss_mb"], "ms_per_step": b["real_time"]}))'
for mode in inference train; do
  case_name=BM_BertInference; [ "$mode" = train ] && case_name=BM_BertTrainStep
  pt=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $py benchmarks/bench_bert_torch.py "$mode")
  echo "$mode pytorch fp32: $pt"
  pt16=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $py benchmarks/bench_bert_torch.py "$mode" --bf16 || echo '{}')
  echo "$mode pytorch bf16 autocast: $pt16"
  for prec in F32 BF16; do
    mb=$("$build/benchmarks/bench_bert" --benchmark_filter="${case_name}_Cpu${prec}/" --benchmark_format=json 2>/dev/null |
         $py -c "$json_of_bench")
    echo "$mode minibert $prec: $mb"
    $py -c "import json; m=json.loads('$mb'); p=json.loads('$pt'); print('$mode ratio minibert $prec / pytorch fp32: throughput %.2fx, peak memory %.2fx' % (m['samples_per_s']/p['samples_per_s'], m['peak_rss_mb']/p['peak_rss_mb']))"
  done
done
