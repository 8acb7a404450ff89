#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The GPU check, in two halves so that the GPU machine spends no time compiling:
#   scripts/gpu_check.sh build [DIR]   here (nvcc needs no GPU): configures DIR (default build-gpu) and builds only the
#                                      GPU programs: tests/test_backend_ops, tests/test_cuda_model, tests/test_cuda_gemm,
#                                      tests/test_cuda_attention, tests/test_cuda_graphs, tests/test_distributed (its
#                                      NCCL case),
#                                      benchmarks/bench_bert, bench_gemm_cuda, bench_attention_cuda, gemm_workbench and
#                                      attention_workbench
#                                      into DIR/bundle (one shared backend library, sm_90a: about 40 MB)
#   scripts/gpu_check.sh run [BUNDLE]  on the GPU machine (the device tool carries build-gpu/bundle): runs the
#                                      GPU tests and benchmarks with time limits and writes $OUT/gpu_check.json (GPU name,
#                                      each test case's result, each benchmark's figure) and prints the GEMM table
#                                      (own kernel against cuBLASLt) and the attention table (flash against the
#                                      materialized path); every step has a time limit.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
dir=${2:-build-gpu}

programs="tests/test_backend_ops tests/test_cuda_model tests/test_cuda_gemm tests/test_cuda_attention
          tests/test_cuda_graphs tests/test_distributed benchmarks/bench_bert benchmarks/bench_gemm_cuda
          benchmarks/bench_attention_cuda benchmarks/gemm_workbench benchmarks/attention_workbench"

if [ "$mode" = build ]; then
  set -e
  # sm_90a only (the lent GPUs are H100/H200, and version 3 of the own GEMM needs sm_90a's wgmma and TMA; pass another
  # architecture as the third argument) and one shared backend library: the bundle must fit the device tool's 64 MiB;
  # one program per test file (the run below calls them by name)
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMINIBERT_CUDA=ON -DMINIBERT_BUILD_BENCHMARKS=ON \
        -DMINIBERT_NATIVE=OFF -DMINIBERT_BUILD_EXAMPLES=ON -DMINIBERT_CUDA_SHARED_BACKEND=ON \
        -DMINIBERT_TESTS_UNITY=OFF -DCMAKE_CUDA_ARCHITECTURES="${3:-90a}"
  cmake --build "$dir" --target test_backend_ops test_cuda_model test_cuda_gemm test_cuda_attention test_cuda_graphs \
                                test_distributed \
                                bench_bert bench_gemm_cuda bench_attention_cuda gemm_workbench attention_workbench
  # the bundle the device tool carries (run's DIR): the programs and the backend library, nothing else
  rm -rf "$dir/bundle" && mkdir -p "$dir/bundle/tests" "$dir/bundle/benchmarks"
  for p in $programs; do cp "$dir/$p" "$dir/bundle/$p"; done
  cp "$dir"/libminibert_cuda_backend.so "$dir/bundle/"
  du -sh "$dir/bundle"
  exit 0
fi
# run: DIR is the bundle (build-gpu/bundle unless given)
[ -n "${2:-}" ] || dir=build-gpu/bundle
export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

out=${OUT:-.}
mkdir -p "$out"
log() { echo "[gpu_check $(date +%T)] $*"; }
gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)
log "GPU: $gpu"
for p in $programs; do
  exe="$dir/$p"
  missing=$(ldd "$exe" 2>/dev/null | grep "not found" || true)
  [ -n "$missing" ] && log "$exe: missing libraries: $missing"
done
# tests: doctest's JUnit report per program (fp32, TF32 off: the tolerances assume it)
for t in test_backend_ops test_cuda_model test_cuda_gemm test_cuda_attention test_cuda_graphs; do
  log "running $t"
  env -u MINIBERT_ALLOW_TF32 timeout 240 "$dir/tests/$t" --reporters=junit --out="$out/$t.xml" >"$out/$t.log" 2>&1
  echo "exit $?" >>"$out/$t.log"
  tail -3 "$out/$t.log"
