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
  return make_result(contiguous(x.value()).reshape(s), "reshape", {&x}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) { self.accumulate(0, contiguous(g).reshape(xs)); };
  });
}

/// @brief reorder dims: out.dim(i) = x.dim(order[i]) (a view)
template <class T, class D> variable<T, D> permute(const variable<T, D>& x, std::initializer_list<int> order) {
  const std::vector<int> ord(order);
  tensor<T, D> out = x.value().permute(ord);
  std::vector<int> inv(ord.size());
  for (std::size_t i = 0; i < ord.size(); ++i) inv[x.value().shape().normalize(ord[i])] = int(i);
  return make_result(std::move(out), "permute", {&x}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) { self.accumulate(0, contiguous(g.permute(inv))); };
  });
}

/// @brief swap two dims (a view)
template <class T, class D> variable<T, D> transpose(const variable<T, D>& x, int a, int b) {
  return make_result(x.value().transpose(a, b), "transpose", {&x}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) { self.accumulate(0, contiguous(g.transpose(a, b))); };
  });
}

/// @brief elements [begin,end) of dim d (a view); the backward scatters into zeros
template <class T, class D> variable<T, D> slice(const variable<T, D>& x, int d, std::int64_t begin, std::int64_t end) {
  const shape xs = x.shape();
  return make_result(x.value().slice(d, begin, end), "slice", {&x}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) {
      auto& ctx = current_context<D>();
      tensor<T, D> dx = tensor<T, D>::empty(xs);
      backend<D>::fill(ctx, dx.data(), dx.numel(), T(0));
      const tensor<T, D> view = dx.slice(d, begin, end);
      backend<D>::copy_into(ctx, contiguous(g).data(), view.data(), view.shape(), view.strides());
      self.accumulate(0, std::move(dx));
    };
  });
}

/// @brief index i of dim d, dropping the dim (a view): select(h, 1, 0) is BERT's [CLS] row
template <class T, class D> variable<T, D> select(const variable<T, D>& x, int d, std::int64_t i) {
  const shape xs = x.shape();
  return make_result(x.value().select(d, i), "select", {&x}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) {
      auto& ctx = current_context<D>();
      tensor<T, D> dx = tensor<T, D>::empty(xs);
      backend<D>::fill(ctx, dx.data(), dx.numel(), T(0));
      const tensor<T, D> view = dx.select(d, i);
      backend<D>::copy_into(ctx, contiguous(g).data(), view.data(), view.shape(), view.strides());
      self.accumulate(0, std::move(dx));
    };
  });
}

/// @brief the inputs stacked along dim 0 (equal trailing dims): (n0,...) ++ (n1,...) -> (n0+n1+...,...)
/// @throws minibert::error if there are no inputs or their trailing dims differ
template <class T, class D> variable<T, D> concat(const std::vector<variable<T, D>>& xs) {
  MINIBERT_CHECK(!xs.empty(), "concat", "no inputs");
  shape so = xs[0].shape();
  std::vector<std::int64_t> rows;
  std::int64_t total = 0;
  for (const auto& x : xs) {
    MINIBERT_CHECK(x.rank() == so.rank() && x.rank() >= 1, "concat", "input " << x.shape() << " vs " << xs[0].shape());
    for (int k = 1; k < so.rank(); ++k)
      MINIBERT_CHECK(x.shape()[k] == so[k], "concat", "input " << x.shape() << " vs " << xs[0].shape() << ": dim " << k);
    rows.push_back(x.size(0));
    total += x.size(0);
  }
  so[0] = total;
  tensor<T, D> out = tensor<T, D>::empty(so);
  const std::int64_t inner = total ? out.numel() / total : 0;
  auto& ctx = current_context<D>();
  std::int64_t at = 0;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    backend<D>::copy(ctx, contiguous(xs[i].value()).data(), out.data() + at * inner, rows[i] * inner);
    at += rows[i];
  }
  // the backward needs the inputs' nodes, not their values: make_result records them
  if (!grad_enabled()) return variable<T, D>(std::move(out), false);
  auto n = std::make_shared<node<T, D>>();
  n->value = std::move(out);
  n->op = "concat";
  for (const auto& x : xs)
    if (x.requires_grad()) n->requires_grad = true;
  if (n->requires_grad) {
    for (const auto& x : xs) n->inputs.push_back(x.node_ptr());
    n->backward_fn = [rows, inner](const tensor<T, D>& g, node<T, D>& self) {
      auto& ctx = current_context<D>();
      const tensor<T, D> gc = contiguous(g);
      std::int64_t at = 0;
      for (std::size_t i = 0; i < rows.size(); ++i) {
        if (self.needs(i)) {
          shape si = gc.shape();
          si[0] = rows[i];
          tensor<T, D> gi = tensor<T, D>::empty(si);
          backend<D>::copy(ctx, gc.data() + at * inner, gi.data(), rows[i] * inner);
          self.accumulate(i, std::move(gi));
        }
        at += rows[i];
      }
    };
  }
  return variable<T, D>(std::move(n));
}

/// @brief a packed copy (or x itself when already contiguous)
template <class T, class D> variable<T, D> contiguous(const variable<T, D>& x) {
  if (x.value().is_contiguous()) return x;
  return make_result(contiguous(x.value()), "contiguous", {&x}, [] {
    return [](const tensor<T, D>& g, node<T, D>& self) { self.accumulate(0, g); };
  });
}

} // namespace minibert
