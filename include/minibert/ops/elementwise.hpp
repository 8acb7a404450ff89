// SPDX-License-Identifier: MIT
#pragma once
/* Differentiable element-wise ops with NumPy broadcasting: add, sub, mul, and scale by a constant.
   The backward of a broadcast operand sums the gradient over its broadcast dims. */

#include <algorithm> // max

#include <minibert/autograd.hpp>
#include <minibert/backend.hpp>

namespace minibert {

namespace detail {
/// the broadcast of two shapes (NumPy rules), or an error naming op and both shapes
inline shape broadcast_shapes(const char* op, const shape& a, const shape& b) {
  const int r = std::max(a.rank(), b.rank());
  shape out;
  for (int i = 0; i < r; ++i) {
    const int ia = i - (r - a.rank()), ib = i - (r - b.rank());
    const std::int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    MINIBERT_CHECK(da == db || da == 1 || db == 1, op,
                   "shapes " << a << " and " << b << " do not broadcast (dim " << i << ": " << da << " vs " << db << ")");
    out.push_back(da == 1 ? db : da);
  }
  return out;
}
/// strides to read t (contiguous) as if it had shape out: 0 on broadcast dims, in out's rank
inline shape broadcast_strides(const shape& t, const shape& out) {
  const shape st = contiguous_strides(t);
  shape s;
  for (int i = 0; i < out.rank(); ++i) {
    const int it = i - (out.rank() - t.rank());
    s.push_back(it >= 0 && t[it] != 1 ? st[it] : 0);
  }
  return s;
}
/// g (out shape) summed down to shape target (the reverse of a broadcast)
template <class T, class D> tensor<T, D> reduce_to(const tensor<T, D>& g, const shape& target) {
  if (g.shape() == target) return g;
  tensor<T, D> out = tensor<T, D>::empty(target);
  const tensor<T, D> gc = contiguous(g);
  auto& ctx = current_context<D>();
  backend<D>::sum_to(ctx, gc.data(), gc.shape(), out.data(), out.numel(), broadcast_strides(target, g.shape()));
  return out;
}
template <class T, class D>
tensor<T, D> binary_values(binary_op op, const char* name, const tensor<T, D>& a, const tensor<T, D>& b) {
  const shape out_shape = broadcast_shapes(name, a.shape(), b.shape());
  const tensor<T, D> ac = contiguous(a), bc = contiguous(b);
  tensor<T, D> out = tensor<T, D>::empty(out_shape);
  auto& ctx = current_context<D>();
  backend<D>::binary(ctx, op, out_shape, ac.data(), broadcast_strides(ac.shape(), out_shape), bc.data(),
                     broadcast_strides(bc.shape(), out_shape), out.data());
  return out;
}
} // namespace detail

/// @brief a + b (broadcasting)  @throws minibert::error if the shapes do not broadcast
template <class T, class D> variable<T, D> add(const variable<T, D>& a, const variable<T, D>& b) {
  auto out = detail::binary_values(binary_op::add, "add", a.value(), b.value());
  const shape sa = a.shape(), sb = b.shape();
  return make_result(std::move(out), "add", {&a, &b}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) {
      self.accumulate(0, detail::reduce_to(g, sa));
      self.accumulate(1, detail::reduce_to(g, sb));
    };
  });
}

/// @brief a - b (broadcasting)  @throws minibert::error if the shapes do not broadcast
template <class T, class D> variable<T, D> sub(const variable<T, D>& a, const variable<T, D>& b) {
  auto out = detail::binary_values(binary_op::sub, "sub", a.value(), b.value());
  const shape sa = a.shape(), sb = b.shape();
  return make_result(std::move(out), "sub", {&a, &b}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) {
      auto& ctx = current_context<D>();
      self.accumulate(0, detail::reduce_to(g, sa));
      if (self.needs(1)) {
        tensor<T, D> r = detail::reduce_to(g, sb), neg = tensor<T, D>::empty(sb);
        backend<D>::scale(ctx, T(-1), contiguous(r).data(), neg.data(), neg.numel());
        self.accumulate(1, std::move(neg));
      }
    };
  });
}

/// @brief a * b element-wise (broadcasting)  @throws minibert::error if the shapes do not broadcast
template <class T, class D> variable<T, D> mul(const variable<T, D>& a, const variable<T, D>& b) {
  auto out = detail::binary_values(binary_op::mul, "mul", a.value(), b.value());
  return make_result(std::move(out), "mul", {&a, &b}, [a = a.value(), b = b.value()] {
    return [a, b](const tensor<T, D>& g, node<T, D>& self) {
      if (self.needs(0)) self.accumulate(0, detail::reduce_to(detail::binary_values(binary_op::mul, "mul", g, b), a.shape()));
      if (self.needs(1)) self.accumulate(1, detail::reduce_to(detail::binary_values(binary_op::mul, "mul", g, a), b.shape()));
    };
  });
}

/// @brief s * x for a constant s
template <class T, class D> variable<T, D> scale(const variable<T, D>& x, T s) {
  const tensor<T, D> xc = contiguous(x.value());
  tensor<T, D> out = tensor<T, D>::empty(x.shape());
  auto& ctx = current_context<D>();
  backend<D>::scale(ctx, s, xc.data(), out.data(), out.numel());
  return make_result(std::move(out), "scale", {&x}, [=] {
    return [=](const tensor<T, D>& g, node<T, D>& self) {
      auto& ctx = current_context<D>();
      tensor<T, D> dx = tensor<T, D>::empty(g.shape());
      backend<D>::scale(ctx, s, contiguous(g).data(), dx.data(), dx.numel());
      self.accumulate(0, std::move(dx));
    };
  });
}

template <class T, class D> variable<T, D> operator+(const variable<T, D>& a, const variable<T, D>& b) { return add(a, b); }
template <class T, class D> variable<T, D> operator-(const variable<T, D>& a, const variable<T, D>& b) { return sub(a, b); }
template <class T, class D> variable<T, D> operator*(const variable<T, D>& a, const variable<T, D>& b) { return mul(a, b); }

} // namespace minibert
