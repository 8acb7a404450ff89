// SPDX-License-Identifier: MIT
// Workbench of the own GEMM (as llm.c's dev/cuda/ files): the reference, every version, validation and timing in one
// program, so that the next version is one more entry in `versions` below. The versions themselves live in the
// library (include/minibert/cuda/gemm_mma.cuh, gemm_wgmma.cuh); a candidate starts here and moves there once it wins.
//   gemm_workbench [M N K [ta tb]]   default 4096 768 3072 0 1 (bert-base's FFN down projection at 32 x 128 tokens)
// For each version: C = op(A) op(B) on bf16 operands (A stored (M,K), or (K,M) when ta; B stored (K,N), or (N,K)
// when tb; row-major, fp32 accumulation, bf16 out; or the same values stored as fp32, rounded to bf16 by the kernel,
// fp32 out: the --bf16 training path) into a C filled with NaNs, checked element by element against the
// fp32 reference kernel (bf16 output rounding plus fp32 summation order: 2^-8 |C| + K 2^-23 sum_k |a_k b_k|), then
// timed with CUDA events over 50 launches, in TFLOP/s, beside cuBLASLt (the backend's cuBLASLt path) in the same run.
// A version that does not take the problem (v2 and v3: operands not 16-byte aligned; v3: a device other than an
// H100 / H200, or a build without sm_90a) says skipped.
// Build: cmake -DMINIBERT_BUILD_BENCHMARKS=ON, target gemm_workbench (needs the CUDA backend); run on a GPU.

#include <cmath>   // fabs
#include <cstdio>  // printf
#include <cstdint> // uint64_t
#include <cstdlib> // atoll
#include <random>  // mt19937
#include <vector>  // vector

#include <minibert/cuda/backend_impl.cuh>

