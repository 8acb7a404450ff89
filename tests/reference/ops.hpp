// SPDX-License-Identifier: MIT
#pragma once
/* Reference implementations of every minibert op, forward AND backward: naive loops over explicit
   multi-indices, accumulating in double. This file is the spec the backends are tested against
   (STYLE.md §7): it is written from the math definitions with PyTorch semantics, never optimized,
   depends on the standard library only, and is never included by the library.

   Conventions: ref::array is a dense row-major N-d array of doubles; backward functions take the
   forward inputs and the upstream gradient dout and return the gradient of every differentiable input
   (the gradient of L = sum(out * dout)). Backward passes of normalizations (softmax, layer norm) are
   written as explicit Jacobian-vector products, not the closed forms the kernels use.

   Ops: binary add/sub/mul (NumPy broadcasting), scale, matmul (transposes, batch, shared 2-D rhs),
   linear, activations (GELU erf, GELU tanh, tanh, ReLU), layer_norm, softmax (+ broadcast additive
   mask), embedding, cross_entropy (ignore_index), mse, bce_with_logits, dropout (given a keep mask),
   sum, mean, multi-head attention (additive (B,T) key mask, given dropout keep mask). */

#include <algorithm> // max
#include <cmath>     // erf, exp, log, log1p, sqrt, tanh
#include <cstddef>   // size_t
#include <cstdint>   // int64_t
#include <limits>    // infinity, quiet_NaN
#include <stdexcept> // invalid_argument (misuse of the reference itself)
#include <utility>   // move
#include <vector>    // vector

