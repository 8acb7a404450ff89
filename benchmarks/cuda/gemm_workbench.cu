// SPDX-License-Identifier: MIT
// Workbench of the own GEMM (as llm.c's dev/cuda/ files): the reference, every version, validation and timing in one
// program, so that the next version is one more entry in `versions` below.
//   gemm_workbench [M N K]        default 4096 768 3072 (bert-base's FFN down projection at 32 x 128 tokens)
// For each version: C = A B^T on bf16 operands (A (M,K), B (N,K) row-major, fp32 accumulation, bf16 out) into a C
// filled with NaNs, checked element by element against the fp32 reference kernel (bf16 output rounding plus fp32
// summation order: 2^-8 |C| + K 2^-23 sum_k |a_k b_k|), then timed with CUDA events over 50 launches, in TFLOP/s,
// beside cuBLASLt (the backend's cuBLASLt path) in the same run. A version that does not take the problem (v2: K % 8
// != 0) says skipped.
// Build: cmake -DMINIBERT_BUILD_BENCHMARKS=ON, target gemm_workbench (needs the CUDA backend); run on a GPU.

#include <cmath>   // fabs
#include <cstdio>  // printf
#include <cstdint> // uint16_t, uint32_t, uintptr_t
#include <cstdlib> // atoll
#include <random>  // mt19937
#include <vector>  // vector

#include <minibert/cuda/backend_impl.cuh>

namespace {
using namespace minibert;
using cuda_dev = device::cuda;
using i64 = std::int64_t;

// version 0, the spec: one thread per element of C, fp32 sums of bf16 operands in k order. c (M,N) fp32
__global__ void reference_kernel(i64 M, i64 N, i64 K, const bfloat16* a, const bfloat16* b, float* c, float* mag) {
  const i64 col = i64(blockIdx.x) * blockDim.x + threadIdx.x, row = i64(blockIdx.y) * blockDim.y + threadIdx.y;
  if (row >= M || col >= N) return;
  float s = 0.f, m = 0.f;
  for (i64 k = 0; k < K; ++k) {
    const float p = minibert::cuda::to_float(a[row * K + k]) * minibert::cuda::to_float(b[col * K + k]);
    s += p;
    m += fabsf(p);
  }
  c[row * N + col] = s;
  mag[row * N + col] = m;
}

// version 2, the candidate for the library's 16-bit path with no fusion: C (M,N) bf16 = A (M,K) B (N,K)^T, both
// K-contiguous, K % 8 == 0 and 16-byte aligned operands (one cp.async chunk is 8 elements). Same block tile as v1
// (128 x 128 x 32, 8 warps of 64 x 32), with what v1 lacks:
//   - cp.async.cg 16-byte copies global -> shared, no register staging, rows or chunks past M, N, K zero-filled
//     (src-size 0); a ring of `stages` tiles in dynamic shared memory, so the copies of tile kt + 2 fly while tile kt
//     is multiplied;
//   - ldmatrix.x4 fragment loads (4 for A and 2 for B per k16 step, instead of 24 32-bit loads);
//   - shared rows of 40 elements (80 bytes): the 8 row addresses of one ldmatrix phase start on banks 0, 20, 8, 28,
//     16, 4, 24, 12 (x 4 bytes), so each phase reads 8 disjoint 16-byte bank groups.
// ldmatrix fragment order (PTX ISA, "ldmatrix"): lane l gives the address of row l % 8 of matrix l / 8, and receives
// (row l / 4, columns 2 (l % 4)..+1) of every matrix. A's 16 x 16 tile as matrices (rows 0-7 | 8-15) x (k 0-7 | 8-15)
// in the order a[0..3] of mma.m16n8k16 wants; B's two n8 tiles as (n 0-7: k 0-7, k 8-15), (n 8-15: k 0-7, k 8-15).
namespace v2 {
constexpr int block_m = 128, block_n = 128, block_k = 32, stages = 3, threads = 256;
constexpr int ld = block_k + 8;                              // shared row, in elements
constexpr int tile_elems = (block_m + block_n) * ld;          // one stage: A then B
constexpr int smem_bytes = stages * tile_elems * 2;           // 61,440 bytes: past the 48 KiB of static shared memory
constexpr int warp_m = 64, warp_n = 32, tiles_m = 4, tiles_n = 4; // 2 x 4 warps

__device__ __forceinline__ std::uint32_t shared_address(const void* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void copy16(void* dst, const void* src, bool in_range) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(dst)), "l"(src),
               "r"(in_range ? 16 : 0));
#endif
}
__device__ __forceinline__ void commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int pending> __device__ __forceinline__ void wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(pending));
#endif
}
__device__ __forceinline__ void ldmatrix_x4(std::uint32_t (&r)[4], const void* row) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row)));
#endif
}