namespace {
using namespace minibert;
using cuda_dev = device::cuda;
using i64 = std::int64_t;

/// one problem: sizes, transposes and the leading dims of the operands as stored (no padding)
struct problem {
  i64 M, N, K;
  bool ta, tb;
  __host__ __device__ i64 lda() const { return ta ? M : K; }
  __host__ __device__ i64 ldb() const { return tb ? K : N; }
};

// version 0, the spec: one thread per element of C, fp32 sums of bf16 operands in k order. c (M,N) fp32
__global__ void reference_kernel(problem p, const bfloat16* a, const bfloat16* b, float* c, float* mag) {
  const i64 col = i64(blockIdx.x) * blockDim.x + threadIdx.x, row = i64(blockIdx.y) * blockDim.y + threadIdx.y;
  if (row >= p.M || col >= p.N) return;
  float s = 0.f, m = 0.f;
  for (i64 k = 0; k < p.K; ++k) {
    const bfloat16 x = p.ta ? a[k * p.lda() + row] : a[row * p.lda() + k];
    const bfloat16 y = p.tb ? b[col * p.ldb() + k] : b[k * p.ldb() + col];
    const float prod = minibert::cuda::to_float(x) * minibert::cuda::to_float(y);
    s += prod;
    m += fabsf(prod);
  }
  c[row * p.N + col] = s;
  mag[row * p.N + col] = m;
}

/// the device buffers: the operands in bf16 and the same values in fp32 (for the staged kernels, which round fp32
/// data to bf16 on the way in), and C in bf16 or fp32
struct buffers {
  const bfloat16 *a, *b;
  const float *a32, *b32;
  bfloat16* c;
  float* c32;
};

// a version runs C = op(A) op(B) into buf.c (or buf.c32 when fp32_out), or returns false when it does not take the
// problem (the workbench then says so)
struct version {
  const char* name;
  bool (*run)(context<cuda_dev>&, const problem&, const buffers&);
  bool fp32_out = false;
};

dim3 tile_grid(const problem& p) {
  namespace mma = minibert::cuda::mma;
  return dim3(unsigned((p.N + mma::block_n - 1) / mma::block_n), unsigned((p.M + mma::block_m - 1) / mma::block_m));
}
template <class T> minibert::cuda::gemm_args<T> args_of(const problem& p, const T* a, const T* b, T* c) {
  return {p.ta, p.tb, p.M, p.N, p.K, 1.f, a, p.lda(), 0, b, p.ldb(), 0, 0.f, c, p.N, 0, 1, nullptr};
}

// version 1 launched directly (the library picks version 2 wherever it takes a problem)
bool run_v1(context<cuda_dev>& ctx, const problem& p, const buffers& buf) {
  namespace mma = minibert::cuda::mma;
  mma::gemm_kernel<bfloat16, bfloat16><<<tile_grid(p), mma::threads, 0, minibert::cuda::stream_of(ctx)>>>(
      p.ta, p.tb, p.M, p.N, p.K, 1.f, buf.a, p.lda(), 0, buf.b, p.ldb(), 0, 0.f, buf.c, p.N, 0, 1, nullptr, {});
  MINIBERT_CUDA_CHECK(cudaGetLastError());
  return true;
}
// version 2 launched directly: copied (bf16 data as stored), or staged (fp32 data rounded to bf16 on the way in, the
// --bf16 training path; fp32 out)
bool run_v2_copied(context<cuda_dev>& ctx, const problem& p, const buffers& buf) {
  const auto g = args_of(p, buf.a, buf.b, buf.c);
  if (!minibert::cuda::chunk_aligned(g)) return false;
  minibert::cuda::pipelined_gemm(ctx, g, minibert::cuda::mma_version::copied, tile_grid(p));
  MINIBERT_CUDA_CHECK(cudaGetLastError());
  return true;
}
bool run_v2_staged(context<cuda_dev>& ctx, const problem& p, const buffers& buf) {
  const auto g = args_of(p, buf.a32, buf.b32, buf.c32);
  if (!minibert::cuda::chunk_aligned(g)) return false;
  ctx.matmul = matmul_precision::bf16;
  minibert::cuda::pipelined_gemm(ctx, g, minibert::cuda::mma_version::staged, tile_grid(p));
  ctx.matmul = matmul_precision::fp32;
  MINIBERT_CUDA_CHECK(cudaGetLastError());
  return true;
}
// version 3 (sm_90a: TMA, wgmma, warp-specialized) at one block width, or at the one the library picks (0); skipped
// on other devices and builds
template <int width> bool run_v3(context<cuda_dev>& ctx, const problem& p, const buffers& buf) {
  const auto g = args_of(p, buf.a, buf.b, buf.c);
  if (!minibert::cuda::wgmma::ready() || !minibert::cuda::chunk_aligned(g) || !minibert::cuda::wgmma_takes(g))
    return false;
  ctx.own_gemm_wgmma_width = width;
  const bool ran = minibert::cuda::wgmma_gemm(ctx, g);
  ctx.own_gemm_wgmma_width = 0;
  MINIBERT_CUDA_CHECK(cudaGetLastError());
  return ran;
}
bool run_cublaslt(context<cuda_dev>& ctx, const problem& p, const buffers& buf) {
  ctx.gemm = gemm_provider::cublaslt;
  backend<cuda_dev>::gemm(ctx, p.ta, p.tb, p.M, p.N, p.K, 1.f, buf.a, p.lda(), buf.b, p.ldb(), 0.f, buf.c, p.N);
  return true;
}
// cuBLASLt on the staged kernel's problem: fp32 data, CUBLAS_COMPUTE_32F_FAST_16BF
bool run_cublaslt_fp32(context<cuda_dev>& ctx, const problem& p, const buffers& buf) {
  ctx.gemm = gemm_provider::cublaslt;
  ctx.matmul = matmul_precision::bf16;
  backend<cuda_dev>::gemm(ctx, p.ta, p.tb, p.M, p.N, p.K, 1.f, buf.a32, p.lda(), buf.b32, p.ldb(), 0.f, buf.c32, p.N);
  ctx.matmul = matmul_precision::fp32;
  return true;
}

const version versions[] = {
    {"own v1 (mma.sync m16n8k16, 128x128x32, no pipeline)", run_v1},
    {"own v2 copied (cp.async 3 stages, ldmatrix, 128x128x32)", run_v2_copied},
    {"own v3 (TMA + wgmma, 128x128x64, 6 stages)", run_v3<128>},
    {"own v3 (TMA + wgmma, 128x192x64, 5 stages)", run_v3<192>},
    {"own v3 (TMA + wgmma, 128x256x64, 4 stages)", run_v3<256>},
    {"own v3 (the width the library picks)", run_v3<0>},
    {"cuBLASLt", run_cublaslt},
    {"own v2 staged, fp32 data (registers, 2 stages)", run_v2_staged, true},
    {"cuBLASLt, fp32 data (FAST_16BF)", run_cublaslt_fp32, true},
};

template <class T> T* device_alloc(i64 n) {
  void* p = nullptr;
  MINIBERT_CUDA_CHECK(cudaMalloc(&p, std::size_t(n) * sizeof(T)));
  return static_cast<T*>(p);
}

} // namespace

