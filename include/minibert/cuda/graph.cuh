// SPDX-License-Identifier: MIT
#pragma once
/* CUDA graphs: backend<device::cuda>'s capture_begin / capture_end / capture_abort / replay and graph_pool
   (cuda/backend.hpp says what each does; training/step_graphs.hpp captures the training step with them).

   A capture records the work queued on a context's stream in cudaStreamCaptureModeThreadLocal: a call that would
   wait for the device (a download, a synchronize) fails the capture instead of being recorded wrongly. While it
   lasts (capture_state):
   - allocations come from the capture's graph pool (allocator.cuh), so a replay's writes land in memory nothing
     else uses;
   - uploads copy their source into pinned host memory the graph owns, which the recorded copy reads at every replay
     (the data must be the same for every replay: position ids, not a batch);
   - the context's scratch arena is a block of the pool, kept by the graph, while the context's own waits;
   - dropout kernels read the generator's state from the capture's device pair (philox.cuh).
   A graph keeps its pool, its pinned buffers and its scratch block; the pool retires when its last graph is gone. */
#ifndef __CUDACC__
#error "minibert/cuda/graph.cuh needs nvcc; host code includes <minibert/cuda/backend.hpp>"
#endif

#include <cstddef> // size_t
#include <cstdint> // uint64_t
#include <cstring> // memcpy
#include <memory>  // shared_ptr, make_shared
#include <vector>  // vector

#include <cuda_runtime.h>

#include <minibert/cuda/allocator.cuh>
#include <minibert/cuda/backend.hpp>
#include <minibert/cuda/common.cuh>
#include <minibert/error.hpp>

namespace minibert::cuda {

/// a graph pool as the backend hands it out: retires the allocator's pool when the last holder lets go
struct graph_pool_handle {
  std::shared_ptr<caching_allocator::pool> blocks = caching_allocator::instance().make_pool();
  graph_pool_handle() = default;
  graph_pool_handle(const graph_pool_handle&) = delete;
  graph_pool_handle& operator=(const graph_pool_handle&) = delete;
  ~graph_pool_handle() { caching_allocator::instance().retire(*blocks); }
};

/// pinned host memory a graph's recorded uploads read at replay
struct pinned_buffers {
  std::vector<void*> buffers;
  pinned_buffers() = default;
  pinned_buffers(const pinned_buffers&) = delete;
  pinned_buffers& operator=(const pinned_buffers&) = delete;
  ~pinned_buffers() {
    for (void* b : buffers) (void)cudaFreeHost(b);
  }
};

/// what a capture in progress owns (context::capture points here)
struct capture_state {
  std::shared_ptr<void> pool; // a graph_pool_handle
  std::shared_ptr<pinned_buffers> uploads = std::make_shared<pinned_buffers>();
  void* scratch = nullptr; // the context's own arena during the capture; the capture's (a pool block) after it
  std::size_t scratch_capacity = 0;
};

/// an instantiated graph and what its replays use
struct captured_graph {
  cudaGraphExec_t exec = nullptr;
  cudaStream_t stream = nullptr;
  std::shared_ptr<void> pool;
  std::shared_ptr<pinned_buffers> uploads;
  void* scratch = nullptr;
  captured_graph() = default;
  captured_graph(const captured_graph&) = delete;
  captured_graph& operator=(const captured_graph&) = delete;
  ~captured_graph() {
    if (exec) {
      (void)cudaStreamSynchronize(stream); // a replay still queued reads the pinned buffers and writes the scratch
      (void)cudaGraphExecDestroy(exec);
    }
    device_memory<device::cuda>::deallocate(scratch); // back to the pool, which outlives this member
    (void)cudaGetLastError();
  }
};

inline capture_state* capture_of(const context<device::cuda>& ctx) { return static_cast<capture_state*>(ctx.capture); }

/// @brief device dst = host src (bytes) recorded into the capture: the source is copied into pinned memory the
/// graph keeps, which the recorded copy reads at each replay
inline void captured_upload(context<device::cuda>& ctx, const void* src, void* dst, std::size_t bytes) {
  capture_state& c = *capture_of(ctx);
  void* host = nullptr;
  // cudaMallocHost is not a stream operation: allowed for this call, as the allocator's cudaMalloc is
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  (void)cudaThreadExchangeStreamCaptureMode(&mode);
  const cudaError_t e = cudaMallocHost(&host, bytes);
  (void)cudaThreadExchangeStreamCaptureMode(&mode);
  MINIBERT_CUDA_CHECK(e);
  c.uploads->buffers.push_back(host);
  std::memcpy(host, src, bytes);
  MINIBERT_CUDA_CHECK(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, stream_of(ctx)));
}

