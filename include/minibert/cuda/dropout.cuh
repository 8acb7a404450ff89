// SPDX-License-Identifier: MIT
#pragma once
/* CUDA inverted dropout, forward and backward side by side. The keep mask is cpu/dropout.hpp's bit for bit: element i
   is kept when uniform01(philox4x32_10(seed, base + i/4).v[i%4]) >= p, so one thread per group of 4 elements draws
   one Philox block, as the CPU does. Kept elements are scaled by 1/(1-p). */
#ifndef __CUDACC__
#error "minibert/cuda/dropout.cuh needs nvcc; host code includes <minibert/cuda/backend.hpp>"
#endif

#include <cstdint> // int64_t, uint8_t, uint64_t

#include <minibert/backend.hpp>
#include <minibert/cuda/backend.hpp>
#include <minibert/cuda/common.cuh>
#include <minibert/cuda/philox.cuh>
#include <minibert/detail/philox.hpp>

namespace minibert {
namespace cuda {

// ---------------------------------------------------------------------------------------------------------------------
// CUDA kernels

// x (n) -> y (n), keep (n); group q (of `groups` = ceil(n/4)) is elements [4q, 4q+4), one Philox block. y may alias x.
template <class T>
__global__ void dropout_forward_kernel(i64 groups, const T* x, T* y, std::uint8_t* __restrict__ keep, i64 n, float p,
                                       float scale, philox_args draw) {
  const std::uint64_t key = draw.key(), first = draw.first();
  for (i64 q = global_thread_index(); q < groups; q += global_thread_count()) {
    const minibert::detail::philox_out r = minibert::detail::philox4x32_10(key, first + std::uint64_t(q));
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const i64 i = 4 * q + k;
      if (i < n) {
        const bool kept = minibert::detail::uniform01(r.v[k]) >= p;
        keep[i] = kept ? 1 : 0;
        y[i] = kept ? from_float<T>(to_float(x[i]) * scale) : from_float<T>(0.0f);
      }
    }
  }
}

// dx (n) = keep ? dy * scale : 0; dx may alias dy
template <class T>
__global__ void dropout_backward_kernel(i64 n, const T* dy, const std::uint8_t* __restrict__ keep, T* dx, float scale) {
  for (i64 i = global_thread_index(); i < n; i += global_thread_count())
    dx[i] = keep[i] ? from_float<T>(to_float(dy[i]) * scale) : from_float<T>(0.0f);
}

// 1/(1-p) as the CPU computes it in fp32: T(1) / (T(1) - T(p))
inline float dropout_scale(float p) { return 1.0f / (1.0f - p); }

// ---------------------------------------------------------------------------------------------------------------------
// launchers shared with attention.cuh

template <class T>
void dropout_forward(cudaStream_t stream, const T* x, T* y, std::uint8_t* keep, i64 n, float p, philox_args draw) {
  launch_1d(dropout_forward_kernel<T>, ceil_div(n, 4), stream, x, y, keep, n, p, dropout_scale(p), draw);
}

template <class T>
void dropout_backward(cudaStream_t stream, const T* dy, const std::uint8_t* keep, T* dx, i64 n, float p) {
  launch_1d(dropout_backward_kernel<T>, n, stream, dy, keep, dx, dropout_scale(p));
}

} // namespace cuda

// ---------------------------------------------------------------------------------------------------------------------
// kernel launchers

/// x (n) -> y (n) = x * keep / (1-p), keep (n) uint8; Philox counters [base, base + ceil(n/4)) of seed
template <class T>
void backend<device::cuda>::dropout_forward(ctx_t& ctx, const T* x, T* y, std::uint8_t* keep, i64 n, float p,
                                            std::uint64_t seed, std::uint64_t base) {
  MINIBERT_CHECK(p >= 0.0f && p < 1.0f, "dropout", "probability " << p << " outside [0, 1)");
  cuda::dropout_forward(cuda::stream_of(ctx), x, y, keep, n, p, cuda::philox_of(ctx, p, seed, base));
}

/// dy (n), keep (n) -> dx (n) = dy * keep / (1-p)
template <class T>
void backend<device::cuda>::dropout_backward(ctx_t& ctx, const T* dy, const std::uint8_t* keep, T* dx, i64 n, float p) {
  MINIBERT_CHECK(p >= 0.0f && p < 1.0f, "dropout", "probability " << p << " outside [0, 1)");
  cuda::dropout_backward(cuda::stream_of(ctx), dy, keep, dx, n, p);
}

} // namespace minibert
