// SPDX-License-Identifier: MIT
#pragma once
/* CPU row softmax over the last dim with an optional additive mask row per input row, and its backward.
   x (R,L) [+ mask row m(r) (L)] -> y (R,L); dx = y * (dy - sum(dy * y)). */

#include <cmath>      // log
#include <cstdint>    // int64_t
#include <functional> // function (mask row lookup)
#include <limits>     // infinity, min

#include <Eigen/Core>

#include <minibert/cpu/parallel.hpp>

namespace minibert::cpu {

/// @brief e^x, with results below T's smallest normal number flushed to 0. Eigen 3.4's vectorized exp clamps its
/// argument: below about -708 (double) or -88 (float), -inf included, it returns a tiny nonzero value (5.6e-309,
/// 2.9e-39) where exp is 0 or subnormal, so a masked probability would not be exactly 0 on AVX2 machines.
template <class Derived> auto exp_flush_to_zero(const Eigen::ArrayBase<Derived>& x) {
  using T = typename Derived::Scalar;
  static const T lowest_normal_exponent = std::log(std::numeric_limits<T>::min());
  return (x.derived() < lowest_normal_exponent).select(T(0), x.derived().exp());
}

/// @brief y = softmax(x + mask[mask_row(r)]) per row r; mask may be null. A row whose entries are all
/// -inf gives zeros (not NaN).
template <class T, class MaskRow>
void softmax_forward(const T* x, const T* mask, MaskRow&& mask_row, T* y, std::int64_t R, std::int64_t L) {
  using carr = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
  using arr = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
  detail::parallel_for(R, 8 * L, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t r = b; r < e; ++r) {
      arr out(y + r * L, L);
      if (mask) out = carr(x + r * L, L) + carr(mask + mask_row(r) * L, L);
      else out = carr(x + r * L, L);
      const T m = out.maxCoeff();
      if (m == -std::numeric_limits<T>::infinity()) {
        out.setZero();
        continue;
      }
      out = exp_flush_to_zero(out - m);
      out *= T(1) / out.sum();
    }
  });
}

/// @brief dx = y * (dy - rowsum(dy * y)); dx may alias dy
template <class T> void softmax_backward(const T* y, const T* dy, T* dx, std::int64_t R, std::int64_t L) {
  using carr = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
  detail::parallel_for(R, 4 * L, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t r = b; r < e; ++r) {
      carr yr(y + r * L, L), g(dy + r * L, L);
      const T dot = (yr * g).sum();
      Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>(dx + r * L, L) = yr * (g - dot);
    }
  });
}

} // namespace minibert::cpu
