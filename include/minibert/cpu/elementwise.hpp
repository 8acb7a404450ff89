// SPDX-License-Identifier: MIT
#pragma once
/* CPU element-wise kernels: copies and fills, y += a*x, broadcasting binary ops (add, sub, mul) and the
   reduction that undoes a broadcast (sum over broadcast dims), activations (GELU erf/tanh, tanh, ReLU)
   forward and backward, and full sums. Vectorized through Eigen arrays, threaded by parallel_for. */

#include <array>   // array (odometer index)
#include <cmath>   // sqrt
#include <cstdint> // int64_t
#include <cstring> // memcpy

#include <Eigen/Core>                        // Array maps, vectorized tanh/exp
#include <unsupported/Eigen/SpecialFunctions> // vectorized erf

#include <minibert/backend.hpp>
#include <minibert/cpu/parallel.hpp>
#include <minibert/tensor.hpp>

namespace minibert::cpu {

namespace detail {
template <class T> using vec = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T> using cvec = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
} // namespace detail

template <class T> void fill(T* y, std::int64_t n, T v) {
  detail::parallel_for(n, 1, [&](std::int64_t b, std::int64_t e) { std::fill(y + b, y + e, v); });
}
template <class T> void copy(const T* x, T* y, std::int64_t n) {
  detail::parallel_for(n, 1, [&](std::int64_t b, std::int64_t e) { std::memcpy(y + b, x + b, (e - b) * sizeof(T)); });
}
/// @brief y = a * x + y
template <class T> void axpy(T a, const T* x, T* y, std::int64_t n) {
  detail::parallel_for(n, 2, [&](std::int64_t b, std::int64_t e) {
    detail::vec<T>(y + b, e - b) += a * detail::cvec<T>(x + b, e - b);
  });
}
/// @brief y = a * x
template <class T> void scale(T a, const T* x, T* y, std::int64_t n) {
  detail::parallel_for(n, 1, [&](std::int64_t b, std::int64_t e) {
    detail::vec<T>(y + b, e - b) = a * detail::cvec<T>(x + b, e - b);
  });
}

/// @brief y (packed) = the strided view (sizes, strides) at x
template <class T> void copy_strided(const T* x, const shape& sizes, const shape& strides, T* y) {
  minibert::detail::gather_strided(x, sizes, strides, y);
}
/// @brief the strided view (sizes, strides) at y = x (packed)
template <class T> void copy_into(const T* x, T* y, const shape& sizes, const shape& strides) {
  minibert::detail::scatter_strided(x, y, sizes, strides);
}

/// @brief out (shape) = a op b, where a and b are read through strides in out's rank (0 on broadcast dims).
/// out is contiguous.
template <class T>
void binary(binary_op op, const shape& out_shape, const T* a, const shape& a_strides, const T* b,
            const shape& b_strides, T* out) {
  const std::int64_t n = out_shape.numel();
  if (n == 0) return;
  const int r = out_shape.rank();
  const std::int64_t inner = r ? out_shape[r - 1] : 1;
  const std::int64_t sa = r ? a_strides[r - 1] : 0, sb = r ? b_strides[r - 1] : 0;
  const std::int64_t rows = n / inner;
  auto row_kernel = [&](const T* pa, const T* pb, T* po) {
    if (sa == 1 && sb == 1) {
      detail::cvec<T> x(pa, inner), y(pb, inner);
      detail::vec<T> o(po, inner);
      if (op == binary_op::add) o = x + y;
      else if (op == binary_op::sub) o = x - y;
      else o = x * y;
    } else if (sa == 1 && sb == 0) {
      detail::cvec<T> x(pa, inner);
      detail::vec<T> o(po, inner);
      if (op == binary_op::add) o = x + *pb;
      else if (op == binary_op::sub) o = x - *pb;
      else o = x * *pb;
    } else {
      for (std::int64_t j = 0; j < inner; ++j) {
        const T x = pa[j * sa], y = pb[j * sb];
        po[j] = op == binary_op::add ? x + y : op == binary_op::sub ? x - y : x * y;
      }
    }
  };
  detail::parallel_for(rows, inner, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t row = r0; row < r1; ++row) {
      std::int64_t rem = row, oa = 0, ob = 0;
      for (int k = r - 2; k >= 0; --k) {
        const std::int64_t i = rem % out_shape[k];
        rem /= out_shape[k];
        oa += i * a_strides[k];
        ob += i * b_strides[k];
      }
      row_kernel(a + oa, b + ob, out + row * inner);
    }
  });
}

