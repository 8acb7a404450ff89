// SPDX-License-Identifier: MIT
#pragma once
/* The caching device allocator behind device_memory<device::cuda> (PyTorch's CUDACachingAllocator in spirit, much
   simpler): requests are rounded up (512 B below 1 MiB, 2 MiB above), freed blocks are kept in a size-keyed free list
   and handed out again (best fit, no splitting), and cudaMalloc is called only when no cached block fits. When it
   fails the cache is returned to the driver and the allocation retried once. Statistics: allocated (live blocks,
   rounded sizes), reserved (live + cached), peak allocated.

   Stream safety: a block is returned to the cache the moment its tensor dies, while kernels queued before may still
   read it. That is safe because all of minibert's work runs in order on one stream (the default context's): whatever
   the block is used for next is queued after those kernels. A program that queues work on several contexts (streams)
   must synchronize a stream before the tensors it used are freed (PyTorch's record_stream problem).

   One device: the allocator does not track which device a block lives on; use one GPU per process.

   Graph pools (graph.cuh): while a stream is captured into a CUDA graph, every allocation of the capturing thread
   comes from the capture's pool, since a replay writes wherever the capture's allocations were. A pool's blocks,
   free or live, go to nothing but later captures into the same pool (whose graphs never run at once) until the pool
   is retired (its last graph is gone); blocks of the common cache the capturing thread frees during a capture (the
   graph may read them) are held back until then too. A block allocated before a capture and used by the graph must
   be kept alive by the graph's owner for as long as the graph may replay. Retired, a pool's blocks join the common
   cache, live ones when they are freed.

   The non-template functions at the end define what cuda/backend.hpp declares; they are deliberately not inline:
   include this header only through cuda/backend_impl.cuh, from exactly one .cu file of a program. */

#ifndef __CUDACC__
#error "minibert/cuda/allocator.cuh needs nvcc; host code includes <minibert/cuda/backend.hpp>"
#endif

#include <cstddef>       // size_t
#include <cstdint>       // int64_t
#include <map>           // multimap (free list)
#include <memory>        // shared_ptr (graph pools)
#include <mutex>         // mutex, lock_guard
#include <string>        // to_string
#include <thread>        // this_thread::get_id (the capturing thread)
#include <unordered_map> // unordered_map (live blocks)
#include <utility>       // pair
#include <vector>        // vector (held blocks)

#include <cuda_runtime.h>

#include <minibert/cuda/backend.hpp>
#include <minibert/cuda/common.cuh>
#include <minibert/error.hpp>

namespace minibert::cuda {

class caching_allocator {
public:
  /// the blocks of one graph pool (see the file comment)
  struct pool {
    std::multimap<std::size_t, void*> free;          // size -> block, for the next capture into this pool
    std::vector<std::pair<std::size_t, void*>> held; // common blocks freed during a capture into this pool
    bool retired = false;
  };

  static constexpr std::size_t small_limit = std::size_t(1) << 20; // below: 512 B granularity
  static constexpr std::size_t small_round = 512;
  static constexpr std::size_t large_round = std::size_t(2) << 20;

  /// @brief the process's allocator; never destroyed, so tensors that die during static destruction can still
  /// hand their memory back (the driver reclaims the cache at exit)
  static caching_allocator& instance() {
    static caching_allocator* a = new caching_allocator();
    return *a;
  }

  void* allocate(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    std::lock_guard<std::mutex> lock(mutex_);
    if (bytes > max_request) throw out_of_memory(bytes);
    const std::size_t size = round_size(bytes);
    const std::shared_ptr<pool> into = capture_pool();
    auto& free = into ? into->free : free_;
    // best fit: the smallest cached block that holds the request without wasting more than a quarter of it
    if (auto it = free.lower_bound(size); it != free.end() && it->first - size <= size / 4) {
      void* p = it->second;
      const std::size_t s = it->first;
      live_.emplace(p, block{s, into}); // may throw: the block then stays in the free list
      free.erase(it);
      note_allocated(s);
      return p;
    }
    void* p = nullptr;
    cudaError_t e = device_malloc(&p, size, into != nullptr);
    if (e == cudaErrorMemoryAllocation && !into) {
      (void)cudaGetLastError(); // an allocation failure is not sticky: clear it and retry with the cache emptied
      release_cached();
      e = cudaMalloc(&p, size);
    }
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      if (e == cudaErrorMemoryAllocation) throw out_of_memory(bytes);
      throw error("cuda", "cudaMalloc(" + std::to_string(size) + " bytes) failed: " + cudaGetErrorString(e));
    }
    try {
      live_.emplace(p, block{size, into});
    } catch (...) {
      cudaFree(p);
      throw;
    }
    reserved_ += size;
    note_allocated(size);
    return p;
  }

  void deallocate(void* p) noexcept {
    if (!p) return;
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = live_.find(p);
    if (it == live_.end()) return; // not ours (or freed twice): leave it alone
    const std::size_t s = it->second.size;
    const std::shared_ptr<pool> owner = it->second.owner && !it->second.owner->retired ? it->second.owner : nullptr;
    live_.erase(it);
    allocated_ -= s;
    try {
      if (owner) owner->free.emplace(s, p);
      else if (const std::shared_ptr<pool> into = capture_pool()) into->held.emplace_back(s, p);
      else free_.emplace(s, p);
    } catch (...) { // no memory for the list node: the block stays reserved, unused, rather than risk a reuse
    }
  }

