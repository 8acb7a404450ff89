// SPDX-License-Identifier: MIT
#pragma once
/* Differentiable full reductions: sum and mean of all elements to a scalar (shape (1)). */

#include <minibert/autograd.hpp>
#include <minibert/backend.hpp>

namespace minibert {

namespace detail {
template <class T, class D> variable<T, D> reduce_all(const variable<T, D>& x, bool mean, const char* op) {
  const tensor<T, D> xc = contiguous(x.value());
  const std::int64_t n = xc.numel();
  MINIBERT_CHECK(!mean || n > 0, op, "mean of an empty tensor of shape " << x.shape());
  auto& ctx = current_context<D>();
  tensor<T, D> out = tensor<T, D>::empty({1});
  backend<D>::sum_all(ctx, xc.data(), n, mean, out.data());
  const shape xs = x.shape();
  return make_result(std::move(out), op, {&x}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) {
      auto& ctx = current_context<D>();
      tensor<T, D> dx = tensor<T, D>::empty(xs); // every element gets g / n (mean) or g (sum), read on the device
      backend<D>::broadcast_scalar(ctx, contiguous(g).data(), mean ? T(n) : T(1), dx.data(), dx.numel());
      self.accumulate(0, std::move(dx));
    };
  });
}
} // namespace detail

/// @brief sum of all elements, as a (1) tensor
template <class T, class D> variable<T, D> sum(const variable<T, D>& x) { return detail::reduce_all(x, false, "sum"); }
/// @brief mean of all elements, as a (1) tensor  @throws minibert::error if x is empty
template <class T, class D> variable<T, D> mean(const variable<T, D>& x) { return detail::reduce_all(x, true, "mean"); }

} // namespace minibert