/// @brief out (target, contiguous) = g (g_shape, contiguous) summed over the dims where target_strides is 0
/// (the broadcast dims); target_strides are out's contiguous strides in g's rank, 0 on broadcast dims.
template <class T>
void sum_to(const T* g, const shape& g_shape, T* out, std::int64_t out_numel, const shape& target_strides) {
  fill(out, out_numel, T(0));
  const std::int64_t n = g_shape.numel();
  const int r = g_shape.rank();
  // Serial odometer: this runs only for true broadcasts of small operands (biases go through linear).
  std::array<std::int64_t, max_rank> idx{};
  for (std::int64_t i = 0; i < n; ++i) {
    std::int64_t o = 0;
    for (int k = 0; k < r; ++k) o += idx[k] * target_strides[k];
    out[o] += g[i];
    for (int k = r - 1; k >= 0; --k) {
      if (++idx[k] < g_shape[k]) break;
      idx[k] = 0;
    }
  }
}

/// @brief sum of n values, accumulated per thread chunk in double, chunks added in order
template <class T> double sum(const T* x, std::int64_t n) {
  std::array<double, 256> partial{};
  const int chunks = detail::parallel_chunks(n, 1);
  MINIBERT_ASSERT(chunks <= 256);
  detail::parallel_for_chunks(n, 1, [&](int c, std::int64_t b, std::int64_t e) {
    double s = 0;
    constexpr std::int64_t block = 1024; // sum blocks in T (vectorized), accumulate blocks in double
    for (std::int64_t i = b; i < e; i += block)
      s += static_cast<double>(detail::cvec<T>(x + i, std::min(block, e - i)).sum());
    partial[c] = s;
  });
  double s = 0;
  for (int c = 0; c < chunks; ++c) s += partial[c];
  return s;
}

// ------------------------------------------------------------------ activations

namespace detail {
template <class T> inline constexpr T inv_sqrt2 = T(0.70710678118654752440);
template <class T> inline constexpr T inv_sqrt_2pi = T(0.39894228040143267794);
template <class T> inline constexpr T sqrt_2_over_pi = T(0.79788456080286535588);
template <class T> inline constexpr T gelu_tanh_c = T(0.044715);
} // namespace detail

/// @brief y = act(x)
template <class T> void activation_forward(activation act, const T* x, T* y, std::int64_t n) {
  using namespace detail;
  parallel_for(n, 16, [&](std::int64_t b, std::int64_t e) {
    cvec<T> xi(x + b, e - b);
    vec<T> yo(y + b, e - b);
    switch (act) {
    case activation::gelu_erf: yo = T(0.5) * xi * (T(1) + (xi * inv_sqrt2<T>).erf()); break;
    case activation::gelu_tanh:
      yo = T(0.5) * xi * (T(1) + (sqrt_2_over_pi<T> * (xi + gelu_tanh_c<T> * xi.cube())).tanh());
      break;
    case activation::tanh: yo = xi.tanh(); break;
    case activation::relu: yo = xi.max(T(0)); break;
    }
  });
}

/// @brief dx = dy * act'(x) (x is the activation's input; for tanh, y = tanh(x) is recomputed)
template <class T> void activation_backward(activation act, const T* x, const T* dy, T* dx, std::int64_t n) {
  using namespace detail;
  parallel_for(n, 24, [&](std::int64_t b, std::int64_t e) {
    cvec<T> xi(x + b, e - b), g(dy + b, e - b);
    vec<T> d(dx + b, e - b);
    switch (act) {
    case activation::gelu_erf:
      d = g * (T(0.5) * (T(1) + (xi * inv_sqrt2<T>).erf()) + xi * inv_sqrt_2pi<T> * (T(-0.5) * xi.square()).exp());
      break;
    case activation::gelu_tanh: {
      const auto u = sqrt_2_over_pi<T> * (xi + gelu_tanh_c<T> * xi.cube());
      const Eigen::Array<T, Eigen::Dynamic, 1> th = u.tanh();
      d = g * (T(0.5) * (T(1) + th) +
               T(0.5) * xi * (T(1) - th.square()) * sqrt_2_over_pi<T> * (T(1) + T(3) * gelu_tanh_c<T> * xi.square()));
      break;
    }
    case activation::tanh: d = g * (T(1) - xi.tanh().square()); break;
    case activation::relu: d = (xi > T(0)).select(g, T(0)); break;
    }
  });
}

} // namespace minibert::cpu
