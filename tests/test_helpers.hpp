// SPDX-License-Identifier: MIT
#pragma once
/* Shared helpers for the tensor / autograd / op tests: deterministic random tensors, conversion to and
   from the reference arrays (tests/reference/ops.hpp), check_close against a reference with printed
   maxdiff and NMSE, a central finite-difference gradient checker for variable<double> functions, and
   check_error for minibert::error messages.

   TOLERANCES (STYLE.md §7). An element passes when |x - ref| <= atol + rtol * |ref|, and the whole
   tensor when NMSE = sum (x-ref)^2 / sum ref^2 <= max_nmse as well:
     fp32: rtol = atol = 1e-5  (~84 eps_f32; eps_f32 = 1.19e-7)   max_nmse = 1e-7 (ggml's default)
     fp64: rtol = atol = 1e-10 (~4.5e5 eps_f64; eps_f64 = 2.2e-16) max_nmse = 1e-18
   Inputs are O(1) (uniform in [-1, 1) unless a test says otherwise), so the absolute floor atol is on
   the scale of the values. A test may scale both by a documented conditioning factor `cond` (e.g. a
   dot product of length K has rounding error ~sqrt(K) eps |a||b|; a softmax of logits of size s amplifies
   relative error by ~s); every use of cond > 1 says why next to it. The reference is computed in double
   from the exact (already rounded) fp32 inputs, so the error measured is the kernel's alone.

   FINITE DIFFERENCES (double only, tiny shapes): L = sum(out * W) with W fixed random in [-1,1), the
   analytic gradient is out.backward(W), the numeric one (L(x+h e_i) - L(x-h e_i)) / 2h with h = 1e-6.
   Truncation error is O(h^2 f''') ~ 1e-12 and rounding error ~ eps |L| / h ~ 1e-9 for |L| ~ 10, so an
   element passes when |analytic - numeric| <= 1e-7 + 1e-6 |numeric|. */

#include <algorithm>        // max
#include <cmath>            // abs, isnan, isinf
#include <cstdint>          // int64_t, uint64_t
#include <cstdio>           // printf
#include <functional>       // function
#include <initializer_list> // initializer_list
#include <limits>           // infinity
#include <string>           // string
#include <type_traits>      // is_same_v
#include <vector>           // vector

#include <doctest/doctest.h>

#include <minibert/autograd.hpp>    // variable, backward
#include <minibert/cpu/backend.hpp> // backend<device::cpu>
#include <minibert/ops.hpp>         // every differentiable op
#include <minibert/tensor_ops.hpp>  // contiguous, clone, to_host

#include "reference/ops.hpp"

namespace test {

using minibert::shape;
template <class T> using tensor = minibert::tensor<T, minibert::device::cpu>;
template <class T> using variable = minibert::variable<T, minibert::device::cpu>;
using dvar = variable<double>;
using dtensor = tensor<double>;

// ---------------------------------------------------------------------- tolerances

template <class T> struct tol {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>);
  static constexpr bool f32 = std::is_same_v<T, float>;
  static constexpr double rtol = f32 ? 1e-5 : 1e-10;
  static constexpr double atol = f32 ? 1e-5 : 1e-10;
  static constexpr double max_nmse = f32 ? 1e-7 : 1e-18;
};

// ---------------------------------------------------------------------- deterministic random numbers

/// @brief splitmix64: a tiny generator with the same stream on every standard library
struct rng {
  std::uint64_t s;
  explicit rng(std::uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull) {}
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  /// uniform in [lo, hi)
  double uniform(double lo = -1.0, double hi = 1.0) { return lo + (hi - lo) * double(next() >> 11) * 0x1.0p-53; }
  std::int64_t integer(std::int64_t n) { return std::int64_t(next() % std::uint64_t(n)); }
};

/// @brief a contiguous tensor of uniform [lo, hi) values from a fixed seed
template <class T> tensor<T> random_tensor(const shape& s, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  rng r(seed);
  tensor<T> t = tensor<T>::empty(s);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = T(r.uniform(lo, hi));
  return t;
}
/// @brief integer ids in [0, n) from a fixed seed
template <class I> tensor<I> random_ids(const shape& s, std::int64_t n, std::uint64_t seed) {
  rng r(seed);
  tensor<I> t = tensor<I>::empty(s);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = I(r.integer(n));
  return t;
}

// ---------------------------------------------------------------------- reference conversions

