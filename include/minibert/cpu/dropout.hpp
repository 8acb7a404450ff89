// SPDX-License-Identifier: MIT
#pragma once
/* CPU inverted dropout: keep each element with probability 1-p and scale it by 1/(1-p). The keep mask
   comes from Philox at (seed, base counter + element index), so it does not depend on threads or device. */

#include <cstdint> // int64_t, uint8_t

#include <minibert/cpu/parallel.hpp>
#include <minibert/random.hpp>

namespace minibert::cpu {

/// @brief y = x * keep / (1-p), keep[i] = uniform(seed, base, i) >= p
template <class T>
void dropout_forward(const T* x, T* y, std::uint8_t* keep, std::int64_t n, float p, std::uint64_t seed,
                     std::uint64_t base) {
  const T s = T(1) / (T(1) - T(p));
  detail::parallel_for((n + 3) / 4, 40, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t q = b; q < e; ++q) {
      const auto r = minibert::detail::philox4x32_10(seed, base + q);
      for (int k = 0; k < 4 && 4 * q + k < n; ++k) {
        const std::int64_t i = 4 * q + k;
        keep[i] = minibert::detail::uniform01(r.v[k]) >= p;
        y[i] = keep[i] ? x[i] * s : T(0);
      }
    }
  });
}

/// @brief dx = dy * keep / (1-p)
template <class T> void dropout_backward(const T* dy, const std::uint8_t* keep, T* dx, std::int64_t n, float p) {
  const T s = T(1) / (T(1) - T(p));
  detail::parallel_for(n, 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) dx[i] = keep[i] ? dy[i] * s : T(0);
  });
}

} // namespace minibert::cpu
