// SPDX-License-Identifier: MIT
// Workbench of the fused attention (as llm.c's dev/cuda/ files): the reference, every version, validation and timing
// in one program, so that the next version is one more entry in `versions` below.
//   attention_workbench [B T]      default 32 512 (bert-base: 12 heads of size 64, bf16)
// For each version: the forward on q, k, v column blocks of one (B,T,3C) buffer, no mask, no dropout, checked against
// the reference kernel (fp32, one thread per query row: max |error| over all elements, relative to sum_j P_ij |v_j|),
// then the forward and the forward + backward timed with CUDA events over 20 launches, in TFLOP/s (forward
// 4 B NH T^2 HS, backward 2.5 times that), beside the materialized path (cuBLASLt GEMMs and a softmax kernel) in the
// same run.
// Build: cmake -DMINIBERT_BUILD_BENCHMARKS=ON, target attention_workbench (needs the CUDA backend); run on a GPU.

#include <cmath>   // sqrt
#include <cstdio>  // printf
#include <cstdlib> // atoll
#include <random>  // mt19937
#include <vector>  // vector

#include <minibert/cuda/backend_impl.cuh>

namespace {
using namespace minibert;
using cuda_dev = device::cuda;
using i64 = std::int64_t;
constexpr i64 NH = 12, HS = 64, C = NH * HS;

// version 0, the spec: one thread per (b, h, i) query row, fp32, softmax over every key in two passes.
// out (B,T,C) fp32, mag (B,T,C) = sum_j P_ij |v_jd| (the error scale)
__global__ void reference_kernel(i64 B, i64 Tn, const bfloat16* qkv, float* out, float* mag) {
  const i64 r = i64(blockIdx.x) * blockDim.x + threadIdx.x; // (b, h, i)
  if (r >= B * NH * Tn) return;
  const i64 i = r % Tn, h = (r / Tn) % NH, b = r / (Tn * NH), ld = 3 * C;
  const bfloat16* q = qkv + (b * Tn + i) * ld + h * HS;
  auto score = [&](i64 j) {
    const bfloat16* k = qkv + (b * Tn + j) * ld + C + h * HS;
    float s = 0.f;
    for (int d = 0; d < HS; ++d) s += minibert::cuda::to_float(q[d]) * minibert::cuda::to_float(k[d]);
    return s / sqrtf(float(HS));
  };
  float m = -INFINITY, l = 0.f;
  for (i64 j = 0; j < Tn; ++j) m = fmaxf(m, score(j));
  for (i64 j = 0; j < Tn; ++j) l += expf(score(j) - m);
  float* o = out + (b * Tn + i) * C + h * HS;
  float* mg = mag + (b * Tn + i) * C + h * HS;
  for (int d = 0; d < HS; ++d) o[d] = mg[d] = 0.f;
  for (i64 j = 0; j < Tn; ++j) {
    const float p = expf(score(j) - m) / l;
    const bfloat16* v = qkv + (b * Tn + j) * ld + 2 * C + h * HS;
    for (int d = 0; d < HS; ++d) {
      o[d] += p * minibert::cuda::to_float(v[d]);
      mg[d] += p * fabsf(minibert::cuda::to_float(v[d]));
    }
  }
}

struct version {
  const char* name;
  attention_provider provider; // the backend's path this version runs
};
// version 1: attention_flash.cuh as it is (the next one goes here, e.g. ldmatrix + cp.async double buffering)
// (a version whose provider declines the problem, cuDNN where the program was built without it, runs materialized
// and is printed so)
const version versions[] = {{"flash v1 (mma.sync, 64 x 64 tiles)", attention_provider::flash},
                            {"cuDNN fused SDPA (baseline)", attention_provider::cudnn},
                            {"materialized (cuBLASLt + softmax)", attention_provider::materialized}};

template <class T> T* device_alloc(i64 n) {
  void* p = nullptr;
  MINIBERT_CUDA_CHECK(cudaMalloc(&p, std::size_t(n) * sizeof(T)));
  return static_cast<T*>(p);
}

} // namespace