done
# the own GEMM under compute-sanitizer's memcheck, where the machine has it (out-of-bounds reads and writes)
if command -v compute-sanitizer >/dev/null; then
  log "compute-sanitizer memcheck: test_cuda_gemm (bf16 and fp16 data)"
  timeout 240 compute-sanitizer --tool memcheck --error-exitcode 9 "$dir/tests/test_cuda_gemm" "-tc=*bf16 and fp16 data*" \
    >"$out/test_cuda_gemm_memcheck.log" 2>&1
  echo "exit $?" >>"$out/test_cuda_gemm_memcheck.log"
  tail -3 "$out/test_cuda_gemm_memcheck.log"
  log "compute-sanitizer memcheck: test_cuda_attention (packed sequences)"
  timeout 180 compute-sanitizer --tool memcheck --error-exitcode 9 "$dir/tests/test_cuda_attention" "-tc=*varlen*" \
    >"$out/test_cuda_attention_memcheck.log" 2>&1
  echo "exit $?" >>"$out/test_cuda_attention_memcheck.log"
  tail -3 "$out/test_cuda_attention_memcheck.log"
fi
# the NCCL communicator on one GPU (the other cases of test_distributed need the Python references: CPU-only)
log "running test_distributed (NCCL)"
timeout 120 "$dir/tests/test_distributed" "-tc=nccl_communicator*" --reporters=junit \
  --out="$out/test_distributed.xml" >"$out/test_distributed.log" 2>&1
echo "exit $?" >>"$out/test_distributed.log"
tail -3 "$out/test_distributed.log"
# benchmarks: bert-base (batch 32, seq 128) inference and training step, GPU fp32 and TF32, and the CPU of the same
# machine for the ratio
log "benchmarks"
env -u MINIBERT_ALLOW_TF32 timeout 120 "$dir/benchmarks/bench_bert" --benchmark_filter=Cuda \
  --benchmark_format=json --benchmark_out="$out/bench_cuda_fp32.json" >/dev/null 2>"$out/bench_cuda_fp32.err"
MINIBERT_ALLOW_TF32=1 timeout 120 "$dir/benchmarks/bench_bert" --benchmark_filter=Cuda \
  --benchmark_format=json --benchmark_out="$out/bench_cuda_tf32.json" >/dev/null 2>"$out/bench_cuda_tf32.err"
OMP_NUM_THREADS=$(nproc) timeout 150 "$dir/benchmarks/bench_bert" --benchmark_filter=BM_BertTrainStep_CpuF32 \
  --benchmark_min_time=5 --benchmark_format=json --benchmark_out="$out/bench_cpu.json" >/dev/null 2>"$out/bench_cpu.err"
# GEMM: the workbench (validation of every version, then timing): the FFN-down projection's forward (A B^T), input
# gradient (A B) and weight gradient (A^T B) at 32 x 128 tokens, 8192^3, and 1000 760 3064, ragged for every tile;
# then the own tensor-core kernels beside cuBLASLt at bert-base's shapes and 8192^3
for shape in "4096 768 3072 0 1" "4096 3072 768 0 0" "768 3072 4096 1 0" "8192 8192 8192 0 1" "1000 760 3064 0 1" \
             "1000 760 3064 1 0"; do
  timeout 60 "$dir/benchmarks/gemm_workbench" $shape 2>&1 | tee -a "$out/gemm_workbench.log"
done
timeout 150 "$dir/benchmarks/bench_gemm_cuda" --benchmark_filter='BF16|FP16' --benchmark_format=json \
  --benchmark_out="$out/bench_gemm_cuda.json" >/dev/null 2>"$out/bench_gemm_cuda.err"
MINIBERT_ALLOW_TF32=1 timeout 90 "$dir/benchmarks/bench_gemm_cuda" --benchmark_filter=TF32 --benchmark_format=json \
  --benchmark_out="$out/bench_gemm_cuda_tf32.json" >/dev/null 2>"$out/bench_gemm_cuda_tf32.err"
# attention: the workbench, and the flash kernels beside the materialized path at bert-base's shapes
for shape in "32 128" "32 512"; do
  timeout 60 "$dir/benchmarks/attention_workbench" $shape 2>&1 | tee -a "$out/attention_workbench.log"
done
timeout 150 "$dir/benchmarks/bench_attention_cuda" --benchmark_format=json \
  --benchmark_out="$out/bench_attention_cuda.json" >/dev/null 2>"$out/bench_attention_cuda.err"
python3 - "$out" "$gpu" <<'PY'
import glob, json, os, sys
import xml.etree.ElementTree as ET
out, gpu = sys.argv[1], sys.argv[2]
summary = {"gpu": gpu, "tests": {}, "benchmarks": {}}
for xml in sorted(glob.glob(os.path.join(out, "test_*.xml"))):
    try:
        root = ET.parse(xml).getroot()
    except Exception as e:  # a crashed program leaves no report
        summary["tests"][os.path.basename(xml)] = f"no report: {e}"
        continue
    for case in root.iter("testcase"):
        status = "failed" if case.find("failure") is not None or case.find("error") is not None else "passed"
        summary["tests"][case.get("name")] = status
