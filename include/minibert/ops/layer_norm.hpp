// SPDX-License-Identifier: MIT
#pragma once
/* Differentiable layer normalization over the last dim: x (...,C), weight (C), bias (C) -> (...,C). */

#include <minibert/autograd.hpp>
#include <minibert/backend.hpp>

namespace minibert {

/// @brief (x - mean) / sqrt(var + eps) * weight + bias over the last dim (biased variance, as torch)
/// @throws minibert::error if weight or bias is not (C) for x (...,C)
template <class T, class D>
variable<T, D> layer_norm(const variable<T, D>& x, const variable<T, D>& weight, const variable<T, D>& bias, double eps) {
  const std::int64_t C = x.size(-1);
  MINIBERT_CHECK((weight.shape() == shape{C} && bias.shape() == shape{C}), "layer_norm",
                 "input " << x.shape() << " with weight " << weight.shape() << " and bias " << bias.shape()
                          << ": expected (" << C << ")");
  const tensor<T, D> xc = contiguous(x.value());
  const std::int64_t N = xc.numel() / (C ? C : 1);
  tensor<T, D> out = tensor<T, D>::empty(xc.shape());
  tensor<acc_t<T>, D> mean = tensor<acc_t<T>, D>::empty({N}), rstd = tensor<acc_t<T>, D>::empty({N}); // fp32 statistics
  const tensor<T, D> w = contiguous(weight.value());
  auto& ctx = current_context<D>();
  backend<D>::layer_norm_forward(ctx, xc.data(), w.data(), contiguous(bias.value()).data(), out.data(), mean.data(), rstd.data(), N, C, eps);
  return make_result(std::move(out), "layer_norm", {&x, &weight, &bias}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) {
      auto& ctx = current_context<D>();
      tensor<T, D> dx = tensor<T, D>::empty(xc.shape()), dw, db;
      if (self.needs(1)) {
        dw = tensor<T, D>::empty({C});
        backend<D>::fill(ctx, dw.data(), C, T(0));
      }
      if (self.needs(2)) {
        db = tensor<T, D>::empty({C});
        backend<D>::fill(ctx, db.data(), C, T(0));
      }
      backend<D>::layer_norm_backward(ctx, contiguous(g).data(), xc.data(), w.data(), mean.data(), rstd.data(), dx.data(),
                                      dw.data(), db.data(), N, C);
      self.accumulate(0, std::move(dx));
      if (self.needs(1)) self.accumulate(1, std::move(dw));
      if (self.needs(2)) self.accumulate(2, std::move(db));
    };
  });
}

} // namespace minibert
