// SPDX-License-Identifier: MIT
#pragma once
/* CUDA row softmax over the last dim with an optional additive mask row per input row, its backward, and the additive
   attention mask (1 -> 0, 0 -> lowest(T)); semantics of cpu/softmax.hpp. One warp per row, fp32 math whatever T.
   The backward optionally applies a dropout keep mask to dy first (the attention backward's fused step). */
#ifndef __CUDACC__
#error "minibert/cuda/softmax.cuh needs nvcc; host code includes <minibert/cuda/backend.hpp>"
#endif

#include <cfloat>  // FLT_MAX
#include <cmath>   // INFINITY
#include <cstdint> // int64_t, int32_t, uint8_t

#include <minibert/backend.hpp>
#include <minibert/cuda/backend.hpp>
#include <minibert/cuda/common.cuh>
#include <minibert/dtype.hpp>
#include <minibert/tensor.hpp>

namespace minibert {
namespace cuda {

/// the lowest finite value of T: -FLT_MAX, -65504 (half), bfloat16 bits 0xFF7F
template <class T> __host__ __device__ __forceinline__ T lowest_finite();
template <> __host__ __device__ __forceinline__ float lowest_finite<float>() { return -FLT_MAX; }
template <> __host__ __device__ __forceinline__ half lowest_finite<half>() { return half::from_bits(0xFBFFu); }
template <> __host__ __device__ __forceinline__ bfloat16 lowest_finite<bfloat16>() {
  return bfloat16::from_bits(0xFF7Fu);
}

// ---------------------------------------------------------------------------------------------------------------------
// CUDA kernels

inline constexpr int softmax_block = 256; // 8 rows (warps) per block

// x (R,L) [+ mask row m(r) (L)] -> y (R,L), m(r) = row_broadcast's map through (lead, row_strides); one warp per row.
// y may alias x (each lane writes only what it read). A row whose entries are all -inf gives zeros, as on the CPU.
template <class T>
__global__ void softmax_forward_kernel(const T* x, const T* __restrict__ mask, dims6 lead, dims6 row_strides, T* y,
                                       i64 R, i64 L) {
  const i64 r = i64(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= R) return;
  const T* xr = x + r * L;
  const T* mr = mask ? mask + strided_offset(r, lead, row_strides) * L : nullptr;
  auto value = [&](i64 j) { return mr ? to_float(xr[j]) + to_float(mr[j]) : to_float(xr[j]); };
  float m = -INFINITY;
  for (i64 j = lane; j < L; j += 32) m = fmaxf(m, value(j));
  m = warp_reduce_max(m);
  T* yr = y + r * L;
  if (m == -INFINITY) {
    for (i64 j = lane; j < L; j += 32) yr[j] = from_float<T>(0.0f);
    return;
  }
  float s = 0.0f;
  for (i64 j = lane; j < L; j += 32) s += expf(value(j) - m);
  const float inv = 1.0f / warp_reduce_sum(s);
  for (i64 j = lane; j < L; j += 32) yr[j] = from_float<T>(expf(value(j) - m) * inv);
}

// dx = y * (g - rowsum(g * y)), g = dy, or with a keep mask g = keep ? dy * keep_scale : 0; one warp per row.
// dx may alias dy.
template <class T>
__global__ void softmax_backward_kernel(const T* __restrict__ y, const T* dy, const std::uint8_t* __restrict__ keep,
                                        float keep_scale, T* dx, i64 R, i64 L) {
  const i64 r = i64(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= R) return;
  const T* yr = y + r * L;
  const T* gr = dy + r * L;
  const std::uint8_t* kr = keep ? keep + r * L : nullptr;
  auto grad = [&](i64 j) { return kr ? (kr[j] ? to_float(gr[j]) * keep_scale : 0.0f) : to_float(gr[j]); };
  float dot = 0.0f;
  for (i64 j = lane; j < L; j += 32) dot += to_float(yr[j]) * grad(j);
  dot = warp_reduce_sum(dot);
  T* dr = dx + r * L;
  for (i64 j = lane; j < L; j += 32) dr[j] = from_float<T>(to_float(yr[j]) * (grad(j) - dot));
}

// out (n) = mask ? 0 : lowest(T)
template <class T>
__global__ void additive_mask_kernel(i64 n, const std::int32_t* __restrict__ mask, T* __restrict__ out) {
  const T lowest = lowest_finite<T>();
  for (i64 i = global_thread_index(); i < n; i += global_thread_count())
    out[i] = mask[i] ? from_float<T>(0.0f) : lowest;
}

// ---------------------------------------------------------------------------------------------------------------------
// launchers shared with attention.cuh

template <class T>
void softmax_forward(cudaStream_t stream, const T* x, const T* mask, const dims6& lead, const dims6& row_strides, T* y,
                     i64 R, i64 L) {
  if (R <= 0 || L <= 0) return;
  constexpr int rows_per_block = softmax_block / 32;
  const auto blocks = static_cast<unsigned>(ceil_div(R, rows_per_block));
  softmax_forward_kernel<<<blocks, softmax_block, 0, stream>>>(x, mask, lead, row_strides, y, R, L);
  MINIBERT_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void softmax_backward(cudaStream_t stream, const T* y, const T* dy, const std::uint8_t* keep, float keep_scale, T* dx,
                      i64 R, i64 L) {
  if (R <= 0 || L <= 0) return;
  constexpr int rows_per_block = softmax_block / 32;
  const auto blocks = static_cast<unsigned>(ceil_div(R, rows_per_block));
  softmax_backward_kernel<<<blocks, softmax_block, 0, stream>>>(y, dy, keep, keep_scale, dx, R, L);
  MINIBERT_CUDA_CHECK(cudaGetLastError());
}

} // namespace cuda

// ---------------------------------------------------------------------------------------------------------------------
// kernel launchers

/// x (R,L) [+ mask (., L) row rows(r)] -> y (R,L); mask may be null
template <class T>
void backend<device::cuda>::softmax_forward(ctx_t& ctx, const T* x, const T* mask, const row_broadcast& rows, T* y,
                                            i64 R, i64 L) {
  MINIBERT_CHECK(!mask || rows.lead.rank() == rows.row_strides.rank(), "softmax",
                 "mask row map: " << rows.lead.rank() << " dims but " << rows.row_strides.rank() << " strides");
  const cuda::dims6 lead = cuda::to_dims6(rows.lead), row_strides = cuda::to_dims6(rows.row_strides);
  cuda::softmax_forward(cuda::stream_of(ctx), x, mask, lead, row_strides, y, R, L);
}

/// y, dy (R,L) -> dx (R,L) = y * (dy - rowsum(dy * y)); dx may alias dy
template <class T>
void backend<device::cuda>::softmax_backward(ctx_t& ctx, const T* y, const T* dy, T* dx, i64 R, i64 L) {
  cuda::softmax_backward(cuda::stream_of(ctx), y, dy, static_cast<const std::uint8_t*>(nullptr), 1.0f, dx, R, L);
}

/// mask (n) int32 -> out (n): 1 -> 0, 0 -> lowest(T)
template <class T> void backend<device::cuda>::additive_mask(ctx_t& ctx, const std::int32_t* mask, T* out, i64 n) {
  cuda::launch_1d(cuda::additive_mask_kernel<T>, n, cuda::stream_of(ctx), mask, out);
}

} // namespace minibert