namespace ref {

using dims = std::vector<std::int64_t>;

inline std::int64_t numel(const dims& s) {
  std::int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

/// @brief dense row-major N-d array of doubles
struct array {
  dims shape;
  std::vector<double> v;

  array() = default;
  explicit array(dims s, double fill = 0.0) : shape(std::move(s)), v(std::size_t(numel(shape)), fill) {}
  array(dims s, std::vector<double> values) : shape(std::move(s)), v(std::move(values)) {
    if (std::int64_t(v.size()) != numel(shape)) throw std::invalid_argument("ref::array: size mismatch");
  }
  std::int64_t size() const { return std::int64_t(v.size()); }
  int rank() const { return int(shape.size()); }
  double& operator[](std::int64_t i) { return v[std::size_t(i)]; }
  double operator[](std::int64_t i) const { return v[std::size_t(i)]; }
  /// flat index of a full multi-index
  std::int64_t index(const dims& idx) const {
    std::int64_t f = 0;
    for (std::size_t k = 0; k < shape.size(); ++k) f = f * shape[k] + idx[k];
    return f;
  }
  double& at(const dims& idx) { return v[std::size_t(index(idx))]; }
  double at(const dims& idx) const { return v[std::size_t(index(idx))]; }
};

/// @brief multi-index of flat index f in a row-major array of shape s
inline dims unravel(std::int64_t f, const dims& s) {
  dims idx(s.size(), 0);
  for (int k = int(s.size()) - 1; k >= 0; --k) {
    idx[std::size_t(k)] = f % s[std::size_t(k)];
    f /= s[std::size_t(k)];
  }
  return idx;
}

// ====================================================================== broadcasting element-wise

/// @brief NumPy broadcast of two shapes (dims aligned from the right; equal or one of them 1)
inline dims broadcast(const dims& a, const dims& b) {
  const std::size_t r = std::max(a.size(), b.size());
  dims out(r);
  for (std::size_t i = 0; i < r; ++i) {
    // dim i of the output counts from the left; operand dims are right-aligned
    const std::int64_t da = i + a.size() >= r ? a[i + a.size() - r] : 1;
    const std::int64_t db = i + b.size() >= r ? b[i + b.size() - r] : 1;
    if (da != db && da != 1 && db != 1) throw std::invalid_argument("ref::broadcast: incompatible shapes");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

/// @brief the flat index into an operand of shape s for output multi-index oidx (broadcast dims read 0)
inline std::int64_t broadcast_index(const dims& oidx, const dims& s) {
  const std::size_t off = oidx.size() - s.size();
  std::int64_t f = 0;
  for (std::size_t k = 0; k < s.size(); ++k) f = f * s[k] + (s[k] == 1 ? 0 : oidx[off + k]);
  return f;
}

enum class binop { add, sub, mul };

inline array binary(binop op, const array& a, const array& b) {
  array out(broadcast(a.shape, b.shape));
  for (std::int64_t f = 0; f < out.size(); ++f) {
    const dims idx = unravel(f, out.shape);
    const double x = a[broadcast_index(idx, a.shape)], y = b[broadcast_index(idx, b.shape)];
    out[f] = op == binop::add ? x + y : op == binop::sub ? x - y : x * y;
  }
  return out;
}

struct grad2 {
  array da, db;
};
/// @brief d(sum(out*dout))/da, /db: each output element sends its partial derivative to the operand
/// element it read (so broadcast dims sum up)
inline grad2 binary_backward(binop op, const array& a, const array& b, const array& dout) {
  grad2 g{array(a.shape), array(b.shape)};
  for (std::int64_t f = 0; f < dout.size(); ++f) {
    const dims idx = unravel(f, dout.shape);
    const std::int64_t ia = broadcast_index(idx, a.shape), ib = broadcast_index(idx, b.shape);
    const double d = dout[f];
    switch (op) {
    case binop::add: g.da[ia] += d; g.db[ib] += d; break;
    case binop::sub: g.da[ia] += d; g.db[ib] -= d; break;
    case binop::mul: g.da[ia] += d * b[ib]; g.db[ib] += d * a[ia]; break;
    }
  }
  return g;
}

inline array scale(const array& x, double s) {
  array out(x.shape);
  for (std::int64_t i = 0; i < x.size(); ++i) out[i] = s * x[i];
  return out;
}

// ====================================================================== reductions

inline double sum(const array& x) {
  double s = 0;
  for (double e : x.v) s += e;
  return s;
}
inline double mean(const array& x) { return sum(x) / double(x.size()); }
/// @brief gradient of sum (dout is the scalar upstream gradient)
inline array sum_backward(const array& x, double dout) { return array(x.shape, dout); }
inline array mean_backward(const array& x, double dout) { return array(x.shape, dout / double(x.size())); }

// ====================================================================== matmul, linear

/// @brief op(a) @ op(b) with a (...,M,K) [(...,K,M) if ta], b (...,K,N) [(...,N,K) if tb] or a 2-D b
/// shared by every batch -> (...,M,N)
struct matmul_dims {
  std::int64_t batch, M, N, K;
  bool shared_b;
  dims out_shape;
};
inline matmul_dims matmul_shape(const array& a, const array& b, bool ta, bool tb) {
  const int ra = a.rank(), rb = b.rank();
  if (ra < 2 || rb < 2) throw std::invalid_argument("ref::matmul: rank < 2");
  matmul_dims d{};
  d.M = ta ? a.shape[ra - 1] : a.shape[ra - 2];
  d.K = ta ? a.shape[ra - 2] : a.shape[ra - 1];
  d.N = tb ? b.shape[rb - 2] : b.shape[rb - 1];
  const std::int64_t Kb = tb ? b.shape[rb - 1] : b.shape[rb - 2];
  if (Kb != d.K) throw std::invalid_argument("ref::matmul: inner dims differ");
  d.shared_b = rb == 2 && ra > 2;
  d.batch = 1;
  for (int i = 0; i < ra - 2; ++i) {
    d.batch *= a.shape[i];
    d.out_shape.push_back(a.shape[i]);
    if (!d.shared_b && b.shape[i] != a.shape[i]) throw std::invalid_argument("ref::matmul: batch dims differ");
  }
  d.out_shape.push_back(d.M);
  d.out_shape.push_back(d.N);
  return d;
}
/// element (i,k) of op(A) of batch z, as a flat index into a
inline std::int64_t opa_index(const matmul_dims& d, bool ta, std::int64_t z, std::int64_t i, std::int64_t k) {
  return z * d.M * d.K + (ta ? k * d.M + i : i * d.K + k);
}
/// element (k,j) of op(B) of batch z, as a flat index into b
inline std::int64_t opb_index(const matmul_dims& d, bool tb, std::int64_t z, std::int64_t k, std::int64_t j) {
  const std::int64_t zb = d.shared_b ? 0 : z;
  return zb * d.K * d.N + (tb ? j * d.K + k : k * d.N + j);
}

inline array matmul(const array& a, const array& b, bool ta = false, bool tb = false) {
  const matmul_dims d = matmul_shape(a, b, ta, tb);
  array out(d.out_shape);
  for (std::int64_t z = 0; z < d.batch; ++z)
    for (std::int64_t i = 0; i < d.M; ++i)
      for (std::int64_t j = 0; j < d.N; ++j) {
        double s = 0;
        for (std::int64_t k = 0; k < d.K; ++k) s += a[opa_index(d, ta, z, i, k)] * b[opb_index(d, tb, z, k, j)];
        out[(z * d.M + i) * d.N + j] = s;
      }
  return out;
}

/// @brief dL/da[op index] = sum_j dout(i,j) op(B)(k,j); dL/db = sum_i op(A)(i,k) dout(i,j) (summed over
/// batches for a shared b)
inline grad2 matmul_backward(const array& a, const array& b, bool ta, bool tb, const array& dout) {
  const matmul_dims d = matmul_shape(a, b, ta, tb);
  grad2 g{array(a.shape), array(b.shape)};
  for (std::int64_t z = 0; z < d.batch; ++z)
    for (std::int64_t i = 0; i < d.M; ++i)
      for (std::int64_t j = 0; j < d.N; ++j) {
        const double go = dout[(z * d.M + i) * d.N + j];
        for (std::int64_t k = 0; k < d.K; ++k) {
          g.da[opa_index(d, ta, z, i, k)] += go * b[opb_index(d, tb, z, k, j)];
          g.db[opb_index(d, tb, z, k, j)] += go * a[opa_index(d, ta, z, i, k)];
        }
      }
  return g;
}

/// @brief x (...,K) @ w (C,K)^T + bias (C) (bias may be empty: rank 0 / no elements)
inline array linear(const array& x, const array& w, const array& bias) {
  const std::int64_t C = w.shape[0], K = w.shape[1];
  if (x.shape.back() != K) throw std::invalid_argument("ref::linear: inner dims differ");
  dims so = x.shape;
  so.back() = C;
  array out(so);
  const std::int64_t N = x.size() / K;
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t c = 0; c < C; ++c) {
      double s = bias.v.empty() ? 0.0 : bias[c];
      for (std::int64_t k = 0; k < K; ++k) s += x[n * K + k] * w[c * K + k];
      out[n * C + c] = s;
    }
  return out;
}
struct grad3 {
  array d0, d1, d2;
};
inline grad3 linear_backward(const array& x, const array& w, const array& bias, const array& dout) {
  const std::int64_t C = w.shape[0], K = w.shape[1], N = x.size() / K;
  grad3 g{array(x.shape), array(w.shape), array(bias.shape)};
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t c = 0; c < C; ++c) {
      const double go = dout[n * C + c];
      if (!bias.v.empty()) g.d2[c] += go;
      for (std::int64_t k = 0; k < K; ++k) {
        g.d0[n * K + k] += go * w[c * K + k];
        g.d1[c * K + k] += go * x[n * K + k];
      }
    }
  return g;
}

// ====================================================================== activations

enum class act { gelu_erf, gelu_tanh, tanh, relu };

inline constexpr double pi = 3.14159265358979323846;

/// @brief f(x): GELU erf x*Phi(x); GELU tanh 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3))); tanh; max(x,0)
inline double activation(act a, double x) {
  switch (a) {
  case act::gelu_erf: return x * 0.5 * (1.0 + std::erf(x / std::sqrt(2.0)));
  case act::gelu_tanh: return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / pi) * (x + 0.044715 * x * x * x)));
  case act::tanh: return std::tanh(x);
  case act::relu: return x > 0 ? x : 0.0;
  }
  return 0;
}
/// @brief f'(x), differentiated by hand from the definitions above (ReLU'(0) = 0, as torch)
inline double activation_derivative(act a, double x) {
  switch (a) {
  case act::gelu_erf: {
    const double Phi = 0.5 * (1.0 + std::erf(x / std::sqrt(2.0)));
    const double phi = std::exp(-0.5 * x * x) / std::sqrt(2.0 * pi);
    return Phi + x * phi;
  }
  case act::gelu_tanh: {
    const double c = std::sqrt(2.0 / pi);
    const double u = c * (x + 0.044715 * x * x * x);
    const double du = c * (1.0 + 3.0 * 0.044715 * x * x);
    const double t = std::tanh(u);
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du;
  }
  case act::tanh: {
    const double t = std::tanh(x);
    return 1.0 - t * t;
  }
  case act::relu: return x > 0 ? 1.0 : 0.0;
  }
  return 0;
}
inline array activation(act a, const array& x) {
  array y(x.shape);
  for (std::int64_t i = 0; i < x.size(); ++i) y[i] = activation(a, x[i]);
  return y;
}
inline array activation_backward(act a, const array& x, const array& dout) {
  array dx(x.shape);
  for (std::int64_t i = 0; i < x.size(); ++i) dx[i] = dout[i] * activation_derivative(a, x[i]);
  return dx;
}