/// @brief ends ctx's capture, whatever happened to it: the allocator and the context are back to normal, `state`
/// holds what the capture owned, `status` says whether it recorded a graph, which is returned (or null)
inline cudaGraph_t finish_capture(context<device::cuda>& ctx, cudaError_t& status,
                                  std::unique_ptr<capture_state>& state) {
  state.reset(capture_of(ctx));
  ctx.capture = nullptr;
  ctx.capture_philox = nullptr;
  ctx.capture_seed = ctx.capture_offset = 0;
  caching_allocator::instance().capture_into(nullptr);
  ctx.swap_scratch(state->scratch, state->scratch_capacity); // the context's arena is back; state has the capture's
  cudaGraph_t graph = nullptr;
  status = cudaStreamEndCapture(stream_of(ctx), &graph);
  (void)cudaGetLastError();
  return graph;
}

} // namespace minibert::cuda

namespace minibert {

// ---------------------------------------------------------------------------------------------------------------------
// definitions of cuda/backend.hpp's declarations (not inline: one .cu per program defines them)

std::shared_ptr<void> backend<device::cuda>::graph_pool() { return std::make_shared<cuda::graph_pool_handle>(); }

void backend<device::cuda>::capture_begin(ctx_t& ctx, const std::shared_ptr<void>& pool, const std::uint64_t* philox,
                                          std::uint64_t seed, std::uint64_t offset) {
  MINIBERT_CHECK(!ctx.capture, "cuda graph", "capture_begin: this context is already capturing");
  MINIBERT_CHECK(pool && philox, "cuda graph", "capture_begin needs a graph pool and a device Philox pair");
  (void)cuda_gemm_wgmma_ready(); // its probe (an allocation, a kernel, a read back) must not run inside the capture
  auto state = std::make_unique<cuda::capture_state>();
  state->pool = pool;
  auto& allocator = cuda::caching_allocator::instance();
  allocator.capture_into(static_cast<cuda::graph_pool_handle*>(pool.get())->blocks);
  const cudaError_t e = cudaStreamBeginCapture(cuda::stream_of(ctx), cudaStreamCaptureModeThreadLocal);
  if (e != cudaSuccess) {
    allocator.capture_into(nullptr);
    cuda::check_cuda(e, "cudaStreamBeginCapture", __FILE__, __LINE__);
  }
  // the context's arena waits in state (until finish_capture swaps it back); the capture's starts empty
  ctx.swap_scratch(state->scratch, state->scratch_capacity);
  ctx.capture = state.release();
  ctx.capture_philox = philox;
  ctx.capture_seed = seed;
  ctx.capture_offset = offset;
}

std::shared_ptr<void> backend<device::cuda>::capture_end(ctx_t& ctx) {
  MINIBERT_CHECK(ctx.capture, "cuda graph", "capture_end without capture_begin");
  cudaError_t status = cudaSuccess;
  std::unique_ptr<cuda::capture_state> state;
  cudaGraph_t graph = cuda::finish_capture(ctx, status, state);
  auto out = std::make_shared<cuda::captured_graph>();
  out->stream = cuda::stream_of(ctx);
  out->pool = state->pool;
  out->uploads = state->uploads;
  out->scratch = state->scratch;
  state->scratch = nullptr;
  if (status == cudaSuccess && graph) status = cudaGraphInstantiateWithFlags(&out->exec, graph, 0);
  if (graph) (void)cudaGraphDestroy(graph);
  if (status != cudaSuccess || !out->exec) {
    out->exec = nullptr;
    (void)cudaGetLastError();
    throw error("cuda graph", std::string("the capture did not make a graph: ") + cudaGetErrorString(status));
  }
  return out;
}

void backend<device::cuda>::capture_abort(ctx_t& ctx) noexcept {
  if (!ctx.capture) return;
  cudaError_t status = cudaSuccess;
  std::unique_ptr<cuda::capture_state> state;
  cudaGraph_t graph = cuda::finish_capture(ctx, status, state);
  if (graph) (void)cudaGraphDestroy(graph);
  device_memory<device::cuda>::deallocate(state->scratch);
}

void backend<device::cuda>::replay(ctx_t& ctx, const std::shared_ptr<void>& graph) {
  MINIBERT_CHECK(graph, "cuda graph", "replay of no graph");
  MINIBERT_CHECK(!ctx.capture, "cuda graph", "replay while this context is capturing");
  const auto& g = *static_cast<const cuda::captured_graph*>(graph.get());
  MINIBERT_CHECK(g.stream == cuda::stream_of(ctx), "cuda graph", "replay on another context than the capture's");
  MINIBERT_CUDA_CHECK(cudaGraphLaunch(g.exec, cuda::stream_of(ctx)));
}

} // namespace minibert
