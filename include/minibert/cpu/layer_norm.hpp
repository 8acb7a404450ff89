// SPDX-License-Identifier: MIT
#pragma once
/* CPU layer normalization over the last dim (Ba et al. 2016), forward and backward side by side.
   inp (N,C), weight (C), bias (C) -> out (N,C), mean (N), rstd (N); the backward takes mean and rstd. */

#include <array>   // array (per-chunk partials)
#include <cmath>   // sqrt
#include <cstdint> // int64_t
#include <vector>  // vector

#include <Eigen/Core>

#include <minibert/cpu/parallel.hpp>

namespace minibert::cpu {

/// @brief out = (inp - mean) * rstd * weight + bias per row, rstd = 1/sqrt(var + eps) (biased variance)
template <class T>
void layer_norm_forward(const T* inp, const T* weight, const T* bias, T* out, T* mean, T* rstd, std::int64_t N,
                        std::int64_t C, double eps) {
  using arr = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
  detail::parallel_for(N, 6 * C, [&](std::int64_t b, std::int64_t e) {
    arr w(weight, C), bi(bias, C);
    for (std::int64_t i = b; i < e; ++i) {
      arr x(inp + i * C, C);
      const T m = x.mean();
      const T v = (x - m).square().mean(); // two-pass variance: no cancellation
      const T s = T(1) / std::sqrt(v + T(eps));
      Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>(out + i * C, C) = (x - m) * s * w + bi;
      mean[i] = m;
      rstd[i] = s;
    }
  });
}

/// @brief dinp = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)), dnorm = dout * weight;
/// dweight += sum over rows of dout * norm; dbias += sum of dout. dinp is overwritten.
template <class T>
void layer_norm_backward(const T* dout, const T* inp, const T* weight, const T* mean, const T* rstd, T* dinp,
                         T* dweight, T* dbias, std::int64_t N, std::int64_t C) {
  using carr = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
  using arr = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
  using acc = Eigen::Array<T, Eigen::Dynamic, 1>;
  const int chunks = detail::parallel_chunks(N, 10 * C);
  std::vector<acc> dw(chunks, acc::Zero(C)), db(chunks, acc::Zero(C));
  detail::parallel_for_chunks(N, 10 * C, [&](int c, std::int64_t b, std::int64_t e) {
    carr w(weight, C);
    acc norm(C), dnorm(C);
    for (std::int64_t i = b; i < e; ++i) {
      carr x(inp + i * C, C), g(dout + i * C, C);
      norm = (x - mean[i]) * rstd[i];
      dnorm = g * w;
      const T mdn = dnorm.mean(), mdnn = (dnorm * norm).mean();
      arr(dinp + i * C, C) = rstd[i] * (dnorm - mdn - norm * mdnn);
      if (dweight) dw[c] += g * norm;
      if (dbias) db[c] += g;
    }
  });
  for (int c = 0; c < chunks; ++c) { // fixed order: reproducible for a given thread count
    if (dweight) arr(dweight, C) += dw[c];
    if (dbias) arr(dbias, C) += db[c];
  }
}

} // namespace minibert::cpu
