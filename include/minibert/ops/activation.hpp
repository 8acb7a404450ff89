// SPDX-License-Identifier: MIT
#pragma once
/* Differentiable activations: GELU (erf form, as BERT's "gelu"; tanh form, as "gelu_new" and
   "gelu_pytorch_tanh"), tanh (the pooler's) and ReLU. */

#include <minibert/autograd.hpp>
#include <minibert/backend.hpp>

namespace minibert {

/// @brief act(x) element-wise
template <class T, class D> variable<T, D> activate(const variable<T, D>& x, activation act) {
  const tensor<T, D> xc = contiguous(x.value());
  tensor<T, D> out = tensor<T, D>::empty(xc.shape());
  auto& ctx = current_context<D>();
  backend<D>::activation_forward(ctx, act, xc.data(), out.data(), out.numel());
  return make_result(std::move(out), "activation", {&x}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) {
      auto& ctx = current_context<D>();
      tensor<T, D> dx = tensor<T, D>::empty(xc.shape());
      backend<D>::activation_backward(ctx, act, xc.data(), contiguous(g).data(), dx.data(), dx.numel());
      self.accumulate(0, std::move(dx));
    };
  });
}

/// @brief GELU: x * Phi(x) (erf form), or its tanh approximation when tanh_approx
template <class T, class D> variable<T, D> gelu(const variable<T, D>& x, bool tanh_approx = false) {
  return activate(x, tanh_approx ? activation::gelu_tanh : activation::gelu_erf);
}
template <class T, class D> variable<T, D> tanh(const variable<T, D>& x) { return activate(x, activation::tanh); }
template <class T, class D> variable<T, D> relu(const variable<T, D>& x) { return activate(x, activation::relu); }

} // namespace minibert