// rows x block_k of a K-contiguous operand x (rows_total, K) from (r0, k0) into dst[r][k]: 8-element chunks
template <int rows>
__device__ __forceinline__ void load_tile(std::uint16_t* dst, const bfloat16* x, i64 ldx, i64 r0, i64 rows_total,
                                          i64 k0, i64 K) {
  constexpr int chunks_per_row = block_k / 8;
  for (int c = threadIdx.x; c < rows * chunks_per_row; c += threads) {
    const int r = c / chunks_per_row, k = (c % chunks_per_row) * 8;
    const bool in_range = r0 + r < rows_total && k0 + k < K; // K % 8 == 0: a chunk is all in or all out
    const bfloat16* src = in_range ? x + (r0 + r) * ldx + k0 + k : x;
    copy16(dst + r * ld + k, src, in_range);
  }
}

__global__ void __launch_bounds__(threads)
    gemm_nt_kernel(i64 M, i64 N, i64 K, const bfloat16* a, i64 lda, const bfloat16* b, i64 ldb, bfloat16* c, i64 ldc) {
  extern __shared__ __align__(16) std::uint16_t smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, q = lane % 4;
  const int wm = (warp / 4) * warp_m, wn = (warp % 4) * warp_n;
  const i64 m0 = i64(blockIdx.y) * block_m, n0 = i64(blockIdx.x) * block_n;
  const i64 k_tiles = (K + block_k - 1) / block_k;
  const auto stage_a = [&](i64 kt) { return smem + (kt % stages) * tile_elems; };
  const auto stage_b = [&](i64 kt) { return smem + (kt % stages) * tile_elems + block_m * ld; };
  const auto load_stage = [&](i64 kt) {
    if (kt < k_tiles) {
      load_tile<block_m>(stage_a(kt), a, lda, m0, M, kt * block_k, K);
      load_tile<block_n>(stage_b(kt), b, ldb, n0, N, kt * block_k, K);
    }
    commit(); // an empty group past the end keeps wait<stages - 2>'s count right
  };
  for (int s = 0; s < stages - 1; ++s) load_stage(s);
  float acc[tiles_m][tiles_n][4] = {};
  for (i64 kt = 0; kt < k_tiles; ++kt) {
    wait<stages - 2>(); // tile kt has landed (this thread's copies) ...
    __syncthreads();    // ... everybody's, and every warp is done with tile kt - 1, whose slot the next load takes
    load_stage(kt + stages - 1);
    const std::uint16_t* As = stage_a(kt);
    const std::uint16_t* Bs = stage_b(kt);
#pragma unroll
    for (int kk = 0; kk < block_k; kk += 16) {
      std::uint32_t af[tiles_m][4], bf[tiles_n][2];
#pragma unroll
      for (int i = 0; i < tiles_m; ++i)
        ldmatrix_x4(af[i], As + (wm + i * 16 + (lane & 15)) * ld + kk + (lane >> 4) * 8);
#pragma unroll
      for (int j = 0; j < tiles_n; j += 2) {
        std::uint32_t r[4];
        ldmatrix_x4(r, Bs + (wn + j * 8 + (lane >> 4) * 8 + (lane & 7)) * ld + kk + ((lane >> 3) & 1) * 8);
        bf[j][0] = r[0];
        bf[j][1] = r[1];
        bf[j + 1][0] = r[2];
        bf[j + 1][1] = r[3];
      }
#pragma unroll
      for (int i = 0; i < tiles_m; ++i)
#pragma unroll
        for (int j = 0; j < tiles_n; ++j) minibert::cuda::mma::mma_tile<bfloat16>(acc[i][j], af[i], bf[j]);
    }
  }
  wait<0>();
#pragma unroll
  for (int i = 0; i < tiles_m; ++i)
#pragma unroll
    for (int j = 0; j < tiles_n; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const i64 row = m0 + wm + i * 16 + g + (r >= 2 ? 8 : 0), col = n0 + wn + j * 8 + 2 * q + (r & 1);
        if (row < M && col < N) c[row * ldc + col] = minibert::cuda::from_float<bfloat16>(acc[i][j][r]);
      }
}
} // namespace v2

