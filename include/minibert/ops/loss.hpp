// SPDX-License-Identifier: MIT
#pragma once
/* Differentiable losses, reduced by mean as torch.nn.functional does: cross-entropy over class indices
   (with ignore_index), mean squared error, and binary cross-entropy with logits. Targets get no gradient. */

#include <cstdint> // int64_t

#include <minibert/autograd.hpp>
#include <minibert/backend.hpp>

namespace minibert {

/// @brief torch's default ignore_index
inline constexpr std::int64_t ignore_index_default = -100;

/// @brief mean over rows with target != ignore_index of -log softmax(logits)[target]: logits (N,C), targets (N);
/// NaN when every row is ignored (as torch)
/// @throws minibert::error on shape mismatch or, for CPU tensors, a target outside [0,C) (other than ignore_index)
template <class T, class D, class I>
variable<T, D> cross_entropy(const variable<T, D>& logits, const tensor<I, D>& targets,
                             std::int64_t ignore_index = ignore_index_default) {
  MINIBERT_CHECK(logits.rank() == 2 && targets.rank() == 1 && targets.size(0) == logits.size(0), "cross_entropy",
                 "logits " << logits.shape() << " with targets " << targets.shape() << ": expected (N,C) and (N)");
  const std::int64_t N = logits.size(0), C = logits.size(1);
  const tensor<I, D> tc = contiguous(targets);
  if constexpr (std::is_same_v<D, device::cpu>) {
    for (std::int64_t i = 0; i < N; ++i) {
      const std::int64_t t = tc.data()[i];
      MINIBERT_CHECK((t >= 0 && t < C) || t == ignore_index, "cross_entropy",
                     "target " << t << " at row " << i << " out of range for " << C << " classes");
    }
  }
  auto& ctx = current_context<D>();
  const tensor<T, D> xc = contiguous(logits.value());
  tensor<T, D> probs = tensor<T, D>::empty(xc.shape()), out = tensor<T, D>::empty({1});
  tensor<acc_t<T>, D> count = tensor<acc_t<T>, D>::empty({1}); // rows counted, on the device (no synchronization)
  backend<D>::cross_entropy_forward(ctx, xc.data(), tc.data(), probs.data(), N, C, ignore_index, out.data(), count.data());
  return make_result(std::move(out), "cross_entropy", {&logits}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) {
      auto& ctx = current_context<D>();
      tensor<T, D> dx = tensor<T, D>::empty(probs.shape());
      backend<D>::cross_entropy_backward(ctx, probs.data(), tc.data(), contiguous(g).data(), count.data(), dx.data(), N,
                                         C, ignore_index);
      self.accumulate(0, std::move(dx));
    };
  });
}

namespace detail {
/// a mean loss over element pairs: fwd(ctx, x, y, n, loss) and bwd(ctx, x, y, dloss, dx, n), both on the device
template <class T, class D, class Fwd, class Bwd>
variable<T, D> pointwise_loss(const char* op, const variable<T, D>& x, const tensor<T, D>& target, Fwd fwd, Bwd bwd) {
  MINIBERT_CHECK(x.shape() == target.shape(), op, "input " << x.shape() << " and target " << target.shape() << " differ");
  const tensor<T, D> xc = contiguous(x.value()), yc = contiguous(target);
  tensor<T, D> out = tensor<T, D>::empty({1});
  fwd(current_context<D>(), xc.data(), yc.data(), xc.numel(), out.data());
  return make_result(std::move(out), op, {&x}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) {
      tensor<T, D> dx = tensor<T, D>::empty(xc.shape());
      bwd(current_context<D>(), xc.data(), yc.data(), contiguous(g).data(), dx.data(), xc.numel());
      self.accumulate(0, std::move(dx));
    };
  });
}
} // namespace detail

/// @brief mean((x - target)^2)  @throws minibert::error if the shapes differ
template <class T, class D> variable<T, D> mse_loss(const variable<T, D>& x, const tensor<T, D>& target) {
  return detail::pointwise_loss(
      "mse_loss", x, target, [](auto& ctx, auto... a) { backend<D>::mse_forward(ctx, a...); },
      [](auto& ctx, auto... a) { backend<D>::mse_backward(ctx, a...); });
}

/// @brief mean binary cross-entropy of sigmoid(x) against target in [0,1] (torch's BCEWithLogitsLoss)
/// @throws minibert::error if the shapes differ
template <class T, class D> variable<T, D> bce_with_logits(const variable<T, D>& x, const tensor<T, D>& target) {
  return detail::pointwise_loss(
      "bce_with_logits", x, target, [](auto& ctx, auto... a) { backend<D>::bce_with_logits_forward(ctx, a...); },
      [](auto& ctx, auto... a) { backend<D>::bce_with_logits_backward(ctx, a...); });
}

} // namespace minibert
