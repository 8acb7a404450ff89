// SPDX-License-Identifier: MIT
// GEMM throughput on the GPU, the own tensor-core kernel (cuda/gemm_mma.cuh) beside cuBLASLt in the same process,
// through backend<device::cuda>::gemm with the context's provider switched (built with the CUDA backend; every case
// reports "no CUDA device" without a GPU).
//   BM_Gemm_<provider>_<type>/M/N/K/ta/tb   one row-major product: bf16 or fp16 data, fp32 data rounded to bf16
//                                           (FP32asBF16: the --bf16 training path), or fp32 data on TF32 (with
//                                           MINIBERT_ALLOW_TF32=1); fp32 accumulation
// Shapes: bert-base's linear layers at 4096 (32 x 128) and 16384 (32 x 512) tokens, forward (x w^T), the input
// gradient (dy w) and the weight gradient (dy^T x), with K and N in 768, 2304 and 3072; and 8192^3.
// Each iteration queues `launches` products and waits for them, so launch latency is amortized as in a training
// step; the "TFLOP/s" counter is 2 M N K per product. scripts/gpu_check.sh turns the JSON into the table of
// docs/benchmarks.md (with the fraction of the device's peak).

#include <benchmark/benchmark.h>

#include <cstdint> // int64_t
#include <cstdlib> // getenv
#include <string>  // string
#include <vector>  // vector

#include <minibert/bert.hpp>
#include <minibert/cuda/backend.hpp>

namespace {
using namespace minibert;
using cuda = device::cuda;
using i64 = std::int64_t;
constexpr int launches = 20;

template <class T>
void bench_gemm(benchmark::State& state, gemm_provider provider, matmul_precision precision = matmul_precision::fp32) {
  if (!cuda_available()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  const i64 M = state.range(0), N = state.range(1), K = state.range(2);
  const bool ta = state.range(3) != 0, tb = state.range(4) != 0;
  auto& ctx = current_context<cuda>();
  ctx.gemm = provider;
  ctx.matmul = precision;
  tensor<T, cuda> a = tensor<T, cuda>::empty({M * K}), b = tensor<T, cuda>::empty({K * N});
  tensor<T, cuda> c = tensor<T, cuda>::empty({M * N});
  backend<cuda>::fill(ctx, a.data(), a.numel(), T(0.01f));
  backend<cuda>::fill(ctx, b.data(), b.numel(), T(0.02f));
  const i64 lda = ta ? M : K, ldb = tb ? K : N;
  auto run = [&] {
    for (int i = 0; i < launches; ++i)
      backend<cuda>::gemm(ctx, ta, tb, M, N, K, 1.f, a.data(), lda, b.data(), ldb, 0.f, c.data(), N);
    backend<cuda>::synchronize(ctx);
  };
  run(); // warm-up: cuBLASLt's heuristics, the allocator, the clocks
  const std::uint64_t own_before = ctx.own_gemm_launches, v2_before = ctx.own_gemm_pipelined_launches,
                      v3_before = ctx.own_gemm_wgmma_launches;
  for (auto _ : state) run();
  state.counters["TFLOP/s"] = benchmark::Counter(2.0 * double(M) * double(N) * double(K) * launches * 1e-12,
                                                 benchmark::Counter::kIsIterationInvariantRate);
  const bool own_ran = ctx.own_gemm_launches > own_before; // false: the own provider declined it
  state.counters["own_kernel"] = own_ran ? 1 : 0;
  state.counters["own_version"] = ctx.own_gemm_wgmma_launches > v3_before       ? 3
                                  : ctx.own_gemm_pipelined_launches > v2_before ? 2
                                  : own_ran                                     ? 1
                                                                                : 0;
  ctx.gemm = gemm_provider_from_env();
  ctx.matmul = matmul_precision::fp32;
}

// (M, N, K, ta, tb) of bert-base's linear layers for `tokens` rows: forward, input gradient, weight gradient
void bert_shapes(benchmark::internal::Benchmark* b) {
  const i64 layers[][2] = {{768, 2304}, {768, 768}, {768, 3072}, {3072, 768}}; // (in, out): qkv, proj, ffn up, down
  for (i64 tokens : {4096, 16384})
    for (const auto& l : layers) {
      const i64 in = l[0], out = l[1];
      b->Args({tokens, out, in, 0, 1}); // y = x w^T
      b->Args({tokens, in, out, 0, 0}); // dx = dy w
      b->Args({out, in, tokens, 1, 0}); // dw = dy^T x
    }
  b->Args({8192, 8192, 8192, 0, 1});
}

void BM_Gemm_Own_BF16(benchmark::State& s) { bench_gemm<bfloat16>(s, gemm_provider::own); }
void BM_Gemm_CublasLt_BF16(benchmark::State& s) { bench_gemm<bfloat16>(s, gemm_provider::cublaslt); }
void BM_Gemm_Own_FP16(benchmark::State& s) { bench_gemm<half>(s, gemm_provider::own); }
void BM_Gemm_CublasLt_FP16(benchmark::State& s) { bench_gemm<half>(s, gemm_provider::cublaslt); }
// fp32 data, operands rounded to bf16 (own: version 2 staged; cuBLASLt: CUBLAS_COMPUTE_32F_FAST_16BF)
void BM_Gemm_Own_FP32asBF16(benchmark::State& s) { bench_gemm<float>(s, gemm_provider::own, matmul_precision::bf16); }
void BM_Gemm_CublasLt_FP32asBF16(benchmark::State& s) {
  bench_gemm<float>(s, gemm_provider::cublaslt, matmul_precision::bf16);
}
// fp32 data on TF32 tensor cores: run with MINIBERT_ALLOW_TF32=1 (read once per process), skipped otherwise
template <gemm_provider P> void tf32_case(benchmark::State& s) {
  const char* allowed = std::getenv("MINIBERT_ALLOW_TF32");
  if (allowed == nullptr || std::string(allowed) != "1") {
    s.SkipWithError("set MINIBERT_ALLOW_TF32=1 for the TF32 cases");
    return;
  }
  bench_gemm<float>(s, P);
}
void BM_Gemm_Own_TF32(benchmark::State& s) { tf32_case<gemm_provider::own>(s); }
void BM_Gemm_CublasLt_TF32(benchmark::State& s) { tf32_case<gemm_provider::cublaslt>(s); }

} // namespace

#define MINIBERT_GEMM_BENCHMARK(name)                                                                                 \
  BENCHMARK(name)->Apply(bert_shapes)->ArgNames({"M", "N", "K", "ta", "tb"})->UseRealTime()->MinTime(0.2)
MINIBERT_GEMM_BENCHMARK(BM_Gemm_Own_BF16);
MINIBERT_GEMM_BENCHMARK(BM_Gemm_CublasLt_BF16);
MINIBERT_GEMM_BENCHMARK(BM_Gemm_Own_FP16);
MINIBERT_GEMM_BENCHMARK(BM_Gemm_CublasLt_FP16);
MINIBERT_GEMM_BENCHMARK(BM_Gemm_Own_FP32asBF16);
MINIBERT_GEMM_BENCHMARK(BM_Gemm_CublasLt_FP32asBF16);
MINIBERT_GEMM_BENCHMARK(BM_Gemm_Own_TF32);
MINIBERT_GEMM_BENCHMARK(BM_Gemm_CublasLt_TF32);
