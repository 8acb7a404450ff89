// SPDX-License-Identifier: MIT
#pragma once
/* What every CUDA kernel header shares (llmc/cuda_common.h): MINIBERT_CUDA_CHECK / MINIBERT_CUBLAS_CHECK, which throw
   minibert::error; the context's stream; fp32 loads and stores of the storage types (half and bfloat16 through the
   hardware conversions, both round-to-nearest-even like dtype.hpp's); 1-D launch helpers over grid-stride loops;
   warp reductions; and dims6, a shape passed to a kernel by value. */

#ifndef __CUDACC__
#error "minibert/cuda/common.cuh needs nvcc; host code includes <minibert/cuda/backend.hpp>"
#endif

#include <cstdint>     // int64_t, uint16_t
#include <optional>    // optional (once_per_device)
#include <string>      // string, to_string (error messages)
#include <type_traits> // is_same_v

#include <cublasLt.h>     // cublasStatus_t, cublasLtGetStatusString
#include <cuda_bf16.h>    // __nv_bfloat16 conversions
#include <cuda_fp16.h>    // __half conversions
#include <cuda_runtime.h> // cudaError_t, cudaStream_t, launches

#include <minibert/backend.hpp>
#include <minibert/cuda/backend.hpp>
#include <minibert/dtype.hpp>
#include <minibert/error.hpp>
#include <minibert/tensor.hpp>

/// Throws minibert::error("cuda", "<expr> failed: <reason> at file:line") when a CUDA runtime call fails.
#define MINIBERT_CUDA_CHECK(expr) ::minibert::cuda::check_cuda((expr), #expr, __FILE__, __LINE__)
/// Throws minibert::error("cuda", "<expr> failed: <reason> at file:line") when a cuBLAS(Lt) call fails.
#define MINIBERT_CUBLAS_CHECK(expr) ::minibert::cuda::check_cublas((expr), #expr, __FILE__, __LINE__)

