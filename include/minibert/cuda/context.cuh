// SPDX-License-Identifier: MIT
#pragma once
/* context<device::cuda>: a non-blocking stream, a cuBLASLt handle with its 32 MiB workspace, a growing zeroed scratch
   arena and a pinned staging buffer (made on first upload/download, see cuda/memory.cuh); the default context; the
   device count; synchronize. All device memory comes from the caching allocator.

   The functions here define what cuda/backend.hpp declares and are deliberately not inline: include this header only
   through cuda/backend_impl.cuh, from exactly one .cu file of a program. */

#ifndef __CUDACC__
#error "minibert/cuda/context.cuh needs nvcc; host code includes <minibert/cuda/backend.hpp>"
#endif

#include <cstddef> // size_t
#include <utility> // swap

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <minibert/cuda/allocator.cuh>
#include <minibert/cuda/attention_cudnn.hpp>
#include <minibert/cuda/backend.hpp>
#include <minibert/cuda/common.cuh>

namespace minibert {

namespace cuda {
/// cuBLASLt workspace per context (NVIDIA's recommendation for Hopper; enough for every algorithm on Ampere)
inline constexpr std::size_t gemm_workspace_bytes = std::size_t(32) << 20;
} // namespace cuda

context<device::cuda>::context() {
  cudaStream_t s = nullptr;
  MINIBERT_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  stream = s;
  try {
    cublasLtHandle_t h = nullptr;
    MINIBERT_CUBLAS_CHECK(cublasLtCreate(&h));
    blaslt = h;
    workspace = device_memory<device::cuda>::allocate(cuda::gemm_workspace_bytes);
    workspace_bytes = cuda::gemm_workspace_bytes;
  } catch (...) { // the destructor does not run for a half-built object
    if (blaslt) cublasLtDestroy(static_cast<cublasLtHandle_t>(blaslt));
    cudaStreamDestroy(s);
    throw;
  }
}

context<device::cuda>::~context() {
  // Kernels still queued may use the workspace, scratch or staging buffer: let them finish first. Errors are
  // ignored: a destructor never throws, and at exit the runtime may already be shutting down.
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (s) (void)cudaStreamSynchronize(s);
#if defined(MINIBERT_CUDNN)
  cuda::cudnn_sdpa::release(cudnn);
#endif
  device_memory<device::cuda>::deallocate(scratch_);
  device_memory<device::cuda>::deallocate(workspace);
  if (staging) (void)cudaFreeHost(staging);
  for (void* e : upload_events)
    if (e) (void)cudaEventDestroy(static_cast<cudaEvent_t>(e));
  if (upload_ring) (void)cudaFreeHost(upload_ring);
  if (blaslt) (void)cublasLtDestroy(static_cast<cublasLtHandle_t>(blaslt));
  if (s) (void)cudaStreamDestroy(s);
  (void)cudaGetLastError();
}

void* context<device::cuda>::scratch_bytes(std::size_t bytes) {
  if (bytes == 0) return scratch_;
  if (bytes > scratch_capacity_) {
    // The old arena goes back to the allocator while queued kernels may still read it; they run on this stream,
    // before anything the memory is used for next (allocator.cuh's stream-order argument).
    device_memory<device::cuda>::deallocate(scratch_);
    scratch_ = nullptr;
    scratch_capacity_ = 0;
    scratch_ = device_memory<device::cuda>::allocate(bytes);
    scratch_capacity_ = bytes;
  }
  MINIBERT_CUDA_CHECK(cudaMemsetAsync(scratch_, 0, bytes, cuda::stream_of(*this)));
  return scratch_;
}

void context<device::cuda>::swap_scratch(void*& arena, std::size_t& capacity) noexcept {
  std::swap(scratch_, arena);
  std::swap(scratch_capacity_, capacity);
}

/// The default context is made on first use and never destroyed (as PyTorch leaks its handles): tearing down a
/// stream and a cuBLASLt handle from a static destructor races the CUDA runtime's own shutdown at exit.
template <> context<device::cuda>& default_context<device::cuda>() {
  static context<device::cuda>* ctx = new context<device::cuda>();
  return *ctx;
}

int cuda_device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError(); // no driver or no device: clear the error so later calls do not see it
    return 0;
  }
  return n;
}

void backend<device::cuda>::synchronize(ctx_t& ctx) {
  MINIBERT_CHECK(!ctx.capture, "cuda graph", "a synchronization cannot be captured");
  MINIBERT_CUDA_CHECK(cudaStreamSynchronize(cuda::stream_of(ctx)));
}

} // namespace minibert