// ====================================================================== layer norm

/// @brief per row of the last dim C: (x - mean) / sqrt(var + eps) * w + b, var biased (divide by C)
inline array layer_norm(const array& x, const array& w, const array& b, double eps) {
  const std::int64_t C = x.shape.back(), N = x.size() / C;
  array y(x.shape);
  for (std::int64_t n = 0; n < N; ++n) {
    double mu = 0;
    for (std::int64_t c = 0; c < C; ++c) mu += x[n * C + c];
    mu /= double(C);
    double var = 0;
    for (std::int64_t c = 0; c < C; ++c) var += (x[n * C + c] - mu) * (x[n * C + c] - mu);
    var /= double(C);
    const double sigma = std::sqrt(var + eps);
    for (std::int64_t c = 0; c < C; ++c) y[n * C + c] = (x[n * C + c] - mu) / sigma * w[c] + b[c];
  }
  return y;
}
/// @brief Jacobian form: xhat_i = (x_i - mu)/sigma has d xhat_i / d x_j = (delta_ij - 1/C - xhat_i xhat_j / C) / sigma
inline grad3 layer_norm_backward(const array& x, const array& w, const array& b, double eps, const array& dout) {
  const std::int64_t C = x.shape.back(), N = x.size() / C;
  grad3 g{array(x.shape), array(w.shape), array(b.shape)};
  std::vector<double> xhat(static_cast<std::size_t>(C));
  for (std::int64_t n = 0; n < N; ++n) {
    double mu = 0;
    for (std::int64_t c = 0; c < C; ++c) mu += x[n * C + c];
    mu /= double(C);
    double var = 0;
    for (std::int64_t c = 0; c < C; ++c) var += (x[n * C + c] - mu) * (x[n * C + c] - mu);
    var /= double(C);
    const double sigma = std::sqrt(var + eps);
    for (std::int64_t c = 0; c < C; ++c) xhat[std::size_t(c)] = (x[n * C + c] - mu) / sigma;
    for (std::int64_t i = 0; i < C; ++i) {
      const double go = dout[n * C + i];
      g.d1[i] += go * xhat[std::size_t(i)];
      g.d2[i] += go;
      for (std::int64_t j = 0; j < C; ++j) {
        const double jac = ((i == j ? 1.0 : 0.0) - 1.0 / double(C) - xhat[std::size_t(i)] * xhat[std::size_t(j)] / double(C)) / sigma;
        g.d0[n * C + j] += go * w[i] * jac;
      }
    }
  }
  return g;
}

