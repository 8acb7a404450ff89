// SPDX-License-Identifier: MIT
#pragma once
/* CUDA kernels of the optimizer (llm.c's llmc/adamw.cuh): the fused multi-tensor AdamW update (one launch for a
   list of parameters, as torch's _multi_tensor_adamw) on fp32 master weights in
   cpu/adamw.hpp's (torch's) operation order, with round-to-nearest intrinsics so that nvcc contracts nothing into an
   FMA the CPU does not do; the sum of squares of the gradients that clip_grad_norm needs (double, deterministic
   two-pass reduction); the clip itself, whose coefficient is read from device memory; and the unscale-and-check of
   fp16 loss scaling (torch's _amp_foreach_non_finite_check_and_unscale_ kernel). Each covers a whole list of tensors
   in one launch (the sum of squares: two), one block per chunk of 2^16 elements of a tensor, so the optimizer's part
   of a training step costs a handful of launches rather than about three per parameter. */
#ifndef __CUDACC__
#error "minibert/cuda/adamw.cuh needs nvcc; host code includes <minibert/cuda/backend.hpp>"
#endif

#include <algorithm>   // min, max
#include <cstring>     // memcpy (the packed plan)
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

inline constexpr i64 chunk_elems = i64(1) << 16; // elements of one tensor per block of a multi-tensor launch

/// @brief one block's share of a multi-tensor launch: elements [start, start + chunk_elems) of tensor `tensor`
struct tensor_chunk {
  std::int64_t tensor, start;
};

/// @brief the elements of chunk ch of a tensor of n elements: [begin, end)
__device__ __forceinline__ i64 chunk_end(const tensor_chunk& ch, i64 n) { return min(n, ch.start + chunk_elems); }