inline ref::dims dims_of(const shape& s) { return s.to_vector(); }
template <class T> ref::array to_ref(const tensor<T>& t) {
  const std::vector<T> v = t.to_vector();
  return ref::array(dims_of(t.shape()), std::vector<double>(v.begin(), v.end()));
}
template <class T> tensor<T> from_ref(const ref::array& a) {
  tensor<T> t = tensor<T>::empty(shape(a.shape));
  for (std::int64_t i = 0; i < a.size(); ++i) t.data()[i] = T(a[i]);
  return t;
}
template <class I> std::vector<std::int64_t> ids_of(const tensor<I>& t) {
  const std::vector<I> v = t.to_vector();
  return std::vector<std::int64_t>(v.begin(), v.end());
}
/// @brief a tensor's values (any layout) as doubles, row-major
/// @brief whether two host tensors hold the same values (same shape, element for element)
template <class T> bool bitwise_equal(const tensor<T>& a, const tensor<T>& b) {
  return a.shape() == b.shape() && a.to_vector() == b.to_vector();
}

template <class T> std::vector<double> values(const tensor<T>& t) {
  const std::vector<T> v = t.to_vector();
  return std::vector<double>(v.begin(), v.end());
}

// ---------------------------------------------------------------------- comparison against a reference

/// @brief CHECKs actual against expected element-wise (|x-ref| <= atol + rtol |ref|; NaN must match NaN,
/// infinities must match exactly) and NMSE <= max_nmse; prints maxdiff and NMSE either way.
/// @return whether every check passed
inline bool check_close(const std::vector<double>& a, const std::vector<double>& e, double atol, double rtol,
                        double max_nmse, const std::string& what) {
  CHECK_MESSAGE(a.size() == e.size(), what << ": " << a.size() << " values, expected " << e.size());
  if (a.size() != e.size()) return false;
  double maxdiff = 0, err2 = 0, ref2 = 0;
  std::size_t worst = 0, bad = 0, first_bad = a.size();
  for (std::size_t i = 0; i < a.size(); ++i) {
    bool ok;
    double d = 0;
    if (std::isnan(e[i]) || std::isinf(e[i])) {
      ok = std::isnan(e[i]) ? std::isnan(a[i]) : a[i] == e[i];
      d = ok ? 0.0 : std::numeric_limits<double>::infinity();
    } else {
      d = std::abs(a[i] - e[i]);
      if (std::isnan(d)) d = std::numeric_limits<double>::infinity();
      ok = d <= atol + rtol * std::abs(e[i]);
      err2 += d * d;
      ref2 += e[i] * e[i];
    }
    if (d > maxdiff) {
      maxdiff = d;
      worst = i;
    }
    if (!ok) {
      ++bad;
      if (first_bad == a.size()) first_bad = i;
    }
  }
  const double nmse = ref2 > 0 ? err2 / ref2 : err2;
  std::printf("[check] %-46s n=%-6zu maxdiff=%.3e (at %zu: %.10g vs ref %.10g) nmse=%.3e atol=%.1e rtol=%.1e%s\n",
              what.c_str(), a.size(), maxdiff, worst, a.empty() ? 0.0 : a[worst], e.empty() ? 0.0 : e[worst], nmse,
              atol, rtol, bad ? "  FAIL" : "");
  CHECK_MESSAGE(bad == 0, what << ": " << bad << " of " << a.size() << " elements outside atol " << atol << " + rtol "
                               << rtol << " * |ref|; first at " << first_bad << ": "
                               << (bad ? a[first_bad] : 0.0) << " vs ref " << (bad ? e[first_bad] : 0.0)
                               << "; maxdiff " << maxdiff);
  CHECK_MESSAGE(nmse <= max_nmse, what << ": nmse " << nmse << " > " << max_nmse);
  return bad == 0 && nmse <= max_nmse;
}

/// @brief compare a T tensor with a reference array (shapes must agree), tolerances scaled by cond
template <class T>
bool check_close(const tensor<T>& actual, const ref::array& expected, double atol, double rtol,
                 const std::string& what = "") {
  CHECK_MESSAGE(dims_of(actual.shape()) == expected.shape,
                what << ": shape " << actual.shape() << " vs reference " << shape(expected.shape));
  if (dims_of(actual.shape()) != expected.shape) return false;
  return check_close(values(actual), expected.v, atol, rtol, tol<T>::max_nmse, what);
}
/// @brief the same with the dtype's default tolerances times cond
template <class T> bool check_ref(const tensor<T>& actual, const ref::array& expected, const std::string& what, double cond = 1.0) {
  return check_close(actual, expected, cond * tol<T>::atol, cond * tol<T>::rtol, what);
}
/// @brief one scalar (e.g. a loss) against its reference value
template <class T> bool check_scalar(T actual, double expected, const std::string& what, double cond = 1.0) {
  return check_close(std::vector<double>{double(actual)}, std::vector<double>{expected}, cond * tol<T>::atol,
                     cond * tol<T>::rtol, tol<T>::max_nmse, what);
}

