// SPDX-License-Identifier: MIT
#pragma once
/* CUDA loss kernels, forward and backward side by side, with cpu/loss.hpp's semantics: cross-entropy over class
   indices (mean over the targets that are not ignore_index; NaN when none is counted), mean squared error, and binary
   cross-entropy with logits. Forward reductions are in double and in a fixed order (per-row or per-block partials,
   then one block over them), so a loss is bit-reproducible; losses and counts stay on the device, and the backward
   kernels read dloss and count from device memory (no host synchronization). */
#ifndef __CUDACC__
#error "minibert/cuda/loss.cuh needs nvcc; host code includes <minibert/cuda/backend.hpp>"
#endif

#include <algorithm> // min, max
#include <cmath>     // INFINITY
#include <cstdint>   // int64_t

#include <minibert/backend.hpp>
#include <minibert/cuda/backend.hpp>
#include <minibert/cuda/common.cuh>

namespace minibert {
namespace cuda {

// ---------------------------------------------------------------------------------------------------------------------
// CUDA kernels

inline constexpr int loss_block = 256;         // threads of the per-element and partial-sum kernels
inline constexpr int loss_reduce_block = 1024; // threads of the one-block final reductions
inline constexpr int loss_max_partials = 1024; // partial sums of a mean over elements (a function of n only)

// ---- cross-entropy: logits (N,C), targets (N) -> probs (N,C), per-row loss (N); then loss (1), count (1)

// one warp per row: probs = softmax(x); row_loss = log(z) + max - x[target] in double (0 for an ignored row)
template <class T, class I>
__global__ void cross_entropy_forward_kernel(const T* __restrict__ logits, const I* __restrict__ targets,
                                             T* __restrict__ probs, double* __restrict__ row_loss, i64 N, i64 C,
                                             i64 ignore) {
  const i64 i = i64(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (i >= N) return;
  const T* x = logits + i * C;
  T* p = probs + i * C;
  float m = -INFINITY;
  for (i64 c = lane; c < C; c += 32) m = fmaxf(m, to_float(x[c]));
  m = warp_reduce_max(m);
  float s = 0.0f;
  for (i64 c = lane; c < C; c += 32) s += expf(to_float(x[c]) - m);
  const double z = double(warp_reduce_sum(s));
  const float inv = float(1.0 / z);
  for (i64 c = lane; c < C; c += 32) p[c] = from_float<T>(expf(to_float(x[c]) - m) * inv);
  if (lane == 0) {
    const i64 t = i64(targets[i]);
    row_loss[i] = t == ignore ? 0.0 : log(z) + double(m) - double(to_float(x[t]));
  }
}

// one block: loss[0] = mean of row_loss over counted rows (NaN if none), count[0] = counted rows
template <class T, class I>
__global__ void cross_entropy_reduce_kernel(const double* __restrict__ row_loss, const I* __restrict__ targets,
                                            T* __restrict__ loss, float* __restrict__ count, i64 N, i64 ignore) {
  double total = 0.0, counted = 0.0; // counts in double: exact below 2^53
  for (i64 i = threadIdx.x; i < N; i += blockDim.x) {
    if (i64(targets[i]) == ignore) continue;
    total += row_loss[i];
    counted += 1.0;
  }
  total = block_reduce_sum(total);
  counted = block_reduce_sum(counted);
  if (threadIdx.x == 0) {
    loss[0] = from_float<T>(float(counted > 0.0 ? total / counted : __longlong_as_double(0x7ff8000000000000LL)));
    count[0] = float(counted);
  }
}

// dlogits (N,C) = (probs - onehot(target)) * dloss / count; ignored rows 0. One block per row.
template <class T, class I>
__global__ void cross_entropy_backward_kernel(const T* __restrict__ probs, const I* __restrict__ targets,
                                              const T* __restrict__ dloss, const float* __restrict__ count,
                                              T* __restrict__ dlogits, i64 C, i64 ignore) {
  const i64 i = blockIdx.x;
  const i64 t = i64(targets[i]);
  T* d = dlogits + i * C;
  if (t == ignore) {
    for (i64 c = threadIdx.x; c < C; c += blockDim.x) d[c] = from_float<T>(0.0f);
    return;
  }
  const float n = count[0];
  const float s = n != 0.0f ? to_float(dloss[0]) / n : 0.0f;
  const T* p = probs + i * C;
  for (i64 c = threadIdx.x; c < C; c += blockDim.x) {
    float v = to_float(p[c]) * s;
    if (c == t) v -= s;
    d[c] = from_float<T>(v);
  }
}

// ---- element means (MSE, BCE with logits): f(i) summed in double per block, then one block over the partials

// (x - y)^2, the difference taken in fp32 as the CPU takes it in T
struct mse_term {
  template <class T> __device__ double operator()(const T* x, const T* y, i64 i) const {
    const double d = double(to_float(x[i]) - to_float(y[i]));
    return d * d;
  }
};
// max(x,0) - x*y + log(1 + exp(-|x|)), the stable form of BCE on sigmoid(x)
struct bce_with_logits_term {
  template <class T> __device__ double operator()(const T* x, const T* y, i64 i) const {
    const double xi = double(to_float(x[i]));
    return fmax(xi, 0.0) - xi * double(to_float(y[i])) + log1p(exp(-fabs(xi)));
  }
};

// partial[b] = sum over this block's grid-stride share of term(x, y, i)
template <class Term, class T>
__global__ void loss_partial_kernel(Term term, const T* __restrict__ x, const T* __restrict__ y,
                                    double* __restrict__ partial, i64 n) {
  double s = 0.0;
  for (i64 i = global_thread_index(); i < n; i += global_thread_count()) s += term(x, y, i);
  s = block_reduce_sum(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// one block: loss[0] = sum of the partials / n (0 when n == 0, as the CPU)
template <class T>
__global__ void loss_mean_kernel(const double* __restrict__ partial, int partials, T* __restrict__ loss, i64 n) {
  double s = 0.0;
  for (int b = threadIdx.x; b < partials; b += blockDim.x) s += partial[b];
  s = block_reduce_sum(s);
  if (threadIdx.x == 0) loss[0] = from_float<T>(float(n ? s / double(n) : 0.0));
}

// dx (n) = 2 (x - y) dloss / n, dloss read on the device
template <class T>
__global__ void mse_backward_kernel(i64 n, const T* __restrict__ x, const T* __restrict__ y,
                                    const T* __restrict__ dloss, T* __restrict__ dx) {
  const float s = 2.0f * to_float(dloss[0]) / float(n);
  for (i64 i = global_thread_index(); i < n; i += global_thread_count())
    dx[i] = from_float<T>(s * (to_float(x[i]) - to_float(y[i])));
}

// dx (n) = (sigmoid(x) - y) dloss / n, dloss read on the device
template <class T>
__global__ void bce_with_logits_backward_kernel(i64 n, const T* __restrict__ x, const T* __restrict__ y,
                                                const T* __restrict__ dloss, T* __restrict__ dx) {
  const float s = to_float(dloss[0]) / float(n);
  for (i64 i = global_thread_index(); i < n; i += global_thread_count())
    dx[i] = from_float<T>(s * (1.0f / (1.0f + expf(-to_float(x[i]))) - to_float(y[i])));
}

// mean of term(x, y, i) over n elements into loss[0]; the number of partials depends on n only
template <class Term, class T>
void loss_mean(context<device::cuda>& ctx, Term term, const T* x, const T* y, i64 n, T* loss) {
  cudaStream_t stream = stream_of(ctx);
  const i64 want = ceil_div(n, 8 * loss_block); // about 8 elements per thread
  const int partials = static_cast<int>(std::max<i64>(1, std::min<i64>(loss_max_partials, want)));
  double* partial = ctx.scratch<double>(partials);
  if (n > 0) {
    loss_partial_kernel<<<partials, loss_block, 0, stream>>>(term, x, y, partial, n);
    MINIBERT_CUDA_CHECK(cudaGetLastError());
  }
  loss_mean_kernel<<<1, loss_reduce_block, 0, stream>>>(partial, n > 0 ? partials : 0, loss, n);
  MINIBERT_CUDA_CHECK(cudaGetLastError());
}

} // namespace cuda

// ---------------------------------------------------------------------------------------------------------------------
// kernel launchers

/// logits (N,C), targets (N) -> probs (N,C), loss (1) = mean over counted rows (NaN if none), count (1)
template <class T, class I>
void backend<device::cuda>::cross_entropy_forward(ctx_t& ctx, const T* logits, const I* targets, T* probs, i64 N, i64 C,
                                                  i64 ignore, T* loss, A<T>* count) {
  cudaStream_t stream = cuda::stream_of(ctx);
  double* row_loss = ctx.scratch<double>(N > 0 ? N : 1);
  if (N > 0 && C > 0) {
    constexpr int rows_per_block = cuda::loss_block / 32;
    cuda::cross_entropy_forward_kernel<<<static_cast<unsigned>(cuda::ceil_div(N, rows_per_block)),
                                         cuda::loss_block, 0, stream>>>(logits, targets, probs, row_loss, N, C, ignore);
    MINIBERT_CUDA_CHECK(cudaGetLastError());
  }
  cuda::cross_entropy_reduce_kernel<<<1, cuda::loss_reduce_block, 0, stream>>>(row_loss, targets, loss, count,
                                                                                C > 0 ? N : 0, ignore);
  MINIBERT_CUDA_CHECK(cudaGetLastError());
}

/// probs (N,C), targets (N), dloss (1), count (1) -> dlogits (N,C)
template <class T, class I>
void backend<device::cuda>::cross_entropy_backward(ctx_t& ctx, const T* probs, const I* targets, const T* dloss,
                                                   const A<T>* count, T* dlogits, i64 N, i64 C, i64 ignore) {
  if (N <= 0 || C <= 0) return;
  const int threads = C >= 256 ? 256 : 128;
  cuda::cross_entropy_backward_kernel<<<static_cast<unsigned>(N), threads, 0, cuda::stream_of(ctx)>>>(
      probs, targets, dloss, count, dlogits, C, ignore);
  MINIBERT_CUDA_CHECK(cudaGetLastError());
}

/// x, y (n) -> loss (1) = mean (x - y)^2
template <class T> void backend<device::cuda>::mse_forward(ctx_t& ctx, const T* x, const T* y, i64 n, T* loss) {
  cuda::loss_mean(ctx, cuda::mse_term{}, x, y, n, loss);
}

/// x, y (n), dloss (1) -> dx (n)
template <class T>
void backend<device::cuda>::mse_backward(ctx_t& ctx, const T* x, const T* y, const T* dloss, T* dx, i64 n) {
  cuda::launch_1d(cuda::mse_backward_kernel<T>, n, cuda::stream_of(ctx), x, y, dloss, dx);
}

/// logits x, targets y (n) -> loss (1) = mean BCE(sigmoid(x), y)
template <class T>
void backend<device::cuda>::bce_with_logits_forward(ctx_t& ctx, const T* x, const T* y, i64 n, T* loss) {
  cuda::loss_mean(ctx, cuda::bce_with_logits_term{}, x, y, n, loss);
}

/// x, y (n), dloss (1) -> dx (n)
template <class T>
void backend<device::cuda>::bce_with_logits_backward(ctx_t& ctx, const T* x, const T* y, const T* dloss, T* dx, i64 n) {
  cuda::launch_1d(cuda::bce_with_logits_backward_kernel<T>, n, cuda::stream_of(ctx), x, y, dloss, dx);
}

} // namespace minibert