int main(int argc, char** argv) {
  const bool sized = argc > 3, layout = argc > 5;
  const problem p{sized ? std::atoll(argv[1]) : 4096, sized ? std::atoll(argv[2]) : 768,
                  sized ? std::atoll(argv[3]) : 3072, layout && std::atoi(argv[4]) != 0,
                  layout ? std::atoi(argv[5]) != 0 : true};
  const i64 M = p.M, N = p.N, K = p.K;
  if (!cuda_available()) {
    std::printf("no CUDA device\n");
    return 1;
  }
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<bfloat16> ha(std::size_t(M * K)), hb(std::size_t(N * K));
  for (auto& x : ha) x = bfloat16(u(rng));
  for (auto& x : hb) x = bfloat16(u(rng));
  std::vector<float> ha32, hb32;
  for (const bfloat16 x : ha) ha32.push_back(float(x));
  for (const bfloat16 x : hb) hb32.push_back(float(x));
  bfloat16 *a = device_alloc<bfloat16>(M * K), *b = device_alloc<bfloat16>(N * K), *c = device_alloc<bfloat16>(M * N);
  float *a32 = device_alloc<float>(M * K), *b32 = device_alloc<float>(N * K), *c32 = device_alloc<float>(M * N);
  float *ref = device_alloc<float>(M * N), *mag = device_alloc<float>(M * N);
  MINIBERT_CUDA_CHECK(cudaMemcpy(a, ha.data(), ha.size() * sizeof(bfloat16), cudaMemcpyHostToDevice));
  MINIBERT_CUDA_CHECK(cudaMemcpy(b, hb.data(), hb.size() * sizeof(bfloat16), cudaMemcpyHostToDevice));
  MINIBERT_CUDA_CHECK(cudaMemcpy(a32, ha32.data(), ha32.size() * sizeof(float), cudaMemcpyHostToDevice));
  MINIBERT_CUDA_CHECK(cudaMemcpy(b32, hb32.data(), hb32.size() * sizeof(float), cudaMemcpyHostToDevice));
  const buffers buf{a, b, a32, b32, c, c32};
  const dim3 block(16, 16), grid(unsigned((N + 15) / 16), unsigned((M + 15) / 16));
  reference_kernel<<<grid, block>>>(p, a, b, ref, mag);
  MINIBERT_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<float> want(std::size_t(M * N)), scale(std::size_t(M * N));
  MINIBERT_CUDA_CHECK(cudaMemcpy(want.data(), ref, want.size() * sizeof(float), cudaMemcpyDeviceToHost));
  MINIBERT_CUDA_CHECK(cudaMemcpy(scale.data(), mag, scale.size() * sizeof(float), cudaMemcpyDeviceToHost));

  auto& ctx = current_context<cuda_dev>();
  const cudaStream_t s = minibert::cuda::stream_of(ctx);
  cudaEvent_t start, stop;
  MINIBERT_CUDA_CHECK(cudaEventCreate(&start));
  MINIBERT_CUDA_CHECK(cudaEventCreate(&stop));
  std::printf("C (%lld x %lld) = %s %s, K = %lld, bf16 operands, fp32 accumulation\n", (long long)M, (long long)N,
              p.ta ? "A^T" : "A", p.tb ? "B^T" : "B", (long long)K);
  int failures = 0;
  for (const version& v : versions) {
    // C starts as NaNs (all bits set), so an element a version leaves unwritten fails instead of keeping the last one's
    MINIBERT_CUDA_CHECK(cudaMemset(c, 0xFF, std::size_t(M * N) * sizeof(bfloat16)));
    MINIBERT_CUDA_CHECK(cudaMemset(c32, 0xFF, std::size_t(M * N) * sizeof(float)));
    if (!v.run(ctx, p, buf)) {
      std::printf("%-55s skipped (it does not take this problem)\n", v.name);
      continue;
    }
    backend<cuda_dev>::synchronize(ctx);
    std::vector<float> got(std::size_t(M * N));
    if (v.fp32_out) {
      MINIBERT_CUDA_CHECK(cudaMemcpy(got.data(), c32, got.size() * sizeof(float), cudaMemcpyDeviceToHost));
    } else {
      std::vector<bfloat16> got16(got.size());
      MINIBERT_CUDA_CHECK(cudaMemcpy(got16.data(), c, got16.size() * sizeof(bfloat16), cudaMemcpyDeviceToHost));
      for (std::size_t i = 0; i < got.size(); ++i) got[i] = float(got16[i]);
    }
    // per element: the bf16 rounding of the output (half an ulp, 2^-9 |C|, twice over; fp32 output needs less) plus
    // any fp32 summation order of both sides (K u sum |a_k b_k| each, u = 2^-24); a NaN or a wrong product of a few
    // k exceeds it
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
    for (int r = 0; r < reps; ++r) v.run(ctx, p, buf);
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