/// @brief "<float>" or "<double>" for messages
template <class T> std::string tname() { return std::is_same_v<T, float> ? "<float>" : "<double>"; }

// ---------------------------------------------------------------------- finite-difference gradient check

struct fd_options {
  double h = 1e-6;
  double rtol = 1e-6;
  double atol = 1e-7;
  std::uint64_t seed = 977; // of the random output weights W
};

/// @brief L = sum(out * W) in double, out read through any layout
inline double weighted_sum(const dtensor& out, const std::vector<double>& w) {
  const std::vector<double> o = values(out);
  double s = 0;
  for (std::size_t i = 0; i < o.size(); ++i) s += o[i] * w[i];
  return s;
}

/// @brief Checks autograd against central differences: every input becomes a leaf that requires grad,
/// f maps them to an output, and the gradient of L = sum(out * W) is compared element by element.
/// Inputs that get no gradient count as zero gradient. Non-differentiable data (masks, ids, targets) is
/// captured by f.
inline bool check_gradients(const std::string& what, const std::function<dvar(const std::vector<dvar>&)>& f,
                            const std::vector<dtensor>& inputs, fd_options opt = {}) {
  std::vector<dvar> leaves;
  for (const auto& t : inputs) leaves.emplace_back(t.clone(), true);
  dvar out = f(leaves);
  REQUIRE_MESSAGE(out.requires_grad(), what << ": output does not require grad");
  const dtensor w = random_tensor<double>(out.shape(), opt.seed);
  const std::vector<double> wv = values(w);
  out.backward(w);

  bool all_ok = true;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    std::vector<double> analytic(std::size_t(inputs[i].numel()), 0.0);
    if (leaves[i].has_grad()) {
      CHECK_MESSAGE(leaves[i].grad().shape() == inputs[i].shape(),
                    what << ": grad of input " << i << " has shape " << leaves[i].grad().shape() << ", input "
                         << inputs[i].shape());
      analytic = values(leaves[i].grad());
    }
    std::vector<double> numeric(analytic.size());
    minibert::no_grad ng;
    for (std::size_t j = 0; j < analytic.size(); ++j) {
      double l[2];
      for (int s = 0; s < 2; ++s) {
        std::vector<dvar> xs;
        for (std::size_t m = 0; m < inputs.size(); ++m) {
          dtensor t = inputs[m].clone();
          if (m == i) t.data()[j] += s == 0 ? opt.h : -opt.h;
          xs.emplace_back(t, false);
        }
        l[s] = weighted_sum(f(xs).value(), wv);
      }
      numeric[j] = (l[0] - l[1]) / (2 * opt.h);
    }
    all_ok &= check_close(analytic, numeric, opt.atol, opt.rtol, 1.0,
                          "[fd] " + what + " d/d input " + std::to_string(i));
  }
  return all_ok;
}

// ---------------------------------------------------------------------- errors and threads

/// @brief CHECKs that f throws minibert::error whose what() contains every one of parts
template <class F> void check_error(F&& f, std::initializer_list<std::string> parts) {
  bool thrown = false;
  try {
    f();
  } catch (const minibert::error& e) {
    thrown = true;
    const std::string w = e.what();
    for (const auto& p : parts) CHECK_MESSAGE(w.find(p) != std::string::npos, "what() \"" << w << "\" lacks \"" << p << "\"");
  }
  std::string all;
  for (const auto& p : parts) all += " \"" + p + "\"";
  CHECK_MESSAGE(thrown, "expected a minibert::error containing" << all);
}

/// @brief restores the CPU backend's thread count on scope exit
struct thread_count_guard {
  int prev = minibert::num_threads();
  ~thread_count_guard() { minibert::set_num_threads(prev); }
};

/// @brief sets a field (of a context, say) to a value for the life of this object, and restores its old value however
/// the scope ends
template <class T> class scoped_value {
public:
  scoped_value(T& field, T value) : field_(field), saved_(field) { field_ = value; }
  ~scoped_value() { field_ = saved_; }
  scoped_value(const scoped_value&) = delete;
  scoped_value& operator=(const scoped_value&) = delete;

private:
  T& field_;
  T saved_;
};

} // namespace test
