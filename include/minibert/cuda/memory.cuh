// SPDX-License-Identifier: MIT
#pragma once
/* Memory members of backend<device::cuda>: fill, device copies, host<->device transfers through the context's pinned
   staging buffer, strided gather (copy_strided) and scatter (copy_into) over up to max_rank dims, and cast to the
   accumulation type. Every call is queued on the context's stream; only download waits for it. */

#ifndef __CUDACC__
#error "minibert/cuda/memory.cuh needs nvcc; host code includes <minibert/cuda/backend.hpp>"
#endif

#include <algorithm> // min, max
#include <cstddef>   // size_t
#include <cstring>   // memcpy

#include <cuda_runtime.h>

#include <minibert/cuda/backend.hpp>
#include <minibert/cuda/common.cuh>
#include <minibert/cuda/graph.cuh> // captured_upload
#include <minibert/tensor.hpp>

namespace minibert {
namespace cuda {

// ---------------------------------------------------------------------------------------------------------------------
// CUDA kernels

// y[i] = v, y (n)
template <class T> __global__ void fill_kernel(i64 n, T* y, T v) {
  for (i64 i = global_thread_index(); i < n; i += global_thread_count()) y[i] = v;
}

// y (packed, numel(sizes)) = the view (sizes, strides) at x
template <class T> __global__ void gather_kernel(i64 n, const T* x, dims6 sizes, dims6 strides, T* y) {
  for (i64 i = global_thread_index(); i < n; i += global_thread_count()) y[i] = x[strided_offset(i, sizes, strides)];
}

// the view (sizes, strides) at y = x (packed, numel(sizes))
template <class T> __global__ void scatter_kernel(i64 n, const T* x, T* y, dims6 sizes, dims6 strides) {
  for (i64 i = global_thread_index(); i < n; i += global_thread_count()) y[strided_offset(i, sizes, strides)] = x[i];
}

// y[i] = acc_t<T>(x[i]), x (n) -> y (n)
template <class T> __global__ void cast_kernel(i64 n, const T* x, acc_t<T>* y) {
  for (i64 i = global_thread_index(); i < n; i += global_thread_count()) y[i] = to_acc(x[i]);
}

// ---------------------------------------------------------------------------------------------------------------------
// host helpers

/// largest piece a transfer moves through the pinned staging buffer at once
inline constexpr std::size_t staging_chunk = std::size_t(16) << 20;

/// @brief the context's pinned staging buffer, (re)made to hold min(bytes, staging_chunk) (at least 1 MiB);
/// returns its usable size
inline std::size_t ensure_staging(context<device::cuda>& ctx, std::size_t bytes) {
  const std::size_t need = std::min(bytes, staging_chunk);
  if (ctx.staging_bytes >= need) return std::min(ctx.staging_bytes, staging_chunk);
  // a copy queued earlier may still read or write the old buffer
  MINIBERT_CUDA_CHECK(cudaStreamSynchronize(stream_of(ctx)));
  if (ctx.staging) {
    (void)cudaFreeHost(ctx.staging);
    ctx.staging = nullptr;
    ctx.staging_bytes = 0;
  }
  const std::size_t size = std::max(need, std::size_t(1) << 20);
  MINIBERT_CUDA_CHECK(cudaMallocHost(&ctx.staging, size));
  ctx.staging_bytes = size;
  return std::min(size, staging_chunk);
}

/// @brief device dst = host src (bytes <= upload_slot_bytes) through the next slot of the pinned upload ring: waits
/// only for the copy that last read that slot (upload_slots uploads ago), not for the kernels queued on the stream
inline void ring_upload(context<device::cuda>& ctx, const void* src, void* dst, std::size_t bytes) {
  using ctx_t = context<device::cuda>;
  if (!ctx.upload_ring) {
    MINIBERT_CUDA_CHECK(cudaMallocHost(&ctx.upload_ring, ctx_t::upload_slots * ctx_t::upload_slot_bytes));
    for (auto& e : ctx.upload_events) {
      cudaEvent_t ev = nullptr;
      MINIBERT_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
      e = ev;
    }
  }
  const unsigned k = ctx.upload_next++ % unsigned(ctx_t::upload_slots);
  const cudaEvent_t done = static_cast<cudaEvent_t>(ctx.upload_events[k]);
  MINIBERT_CUDA_CHECK(cudaEventSynchronize(done)); // an event never recorded is complete
  char* slot = static_cast<char*>(ctx.upload_ring) + std::size_t(k) * ctx_t::upload_slot_bytes;
  std::memcpy(slot, src, bytes);
  MINIBERT_CUDA_CHECK(cudaMemcpyAsync(dst, slot, bytes, cudaMemcpyHostToDevice, stream_of(ctx)));
  MINIBERT_CUDA_CHECK(cudaEventRecord(done, stream_of(ctx)));
}

/// @brief device dst = host src (bytes); src is reusable on return. Small transfers use the upload ring; large ones
/// (weights) go through the staging buffer, synchronizing the stream before it is overwritten, since a copy queued
/// earlier may still be reading it.
inline void staged_upload(context<device::cuda>& ctx, const void* src, void* dst, std::size_t bytes) {
  if (ctx.capture) {
    captured_upload(ctx, src, dst, bytes);
    return;
  }
  if (bytes <= context<device::cuda>::upload_slot_bytes) {
    ring_upload(ctx, src, dst, bytes);
    return;
  }
  const cudaStream_t s = stream_of(ctx);
  const std::size_t chunk = ensure_staging(ctx, bytes);
  for (std::size_t off = 0; off < bytes; off += chunk) {
    const std::size_t len = std::min(chunk, bytes - off);
    MINIBERT_CUDA_CHECK(cudaStreamSynchronize(s));
    std::memcpy(ctx.staging, static_cast<const char*>(src) + off, len);
    MINIBERT_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + off, ctx.staging, len, cudaMemcpyHostToDevice, s));
  }
}