for name in ("bench_cuda_fp32", "bench_cuda_tf32", "bench_cpu", "bench_gemm_cuda", "bench_gemm_cuda_tf32",
             "bench_attention_cuda"):
    path = os.path.join(out, name + ".json")
    try:
        for b in json.load(open(path))["benchmarks"]:
            summary["benchmarks"][f"{name}:{b['name']}"] = {k: b.get(k) for k in ("real_time", "time_unit", "samples_per_s", "TFLOP/s", "GB/s", "own_kernel", "own_version", "fused", "error_message") if k in b}
    except Exception as e:
        summary["benchmarks"][name] = f"no result: {e}"
json.dump(summary, open(os.path.join(out, "gpu_check.json"), "w"), indent=2)
# the GEMM table of docs/benchmarks.md: own kernel against cuBLASLt, shape by shape
gemm = {k.split(":", 1)[1]: v for k, v in summary["benchmarks"].items() if k.startswith("bench_gemm_cuda")}
for name, own in sorted(gemm.items()):
    if "_Own_" not in name or "TFLOP/s" not in own:
        continue
    lt = gemm.get(name.replace("_Own_", "_CublasLt_"), {})
    if "TFLOP/s" in lt:
        own_tf, lt_tf = own["TFLOP/s"], lt["TFLOP/s"]  # the counter is already in TFLOP/s
        print(f"{name.replace('BM_Gemm_Own_', '')}: own {own_tf:.1f} TFLOP/s, cuBLASLt {lt_tf:.1f}, "
              f"ratio {own_tf / lt_tf:.3f}, version {own.get('own_version', '?')}"
              f"{'' if own.get('own_kernel') else ' (own provider declined: cuBLASLt ran)'}")
# the attention table: flash against cuDNN's fused SDPA and the materialized path (cuBLASLt + softmax), shape by shape
attn = {k.split(":", 1)[1]: v for k, v in summary["benchmarks"].items() if k.startswith("bench_attention_cuda:")}
for name, fl in sorted(attn.items()):
    if "_Flash_" not in name or "TFLOP/s" not in fl:
        continue
    line = f"{name.replace('BM_Attention_Flash_', '')}: flash {fl['TFLOP/s']:.1f} TFLOP/s {fl['GB/s']:.0f} GB/s"
    line += "" if fl.get("fused") else " (flash declined: materialized ran)"
    for label, other in (("cuDNN", "_Cudnn_"), ("materialized", "_Materialized_")):
        o = attn.get(name.replace("_Flash_", other), {})
        if "TFLOP/s" in o:
            line += f", {label} {o['TFLOP/s']:.1f} (ratio {fl['TFLOP/s'] / o['TFLOP/s']:.3f})"
            line += "" if label != "cuDNN" or o.get("fused") else " (cuDNN declined: materialized ran)"
        else:
            line += f", {label}: {o.get('error_message', 'no result')}"
    print(line)
# the training step (bf16, batch 32, seq 128) eager and replayed as a CUDA graph, in one process
steps = {k.split(":", 1)[1].split("/")[0]: v for k, v in summary["benchmarks"].items()
         if k.startswith("bench_cuda_fp32:BM_BertTrainStep_CudaBF16")}
eager, graph = steps.get("BM_BertTrainStep_CudaBF16", {}), steps.get("BM_BertTrainStep_CudaBF16Graph", {})
if all(b.get("real_time", 0) > 0 and "error_message" not in b for b in (eager, graph)):
    print(f"train step bf16 32x128: eager {eager['real_time']:.2f} ms, CUDA graph {graph['real_time']:.2f} ms, "
          f"speedup {eager['real_time'] / graph['real_time']:.3f}")
else:
    print(f"train step bf16 32x128: eager {eager.get('error_message', eager or 'no result')}, "
          f"graph {graph.get('error_message', graph or 'no result')}")
failed = [k for k, v in summary["tests"].items() if v != "passed"]
print(json.dumps({"gpu": gpu, "cases": len(summary["tests"]), "failed": failed}, indent=1))
PY
log "done: $out/gpu_check.json"
