// SPDX-License-Identifier: MIT
#pragma once
/* Differentiable shape ops. reshape, permute, transpose, slice and select return views of the input's
   storage (no copies) when the layout allows; their backward routes the gradient back to the input's
   layout. contiguous() makes a packed copy. */

#include <initializer_list> // initializer_list
#include <vector>           // vector (inverse permutation)

#include <minibert/autograd.hpp>
#include <minibert/backend.hpp>

namespace minibert {

/// @brief same data in a new shape (one dim may be -1)  @throws minibert::error if the sizes differ
template <class T, class D> variable<T, D> reshape(const variable<T, D>& x, const shape& s) {
  const shape xs = x.shape();
  return make_result(x.value().reshape(s), "reshape", {&x}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) { self.accumulate(0, g.reshape(xs)); };
  });
}

/// @brief reorder dims: out.dim(i) = x.dim(order[i]) (a view)
template <class T, class D> variable<T, D> permute(const variable<T, D>& x, std::initializer_list<int> order) {
  const std::vector<int> ord(order);
  tensor<T, D> out = x.value().permute(ord);
  std::vector<int> inv(ord.size());
  for (std::size_t i = 0; i < ord.size(); ++i) inv[x.value().shape().normalize(ord[i])] = int(i);
  return make_result(std::move(out), "permute", {&x}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) { self.accumulate(0, g.permute(inv).contiguous()); };
  });
}

/// @brief swap two dims (a view)
template <class T, class D> variable<T, D> transpose(const variable<T, D>& x, int a, int b) {
  return make_result(x.value().transpose(a, b), "transpose", {&x}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) { self.accumulate(0, g.transpose(a, b).contiguous()); };
  });
}

/// @brief elements [begin,end) of dim d (a view); the backward scatters into zeros
template <class T, class D> variable<T, D> slice(const variable<T, D>& x, int d, std::int64_t begin, std::int64_t end) {
  const shape xs = x.shape();
  return make_result(x.value().slice(d, begin, end), "slice", {&x}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) {
      tensor<T, D> dx = tensor<T, D>::empty(xs);
      backend<D>::fill(dx.data(), dx.numel(), T(0));
      backend<D>::copy_into(g.contiguous().data(), dx.slice(d, begin, end));
      self.accumulate(0, std::move(dx));
    };
  });
}

/// @brief index i of dim d, dropping the dim (a view): select(h, 1, 0) is BERT's [CLS] row
template <class T, class D> variable<T, D> select(const variable<T, D>& x, int d, std::int64_t i) {
  const shape xs = x.shape();
  return make_result(x.value().select(d, i), "select", {&x}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) {
      tensor<T, D> dx = tensor<T, D>::empty(xs);
      backend<D>::fill(dx.data(), dx.numel(), T(0));
      backend<D>::copy_into(g.contiguous().data(), dx.select(d, i));
      self.accumulate(0, std::move(dx));
    };
  });
}

/// @brief a packed copy (or x itself when already contiguous)
template <class T, class D> variable<T, D> contiguous(const variable<T, D>& x) {
  if (x.value().is_contiguous()) return x;
  return make_result(x.value().contiguous(), "contiguous", {&x}, [] {
    return [](const tensor<T, D>& g, node<T, D>& self) { self.accumulate(0, g); };
  });
}

} // namespace minibert
