// SPDX-License-Identifier: MIT
// fp32 GEMM on the CPU at BERT-base shapes (B*T = 32*128 = 4096 tokens, C = 768, 4C = 3072, 3C = 2304):
// minibert's cpu::gemm beside raw Eigen (the same row-major maps, `noalias() =`), reported as FLOP/s
// (items_per_second = 2*M*N*K per iteration). Args({M, N, K, trans_a, trans_b}):
//   linear forward   out = inp W^T        (trans_b): M = 4096, (N, K) = (768|2304|3072, 768) and (768, 3072)
//   linear backward  dinp = dout W        (none):    M = 4096, (N, K) = (768, 768|2304|3072) and (3072, 768)
//                    dW += dout^T inp     (trans_a): M = C_out, N = C_in, K = 4096
//   attention        384 = 32*12 heads of S = q k^T (128x128x64), O = P v (128x64x128), dv = P^T dO
//                    (gemm_batched; Args({batch, M, N, K, trans_a, trans_b}))
// BM_*_CpuBF16: the same products at matmul_precision::bf16 (operands rounded to bf16, fp32 accumulation; vdpbf16ps
// on CPUs with AVX512-BF16), flops counted as for fp32.
// Every shape is validated once against a naive double-precision dot product on sampled elements before timing.
// Companion: bench_gemm_torch.py (PyTorch / OpenBLAS on the same shapes) and run_gemm_bench.sh (side by side).

#include <benchmark/benchmark.h>

#include <algorithm> // max
#include <cmath>     // abs
#include <cstdint>   // int64_t, uint64_t
#include <cstdio>    // printf
#include <stdexcept> // runtime_error
#include <string>    // string, to_string
#include <vector>    // vector

#include <Eigen/Core> // Map, Matrix, OuterStride

#include <minibert/cpu/parallel.hpp> // num_threads
#include <minibert/cpu/gemm.hpp>

namespace {

using i64 = std::int64_t;

std::vector<float> random_values(i64 n, std::uint64_t seed) {
  std::vector<float> v(static_cast<std::size_t>(n));
  std::uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& x : v) {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    x = float(double((z ^ (z >> 31)) >> 11) * 0x1.0p-52 - 1.0); // uniform [-1, 1)
  }
  return v;
}

struct operands {
  i64 M, N, K, batch;
  bool ta, tb;
  i64 lda, ldb, ldc, sa, sb, sc; // row strides and batch strides
  std::vector<float> A, B, C;
  operands(i64 batch_, i64 M_, i64 N_, i64 K_, bool ta_, bool tb_)
      : M(M_), N(N_), K(K_), batch(batch_), ta(ta_), tb(tb_), lda(ta ? M : K), ldb(tb ? K : N), ldc(N),
        sa(M * K), sb(K * N), sc(M * N), A(random_values(batch * sa, 1)), B(random_values(batch * sb, 2)),
        C(std::size_t(batch * sc), 0.f) {}
  float a(i64 z, i64 i, i64 k) const { return A[std::size_t(z * sa + (ta ? k * lda + i : i * lda + k))]; }
  float b(i64 z, i64 k, i64 j) const { return B[std::size_t(z * sb + (tb ? j * ldb + k : k * ldb + j))]; }
  double flops() const { return 2.0 * double(batch) * double(M) * double(N) * double(K); }
};

// Compares C (after one GEMM with alpha = 1, beta = 0) with a double-precision dot product at 257 sampled
// elements (corners included). Element tolerance 1e-5 * sum_k |a b| (see tests/test_gemm.cpp).
// With bf16 operands the tolerance is 2^-7 * sum_k |a b| (each operand rounded by at most 2^-8 relative).
void validate(const operands& op, const char* who, double rtol) {
  double worst = 0;
  for (i64 s = 0; s < 257; ++s) {
    const i64 z = s % op.batch;
    const i64 i = s == 0 ? 0 : s == 1 ? op.M - 1 : (s * 7919) % op.M;
    const i64 j = s == 0 ? 0 : s == 1 ? op.N - 1 : (s * 104729) % op.N;
    double dot = 0, mag = 0;
    for (i64 k = 0; k < op.K; ++k) {
      const double t = double(op.a(z, i, k)) * double(op.b(z, k, j));
      dot += t;
      mag += std::abs(t);
    }
    const double err = std::abs(double(op.C[std::size_t(z * op.sc + i * op.ldc + j)]) - dot);
    worst = std::max(worst, err / (rtol * mag + 1e-30));
  }
  if (!(worst <= 1.0))
    throw std::runtime_error(std::string(who) + " GEMM disagrees with the reference (" + std::to_string(op.M) + "x" +
                             std::to_string(op.N) + "x" + std::to_string(op.K) + ")");
}