// a version runs C = A B^T, or returns false when it does not take the problem (the workbench then says so)
struct version {
  const char* name;
  bool (*run)(context<cuda_dev>&, i64, i64, i64, const bfloat16*, const bfloat16*, bfloat16*);
};

bool run_own(context<cuda_dev>& ctx, i64 M, i64 N, i64 K, const bfloat16* a, const bfloat16* b, bfloat16* c) {
  ctx.gemm = gemm_provider::own;
  backend<cuda_dev>::gemm(ctx, false, true, M, N, K, 1.f, a, K, b, K, 0.f, c, N);
  return true;
}
bool run_cublaslt(context<cuda_dev>& ctx, i64 M, i64 N, i64 K, const bfloat16* a, const bfloat16* b, bfloat16* c) {
  ctx.gemm = gemm_provider::cublaslt;
  backend<cuda_dev>::gemm(ctx, false, true, M, N, K, 1.f, a, K, b, K, 0.f, c, N);
  return true;
}

bool run_v2(context<cuda_dev>& ctx, i64 M, i64 N, i64 K, const bfloat16* a, const bfloat16* b, bfloat16* c) {
  const bool aligned = K % 8 == 0 && reinterpret_cast<std::uintptr_t>(a) % 16 == 0 &&
                       reinterpret_cast<std::uintptr_t>(b) % 16 == 0;
  if (!aligned || M == 0 || N == 0) return false;
  static const cudaError_t opted_in = cudaFuncSetAttribute( // one device: the workbench runs on the current one
      v2::gemm_nt_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, v2::smem_bytes);
  MINIBERT_CUDA_CHECK(opted_in);
  const dim3 grid(unsigned((N + v2::block_n - 1) / v2::block_n), unsigned((M + v2::block_m - 1) / v2::block_m));
  v2::gemm_nt_kernel<<<grid, v2::threads, v2::smem_bytes, minibert::cuda::stream_of(ctx)>>>(M, N, K, a, K, b, K, c, N);
  MINIBERT_CUDA_CHECK(cudaGetLastError());
  return true;
}

const version versions[] = {
    {"own v1 (mma.sync m16n8k16, 128x128x32, no pipeline)", run_own},
    {"own v2 (cp.async 3 stages, ldmatrix, 128x128x32)", run_v2},
    {"cuBLASLt", run_cublaslt},
};

template <class T> T* device_alloc(i64 n) {
  void* p = nullptr;
  MINIBERT_CUDA_CHECK(cudaMalloc(&p, std::size_t(n) * sizeof(T)));
  return static_cast<T*>(p);
}

} // namespace

