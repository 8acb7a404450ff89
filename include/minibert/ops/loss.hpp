// SPDX-License-Identifier: MIT
#pragma once
/* Differentiable losses, reduced by mean as torch.nn.functional does: cross-entropy over class indices
   (with ignore_index), mean squared error, and binary cross-entropy with logits. Targets get no gradient. */

#include <cstdint> // int64_t
#include <limits>  // quiet_NaN (loss of zero counted rows)

#include <minibert/autograd.hpp>
#include <minibert/backend.hpp>

namespace minibert {

/// @brief torch's default ignore_index
inline constexpr std::int64_t ignore_index_default = -100;

/// @brief mean over rows with target != ignore_index of -log softmax(logits)[target]: logits (N,C), targets (N)
/// @throws minibert::error on shape mismatch or a target outside [0,C) (other than ignore_index)
template <class T, class D, class I>
variable<T, D> cross_entropy(const variable<T, D>& logits, const tensor<I, D>& targets,
                             std::int64_t ignore_index = ignore_index_default) {
  MINIBERT_CHECK(logits.rank() == 2 && targets.rank() == 1 && targets.size(0) == logits.size(0), "cross_entropy",
                 "logits " << logits.shape() << " with targets " << targets.shape() << ": expected (N,C) and (N)");
  const std::int64_t N = logits.size(0), C = logits.size(1);
  const tensor<I, D> tc = targets.contiguous();
  if constexpr (std::is_same_v<D, device::cpu>) {
    for (std::int64_t i = 0; i < N; ++i) {
      const std::int64_t t = tc.data()[i];
      MINIBERT_CHECK((t >= 0 && t < C) || t == ignore_index, "cross_entropy",
                     "target " << t << " at row " << i << " out of range for " << C << " classes");
    }
  }
  const tensor<T, D> xc = logits.value().contiguous();
  tensor<T, D> probs = tensor<T, D>::empty(xc.shape());
  std::int64_t count = 0;
  const double loss = backend<D>::cross_entropy_forward(xc.data(), tc.data(), probs.data(), N, C, ignore_index, count);
  tensor<T, D> out = tensor<T, D>::empty({1});
  backend<D>::fill(out.data(), 1, T(count ? loss : std::numeric_limits<double>::quiet_NaN()));
  return make_result(std::move(out), "cross_entropy", {&logits}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) {
      tensor<T, D> dx = tensor<T, D>::empty(probs.shape());
      backend<D>::cross_entropy_backward(probs.data(), tc.data(), detail::host_scalar(g), dx.data(), N, C, ignore_index,
                                         count);
      self.accumulate(0, std::move(dx));
    };
  });
}

namespace detail {
template <class T, class D, class Fwd, class Bwd>
variable<T, D> pointwise_loss(const char* op, const variable<T, D>& x, const tensor<T, D>& target, Fwd fwd, Bwd bwd) {
  MINIBERT_CHECK(x.shape() == target.shape(), op, "input " << x.shape() << " and target " << target.shape() << " differ");
  const tensor<T, D> xc = x.value().contiguous(), yc = target.contiguous();
  tensor<T, D> out = tensor<T, D>::empty({1});
  backend<D>::fill(out.data(), 1, T(fwd(xc.data(), yc.data(), xc.numel())));
  return make_result(std::move(out), op, {&x}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) {
      tensor<T, D> dx = tensor<T, D>::empty(xc.shape());
      bwd(xc.data(), yc.data(), host_scalar(g), dx.data(), xc.numel());
      self.accumulate(0, std::move(dx));
    };
  });
}
} // namespace detail

/// @brief mean((x - target)^2)  @throws minibert::error if the shapes differ
template <class T, class D> variable<T, D> mse_loss(const variable<T, D>& x, const tensor<T, D>& target) {
  return detail::pointwise_loss(
      "mse_loss", x, target, [](const T* a, const T* b, std::int64_t n) { return backend<D>::mse_forward(a, b, n); },
      [](const T* a, const T* b, T g, T* d, std::int64_t n) { backend<D>::mse_backward(a, b, g, d, n); });
}

/// @brief mean binary cross-entropy of sigmoid(x) against target in [0,1] (torch's BCEWithLogitsLoss)
/// @throws minibert::error if the shapes differ
template <class T, class D> variable<T, D> bce_with_logits(const variable<T, D>& x, const tensor<T, D>& target) {
  return detail::pointwise_loss(
      "bce_with_logits", x, target,
      [](const T* a, const T* b, std::int64_t n) { return backend<D>::bce_with_logits_forward(a, b, n); },
      [](const T* a, const T* b, T g, T* d, std::int64_t n) { backend<D>::bce_with_logits_backward(a, b, g, d, n); });
}

} // namespace minibert
