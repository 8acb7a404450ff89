// SPDX-License-Identifier: MIT
#pragma once
/* The host allocator behind device_memory<device::cpu>: large blocks (>= 1 MiB: activations, gradients, weights)
   are cached and reused; small ones go to the C library.

   Why: glibc serves requests above its mmap threshold (at most 32 MiB) with fresh mmap()s and returns them with
   munmap(), so every training step page-faulted and zeroed each activation again (a bert-base step allocates
   ~10 GB in such blocks; the kernel time showed as a fifth of the process's CPU time). Here a freed large block
   goes to a free list and is handed out again. Sizes are rounded up to size classes, 8 per power of two (at most
   12.5% waste, 64 KiB at least), so batches padded to different lengths still reuse each other's blocks; a request
   takes a cached block of its class or the next one.

   Bound: live + cached bytes stay within 9/8 of the peak of live bytes (plus one block): on a miss, cached blocks
   are released, largest first, before new memory is mapped, so caching costs at most an eighth more resident
   memory than the program's own peak. empty_cache() releases every cached block. A failed allocation releases the
   cache and retries once. Blocks start 2 MiB-aligned and are marked MADV_HUGEPAGE (fewer faults and TLB misses
   where transparent huge pages are in madvise mode). Off under AddressSanitizer (reuse would hide use-after-free)
   and with MINIBERT_CPU_CACHING=0 in the environment. Thread-safe. */

#include <algorithm>     // max
#include <cstddef>       // size_t
#include <cstdint>       // uintptr_t
#include <cstdlib>       // aligned_alloc, posix_memalign, free, getenv
#include <cstring>       // strcmp
#include <iterator>      // prev
#include <map>           // multimap (free list)
#include <mutex>         // mutex, lock_guard
#include <new>           // bad_alloc
#include <unordered_map> // unordered_map (live blocks)
#if defined(__linux__)
#include <sys/mman.h> // madvise
#endif

namespace minibert::cpu {

class host_allocator {
public:
  static constexpr std::size_t small_alignment = 64;                  // one cache line; full AVX-512 vectors
  static constexpr std::size_t large_threshold = std::size_t(1) << 20; // from here on: cached
  static constexpr std::size_t alignment = std::size_t(1) << 21;       // large blocks start on a huge page
  static constexpr std::size_t granule = std::size_t(1) << 16;         // the smallest size-class step, 64 KiB

  /// @brief the process-wide instance (never destroyed: tensors in static storage may outlive main)
  static host_allocator& instance() {
    static host_allocator* a = new host_allocator();
    return *a;
  }

  void* allocate(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    if (!caching_ || bytes < large_threshold) return system_allocate(bytes, small_alignment);
    const std::size_t size = size_class(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    std::size_t block = size;
    void* p = take_cached(block);
    if (!p) {
      const std::size_t peak = std::max(peak_live_bytes_, live_bytes_ + size);
      trim_to_reserve(peak + peak / 8, size);
      p = allocate_new(size);
    }
    live_[p] = block;
    live_bytes_ += block;
    if (live_bytes_ > peak_live_bytes_) peak_live_bytes_ = live_bytes_;
    return p;
  }

  void deallocate(void* p) noexcept {
    if (!p) return;
    if (caching_ && reinterpret_cast<std::uintptr_t>(p) % alignment == 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto it = live_.find(p);
      if (it != live_.end()) {
        const std::size_t size = it->second;
        live_.erase(it);
        live_bytes_ -= size;
        free_.emplace(size, p);
        cached_bytes_ += size;
        return;
      }
    }
    std::free(p);
  }

  /// @brief release every cached block to the system
  void empty_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    trim_to(0);
  }
  /// @brief bytes in live large blocks, their peak, and bytes cached for reuse
  std::size_t live_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return live_bytes_;
  }
  std::size_t cached_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_bytes_;
  }
  bool caching() const { return caching_; }

private:
  host_allocator() : caching_(caching_enabled()) {}

  static bool caching_enabled() {
#if defined(__SANITIZE_ADDRESS__)
    return false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return false;
#endif
#endif
    const char* env = std::getenv("MINIBERT_CPU_CACHING");
    return !(env && std::strcmp(env, "0") == 0);
  }

  static void* system_allocate(std::size_t bytes, std::size_t alignment) {
    void* p = std::aligned_alloc(alignment, (bytes + alignment - 1) / alignment * alignment);
    if (!p) throw std::bad_alloc();
    return p;
  }

  // bytes rounded up to its size class: 8 classes per power of two, steps of at least 64 KiB
  static std::size_t size_class(std::size_t bytes) {
    std::size_t step = granule;
    while (bytes > 16 * step) step *= 2; // bytes in (8 step, 16 step]: 8 classes up to the next power of two
    return (bytes + step - 1) / step * step;
  }

  // release cached blocks, largest first, until a new block of `incoming` bytes keeps live + cached <= limit
  void trim_to_reserve(std::size_t limit, std::size_t incoming) noexcept {
    while (!free_.empty() && live_bytes_ + cached_bytes_ + incoming > limit) release_largest();
  }

  static void* system_memalign(std::size_t size) {
    void* p = nullptr;
    return posix_memalign(&p, alignment, size) == 0 ? p : nullptr;
  }

  // the smallest cached block of at least size bytes, if it wastes at most 1/8 of it (size becomes its size)
  void* take_cached(std::size_t& size) {
    const auto it = free_.lower_bound(size);
    if (it == free_.end() || it->first > size + size / 8) return nullptr;
    void* p = it->second;
    size = it->first;
    cached_bytes_ -= it->first;
    free_.erase(it);
    return p;
  }

  void* allocate_new(std::size_t size) {
    // posix_memalign takes any size (aligned_alloc may want a multiple of the alignment, which would make the last
    // huge page a whole one): past `size` the mapping ends, so the tail is 4 KiB pages, not another 2 MiB
    void* p = system_memalign(size);
    if (!p && cached_bytes_ > 0) { // out of memory: give the cache back and retry once
      trim_to(0);
      p = system_memalign(size);
    }
    if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(p, size, MADV_HUGEPAGE); // a hint: failure costs only page faults and TLB misses
#endif
    return p;
  }

  // release cached blocks, largest first, until at most limit bytes stay cached
  void trim_to(std::size_t limit) noexcept {
    while (cached_bytes_ > limit && !free_.empty()) release_largest();
  }
  void release_largest() noexcept {
    const auto it = std::prev(free_.end());
    cached_bytes_ -= it->first;
    std::free(it->second);
    free_.erase(it);
  }

  const bool caching_;
  mutable std::mutex mutex_;
  std::multimap<std::size_t, void*> free_;       // cached blocks by size
  std::unordered_map<void*, std::size_t> live_;  // large blocks in use -> their size
  std::size_t live_bytes_ = 0, peak_live_bytes_ = 0, cached_bytes_ = 0;
};

/// @brief release the host allocator's cached blocks (as torch.cuda.empty_cache does for the GPU's)
inline void empty_cache() { host_allocator::instance().empty_cache(); }

} // namespace minibert::cpu
