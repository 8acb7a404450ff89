// SPDX-License-Identifier: MIT
#pragma once
/* The Philox stream a dropout kernel draws from (dropout.cuh, attention_flash.cuh), eager or captured.

   An eager launch carries the generator's key and first counter by value. A launch captured into a CUDA graph
   (graph.cuh) must draw anew at every replay, so it reads them from device memory instead: key = state[0] and
   counter = state[1] + base, with base relative to the generator's offset when the capture began. The graph's owner
   writes (seed, offset) there before each replay and advances the generator by what the capture drew, so a replay
   draws exactly what the eager step would have. */
#ifndef __CUDACC__
#error "minibert/cuda/philox.cuh needs nvcc; host code includes <minibert/cuda/backend.hpp>"
#endif

#include <cstdint> // uint64_t

#include <minibert/cuda/backend.hpp>
#include <minibert/error.hpp>

namespace minibert::cuda {

struct philox_args {
  std::uint64_t seed = 0, base = 0;
  const std::uint64_t* state = nullptr; // captured: device (seed, offset); base is then relative to the offset

  __device__ __forceinline__ std::uint64_t key() const { return state ? state[0] : seed; }
  __device__ __forceinline__ std::uint64_t first() const { return state ? state[1] + base : base; }
  /// the same draw with key and first counter by value (read once, e.g. at a kernel's start)
  __device__ __forceinline__ philox_args resolved() const { return {key(), first(), nullptr}; }
};

/// @brief the kernel arguments for a draw with probability p of generator `seed` from counter `base` queued on ctx:
/// by value, or read from the capture's device state while ctx's stream is captured (p == 0 draws nothing: no
/// counters, whatever base says)
/// @throws minibert::error when a captured draw comes from another generator than the capture's
inline philox_args philox_of(const context<device::cuda>& ctx, float p, std::uint64_t seed, std::uint64_t base) {
  if (!ctx.capture_philox || p == 0.0f) return {seed, base, nullptr};
  MINIBERT_CHECK(seed == ctx.capture_seed && base >= ctx.capture_offset, "cuda graph",
                 "a dropout draw (seed " << seed << ", counter " << base << ") from another generator than the "
                                         << "capture's (seed " << ctx.capture_seed << ", from counter "
                                         << ctx.capture_offset << ") cannot be captured");
  return {0, base - ctx.capture_offset, ctx.capture_philox};
}

} // namespace minibert::cuda
