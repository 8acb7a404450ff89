// SPDX-License-Identifier: MIT
#pragma once
/* Differentiable inverted dropout, seeded and reproducible: the mask comes from the generator's Philox
   stream, so a given (seed, offset) gives the same mask on any thread count or device. */

#include <cstdint> // uint8_t

#include <minibert/autograd.hpp>
#include <minibert/backend.hpp>
#include <minibert/random.hpp>

namespace minibert {

/// @brief x with each element zeroed with probability p and the rest scaled by 1/(1-p); the identity when
/// !training or p == 0.  @throws minibert::error if p is outside [0,1)
template <class T, class D> variable<T, D> dropout(const variable<T, D>& x, float p, bool training, generator& gen) {
  MINIBERT_CHECK(p >= 0.0f && p < 1.0f, "dropout", "probability " << p << " outside [0, 1) for input " << x.shape());
  if (!training || p == 0.0f) return x;
  const tensor<T, D> xc = contiguous(x.value());
  const std::int64_t n = xc.numel();
  tensor<T, D> out = tensor<T, D>::empty(xc.shape());
  tensor<std::uint8_t, D> keep = tensor<std::uint8_t, D>::empty(xc.shape());
  auto& ctx = current_context<D>();
  const std::uint64_t base = gen.reserve(std::uint64_t(n));
  backend<D>::dropout_forward(ctx, xc.data(), out.data(), keep.data(), n, p, gen.seed(), base);
  return make_result(std::move(out), "dropout", {&x}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) {
      auto& ctx = current_context<D>();
      tensor<T, D> dx = tensor<T, D>::empty(g.shape());
      backend<D>::dropout_backward(ctx, contiguous(g).data(), keep.data(), dx.data(), n, p);
      self.accumulate(0, std::move(dx));
    };
  });
}

} // namespace minibert