// One AdamW step per element over a list of tensors, one block per chunk (apex's multi_tensor_apply): master p, m, v
// (fp32) and grad g of chunk b's tensor; its param = T(p) unless the param is the master itself
//   p = p * decay;  m = m * beta1 + (1-beta1) * g;  v = v * beta2 + (1-beta2) * g * g;
//   p = p + (neg_step_size * m) / (sqrt(v) / bias_correction2_sqrt + eps)
template <class T>
__global__ void adamw_kernel(const adamw_tensor<T>* __restrict__ tensors, const tensor_chunk* __restrict__ chunks,
                             adamw_coefficients<float> c) {
  const tensor_chunk ch = chunks[blockIdx.x];
  const adamw_tensor<T> t = tensors[ch.tensor];
  const bool write_param = t.param && static_cast<const void*>(t.param) != static_cast<const void*>(t.master);
  for (i64 i = ch.start + threadIdx.x; i < chunk_end(ch, t.n); i += blockDim.x) {
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

// partial[b] = sum of x^2 (in double) over chunk b of the list
template <class T>
__global__ void sum_squares_kernel(const foreach_tensor<const T>* __restrict__ tensors,
                                   const tensor_chunk* __restrict__ chunks, double* __restrict__ partial) {
  const tensor_chunk ch = chunks[blockIdx.x];
  const foreach_tensor<const T> t = tensors[ch.tensor];
  double s = 0.0;
  for (i64 i = ch.start + threadIdx.x; i < chunk_end(ch, t.n); i += blockDim.x) {
    const double xi = double(to_float(t.data[i]));
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

// every x of the list *= T(clip_coefficient(total_sq, max_norm)) when that is < 1; every thread reads the scalar
template <class T>
__global__ void clip_by_norm_kernel(const foreach_tensor<T>* __restrict__ tensors,
                                    const tensor_chunk* __restrict__ chunks, const double* __restrict__ total_sq,
                                    double max_norm) {
  const double coef = clip_coefficient(total_sq[0], max_norm);
  if (!(coef < 1.0)) return;
  const float a = to_float(from_float<T>(float(coef))); // T(coef), as the CPU's scale(T(coef), x)
  const tensor_chunk ch = chunks[blockIdx.x];
  const foreach_tensor<T> t = tensors[ch.tensor];
  for (i64 i = ch.start + threadIdx.x; i < chunk_end(ch, t.n); i += blockDim.x)
    t.data[i] = from_float<T>(a * to_float(t.data[i]));
}

// every g of the list *= inv_scale in the accumulation type, left as it is when inv_scale is 1 (AmpKernels.cu's
// lambda); a thread that sees an inf or NaN, before or after (as stored in T), writes 1 to *found_inf. Threads race
// to write the same value, as in torch, so the result is deterministic; nothing ever writes 0. (x - x == 0 is false
// exactly for inf and NaN, without depending on which isfinite overload nvcc picks.)
template <class T>
__global__ void non_finite_check_and_unscale_kernel(const foreach_tensor<T>* __restrict__ tensors,
                                                    const tensor_chunk* __restrict__ chunks, acc_t<T> inv_scale,
                                                    acc_t<T>* __restrict__ found_inf) {
  using A = acc_t<T>;
  const tensor_chunk ch = chunks[blockIdx.x];
  const foreach_tensor<T> t = tensors[ch.tensor];
  for (i64 i = ch.start + threadIdx.x; i < chunk_end(ch, t.n); i += blockDim.x) {
    const A v = to_acc(t.data[i]);
    const T out = from_acc<T>(inv_scale == A(1) ? v : v * inv_scale);
    t.data[i] = out;
    const A o = to_acc(out);
    if (!(v - v == A(0) && o - o == A(0))) *found_inf = A(1);
  }
}

/// @brief a multi-tensor launch (apex's multi_tensor_apply) in device scratch: the list of tensors, one chunk per
/// block, and `extra_per_chunk` more bytes per chunk for the caller (null when zero); blocks == 0 when the list holds
/// no element
template <class Entry> struct chunk_plan {
  const Entry* tensors = nullptr;
  const tensor_chunk* chunks = nullptr;
  void* extra = nullptr;
  unsigned blocks = 0;
};
template <class Entry>
chunk_plan<Entry> upload_chunk_plan(context<device::cuda>& ctx, std::span<const Entry> tensors, const char* op,
                                    std::size_t extra_per_chunk = 0) {
  std::vector<tensor_chunk> chunks;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    MINIBERT_CHECK(tensors[i].n >= 0, op, "tensor " << i << " of " << tensors.size() << ": n = " << tensors[i].n);
    for (i64 start = 0; start < tensors[i].n; start += chunk_elems) chunks.push_back({i64(i), start});
  }
  if (chunks.empty()) return {};
  MINIBERT_CHECK(chunks.size() <= 0x7fffffffu, op, chunks.size() << " chunks of " << chunk_elems
                                                               << " elements: beyond one launch");
  // the table and the chunk list packed into one host buffer: one upload (one slot of the upload ring) per plan
  auto round_up = [](std::size_t b) { return (b + 255) / 256 * 256; };
  const std::size_t table = round_up(tensors.size_bytes()), list = round_up(chunks.size() * sizeof(tensor_chunk));
  const std::size_t extra_bytes = extra_per_chunk * chunks.size();
  std::vector<unsigned char> packed(table + list);
  std::memcpy(packed.data(), tensors.data(), tensors.size_bytes());
  std::memcpy(packed.data() + table, chunks.data(), chunks.size() * sizeof(tensor_chunk));
  auto* dev = static_cast<unsigned char*>(ctx.scratch_bytes(table + list + extra_bytes));
  staged_upload(ctx, packed.data(), dev, packed.size());
  return {reinterpret_cast<const Entry*>(dev), reinterpret_cast<const tensor_chunk*>(dev + table),
          extra_bytes ? dev + table + list : nullptr, static_cast<unsigned>(chunks.size())};
}

} // namespace cuda

// ---------------------------------------------------------------------------------------------------------------------
// kernel launchers: one launch per list (the sum of squares: two)

/// every tensor's master, m, v fp32 updated in place from its grad; its param = T(master) unless it is the master
/// itself
template <class T>
void backend<device::cuda>::adamw_step(ctx_t& ctx, std::span<const adamw_tensor<T>> tensors,
                                       const adamw_coefficients<A<T>>& c) {
  static_assert(std::is_same_v<A<T>, float>, "the CUDA AdamW keeps fp32 master weights and moments");
  const auto plan = cuda::upload_chunk_plan(ctx, tensors, "adamw_step");
  if (plan.blocks == 0) return;
  cuda::adamw_kernel<T><<<plan.blocks, cuda::adamw_block, 0, cuda::stream_of(ctx)>>>(plan.tensors, plan.chunks, c);
  MINIBERT_CUDA_CHECK(cudaGetLastError());
}

/// total[0] += the sum of x^2 over every x of the list (double, on the device): a partial per chunk, then their sum in
/// a fixed order (the same on every run)
template <class T>
void backend<device::cuda>::sum_squares(ctx_t& ctx, std::span<const foreach_tensor<const T>> xs, double* total) {
  const auto plan = cuda::upload_chunk_plan(ctx, xs, "sum_squares", sizeof(double)); // one partial per chunk
  if (plan.blocks == 0) return;
  cudaStream_t stream = cuda::stream_of(ctx);
  double* partial = static_cast<double*>(plan.extra);
  cuda::sum_squares_kernel<T><<<plan.blocks, cuda::adamw_block, 0, stream>>>(plan.tensors, plan.chunks, partial);
  MINIBERT_CUDA_CHECK(cudaGetLastError());
  cuda::sum_squares_reduce_kernel<<<1, 1024, 0, stream>>>(partial, static_cast<int>(plan.blocks), total);
  MINIBERT_CUDA_CHECK(cudaGetLastError());
}

/// every x of the list *= the clip coefficient of the device scalar total_sq (unchanged when it is 1)
template <class T>
void backend<device::cuda>::clip_by_norm(ctx_t& ctx, std::span<const foreach_tensor<T>> xs, const double* total_sq,
                                         double max_norm) {
  const auto plan = cuda::upload_chunk_plan(ctx, xs, "clip_by_norm");
  if (plan.blocks == 0) return;
  cuda::clip_by_norm_kernel<T><<<plan.blocks, cuda::adamw_block, 0, cuda::stream_of(ctx)>>>(plan.tensors, plan.chunks,
                                                                                          total_sq, max_norm);
  MINIBERT_CUDA_CHECK(cudaGetLastError());
}

/// every g of the list *= inv_scale in place; the device scalar *found_inf = 1 when an element is inf or NaN (never
/// cleared)
template <class T>
void backend<device::cuda>::non_finite_check_and_unscale(ctx_t& ctx, std::span<const foreach_tensor<T>> gs,
                                                         A<T> inv_scale, A<T>* found_inf) {
  const auto plan = cuda::upload_chunk_plan(ctx, gs, "non_finite_check_and_unscale");
  if (plan.blocks == 0) return;
  cuda::non_finite_check_and_unscale_kernel<T><<<plan.blocks, cuda::adamw_block, 0, cuda::stream_of(ctx)>>>(
      plan.tensors, plan.chunks, inv_scale, found_inf);
  MINIBERT_CUDA_CHECK(cudaGetLastError());
}

} // namespace minibert
