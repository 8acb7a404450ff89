// SPDX-License-Identifier: MIT
#pragma once
/* CPU embedding lookup and its scatter-add backward. ids (N) into weight (V,C) -> out (N,C).
   Ids are validated by the op before the kernel runs. */

#include <cstdint> // int64_t
#include <cstring> // memcpy

#include <Eigen/Core>

#include <minibert/cpu/parallel.hpp>

namespace minibert::cpu {

template <class T, class Id>
void embedding_forward(const Id* ids, const T* weight, T* out, std::int64_t N, std::int64_t C) {
  detail::parallel_for(N, C, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) std::memcpy(out + i * C, weight + std::int64_t(ids[i]) * C, C * sizeof(T));
  });
}

/// @brief dweight[ids[i]] += dout[i] for each i. Threads split the columns, not the rows, so rows that
/// share an id never race and every sum is taken in the same order.
template <class T, class Id>
void embedding_backward(const Id* ids, const T* dout, T* dweight, std::int64_t N, std::int64_t C) {
  detail::parallel_for(C, N, [&](std::int64_t c0, std::int64_t c1) {
    for (std::int64_t i = 0; i < N; ++i) {
      T* dst = dweight + std::int64_t(ids[i]) * C;
      const T* src = dout + i * C;
      for (std::int64_t c = c0; c < c1; ++c) dst[c] += src[c];
    }
  });
}

} // namespace minibert::cpu
