// SPDX-License-Identifier: MIT
#pragma once
/* Differentiable softmax over the last dim with an optional additive mask that broadcasts to x
   (e.g. an attention mask (B,1,1,T) over scores (B,NH,T,T)). The mask gets no gradient. */

#include <minibert/autograd.hpp>
#include <minibert/backend.hpp>
#include <minibert/ops/elementwise.hpp>

namespace minibert {

/// @brief softmax(x + mask) over the last dim; mask (undefined for none) broadcasts to x and shares its
/// last dim. Rows that are entirely -inf give zeros.
/// @throws minibert::error if the mask does not broadcast to x
template <class T, class D>
variable<T, D> softmax(const variable<T, D>& x, const tensor<T, D>& mask = tensor<T, D>()) {
  const tensor<T, D> xc = contiguous(x.value());
  const std::int64_t L = x.size(-1), R = xc.numel() / (L ? L : 1);
  row_broadcast rows;
  tensor<T, D> mc;
  if (mask.defined()) {
    const shape b = detail::broadcast_shapes("softmax", x.shape(), mask.shape());
    MINIBERT_CHECK(b == x.shape() && mask.size(-1) == L, "softmax",
                   "mask " << mask.shape() << " must broadcast to input " << x.shape() << " along all but the last dim");
    mc = contiguous(mask);
    const shape st = detail::broadcast_strides(mc.shape(), x.shape()); // element strides, 0 on broadcast dims
    for (int k = 0; k < x.rank() - 1; ++k) {
      rows.lead.push_back(x.shape()[k]);
      rows.row_strides.push_back(st[k] / L);
    }
  }
  tensor<T, D> out = tensor<T, D>::empty(xc.shape());
  auto& ctx = current_context<D>();
  backend<D>::softmax_forward(ctx, xc.data(), mc.defined() ? mc.data() : (const T*)nullptr, rows, out.data(), R, L);
  const tensor<T, D> y = out;
  return make_result(std::move(out), "softmax", {&x}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) {
      auto& ctx = current_context<D>();
      tensor<T, D> dx = tensor<T, D>::empty(y.shape());
      backend<D>::softmax_backward(ctx, y.data(), contiguous(g).data(), dx.data(), R, L);
      self.accumulate(0, std::move(dx));
    };
  });
}

} // namespace minibert
