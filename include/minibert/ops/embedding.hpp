// SPDX-License-Identifier: MIT
#pragma once
/* Differentiable embedding lookup: weight (V,C) indexed by integer ids (...) -> (...,C); the backward
   scatter-adds into the rows that were read. */

#include <cstdint> // int64_t

#include <minibert/autograd.hpp>
#include <minibert/backend.hpp>

namespace minibert {

/// @brief rows of weight picked by ids (ids on the same device; checked against V on the host for CPU)
/// @throws minibert::error if weight is not (V,C) or an id is outside [0,V)
template <class T, class D, class I>
variable<T, D> embedding(const variable<T, D>& weight, const tensor<I, D>& ids) {
  MINIBERT_CHECK(weight.rank() == 2, "embedding", "weight " << weight.shape() << " must be (V, C)");
  const std::int64_t V = weight.size(0), C = weight.size(1);
  const tensor<I, D> ic = contiguous(ids);
  const std::int64_t N = ic.numel();
  if constexpr (std::is_same_v<D, device::cpu>) {
    for (std::int64_t i = 0; i < N; ++i)
      MINIBERT_CHECK(ic.data()[i] >= 0 && std::int64_t(ic.data()[i]) < V, "embedding",
                     "id " << std::int64_t(ic.data()[i]) << " at position " << i << " out of range for weight "
                           << weight.shape());
  }
  shape so = ids.shape();
  so.push_back(C);
  tensor<T, D> out = tensor<T, D>::empty(so);
  const shape ws = weight.shape();
  auto& ctx = current_context<D>();
  backend<D>::embedding_forward(ctx, ic.data(), contiguous(weight.value()).data(), out.data(), N, C);
  return make_result(std::move(out), "embedding", {&weight}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) {
      auto& ctx = current_context<D>();
      tensor<T, D> dw = tensor<T, D>::empty(ws);
      backend<D>::fill(ctx, dw.data(), dw.numel(), T(0));
      backend<D>::embedding_backward(ctx, ic.data(), contiguous(g).data(), dw.data(), N, C);
      self.accumulate(0, std::move(dw));
    };
  });
}

} // namespace minibert
