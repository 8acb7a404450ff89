// SPDX-License-Identifier: MIT
#pragma once
/* CPU kernels of the optimizer: the fused AdamW update (torch.optim.AdamW's single-tensor arithmetic, in the
   same operation order), the sum of squares that clip_grad_norm reduces, and the unscale-and-check of fp16 loss
   scaling (training/grad_scaler.hpp). Eigen arrays, threaded by parallel_for with a static partition, so results
   do not depend on timing. */

#include <algorithm> // min
#include <array>     // array (per-chunk partial sums)
#include <cmath>     // isfinite
#include <cstdint>   // int64_t

#include <Eigen/Core> // Array maps

#include <minibert/backend.hpp>
#include <minibert/cpu/parallel.hpp>
#include <minibert/error.hpp>

namespace minibert::cpu {

/// @brief One AdamW step in place over n elements: p (master weights, accumulation type A), g (grad), m (exp_avg),
/// v (exp_avg_sq); when `copy` is not null (16-bit parameters) it receives T(p). The expression order is torch's
/// (mul_ then add_ for m, addcmul_ for v, addcdiv_ with value = -step_size), so fp64 results agree to rounding; per
/// element this is elementwise only, so no thread ever shares data.
template <class A, class T>
void adamw_step(A* p, T* copy, const T* g, A* m, A* v, std::int64_t n, const adamw_coefficients<A>& c) {
  using arr = Eigen::Map<Eigen::Array<A, Eigen::Dynamic, 1>>;
  detail::parallel_for(n, 24, [&](std::int64_t b, std::int64_t e) {
    const std::int64_t len = e - b;
    arr pp(p + b, len), mm(m + b, len), vv(v + b, len);
    const auto gg = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(g + b, len).template cast<A>();
    pp = pp * c.decay;
    mm = mm * c.beta1 + c.one_minus_beta1 * gg;
    vv = vv * c.beta2 + c.one_minus_beta2 * gg * gg;
    pp = pp + (c.neg_step_size * mm) / (vv.sqrt() / c.bias_correction2_sqrt + c.eps);
    if (copy && static_cast<const void*>(copy) != static_cast<const void*>(p))
      for (std::int64_t i = b; i < e; ++i) copy[i] = T(p[i]);
  });
}

/// @brief sum of x[i]^2, accumulated per thread chunk in double (chunks added in order: reproducible for a
/// given thread count). Used for the global gradient norm, which fp32 squares would overflow or round badly.
template <class T> double sum_squares(const T* x, std::int64_t n) {
  std::array<double, 256> partial{};
  const int chunks = detail::parallel_chunks(n, 2);
  MINIBERT_ASSERT(chunks <= 256);
  detail::parallel_for_chunks(n, 2, [&](int c, std::int64_t b, std::int64_t e) {
    using carr = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
    double s = 0;
    constexpr std::int64_t block = 256; // square in double (vectorized cast), accumulate blocks in double
    for (std::int64_t i = b; i < e; i += block)
      s += carr(x + i, std::min(block, e - i)).template cast<double>().square().sum();
    partial[c] = s;
  });
  double s = 0;
  for (int c = 0; c < chunks; ++c) s += partial[c];
  return s;
}

/// @brief g (n) *= inv_scale in place, in the accumulation type A, as the kernel of torch's
/// _amp_foreach_non_finite_check_and_unscale_ does (an element is left as it is when inv_scale is 1); returns whether
/// an element was inf or NaN before or after (as stored in T: a 16-bit gradient can overflow when inv_scale > 1).
/// Each chunk keeps its own flag, so no thread writes another's memory; OR-ing the flags does not depend on order.
template <class T, class A> bool non_finite_check_and_unscale(T* g, std::int64_t n, A inv_scale) {
  std::array<unsigned char, 256> bad{};
  const int chunks = detail::parallel_chunks(n, 2);
  MINIBERT_ASSERT(chunks <= 256);
  detail::parallel_for_chunks(n, 2, [&](int c, std::int64_t b, std::int64_t e) {
    bool any = false;
    for (std::int64_t i = b; i < e; ++i) {
      const A v = A(g[i]);
      const T out = T(inv_scale == A(1) ? v : v * inv_scale);
      g[i] = out;
      any |= !(std::isfinite(v) && std::isfinite(A(out)));
    }
    bad[c] = any;
  });
  for (int c = 0; c < chunks; ++c)
    if (bad[c]) return true;
  return false;
}

} // namespace minibert::cpu