// ====================================================================== softmax

/// @brief softmax over the last dim of x + mask (mask broadcasts to x, or is empty for none).
/// A row whose inputs are all -inf gives zeros (minibert's documented choice; torch would give NaN).
inline array softmax(const array& x, const array& mask = array()) {
  const std::int64_t L = x.shape.back(), R = x.size() / L;
  array z = x;
  if (!mask.shape.empty()) {
    if (broadcast(x.shape, mask.shape) != x.shape) throw std::invalid_argument("ref::softmax: mask does not broadcast");
    for (std::int64_t f = 0; f < x.size(); ++f) z[f] = x[f] + mask[broadcast_index(unravel(f, x.shape), mask.shape)];
  }
  array y(x.shape);
  for (std::int64_t r = 0; r < R; ++r) {
    double m = -std::numeric_limits<double>::infinity();
    for (std::int64_t j = 0; j < L; ++j) m = std::max(m, z[r * L + j]);
    if (m == -std::numeric_limits<double>::infinity()) continue; // all masked: zeros
    double s = 0;
    for (std::int64_t j = 0; j < L; ++j) s += std::exp(z[r * L + j] - m);
    for (std::int64_t j = 0; j < L; ++j) y[r * L + j] = std::exp(z[r * L + j] - m) / s;
  }
  return y;
}
/// @brief dx_j = sum_i dout_i * dy_i/dx_j with dy_i/dx_j = y_i (delta_ij - y_j)  (the mask gets no gradient)
inline array softmax_backward(const array& x, const array& mask, const array& dout) {
  const array y = softmax(x, mask);
  const std::int64_t L = x.shape.back(), R = x.size() / L;
  array dx(x.shape);
  for (std::int64_t r = 0; r < R; ++r)
    for (std::int64_t j = 0; j < L; ++j) {
      double s = 0;
      for (std::int64_t i = 0; i < L; ++i)
        s += dout[r * L + i] * y[r * L + i] * ((i == j ? 1.0 : 0.0) - y[r * L + j]);
      dx[r * L + j] = s;
    }
  return dx;
}

