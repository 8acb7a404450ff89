// SPDX-License-Identifier: MIT
#pragma once
/* CUDA layer normalization over the last dim (Ba et al. 2016), forward and backward side by side (llm.c's
   llmc/layernorm.cuh): one warp per row, two-pass mean and biased variance in fp32 as cpu/layer_norm.hpp. The weight
   and bias gradients are column sums taken without atomics: partial sums over fixed row chunks, then one fixed-order
   pass over the chunks, so they are bit-reproducible run to run. */
#ifndef __CUDACC__
#error "minibert/cuda/layer_norm.cuh needs nvcc; host code includes <minibert/cuda/backend.hpp>"
#endif

#include <algorithm> // max
#include <cstdint>   // int64_t

#include <minibert/backend.hpp>
#include <minibert/cuda/backend.hpp>
#include <minibert/cuda/common.cuh>

namespace minibert {
namespace cuda {

// ---------------------------------------------------------------------------------------------------------------------
// CUDA kernels

inline constexpr int layer_norm_block = 256;     // 8 rows (warps) per block
inline constexpr int layer_norm_col_block = 256; // columns per block of the weight/bias gradient kernels

// inp (N,C), weight (C), bias (C) -> out (N,C), mean (N), rstd (N); one warp per row
template <class T>
__global__ void layer_norm_forward_kernel(const T* __restrict__ inp, const T* __restrict__ weight,
                                          const T* __restrict__ bias, T* __restrict__ out, float* __restrict__ mean,
                                          float* __restrict__ rstd, i64 N, i64 C, float eps) {
  const i64 row = i64(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= N) return;
  const T* x = inp + row * C;
  float s = 0.0f;
  for (i64 c = lane; c < C; c += 32) s += to_float(x[c]);
  const float m = warp_reduce_sum(s) / float(C);
  float v = 0.0f; // second pass over the (cached) row: no cancellation
  for (i64 c = lane; c < C; c += 32) {
    const float d = to_float(x[c]) - m;
    v += d * d;
  }
  const float r = 1.0f / sqrtf(warp_reduce_sum(v) / float(C) + eps);
  T* o = out + row * C;
  for (i64 c = lane; c < C; c += 32)
    o[c] = from_float<T>((to_float(x[c]) - m) * r * to_float(weight[c]) + to_float(bias[c]));
  if (lane == 0) {
    if (mean) mean[row] = m;
    if (rstd) rstd[row] = r;
  }
}

// dinp (N,C) = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)), dnorm = dout * weight; one warp per row.
// Each lane reads dout[c] before writing dinp[c], so dinp may alias dout.
template <class T>
__global__ void layer_norm_backward_kernel(const T* dout, const T* __restrict__ inp, const T* __restrict__ weight,
                                           const float* __restrict__ mean, const float* __restrict__ rstd, T* dinp,
                                           i64 N, i64 C) {
  const i64 row = i64(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= N) return;
  const T* x = inp + row * C;
  const T* g = dout + row * C;
  const float m = mean[row], r = rstd[row];
  float sdn = 0.0f, sdnn = 0.0f;
  for (i64 c = lane; c < C; c += 32) {
    const float dn = to_float(g[c]) * to_float(weight[c]);
    sdn += dn;
    sdnn += dn * ((to_float(x[c]) - m) * r);
  }
  const float mdn = warp_reduce_sum(sdn) / float(C), mdnn = warp_reduce_sum(sdnn) / float(C);
  T* d = dinp + row * C;
  for (i64 c = lane; c < C; c += 32) {
    const float norm = (to_float(x[c]) - m) * r, dn = to_float(g[c]) * to_float(weight[c]);
    d[c] = from_float<T>(r * (dn - mdn - norm * mdnn));
  }
}

// partial column sums over row chunk blockIdx.y: pdw[chunk, c] = sum dout * norm, pdb[chunk, c] = sum dout;
// grid (ceil(C/256), chunks), consecutive threads read consecutive columns (coalesced)
template <class T>
__global__ void layer_norm_param_partial_kernel(const T* __restrict__ dout, const T* __restrict__ inp,
                                                const float* __restrict__ mean, const float* __restrict__ rstd,
                                                float* __restrict__ pdw, float* __restrict__ pdb, i64 N, i64 C,
                                                i64 rows_per_chunk) {
  const i64 c = i64(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const i64 r0 = i64(blockIdx.y) * rows_per_chunk;
  const i64 r1 = r0 + rows_per_chunk < N ? r0 + rows_per_chunk : N;
  float dw = 0.0f, db = 0.0f;
  for (i64 i = r0; i < r1; ++i) {
    const float g = to_float(dout[i * C + c]);
    dw += g * ((to_float(inp[i * C + c]) - mean[i]) * rstd[i]);
    db += g;
  }
  pdw[i64(blockIdx.y) * C + c] = dw;
  pdb[i64(blockIdx.y) * C + c] = db;
}

// dweight[c] += sum over chunks (in order) of pdw[., c]; likewise dbias; null outputs skipped
template <class T>
__global__ void layer_norm_param_reduce_kernel(const float* __restrict__ pdw, const float* __restrict__ pdb,
                                               T* __restrict__ dweight, T* __restrict__ dbias, i64 chunks, i64 C) {
  const i64 c = i64(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float dw = 0.0f, db = 0.0f;
  for (i64 k = 0; k < chunks; ++k) {
    dw += pdw[k * C + c];
    db += pdb[k * C + c];
  }
  if (dweight) dweight[c] = from_float<T>(to_float(dweight[c]) + dw);
  if (dbias) dbias[c] = from_float<T>(to_float(dbias[c]) + db);
}

// rows per chunk of the parameter gradients: a function of N only (never of the device), so the summation order, and
// hence the result, is the same on every GPU; at least 32 rows per thread, at most 1024 chunks
inline i64 layer_norm_rows_per_chunk(i64 N) { return std::max<i64>(32, ceil_div(N, 1024)); }

} // namespace cuda

// ---------------------------------------------------------------------------------------------------------------------
// kernel launchers

/// inp (N,C), weight (C), bias (C) -> out (N,C), mean (N), rstd (N)
template <class T>
void backend<device::cuda>::layer_norm_forward(ctx_t& ctx, const T* inp, const T* w, const T* b, T* out, A<T>* mean,
                                               A<T>* rstd, i64 N, i64 C, double eps) {
  if (N <= 0) return;
  constexpr int rows_per_block = cuda::layer_norm_block / 32;
  const auto blocks = static_cast<unsigned>(cuda::ceil_div(N, rows_per_block));
  cuda::layer_norm_forward_kernel<<<blocks, cuda::layer_norm_block, 0, cuda::stream_of(ctx)>>>(
      inp, w, b, out, mean, rstd, N, C, static_cast<float>(eps));
  MINIBERT_CUDA_CHECK(cudaGetLastError());
}

/// dout, inp (N,C), weight (C), mean, rstd (N) -> dinp (N,C) overwritten; dweight, dbias (C) += unless null
template <class T>
void backend<device::cuda>::layer_norm_backward(ctx_t& ctx, const T* dout, const T* inp, const T* w, const A<T>* mean,
                                                const A<T>* rstd, T* dinp, T* dw, T* db, i64 N, i64 C) {
  if (N <= 0 || C <= 0) return;
  cudaStream_t stream = cuda::stream_of(ctx);
  // parameter gradients first: they read dout, which dinp may overwrite
  if (dw || db) {
    const i64 rows = cuda::layer_norm_rows_per_chunk(N), chunks = cuda::ceil_div(N, rows);
    float* partial = ctx.scratch<float>(2 * chunks * C); // (chunks, C) for dweight, then for dbias
    const dim3 grid(static_cast<unsigned>(cuda::ceil_div(C, cuda::layer_norm_col_block)),
                    static_cast<unsigned>(chunks));
    cuda::layer_norm_param_partial_kernel<<<grid, cuda::layer_norm_col_block, 0, stream>>>(
        dout, inp, mean, rstd, partial, partial + chunks * C, N, C, rows);
    MINIBERT_CUDA_CHECK(cudaGetLastError());
    cuda::layer_norm_param_reduce_kernel<<<grid.x, cuda::layer_norm_col_block, 0, stream>>>(
        partial, partial + chunks * C, dw, db, chunks, C);
    MINIBERT_CUDA_CHECK(cudaGetLastError());
  }
  constexpr int rows_per_block = cuda::layer_norm_block / 32;
  const auto blocks = static_cast<unsigned>(cuda::ceil_div(N, rows_per_block));
  cuda::layer_norm_backward_kernel<<<blocks, cuda::layer_norm_block, 0, stream>>>(dout, inp, w, mean, rstd, dinp, N,
                                                                                  C);
  MINIBERT_CUDA_CHECK(cudaGetLastError());
}

} // namespace minibert
