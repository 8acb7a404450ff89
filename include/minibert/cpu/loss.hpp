// SPDX-License-Identifier: MIT
#pragma once
/* CPU loss kernels, forward and backward side by side: cross-entropy over class indices (mean over the
   targets that are not ignore_index, as torch.nn.functional.cross_entropy), mean squared error, and
   binary cross-entropy with logits. */

#include <algorithm> // max
#include <cmath>     // exp, log, log1p
#include <cstdint>   // int64_t

#include <Eigen/Core>

#include <minibert/cpu/softmax.hpp> // exp_flush_to_zero

namespace minibert::cpu {

/// @brief logits (N,C), targets (N) -> probs (N,C) (softmax, saved for backward), returns the mean loss
/// over counted rows and sets count (rows whose target != ignore_index).
template <class T, class Id>
double cross_entropy_forward(const T* logits, const Id* targets, T* probs, std::int64_t N, std::int64_t C,
                             std::int64_t ignore_index, std::int64_t& count) {
  using carr = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
  using arr = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
  double total = 0;
  count = 0;
  for (std::int64_t i = 0; i < N; ++i) {
    carr x(logits + i * C, C);
    arr p(probs + i * C, C);
    const T m = x.maxCoeff();
    p = exp_flush_to_zero(x - m);
    const double z = static_cast<double>(p.sum());
    p *= static_cast<T>(1.0 / z);
    if (std::int64_t(targets[i]) == ignore_index) continue;
    total += std::log(z) + double(m) - double(x[std::int64_t(targets[i])]);
    ++count;
  }
  return count ? total / double(count) : 0.0;
}

/// @brief dlogits = (probs - onehot(target)) * dloss / count; ignored rows get 0
template <class T, class Id>
void cross_entropy_backward(const T* probs, const Id* targets, T dloss, T* dlogits, std::int64_t N, std::int64_t C,
                            std::int64_t ignore_index, std::int64_t count) {
  const T s = count ? dloss / T(count) : T(0);
  for (std::int64_t i = 0; i < N; ++i) {
    T* d = dlogits + i * C;
    if (std::int64_t(targets[i]) == ignore_index) {
      std::fill(d, d + C, T(0));
      continue;
    }
    for (std::int64_t c = 0; c < C; ++c) d[c] = probs[i * C + c] * s;
    d[std::int64_t(targets[i])] -= s;
  }
}

/// @brief mean of (x - y)^2 over n elements
template <class T> double mse_forward(const T* x, const T* y, std::int64_t n) {
  double s = 0;
  for (std::int64_t i = 0; i < n; ++i) s += double(x[i] - y[i]) * double(x[i] - y[i]);
  return n ? s / double(n) : 0.0;
}
/// @brief dx = 2 (x - y) dloss / n
template <class T> void mse_backward(const T* x, const T* y, T dloss, T* dx, std::int64_t n) {
  const T s = T(2) * dloss / T(n);
  for (std::int64_t i = 0; i < n; ++i) dx[i] = s * (x[i] - y[i]);
}

/// @brief mean of max(x,0) - x*y + log(1 + exp(-|x|)) (the stable form of BCE on sigmoid(x))
template <class T> double bce_with_logits_forward(const T* x, const T* y, std::int64_t n) {
  double s = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const double xi = x[i];
    s += std::max(xi, 0.0) - xi * double(y[i]) + std::log1p(std::exp(-std::abs(xi)));
  }
  return n ? s / double(n) : 0.0;
}
/// @brief dx = (sigmoid(x) - y) dloss / n
template <class T> void bce_with_logits_backward(const T* x, const T* y, T dloss, T* dx, std::int64_t n) {
  const T s = dloss / T(n);
  for (std::int64_t i = 0; i < n; ++i) dx[i] = s * (T(1) / (T(1) + std::exp(-x[i])) - y[i]);
}

} // namespace minibert::cpu