namespace minibert::cuda {

using i64 = std::int64_t;

// ---------------------------------------------------------------------------------------------------------------------
// errors

inline void check_cuda(cudaError_t e, const char* expr, const char* file, int line) {
  if (e == cudaSuccess) return;
  // Clear a non-sticky error, or the next launch check would report it again (PyTorch's C10_CUDA_CHECK does too).
  (void)cudaGetLastError();
  throw error("cuda", std::string(expr) + " failed: " + cudaGetErrorString(e) + " at " + file + ":" +
                          std::to_string(line));
}
inline void check_cublas(cublasStatus_t s, const char* expr, const char* file, int line) {
  if (s == CUBLAS_STATUS_SUCCESS) return;
  throw error("cuda", std::string(expr) + " failed: " + cublasLtGetStatusString(s) + " at " + file + ":" +
                          std::to_string(line));
}

/// @brief the stream a context's work is queued on
inline cudaStream_t stream_of(const context<device::cuda>& ctx) { return static_cast<cudaStream_t>(ctx.stream); }
/// @brief the context's cuBLASLt handle
inline cublasLtHandle_t blaslt_of(const context<device::cuda>& ctx) {
  return static_cast<cublasLtHandle_t>(ctx.blaslt);
}

// ---------------------------------------------------------------------------------------------------------------------
// element conversions: storage type <-> fp32 (acc_t<T>; fp64 for double)

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(half x) { return __half2float(__ushort_as_half(x.bits)); }
__device__ __forceinline__ float to_float(bfloat16 x) { return __bfloat162float(__ushort_as_bfloat16(x.bits)); }

template <class T> __device__ __forceinline__ T from_float(float f);
template <> __device__ __forceinline__ float from_float<float>(float f) { return f; }
template <> __device__ __forceinline__ half from_float<half>(float f) {
  return half::from_bits(__half_as_ushort(__float2half_rn(f)));
}
template <> __device__ __forceinline__ bfloat16 from_float<bfloat16>(float f) {
  return bfloat16::from_bits(__bfloat16_as_ushort(__float2bfloat16_rn(f)));
}

/// @brief x in its accumulation type (float for float/half/bfloat16, double for double)
template <class T> __device__ __forceinline__ acc_t<T> to_acc(T x) {
  if constexpr (std::is_same_v<T, double>) return x;
  else return to_float(x);
}
/// @brief an accumulation-type value rounded to the storage type
template <class T> __device__ __forceinline__ T from_acc(acc_t<T> x) {
  if constexpr (std::is_same_v<T, double>) return x;
  else return from_float<T>(x);
}

// ---------------------------------------------------------------------------------------------------------------------
// launches

/// threads per block of the 1-D kernels
inline constexpr int block_1d = 256;
/// most blocks of a 1-D launch; kernels loop over the rest (grid-stride), so any n fits
inline constexpr i64 max_grid_1d = i64(1) << 20;

/// @brief ceil(a / b) for positive b
MINIBERT_HOST_DEVICE i64 ceil_div(i64 a, i64 b) { return (a + b - 1) / b; }
/// @brief blocks of a grid-stride 1-D launch over n elements (n > 0)
inline unsigned grid_size(i64 n, int block = block_1d) {
  const i64 g = ceil_div(n, block);
  return static_cast<unsigned>(g < max_grid_1d ? g : max_grid_1d);
}
/// @brief kernel<<<grid_size(n), block_1d, 0, stream>>>(n, args...) for a grid-stride kernel taking n first;
/// nothing when n <= 0 (a 0-block launch is an error). Checks the launch.
template <class... KArgs, class... Args>
void launch_1d(void (*kernel)(i64, KArgs...), i64 n, cudaStream_t stream, Args&&... args) {
  if (n <= 0) return;
  kernel<<<grid_size(n), block_1d, 0, stream>>>(n, static_cast<KArgs>(args)...);
  MINIBERT_CUDA_CHECK(cudaGetLastError());
}

/// @brief the first index of this thread in a grid-stride loop, and the loop's step
__device__ __forceinline__ i64 global_thread_index() { return i64(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ i64 global_thread_count() { return i64(gridDim.x) * blockDim.x; }

// ---------------------------------------------------------------------------------------------------------------------
// warp reductions (xor butterfly: every lane ends with the same value, summed in the same order on every run)

template <class V> __device__ __forceinline__ V warp_reduce_sum(V v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}
/// @brief sum of v over the block in double, valid in thread 0; blockDim.x a multiple of 32 (at most 1024). The tree
/// is fixed by blockDim.x, so the result is reproducible; callable several times in a row.
__device__ __forceinline__ double block_reduce_sum(double v) {
  __shared__ double warp_sums[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_reduce_sum(v);
  __syncthreads(); // warp_sums may still be read by a previous call
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  v = lane < warps ? warp_sums[lane] : 0.0;
  return warp == 0 ? warp_reduce_sum(v) : v;
}
template <class V> __device__ __forceinline__ V warp_reduce_max(V v) {
  for (int off = 16; off > 0; off >>= 1) {
    const V o = __shfl_xor_sync(0xffffffffu, v, off);
    v = o > v ? o : v;
  }
  return v;
}

// ---------------------------------------------------------------------------------------------------------------------
// shapes in kernels

/// @brief a shape or strides (up to max_rank dims) by value, for kernel arguments
struct dims6 {
  int rank;
  long long d[max_rank];
};
/// @brief dims6 of a host shape
inline dims6 to_dims6(const shape& s) {
  dims6 r{};
  r.rank = s.rank();
  for (int i = 0; i < s.rank(); ++i) r.d[i] = s[i];
  return r;
}
/// @brief the element offset, through strides, of row-major linear index i of sizes.
/// The loop is unrolled over max_rank with constant indices, so the dims stay in registers (a runtime index into a
/// kernel's struct argument would copy it to local memory).
__device__ __forceinline__ i64 strided_offset(i64 i, const dims6& sizes, const dims6& strides) {
  i64 off = 0;
#pragma unroll
  for (int k = max_rank - 1; k >= 0; --k) {
    if (k < sizes.rank) {
      const i64 n = sizes.d[k];
      off += (i % n) * strides.d[k];
      i /= n;
    }
  }
  return off;
}

/// @brief compute(device) for the current device, worked out once per device and kept (one cache per call site: each
/// lambda type has its own); `fallback` when the current device cannot be queried
template <class F> auto once_per_device(F compute, decltype(compute(0)) fallback) {
  constexpr int max_devices = 64;
  static std::optional<decltype(compute(0))> known[max_devices];
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= max_devices) return fallback;
  if (!known[dev]) known[dev] = compute(dev);
  return *known[dev];
}

/// @brief `kernel` allowed `bytes` of dynamic shared memory on the current device (once per device and kernel: a
/// template per kernel, since kernels of one signature share a type)
template <auto kernel> void allow_dynamic_shared_memory(int bytes) {
  constexpr int max_devices = 64;
  static bool done[max_devices] = {};
  int dev = 0;
  MINIBERT_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev >= 0 && dev < max_devices && done[dev]) return;
  MINIBERT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  if (dev >= 0 && dev < max_devices) done[dev] = true;
}

} // namespace minibert::cuda