  /// @brief a new graph pool (see the file comment)
  std::shared_ptr<pool> make_pool() { return std::make_shared<pool>(); }
  /// @brief the calling thread's allocations come from `p` until capture_into(nullptr) (one capture at a time)
  void capture_into(std::shared_ptr<pool> p) {
    std::lock_guard<std::mutex> lock(mutex_);
    capturing_ = std::move(p);
    capturing_thread_ = std::this_thread::get_id();
  }
  /// @brief `p` serves no graph any more: its cached and held blocks join the common cache, its live blocks will
  void retire(pool& p) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    p.retired = true;
    try {
      for (const auto& [s, b] : p.free) free_.emplace(s, b);
      for (const auto& [s, b] : p.held) free_.emplace(s, b);
    } catch (...) { // no memory for the list nodes: those blocks stay unused
    }
    p.free.clear();
    p.held.clear();
  }

  /// @brief returns every cached (free) block to the driver
  void empty_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    release_cached();
  }

  std::int64_t allocated() {
    std::lock_guard<std::mutex> lock(mutex_);
    return static_cast<std::int64_t>(allocated_);
  }
  std::int64_t reserved() {
    std::lock_guard<std::mutex> lock(mutex_);
    return static_cast<std::int64_t>(reserved_);
  }
  std::int64_t peak_allocated() {
    std::lock_guard<std::mutex> lock(mutex_);
    return static_cast<std::int64_t>(peak_);
  }

private:
  static constexpr std::size_t max_request = ~std::size_t(0) - large_round;

  caching_allocator() = default;

  static std::size_t round_size(std::size_t bytes) {
    const std::size_t g = bytes < small_limit ? small_round : large_round;
    return (bytes + g - 1) / g * g;
  }

  // caller holds mutex_: the pool the calling thread's allocations come from now (null: the common cache)
  std::shared_ptr<pool> capture_pool() const {
    return capturing_ && std::this_thread::get_id() == capturing_thread_ ? capturing_ : nullptr;
  }

  // cudaMalloc; during a capture with the thread's capture mode relaxed for the call, as cudaMalloc is not a stream
  // operation and the strict modes refuse it (the block is the pool's from now on, which is what makes it safe)
  cudaError_t device_malloc(void** p, std::size_t size, bool capturing) {
    if (!capturing) return cudaMalloc(p, size);
    cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
    (void)cudaThreadExchangeStreamCaptureMode(&mode);
    const cudaError_t e = cudaMalloc(p, size);
    (void)cudaThreadExchangeStreamCaptureMode(&mode);
    return e;
  }

  void note_allocated(std::size_t s) {
    allocated_ += s;
    if (allocated_ > peak_) peak_ = allocated_;
  }

  // Caller holds mutex_. Kernels queued before a block was freed may still use it (see the file comment), so wait
  // for the device before the driver gets the memory back.
  void release_cached() noexcept {
    if (free_.empty()) return;
    (void)cudaDeviceSynchronize();
    for (const auto& [s, p] : free_) {
      cudaFree(p);
      reserved_ -= s;
    }
    free_.clear();
    (void)cudaGetLastError();
  }

  error out_of_memory(std::size_t bytes) const {
    return error("cuda", "out of memory allocating " + std::to_string(bytes) + " bytes (allocated " +
                             std::to_string(allocated_) + ", reserved " + std::to_string(reserved_) + ")");
  }

  struct block {
    std::size_t size;
    std::shared_ptr<pool> owner; // null: the common cache's
  };

  std::mutex mutex_;
  std::multimap<std::size_t, void*> free_; // size -> cached block (the common cache)
  std::unordered_map<void*, block> live_;  // blocks in use
  std::shared_ptr<pool> capturing_;        // the pool a capture's allocations come from
  std::thread::id capturing_thread_;       // the capturing thread (its allocations only)
  std::size_t allocated_ = 0, reserved_ = 0, peak_ = 0;
};

} // namespace minibert::cuda

namespace minibert {

// ---------------------------------------------------------------------------------------------------------------------
// definitions of cuda/backend.hpp's declarations (not inline: one .cu per program defines them)

void* device_memory<device::cuda>::allocate(std::size_t bytes) {
  return cuda::caching_allocator::instance().allocate(bytes);
}
void device_memory<device::cuda>::deallocate(void* p) noexcept { cuda::caching_allocator::instance().deallocate(p); }

void backend<device::cuda>::empty_cache(ctx_t&) { cuda::caching_allocator::instance().empty_cache(); }
std::int64_t backend<device::cuda>::memory_allocated(ctx_t&) { return cuda::caching_allocator::instance().allocated(); }
std::int64_t backend<device::cuda>::max_memory_allocated(ctx_t&) {
  return cuda::caching_allocator::instance().peak_allocated();
}

} // namespace minibert