// ====================================================================== embedding

/// @brief out[..., c] = w[ids[...], c]; ids given as integers (shape ids_shape)
inline array embedding(const array& w, const std::vector<std::int64_t>& ids, const dims& ids_shape) {
  const std::int64_t V = w.shape[0], C = w.shape[1];
  dims so = ids_shape;
  so.push_back(C);
  array out(so);
  for (std::size_t n = 0; n < ids.size(); ++n) {
    if (ids[n] < 0 || ids[n] >= V) throw std::invalid_argument("ref::embedding: id out of range");
    for (std::int64_t c = 0; c < C; ++c) out[std::int64_t(n) * C + c] = w[ids[n] * C + c];
  }
  return out;
}
inline array embedding_backward(const array& w, const std::vector<std::int64_t>& ids, const array& dout) {
  const std::int64_t C = w.shape[1];
  array dw(w.shape);
  for (std::size_t n = 0; n < ids.size(); ++n)
    for (std::int64_t c = 0; c < C; ++c) dw[ids[n] * C + c] += dout[std::int64_t(n) * C + c];
  return dw;
}

// ====================================================================== losses

/// @brief mean over rows with target != ignore of -log(softmax(logits_n)[target_n]); NaN if none counted
inline double cross_entropy(const array& logits, const std::vector<std::int64_t>& targets, std::int64_t ignore = -100) {
  const std::int64_t N = logits.shape[0], C = logits.shape[1];
  double total = 0;
  std::int64_t count = 0;
  for (std::int64_t n = 0; n < N; ++n) {
    const std::int64_t t = targets[std::size_t(n)];
    if (t == ignore) continue;
    double m = -std::numeric_limits<double>::infinity();
    for (std::int64_t c = 0; c < C; ++c) m = std::max(m, logits[n * C + c]);
    double s = 0;
    for (std::int64_t c = 0; c < C; ++c) s += std::exp(logits[n * C + c] - m);
    total += (m + std::log(s)) - logits[n * C + t]; // logsumexp - logit of the target
    ++count;
  }
  return count ? total / double(count) : std::numeric_limits<double>::quiet_NaN();
}
/// @brief d/dlogits: (softmax - onehot) * dout / count on counted rows, 0 on ignored rows
inline array cross_entropy_backward(const array& logits, const std::vector<std::int64_t>& targets, double dout,
                                    std::int64_t ignore = -100) {
  const std::int64_t N = logits.shape[0], C = logits.shape[1];
  std::int64_t count = 0;
  for (auto t : targets) count += t != ignore;
  array d(logits.shape);
  if (!count) return d;
  const array p = softmax(logits);
  for (std::int64_t n = 0; n < N; ++n) {
    const std::int64_t t = targets[std::size_t(n)];
    if (t == ignore) continue;
    for (std::int64_t c = 0; c < C; ++c) d[n * C + c] = (p[n * C + c] - (c == t ? 1.0 : 0.0)) * dout / double(count);
  }
  return d;
}