int main(int argc, char** argv) {
  const i64 B = argc > 2 ? std::atoll(argv[1]) : 32, Tn = argc > 2 ? std::atoll(argv[2]) : 512;
  if (!cuda_available()) {
    std::printf("no CUDA device\n");
    return 1;
  }
  auto& ctx = current_context<cuda_dev>();
  cudaStream_t stream = minibert::cuda::stream_of(ctx);
  std::vector<bfloat16> h(std::size_t(B * Tn * 3 * C));
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (auto& x : h) x = bfloat16(u(rng));
  bfloat16 *qkv = device_alloc<bfloat16>(B * Tn * 3 * C), *out = device_alloc<bfloat16>(B * Tn * C);
  bfloat16 *dout = device_alloc<bfloat16>(B * Tn * C), *grads = device_alloc<bfloat16>(B * Tn * 3 * C);
  float *want = device_alloc<float>(B * Tn * C), *mag = device_alloc<float>(B * Tn * C);
  MINIBERT_CUDA_CHECK(cudaMemcpy(qkv, h.data(), h.size() * sizeof(bfloat16), cudaMemcpyHostToDevice));
  backend<cuda_dev>::fill(ctx, dout, B * Tn * C, bfloat16(0.01f));
  const i64 rows = B * NH * Tn;
  reference_kernel<<<unsigned((rows + 127) / 128), 128, 0, stream>>>(B, Tn, qkv, want, mag);
  MINIBERT_CUDA_CHECK(cudaGetLastError());
  std::vector<float> hw(std::size_t(B * Tn * C)), hm(hw.size());
  std::vector<bfloat16> got(hw.size());
  MINIBERT_CUDA_CHECK(cudaStreamSynchronize(stream));
  MINIBERT_CUDA_CHECK(cudaMemcpy(hw.data(), want, hw.size() * sizeof(float), cudaMemcpyDeviceToHost));
  MINIBERT_CUDA_CHECK(cudaMemcpy(hm.data(), mag, hm.size() * sizeof(float), cudaMemcpyDeviceToHost));
  const attention_dims d{B, Tn, C, NH, 3 * C};
  const double fwd_flops = 4.0 * double(B * NH) * double(Tn) * double(Tn) * double(HS);
  std::printf("attention B=%lld T=%lld NH=%lld HS=%lld bf16, no mask, no dropout\n", (long long)B, (long long)Tn,
              (long long)NH, (long long)HS);
  for (const version& v : versions) {
    ctx.attention = v.provider;
    backend<cuda_dev>::attention_saved<bfloat16> saved;
    const bfloat16* no_mask = nullptr;
    auto forward = [&] {
      backend<cuda_dev>::attention_forward(ctx, d, qkv, qkv + C, qkv + 2 * C, no_mask, out, saved, 0.0f, 1, 0);
    };
    auto backward = [&] {
      backend<cuda_dev>::attention_backward(ctx, d, dout, qkv, qkv + C, qkv + 2 * C, no_mask, saved, 0.0f, grads,
                                            grads + C, grads + 2 * C);
    };
    forward();
    const bool declined = saved.provider != v.provider;
    MINIBERT_CUDA_CHECK(cudaStreamSynchronize(stream));
    MINIBERT_CUDA_CHECK(cudaMemcpy(got.data(), out, got.size() * sizeof(bfloat16), cudaMemcpyDeviceToHost));
    double worst = 0;
    for (std::size_t i = 0; i < got.size(); ++i)
      worst = std::max(worst, std::fabs(double(float(got[i])) - hw[i]) / (double(hm[i]) + 1e-30));
    auto time_ms = [&](auto&& body) {
      cudaEvent_t e0, e1;
      cudaEventCreate(&e0);
      cudaEventCreate(&e1);
      body(); // warm-up
      cudaEventRecord(e0, stream);
      constexpr int reps = 20;
      for (int r = 0; r < reps; ++r) body();
      cudaEventRecord(e1, stream);
      cudaEventSynchronize(e1);
      float ms = 0;
      cudaEventElapsedTime(&ms, e0, e1);
      cudaEventDestroy(e0);
      cudaEventDestroy(e1);
      return double(ms) / reps;
    };
    const double f_ms = time_ms(forward), fb_ms = time_ms([&] { forward(); backward(); });
    std::printf("  %-36s max rel. error %.2e   forward %8.3f ms %7.1f TFLOP/s   "
                "forward+backward %8.3f ms %7.1f TFLOP/s%s\n",
                v.name, worst, f_ms, fwd_flops / (f_ms * 1e9), fb_ms, 3.5 * fwd_flops / (fb_ms * 1e9),
                declined ? "   (declined: materialized ran)" : "");
  }
  return 0;
}