int main(int argc, char** argv) {
  const i64 M = argc > 3 ? std::atoll(argv[1]) : 4096, N = argc > 3 ? std::atoll(argv[2]) : 768,
            K = argc > 3 ? std::atoll(argv[3]) : 3072;
  if (!cuda_available()) {
    std::printf("no CUDA device\n");
    return 1;
  }
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<bfloat16> ha(std::size_t(M * K)), hb(std::size_t(N * K));
  for (auto& x : ha) x = bfloat16(u(rng));
  for (auto& x : hb) x = bfloat16(u(rng));
  bfloat16 *a = device_alloc<bfloat16>(M * K), *b = device_alloc<bfloat16>(N * K), *c = device_alloc<bfloat16>(M * N);
  float *ref = device_alloc<float>(M * N), *mag = device_alloc<float>(M * N);
  MINIBERT_CUDA_CHECK(cudaMemcpy(a, ha.data(), ha.size() * sizeof(bfloat16), cudaMemcpyHostToDevice));
  MINIBERT_CUDA_CHECK(cudaMemcpy(b, hb.data(), hb.size() * sizeof(bfloat16), cudaMemcpyHostToDevice));
  const dim3 block(16, 16), grid(unsigned((N + 15) / 16), unsigned((M + 15) / 16));
  reference_kernel<<<grid, block>>>(M, N, K, a, b, ref, mag);
  MINIBERT_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<float> want(std::size_t(M * N)), scale(std::size_t(M * N));
  MINIBERT_CUDA_CHECK(cudaMemcpy(want.data(), ref, want.size() * sizeof(float), cudaMemcpyDeviceToHost));
  MINIBERT_CUDA_CHECK(cudaMemcpy(scale.data(), mag, scale.size() * sizeof(float), cudaMemcpyDeviceToHost));

  auto& ctx = current_context<cuda_dev>();
  const cudaStream_t s = minibert::cuda::stream_of(ctx);
  cudaEvent_t start, stop;
  MINIBERT_CUDA_CHECK(cudaEventCreate(&start));
  MINIBERT_CUDA_CHECK(cudaEventCreate(&stop));
  std::printf("C (%lld x %lld) = A (%lld x %lld) B^T, bf16 operands, fp32 accumulation\n", (long long)M, (long long)N,
              (long long)M, (long long)K);
  int failures = 0;
  for (const version& v : versions) {
    // C starts as bf16 NaNs (0xFFFF), so an element a version leaves unwritten fails instead of keeping the last one's
    MINIBERT_CUDA_CHECK(cudaMemset(c, 0xFF, std::size_t(M * N) * sizeof(bfloat16)));
    if (!v.run(ctx, M, N, K, a, b, c)) {
      std::printf("%-55s skipped (it does not take this problem)\n", v.name);
      continue;
    }
    backend<cuda_dev>::synchronize(ctx);
    std::vector<bfloat16> got(std::size_t(M * N));
    MINIBERT_CUDA_CHECK(cudaMemcpy(got.data(), c, got.size() * sizeof(bfloat16), cudaMemcpyDeviceToHost));
    // per element: the bf16 rounding of the output (half an ulp, 2^-9 |C|, twice over) plus any fp32 summation order
    // of both sides (K u sum |a_k b_k| each, u = 2^-24); a NaN or a wrong product of a few k exceeds it
    double worst = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
      const double bound = std::ldexp(std::fabs(double(want[i])), -8) + double(K) * std::ldexp(double(scale[i]), -23);
      const double e = std::fabs(double(float(got[i])) - want[i]) / std::max(1e-30, bound);
      if (!(e <= worst)) worst = e; // NaN included
    }
    const bool ok = worst <= 1.0;
    failures += ok ? 0 : 1;
    constexpr int reps = 50;
    MINIBERT_CUDA_CHECK(cudaEventRecord(start, s));
    for (int r = 0; r < reps; ++r) v.run(ctx, M, N, K, a, b, c);
    MINIBERT_CUDA_CHECK(cudaEventRecord(stop, s));
    MINIBERT_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    MINIBERT_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    const double tflops = 2.0 * double(M) * double(N) * double(K) * reps / (double(ms) * 1e-3) * 1e-12;
    std::printf("%-55s %s (max error %.2f of the bound)  %8.1f TFLOP/s\n", v.name, ok ? "ok    " : "WRONG ", worst,
                tflops);
  }
  return failures == 0 ? 0 : 1;
}
