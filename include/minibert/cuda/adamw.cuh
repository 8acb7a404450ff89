// SPDX-License-Identifier: MIT
#pragma once
/* CUDA kernels of the optimizer (llm.c's llmc/adamw.cuh): the fused multi-tensor AdamW update (one launch for a
   list of parameters, as torch's _multi_tensor_adamw) on fp32 master weights in
   cpu/adamw.hpp's (torch's) operation order, with round-to-nearest intrinsics so that nvcc contracts nothing into an
   FMA the CPU does not do; the sum of squares of a gradient (double, deterministic two-pass reduction) that
   clip_grad_norm adds up over parameters; the clip itself, whose coefficient is read from device memory; and the
   unscale-and-check of fp16 loss scaling (torch's _amp_foreach_non_finite_check_and_unscale_ kernel). */
#ifndef __CUDACC__
#error "minibert/cuda/adamw.cuh needs nvcc; host code includes <minibert/cuda/backend.hpp>"
#endif

#include <algorithm>   // min, max
#include <cstdint>     // int64_t
#include <span>        // span
#include <type_traits> // is_same_v
#include <vector>      // vector (the chunk list)

#include <minibert/backend.hpp>
#include <minibert/cuda/backend.hpp>
#include <minibert/cuda/common.cuh>
#include <minibert/cuda/memory.cuh> // staged_upload

namespace minibert {
namespace cuda {

// ---------------------------------------------------------------------------------------------------------------------
// CUDA kernels

inline constexpr int adamw_block = 256;
inline constexpr int sum_squares_max_partials = 1024; // a function of n only: the same sums on every device

inline constexpr i64 adamw_chunk = i64(1) << 16; // elements of one tensor per block of the multi-tensor launch

/// @brief one block's share of a multi-tensor AdamW launch: elements [start, start + adamw_chunk) of a tensor
struct adamw_chunk_ref {
  std::int64_t tensor, start;
};

// One AdamW step per element over a list of tensors, one block per chunk (apex's multi_tensor_apply): master p, m, v
// (fp32) and grad g of chunk b's tensor; its param = T(p) unless the param is the master itself
//   p = p * decay;  m = m * beta1 + (1-beta1) * g;  v = v * beta2 + (1-beta2) * g * g;
//   p = p + (neg_step_size * m) / (sqrt(v) / bias_correction2_sqrt + eps)
template <class T>
__global__ void adamw_kernel(const adamw_tensor<T>* __restrict__ tensors, const adamw_chunk_ref* __restrict__ chunks,
                             adamw_coefficients<float> c) {
  const adamw_chunk_ref ch = chunks[blockIdx.x];
  const adamw_tensor<T> t = tensors[ch.tensor];
  const bool write_param = t.param && static_cast<const void*>(t.param) != static_cast<const void*>(t.master);
  const i64 end = min(t.n, ch.start + adamw_chunk);
  for (i64 i = ch.start + threadIdx.x; i < end; i += blockDim.x) {
    const float gi = to_float(t.grad[i]);
    const float p = __fmul_rn(t.master[i], c.decay);
    const float mi = __fadd_rn(__fmul_rn(t.exp_avg[i], c.beta1), __fmul_rn(c.one_minus_beta1, gi));
    const float vi =
        __fadd_rn(__fmul_rn(t.exp_avg_sq[i], c.beta2), __fmul_rn(__fmul_rn(c.one_minus_beta2, gi), gi));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), c.bias_correction2_sqrt), c.eps);
    const float pn = __fadd_rn(p, __fdiv_rn(__fmul_rn(c.neg_step_size, mi), denom));
    t.master[i] = pn;
    t.exp_avg[i] = mi;
    t.exp_avg_sq[i] = vi;
    if (write_param) t.param[i] = from_float<T>(pn);
  }
}

