// SPDX-License-Identifier: MIT
#pragma once
/* Differentiable full reductions: sum and mean of all elements to a scalar (shape (1)). */

#include <minibert/autograd.hpp>
#include <minibert/backend.hpp>

namespace minibert {

namespace detail {
template <class T, class D> variable<T, D> reduce_all(const variable<T, D>& x, bool mean, const char* op) {
  const tensor<T, D> xc = x.value().contiguous();
  const std::int64_t n = xc.numel();
  double s = backend<D>::sum(xc.data(), n);
  if (mean) {
    MINIBERT_CHECK(n > 0, op, "mean of an empty tensor of shape " << x.shape());
    s /= double(n);
  }
  tensor<T, D> out = tensor<T, D>::empty({1});
  backend<D>::fill(out.data(), 1, T(s));
  const shape xs = x.shape();
  return make_result(std::move(out), op, {&x}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) {
      // the seed gradient lives on the device: read it through a host copy of one element
      const T gv = host_scalar(g);
      tensor<T, D> dx = tensor<T, D>::empty(xs);
      backend<D>::fill(dx.data(), dx.numel(), mean ? T(gv / T(n)) : gv);
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
