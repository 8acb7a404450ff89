// SPDX-License-Identifier: MIT
#pragma once
/* Threading for the CPU backend: OpenMP with a static partition (so results are deterministic for a
   given thread count), a cost threshold below which work stays on the calling thread, and the
   user-facing set_num_threads that also sets Eigen's GEMM threads. */

#include <algorithm> // min
#include <cstdint>   // int64_t

#include <Eigen/Core> // Eigen::setNbThreads
#if defined(_OPENMP)
#include <omp.h> // omp_get_max_threads, omp_in_parallel
#endif

namespace minibert {

/// @brief threads the CPU backend uses (OpenMP's max threads: OMP_NUM_THREADS or the core count)
inline int num_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/// @brief set the CPU backend's thread count (element-wise kernels and Eigen's GEMM)
inline void set_num_threads(int n) {
  n = std::max(1, n);
#if defined(_OPENMP)
  omp_set_num_threads(n);
#endif
  Eigen::setNbThreads(n);
}

namespace cpu::detail {

// Work (in rough element-operations) below which a kernel runs on one thread: a parallel region
// costs a few microseconds, about what 32K simple float ops take.
inline constexpr std::int64_t parallel_grain = 32768;

/// Number of chunks parallel_for uses for n items: one per thread, or 1 when the total cost
/// (n * cost_per_item) is small or the caller is already inside a parallel region.
inline int parallel_chunks(std::int64_t n, std::int64_t cost_per_item) {
#if defined(_OPENMP)
  const int threads = omp_get_max_threads();
  if (threads > 1 && n > 1 && n * cost_per_item >= parallel_grain && !omp_in_parallel())
    return static_cast<int>(std::min<std::int64_t>(threads, n));
#endif
  return 1;
}

/// Runs f(chunk, begin, end) over [0, n) in parallel_chunks(n, cost) contiguous chunks, one per thread.
/// The partition depends only on n and the thread count, so per-chunk partial results are reproducible.
template <class F> void parallel_for_chunks(std::int64_t n, std::int64_t cost_per_item, F&& f) {
  if (n <= 0) return;
  const int chunks = parallel_chunks(n, cost_per_item);
  // Chunks start at multiples of 16 items: element-wise kernels then see 64-byte aligned float chunks whose
  // vectorized and scalar parts do not depend on n, so an element's result does not depend on the tensor's size
  // (a prediction does not change with the batch it is in).
  const std::int64_t per = ((n + chunks - 1) / chunks + 15) / 16 * 16;
  if (chunks == 1) {
    f(0, std::int64_t(0), n);
    return;
  }
#if defined(_OPENMP)
#pragma omp parallel for schedule(static, 1) num_threads(chunks)
#endif
  for (int c = 0; c < chunks; ++c) {
    const std::int64_t b = std::min(n, c * per), e = std::min(n, b + per);
    if (b < e) f(c, b, e);
  }
}

/// Runs f(begin, end) over [0, n) in contiguous chunks, one per thread (see parallel_for_chunks).
template <class F> void parallel_for(std::int64_t n, std::int64_t cost_per_item, F&& f) {
  parallel_for_chunks(n, cost_per_item, [&](int, std::int64_t b, std::int64_t e) { f(b, e); });
}

} // namespace cpu::detail
} // namespace minibert