// partial[b] = sum of x^2 (in double) over block b's grid-stride share of x (n)
template <class T>
__global__ void sum_squares_partial_kernel(const T* __restrict__ x, double* __restrict__ partial, i64 n) {
  double s = 0.0;
  for (i64 i = global_thread_index(); i < n; i += global_thread_count()) {
    const double xi = double(to_float(x[i]));
    s += xi * xi;
  }
  s = block_reduce_sum(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// one block: total[0] += sum of the partials, in a fixed order (Acc = double; a template, so no ODR clash)
template <class Acc>
__global__ void sum_squares_reduce_kernel(const Acc* __restrict__ partial, int partials, Acc* __restrict__ total) {
  Acc s = 0.0;
  for (int b = threadIdx.x; b < partials; b += blockDim.x) s += partial[b];
  s = block_reduce_sum(s);
  if (threadIdx.x == 0) total[0] += s;
}

// x (n) *= T(clip_coefficient(total_sq, max_norm)) when that is < 1; every thread reads the device scalar
template <class T>
__global__ void clip_by_norm_kernel(i64 n, T* __restrict__ x, const double* __restrict__ total_sq, double max_norm) {
  const double coef = clip_coefficient(total_sq[0], max_norm);
  if (!(coef < 1.0)) return;
  const float a = to_float(from_float<T>(float(coef))); // T(coef), as the CPU's scale(T(coef), x)
  for (i64 i = global_thread_index(); i < n; i += global_thread_count()) x[i] = from_float<T>(a * to_float(x[i]));
}

// g (n) *= inv_scale in the accumulation type, left as it is when inv_scale is 1 (AmpKernels.cu's lambda); a thread
// that sees an inf or NaN, before or after (as stored in T), writes 1 to *found_inf. Threads race to write the same
// value, as in torch, so the result is deterministic; nothing ever writes 0. (x - x == 0 is false exactly for inf
// and NaN, without depending on which isfinite overload nvcc picks.)
template <class T>
__global__ void non_finite_check_and_unscale_kernel(i64 n, T* __restrict__ g, acc_t<T> inv_scale,
                                                    acc_t<T>* __restrict__ found_inf) {
  using A = acc_t<T>;
  for (i64 i = global_thread_index(); i < n; i += global_thread_count()) {
    const A v = to_acc(g[i]);
    const T out = from_acc<T>(inv_scale == A(1) ? v : v * inv_scale);
    g[i] = out;
    const A o = to_acc(out);
    if (!(v - v == A(0) && o - o == A(0))) *found_inf = A(1);
  }
}

} // namespace cuda

// ---------------------------------------------------------------------------------------------------------------------
// kernel launchers

/// every tensor's master, m, v fp32 updated in place from its grad; its param = T(master) unless it is the master
/// itself. One launch for the whole list: the tensor table and the chunk list go to device scratch first.
template <class T>
void backend<device::cuda>::adamw_step(ctx_t& ctx, std::span<const adamw_tensor<T>> tensors,
                                       const adamw_coefficients<A<T>>& c) {
  static_assert(std::is_same_v<A<T>, float>, "the CUDA AdamW keeps fp32 master weights and moments");
  std::vector<cuda::adamw_chunk_ref> chunks;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    MINIBERT_CHECK(tensors[i].n >= 0, "adamw_step", "tensor " << i << " of " << tensors.size() << ": n = " << tensors[i].n);
    for (i64 start = 0; start < tensors[i].n; start += cuda::adamw_chunk) chunks.push_back({i64(i), start});
  }
  if (chunks.empty()) return;
  MINIBERT_CHECK(chunks.size() <= 0x7fffffffu, "adamw_step", chunks.size() << " chunks of " << cuda::adamw_chunk
                                                                          << " elements: beyond one launch");
  const std::size_t table = (tensors.size_bytes() + 255) / 256 * 256;
  auto* dev = static_cast<unsigned char*>(ctx.scratch_bytes(table + chunks.size() * sizeof(cuda::adamw_chunk_ref)));
  cuda::staged_upload(ctx, tensors.data(), dev, tensors.size_bytes());
  cuda::staged_upload(ctx, chunks.data(), dev + table, chunks.size() * sizeof(cuda::adamw_chunk_ref));
  cuda::adamw_kernel<T><<<static_cast<unsigned>(chunks.size()), cuda::adamw_block, 0, cuda::stream_of(ctx)>>>(
      reinterpret_cast<const adamw_tensor<T>*>(dev), reinterpret_cast<const cuda::adamw_chunk_ref*>(dev + table), c);
  MINIBERT_CUDA_CHECK(cudaGetLastError());
}

/// x (n) -> total[0] += sum x^2 (double, on the device)
template <class T> void backend<device::cuda>::sum_squares(ctx_t& ctx, const T* x, i64 n, double* total) {
  if (n <= 0) return;
  cudaStream_t stream = cuda::stream_of(ctx);
  const i64 want = cuda::ceil_div(n, 8 * cuda::adamw_block); // about 8 elements per thread
  const int partials = static_cast<int>(std::max<i64>(1, std::min<i64>(cuda::sum_squares_max_partials, want)));
  double* partial = ctx.scratch<double>(partials);
  cuda::sum_squares_partial_kernel<<<partials, cuda::adamw_block, 0, stream>>>(x, partial, n);
  MINIBERT_CUDA_CHECK(cudaGetLastError());
  cuda::sum_squares_reduce_kernel<<<1, 1024, 0, stream>>>(partial, partials, total);
  MINIBERT_CUDA_CHECK(cudaGetLastError());
}

/// x (n) *= clip coefficient of the device scalar total_sq (unchanged when the coefficient is 1)
template <class T>
void backend<device::cuda>::clip_by_norm(ctx_t& ctx, T* x, i64 n, const double* total_sq, double max_norm) {
  cuda::launch_1d(cuda::clip_by_norm_kernel<T>, n, cuda::stream_of(ctx), x, total_sq, max_norm);
}

/// g (n) *= inv_scale in place; the device scalar *found_inf = 1 when an element is inf or NaN (never cleared)
template <class T>
void backend<device::cuda>::non_finite_check_and_unscale(ctx_t& ctx, T* g, i64 n, A<T> inv_scale, A<T>* found_inf) {
  cuda::launch_1d(cuda::non_finite_check_and_unscale_kernel<T>, n, cuda::stream_of(ctx), g, inv_scale, found_inf);
}

} // namespace minibert