/// @brief mean((x - y)^2)
inline double mse(const array& x, const array& y) {
  double s = 0;
  for (std::int64_t i = 0; i < x.size(); ++i) s += (x[i] - y[i]) * (x[i] - y[i]);
  return s / double(x.size());
}
inline array mse_backward(const array& x, const array& y, double dout) {
  array d(x.shape);
  for (std::int64_t i = 0; i < x.size(); ++i) d[i] = 2.0 * (x[i] - y[i]) * dout / double(x.size());
  return d;
}

/// @brief mean of -[y log sigmoid(x) + (1-y) log(1 - sigmoid(x))], evaluated through
/// log sigmoid(x) = -softplus(-x) and log(1 - sigmoid(x)) = -softplus(x), softplus(t) = max(t,0) + log1p(exp(-|t|))
inline double softplus(double t) { return std::max(t, 0.0) + std::log1p(std::exp(-std::abs(t))); }
inline double sigmoid(double t) { return t >= 0 ? 1.0 / (1.0 + std::exp(-t)) : std::exp(t) / (1.0 + std::exp(t)); }
inline double bce_with_logits(const array& x, const array& y) {
  double s = 0;
  for (std::int64_t i = 0; i < x.size(); ++i) s += y[i] * softplus(-x[i]) + (1.0 - y[i]) * softplus(x[i]);
  return s / double(x.size());
}
/// @brief d/dx = (sigmoid(x) - y) * dout / n
inline array bce_with_logits_backward(const array& x, const array& y, double dout) {
  array d(x.shape);
  for (std::int64_t i = 0; i < x.size(); ++i) d[i] = (sigmoid(x[i]) - y[i]) * dout / double(x.size());
  return d;
}

// ====================================================================== dropout

/// @brief inverted dropout with a given keep mask (1 keep, 0 drop): y = x * keep / (1 - p)
inline array dropout(const array& x, const std::vector<int>& keep, double p) {
  array y(x.shape);
  for (std::int64_t i = 0; i < x.size(); ++i) y[i] = keep[std::size_t(i)] ? x[i] / (1.0 - p) : 0.0;
  return y;
}
inline array dropout_backward(const std::vector<int>& keep, double p, const array& dout) {
  array d(dout.shape);
  for (std::int64_t i = 0; i < dout.size(); ++i) d[i] = keep[std::size_t(i)] ? dout[i] / (1.0 - p) : 0.0;
  return d;
}

// ====================================================================== multi-head attention