template <minibert::matmul_precision P = minibert::matmul_precision::fp32> void run_minibert(operands& op) {
  if (op.batch == 1)
    minibert::cpu::gemm<float>(op.ta, op.tb, op.M, op.N, op.K, 1.f, op.A.data(), op.lda, op.B.data(), op.ldb, 0.f,
                               op.C.data(), op.ldc, P);
  else
    minibert::cpu::gemm_batched<float>(op.ta, op.tb, op.M, op.N, op.K, 1.f, op.A.data(), op.lda, op.sa, op.B.data(),
                                       op.ldb, op.sb, 0.f, op.C.data(), op.ldc, op.sc, op.batch, P);
}
constexpr auto bf16 = minibert::matmul_precision::bf16;

using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using const_map = Eigen::Map<const row_matrix, Eigen::Unaligned, Eigen::OuterStride<>>;
using mut_map = Eigen::Map<row_matrix, Eigen::Unaligned, Eigen::OuterStride<>>;

void eigen_one(const operands& op, i64 z, float* C) {
  const const_map a(op.A.data() + z * op.sa, op.ta ? op.K : op.M, op.ta ? op.M : op.K, Eigen::OuterStride<>(op.lda));
  const const_map b(op.B.data() + z * op.sb, op.tb ? op.N : op.K, op.tb ? op.K : op.N, Eigen::OuterStride<>(op.ldb));
  mut_map c(C, op.M, op.N, Eigen::OuterStride<>(op.ldc));
  if (!op.ta && !op.tb) c.noalias() = a * b;
  else if (!op.ta) c.noalias() = a * b.transpose();
  else if (!op.tb) c.noalias() = a.transpose() * b;
  else c.noalias() = a.transpose() * b.transpose();
}

// Raw Eigen; batches run one per thread (as minibert's gemm_batched does for small products), each Eigen
// GEMM then single-threaded because Eigen does not nest inside an OpenMP region.
void run_eigen(operands& op) {
  if (op.batch == 1) {
    eigen_one(op, 0, op.C.data());
    return;
  }
#pragma omp parallel for schedule(static)
  for (i64 z = 0; z < op.batch; ++z) eigen_one(op, z, op.C.data() + z * op.sc);
}

template <void (*Run)(operands&)>
void bench(benchmark::State& state, bool batched, const char* who, double rtol = 1e-5) {
  const i64 o = batched ? 1 : 0;
  operands op(batched ? state.range(0) : 1, state.range(o), state.range(o + 1), state.range(o + 2),
              state.range(o + 3) != 0, state.range(o + 4) != 0);
  Run(op); // warm-up (packing buffers, page faults) and the one validated result
  validate(op, who, rtol);
  for (auto _ : state) {
    Run(op);
    benchmark::DoNotOptimize(op.C.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * i64(op.flops()));
  state.counters["threads"] = minibert::num_threads();
}

void BM_Gemm_CpuF32(benchmark::State& state) { bench<run_minibert<>>(state, false, "minibert"); }
void BM_Gemm_CpuBF16(benchmark::State& state) { bench<run_minibert<bf16>>(state, false, "minibert bf16", 0x1p-7); }
void BM_Gemm_EigenF32(benchmark::State& state) { bench<run_eigen>(state, false, "Eigen"); }
void BM_GemmBatched_CpuF32(benchmark::State& state) { bench<run_minibert<>>(state, true, "minibert"); }
void BM_GemmBatched_CpuBF16(benchmark::State& state) { bench<run_minibert<bf16>>(state, true, "minibert bf16", 0x1p-7); }
void BM_GemmBatched_EigenF32(benchmark::State& state) { bench<run_eigen>(state, true, "Eigen"); }

// clang-format off
#define MINIBERT_GEMM_SHAPES                                                                        \
  ->Args({4096, 768, 768, 0, 1})->Args({4096, 2304, 768, 0, 1})->Args({4096, 3072, 768, 0, 1})      \
  ->Args({4096, 768, 3072, 0, 1})                                                                   \
  ->Args({4096, 768, 768, 0, 0})->Args({4096, 768, 2304, 0, 0})->Args({4096, 768, 3072, 0, 0})      \
  ->Args({4096, 3072, 768, 0, 0})                                                                   \
  ->Args({768, 768, 4096, 1, 0})->Args({2304, 768, 4096, 1, 0})->Args({3072, 768, 4096, 1, 0})      \
  ->Args({768, 3072, 4096, 1, 0})                                                                   \
  ->Args({2048, 2048, 2048, 0, 0})
#define MINIBERT_GEMM_BATCHED_SHAPES                                                                \
  ->Args({384, 128, 128, 64, 0, 1})->Args({384, 128, 64, 128, 0, 0})->Args({384, 128, 64, 128, 1, 0})
// clang-format on

} // namespace

BENCHMARK(BM_Gemm_CpuF32) MINIBERT_GEMM_SHAPES->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Gemm_CpuBF16) MINIBERT_GEMM_SHAPES->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Gemm_EigenF32) MINIBERT_GEMM_SHAPES->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GemmBatched_CpuF32) MINIBERT_GEMM_BATCHED_SHAPES->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GemmBatched_CpuBF16) MINIBERT_GEMM_BATCHED_SHAPES->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GemmBatched_EigenF32) MINIBERT_GEMM_BATCHED_SHAPES->UseRealTime()->Unit(benchmark::kMillisecond);
