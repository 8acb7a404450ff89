// SPDX-License-Identifier: MIT
// Workbench of the own GEMM (as llm.c's dev/cuda/ files): the reference, every version, validation and timing in one
// program, so that the next version is one more entry in `versions` below.
//   gemm_workbench [M N K]        default 4096 768 3072 (bert-base's FFN down projection at 32 x 128 tokens)
// For each version: C = A B^T on bf16 operands (A (M,K), B (N,K) row-major, fp32 accumulation, bf16 out), checked
// against the fp32 reference kernel (max relative error over all elements, against |A||B|^T), then timed with CUDA
// events over 50 launches, in TFLOP/s, beside cuBLASLt (the backend's cuBLASLt path) in the same run.
// Build: cmake -DMINIBERT_BUILD_BENCHMARKS=ON, target gemm_workbench (needs the CUDA backend); run on a GPU.

#include <cmath>   // fabs
#include <cstdio>  // printf
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

struct version {
  const char* name;
  void (*run)(context<cuda_dev>&, i64, i64, i64, const bfloat16*, const bfloat16*, bfloat16*);
};

void run_own(context<cuda_dev>& ctx, i64 M, i64 N, i64 K, const bfloat16* a, const bfloat16* b, bfloat16* c) {
  ctx.gemm = gemm_provider::own;
  backend<cuda_dev>::gemm(ctx, false, true, M, N, K, 1.f, a, K, b, K, 0.f, c, N);
}
void run_cublaslt(context<cuda_dev>& ctx, i64 M, i64 N, i64 K, const bfloat16* a, const bfloat16* b, bfloat16* c) {
  ctx.gemm = gemm_provider::cublaslt;
  backend<cuda_dev>::gemm(ctx, false, true, M, N, K, 1.f, a, K, b, K, 0.f, c, N);
}

const version versions[] = {
    {"own v1 (mma.sync m16n8k16, 128x128x32, no pipeline)", run_own},
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
    v.run(ctx, M, N, K, a, b, c);
    backend<cuda_dev>::synchronize(ctx);
    std::vector<bfloat16> got(std::size_t(M * N));
    MINIBERT_CUDA_CHECK(cudaMemcpy(got.data(), c, got.size() * sizeof(bfloat16), cudaMemcpyDeviceToHost));
    double worst = 0;
    for (std::size_t i = 0; i < got.size(); ++i)
      worst = std::max(worst, std::fabs(double(float(got[i])) - want[i]) / std::max(1e-30, double(scale[i])));
    const bool ok = worst <= 1.0 / 128; // bf16 output rounding (2^-9) plus fp32 summation-order differences
    failures += ok ? 0 : 1;
    constexpr int reps = 50;
    MINIBERT_CUDA_CHECK(cudaEventRecord(start, s));
    for (int r = 0; r < reps; ++r) v.run(ctx, M, N, K, a, b, c);
    MINIBERT_CUDA_CHECK(cudaEventRecord(stop, s));
    MINIBERT_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    MINIBERT_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    const double tflops = 2.0 * double(M) * double(N) * double(K) * reps / (double(ms) * 1e-3) * 1e-12;
    std::printf("%-55s %s (max error %.2e of |A||B|)  %8.1f TFLOP/s\n", v.name, ok ? "ok    " : "WRONG ", worst,
                tflops);
  }
  return failures == 0 ? 0 : 1;
}