/// @brief q, k, v (B,T,C), NH heads of size HS = C/NH (head h = columns [h*HS, (h+1)*HS)):
///   S[b,h,i,j] = sum_d q[b,i,h,d] k[b,j,h,d] / sqrt(HS) + mask[b,j]   (mask (B,T) additive, or empty)
///   P = softmax_j(S);  Pd = P * keep / (1-p)  (keep (B,NH,T,T) row-major, or empty for no dropout)
///   out[b,i,h,d] = sum_j Pd[b,h,i,j] v[b,j,h,d]
struct attention_result {
  array out, probs; // probs: P before dropout (B,NH,T,T)
};
inline attention_result attention(const array& q, const array& k, const array& v, const array& mask, int NH,
                                  const std::vector<int>& keep = {}, double p = 0.0) {
  const std::int64_t B = q.shape[0], T = q.shape[1], C = q.shape[2], HS = C / NH;
  attention_result r{array(q.shape), array({B, NH, T, T})};
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < NH; ++h)
      for (std::int64_t i = 0; i < T; ++i) {
        std::vector<double> s(static_cast<std::size_t>(T));
        double m = -std::numeric_limits<double>::infinity();
        for (std::int64_t j = 0; j < T; ++j) {
          double dot = 0;
          for (std::int64_t d = 0; d < HS; ++d) dot += q.at({b, i, h * HS + d}) * k.at({b, j, h * HS + d});
          s[std::size_t(j)] = dot / std::sqrt(double(HS)) + (mask.v.empty() ? 0.0 : mask.at({b, j}));
          m = std::max(m, s[std::size_t(j)]);
        }
        double z = 0;
        if (m != -std::numeric_limits<double>::infinity())
          for (std::int64_t j = 0; j < T; ++j) z += std::exp(s[std::size_t(j)] - m);
        for (std::int64_t j = 0; j < T; ++j) {
          const double pij = z > 0 ? std::exp(s[std::size_t(j)] - m) / z : 0.0;
          r.probs.at({b, h, i, j}) = pij;
          const std::int64_t f = ((b * NH + h) * T + i) * T + j;
          const double pd = keep.empty() ? pij : (keep[std::size_t(f)] ? pij / (1.0 - p) : 0.0);
          for (std::int64_t d = 0; d < HS; ++d) r.out.at({b, i, h * HS + d}) += pd * v.at({b, j, h * HS + d});
        }
      }
  return r;
}
/// @brief gradients of sum(out * dout) with respect to q, k, v, by the chain rule through each step above
inline grad3 attention_backward(const array& q, const array& k, const array& v, const array& mask, int NH,
                                const array& dout, const std::vector<int>& keep = {}, double p = 0.0) {
  const std::int64_t B = q.shape[0], T = q.shape[1], C = q.shape[2], HS = C / NH;
  const array P = attention(q, k, v, mask, NH, keep, p).probs;
  grad3 g{array(q.shape), array(k.shape), array(v.shape)};
  const double sc = 1.0 / std::sqrt(double(HS));
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < NH; ++h)
      for (std::int64_t i = 0; i < T; ++i) {
        std::vector<double> dP(static_cast<std::size_t>(T)); // dL/dP[b,h,i,:] (before dropout)
        for (std::int64_t j = 0; j < T; ++j) {
          const std::int64_t f = ((b * NH + h) * T + i) * T + j;
          const double kf = keep.empty() ? 1.0 : (keep[std::size_t(f)] ? 1.0 / (1.0 - p) : 0.0); // dPd/dP
          double dPd = 0;
          for (std::int64_t d = 0; d < HS; ++d) {
            dPd += dout.at({b, i, h * HS + d}) * v.at({b, j, h * HS + d});
            g.d2.at({b, j, h * HS + d}) += P.at({b, h, i, j}) * kf * dout.at({b, i, h * HS + d});
          }
          dP[std::size_t(j)] = dPd * kf;
        }
        for (std::int64_t j = 0; j < T; ++j) { // dS_j = sum_l dP_l P_l (delta_lj - P_j)
          double dS = 0;
          for (std::int64_t l = 0; l < T; ++l)
            dS += dP[std::size_t(l)] * P.at({b, h, i, l}) * ((l == j ? 1.0 : 0.0) - P.at({b, h, i, j}));
          for (std::int64_t d = 0; d < HS; ++d) {
            g.d0.at({b, i, h * HS + d}) += dS * sc * k.at({b, j, h * HS + d});
            g.d1.at({b, j, h * HS + d}) += dS * sc * q.at({b, i, h * HS + d});
          }
        }
      }
  return g;
}

} // namespace ref