/// @brief host dst = device src (bytes) after all work queued on the stream; complete on return
inline void staged_download(context<device::cuda>& ctx, const void* src, void* dst, std::size_t bytes) {
  MINIBERT_CHECK(!ctx.capture, "cuda graph", "a download (" << bytes << " bytes to the host) cannot be captured");
  const cudaStream_t s = stream_of(ctx);
  const std::size_t chunk = ensure_staging(ctx, bytes);
  for (std::size_t off = 0; off < bytes; off += chunk) {
    const std::size_t len = std::min(chunk, bytes - off);
    MINIBERT_CUDA_CHECK(
        cudaMemcpyAsync(ctx.staging, static_cast<const char*>(src) + off, len, cudaMemcpyDeviceToHost, s));
    MINIBERT_CUDA_CHECK(cudaStreamSynchronize(s));
    std::memcpy(static_cast<char*>(dst) + off, ctx.staging, len);
  }
}

/// @brief whether the view (sizes, strides) addresses its elements in packed row-major order (the strides of
/// size-1 dims never matter)
inline bool is_packed(const shape& sizes, const shape& strides) {
  if (sizes.numel() <= 1) return true;
  i64 expect = 1;
  for (int k = sizes.rank() - 1; k >= 0; --k) {
    if (sizes[k] != 1 && strides[k] != expect) return false;
    expect *= sizes[k];
  }
  return true;
}

} // namespace cuda

// ---------------------------------------------------------------------------------------------------------------------
// kernel launchers

template <class T> void backend<device::cuda>::fill(ctx_t& ctx, T* y, i64 n, T v) {
  if (n <= 0) return;
  // a value whose bytes are all equal (0, -1 for integers, any uint8) is a memset
  unsigned char bytes[sizeof(T)];
  std::memcpy(bytes, &v, sizeof(T));
  bool uniform = true;
  for (std::size_t i = 1; i < sizeof(T); ++i) uniform = uniform && bytes[i] == bytes[0];
  if (uniform) {
    MINIBERT_CUDA_CHECK(cudaMemsetAsync(y, bytes[0], std::size_t(n) * sizeof(T), cuda::stream_of(ctx)));
    return;
  }
  cuda::launch_1d(cuda::fill_kernel<T>, n, cuda::stream_of(ctx), y, v);
}

template <class T> void backend<device::cuda>::copy(ctx_t& ctx, const T* x, T* y, i64 n) {
  if (n <= 0 || x == y) return;
  MINIBERT_CUDA_CHECK(
      cudaMemcpyAsync(y, x, std::size_t(n) * sizeof(T), cudaMemcpyDeviceToDevice, cuda::stream_of(ctx)));
}

template <class T> void backend<device::cuda>::upload(ctx_t& ctx, const T* host, T* y, i64 n) {
  if (n <= 0) return;
  cuda::staged_upload(ctx, host, y, std::size_t(n) * sizeof(T));
}

template <class T> void backend<device::cuda>::download(ctx_t& ctx, const T* x, T* host, i64 n) {
  if (n <= 0) return;
  cuda::staged_download(ctx, x, host, std::size_t(n) * sizeof(T));
}

// x: view (sizes, strides) -> y (packed)
template <class T>
void backend<device::cuda>::copy_strided(ctx_t& ctx, const T* x, const shape& sizes, const shape& strides, T* y) {
  const i64 n = sizes.numel();
  if (n <= 0) return;
  if (cuda::is_packed(sizes, strides)) return copy(ctx, x, y, n);
  cuda::launch_1d(cuda::gather_kernel<T>, n, cuda::stream_of(ctx), x, cuda::to_dims6(sizes), cuda::to_dims6(strides),
                  y);
}

// x (packed) -> y: view (sizes, strides)
template <class T>
void backend<device::cuda>::copy_into(ctx_t& ctx, const T* x, T* y, const shape& sizes, const shape& strides) {
  const i64 n = sizes.numel();
  if (n <= 0) return;
  if (cuda::is_packed(sizes, strides)) return copy(ctx, x, y, n);
  cuda::launch_1d(cuda::scatter_kernel<T>, n, cuda::stream_of(ctx), x, y, cuda::to_dims6(sizes),
                  cuda::to_dims6(strides));
}

template <class T> void backend<device::cuda>::cast(ctx_t& ctx, const T* x, A<T>* y, i64 n) {
  cuda::launch_1d(cuda::cast_kernel<T>, n, cuda::stream_of(ctx), x, y);
}

} // namespace minibert
