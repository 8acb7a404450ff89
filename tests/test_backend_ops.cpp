// SPDX-License-Identifier: MIT
// The op table (backend.hpp's backend_for contract) on every built device, in the spirit of ggml's
// tests/test-backend-ops.cpp and candle's test_device!: ONE test body per op family, written once as a template
// over the device, run on backend<device::cpu> always and on backend<device::cuda> when MINIBERT_TEST_CUDA is
// defined. Each body builds its inputs on the host, uploads them (to_device), runs the autograd op (ops/*.hpp) on
// the device forward AND backward, downloads the results (to_host) and compares them with tests/reference/ops.hpp
// (double precision) in fp32 with the tolerances of test_helpers.hpp; a `cond` factor > 1 appears only where the
// CPU tests (test_ops_math.cpp, test_ops_nn.cpp) use the same one, for the same reason, said next to it.
//
// A device that is built but not usable (no GPU, no driver) prints exactly one line
//   [minibert-skip] <test name>: no CUDA device
// and returns without an assertion: CTest marks the case Skipped through a SKIP_REGULAR_EXPRESSION, never Passed.
//
// Shapes are small and ragged (3x5, 2x7x6, heads of size 4 with T = 5, one 67x129x45 product) so that no op is
// tested only at tile-friendly sizes.

#include <algorithm>   // max, min
#include <cmath>       // sqrt, pow, abs
#include <cstdint>     // int64_t, int32_t, uint8_t, uint64_t
#include <iostream>    // cout (skip line)
#include <limits>      // numeric_limits
#include <span>        // span (the multi-tensor members)
#include <string>      // string
#include <type_traits> // is_same_v
#include <vector>      // vector

#include <minibert/encoder.hpp>   // bert_model (the encoder layer on every backend)
#include <minibert/optimizer.hpp> // adamw

#include "test_helpers.hpp"

#ifdef MINIBERT_TEST_CUDA
#include <minibert/cuda/backend.hpp>
#define MINIBERT_TEST_DEVICES minibert::device::cpu, minibert::device::cuda
TYPE_TO_STRING_AS("cuda", minibert::device::cuda);
#else
#define MINIBERT_TEST_DEVICES minibert::device::cpu
#endif
TYPE_TO_STRING_AS("cpu", minibert::device::cpu);

namespace test_backend_ops { // each test file in its own namespace: a test group compiles as one unit

using minibert::generator;
using minibert::shape;
using test::bitwise_equal;
using test::check_ref;
using test::check_scalar;
using test::random_ids;
using test::random_tensor;
using test::to_ref;
using test::values;

namespace {

using T = float; // every body runs in fp32
template <class X> using htensor = minibert::tensor<X, minibert::device::cpu>;
template <class X, class D> using dtensor = minibert::tensor<X, D>;
template <class D> using var = minibert::variable<T, D>;

// ---------------------------------------------------------------------- devices

/// @brief whether device D can run here: the CPU always; CUDA when a device is visible
template <class D> bool device_usable() {
  if constexpr (std::is_same_v<D, minibert::device::cpu>) {
    return true;
  }
#ifdef MINIBERT_TEST_CUDA
  else if constexpr (std::is_same_v<D, minibert::device::cuda>) {
    return minibert::cuda_available();
  }
#endif
  else {
    return false;
  }
}

/// @brief true (after printing the one skip line) when D is not usable: the body then returns before any SUBCASE
/// or assertion, so doctest runs it once and the line is printed once
template <class D> bool skip_device() {
  if (device_usable<D>()) return false;
  const auto* tc = doctest::getContextOptions()->currentTest;
  std::cout << "[minibert-skip] " << (tc ? tc->m_name : "backend_ops") << ": no CUDA device" << std::endl;
  return true;
}
#define BACKEND_OPS_SKIP_UNLESS_USABLE(D)                                                                              \
  if (skip_device<D>()) return

/// @brief "<cpu>" / "<cuda>" for messages
template <class D> std::string dev() { return std::string("<") + D::name + ">"; }

// ---------------------------------------------------------------------- host <-> device

template <class D, class X> dtensor<X, D> up(const htensor<X>& h) { return minibert::to_device<D>(h); }
template <class X, class D> htensor<X> down(const dtensor<X, D>& t) { return minibert::to_host(t); }
/// a one-element seed gradient (dloss) on the device
template <class D> dtensor<T, D> scalar_on(T v) { return up<D>(htensor<T>::full({1}, v)); }

/// @brief CHECKs that two value lists are bitwise identical (copies must not change a bit); prints the first miss
template <class X>
bool check_exact(const std::vector<X>& got, const std::vector<X>& want, const std::string& what) {
  CHECK_MESSAGE(got.size() == want.size(), what << ": " << got.size() << " values, expected " << want.size());
  if (got.size() != want.size()) return false;
  std::size_t bad = 0, first = got.size();
  for (std::size_t i = 0; i < got.size(); ++i)
    if (!(got[i] == want[i])) {
      if (!bad) first = i;
      ++bad;
    }
  std::printf("[exact] %-46s n=%-6zu mismatches=%zu%s\n", what.c_str(), got.size(), bad, bad ? "  FAIL" : "");
  CHECK_MESSAGE(bad == 0, what << ": " << bad << " of " << got.size() << " values differ; first at " << first << ": "
                               << (bad ? double(got[first]) : 0.0) << " vs " << (bad ? double(want[first]) : 0.0));
  return bad == 0;
}

/// the keep mask every device draws for n elements at generator counter `base` (element i kept when its Philox
/// uniform is >= p), rebuilt on the host exactly as test_ops_nn.cpp does, independently of any kernel
std::vector<int> keep_mask(std::uint64_t seed, std::uint64_t base, std::int64_t n, float p) {
  std::vector<int> keep(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) keep[std::size_t(i)] = generator::uniform_at(seed, base, std::uint64_t(i)) >= p;
  return keep;
}

/// a (B,T) additive padding mask: row b has its last b+1 keys (never key 0) at -1e9, like right-padded sequences
htensor<T> padding_mask(std::int64_t B, std::int64_t Tn) {
  htensor<T> m = htensor<T>::zeros({B, Tn});
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t j = std::max<std::int64_t>(1, Tn - 1 - b); j < Tn; ++j) m.at({b, j}) = T(-1e9);
  return m;
}

} // namespace

// ====================================================================== memory: fill, copy, upload, download,
// copy_strided, copy_into

TEST_CASE_TEMPLATE("backend_ops.memory", D, MINIBERT_TEST_DEVICES) {
  BACKEND_OPS_SKIP_UNLESS_USABLE(D);
  SUBCASE("upload and download round trip: float, double, int32, int64, uint8") {
    const htensor<T> f = random_tensor<T>({2, 7, 6}, 11);
    check_exact(down(up<D>(f)).to_vector(), f.to_vector(), "upload/download float (2,7,6)" + dev<D>());
    const htensor<double> d = random_tensor<double>({3, 5}, 12);
    check_exact(down(up<D>(d)).to_vector(), d.to_vector(), "upload/download double (3,5)" + dev<D>());
    const htensor<std::int32_t> i32 = random_ids<std::int32_t>({37}, 1000, 13);
    check_exact(down(up<D>(i32)).to_vector(), i32.to_vector(), "upload/download int32 (37)" + dev<D>());
    const htensor<std::int64_t> i64 = random_ids<std::int64_t>({5, 3}, 1ll << 40, 14);
    check_exact(down(up<D>(i64)).to_vector(), i64.to_vector(), "upload/download int64 (5,3)" + dev<D>());
    const htensor<std::uint8_t> u8 = random_ids<std::uint8_t>({13}, 256, 15);
    check_exact(down(up<D>(u8)).to_vector(), u8.to_vector(), "upload/download uint8 (13)" + dev<D>());
    // a strided host view is packed before the upload
    check_exact(down(up<D>(f.transpose(0, 2))).to_vector(), f.transpose(0, 2).to_vector(),
                "upload of a host view" + dev<D>());
  }
  SUBCASE("fill: zeros_on, full_on") {
    check_exact(down(minibert::zeros_on<T, D>({3, 5})).to_vector(), std::vector<T>(15, T(0)), "zeros_on (3,5)" + dev<D>());
    check_exact(down(minibert::full_on<T, D>({2, 7, 6}, T(-2.75))).to_vector(), std::vector<T>(84, T(-2.75)),
                "full_on (2,7,6)" + dev<D>());
    check_exact(down(minibert::full_on<std::int32_t, D>({7}, 42)).to_vector(), std::vector<std::int32_t>(7, 42),
                "full_on int32 (7)" + dev<D>());
  }
  SUBCASE("copy: clone of a packed device tensor has its own storage") {
    const htensor<T> h = random_tensor<T>({3, 5}, 16);
    const dtensor<T, D> a = up<D>(h);
    const dtensor<T, D> c = minibert::clone(a);
    CHECK_FALSE(c.shares_storage(a));
    check_exact(down(c).to_vector(), h.to_vector(), "clone (3,5)" + dev<D>());
  }
  SUBCASE("copy_strided: contiguous and to_host of permuted, transposed, sliced and selected views") {
    const htensor<T> h = random_tensor<T>({2, 7, 6}, 17);
    const dtensor<T, D> a = up<D>(h);
    struct view_case {
      const char* name;
      dtensor<T, D> dv;
      htensor<T> hv;
    };
    const std::vector<view_case> views = {
        {"permute(2,0,1)", a.permute({2, 0, 1}), h.permute({2, 0, 1})},
        {"transpose(0,2)", a.transpose(0, 2), h.transpose(0, 2)},
        {"slice(1,2,6)", a.slice(1, 2, 6), h.slice(1, 2, 6)},
        {"select(2,3)", a.select(2, 3), h.select(2, 3)},
        {"permute(1,2,0).slice(0,1,5)", a.permute({1, 2, 0}).slice(0, 1, 5), h.permute({1, 2, 0}).slice(0, 1, 5)},
        {"slice(2,1,4).transpose(1,2)", a.slice(2, 1, 4).transpose(1, 2), h.slice(2, 1, 4).transpose(1, 2)},
    };
    for (const auto& v : views) {
      REQUIRE_FALSE(v.dv.is_contiguous());
      const dtensor<T, D> packed = minibert::contiguous(v.dv);
      CHECK(packed.is_contiguous());
      CHECK(packed.shape() == v.hv.shape());
      // the expected values are read element by element through the host view's strides
      check_exact(down(packed).to_vector(), v.hv.to_vector(), std::string("contiguous ") + v.name + dev<D>());
      check_exact(down(v.dv).to_vector(), v.hv.to_vector(), std::string("to_host ") + v.name + dev<D>());
    }
  }
  SUBCASE("copy_into: slice and select backward scatter the gradient into zeros; permute backward packs it") {
    const htensor<T> h = random_tensor<T>({2, 7, 6}, 18);
    SUBCASE("slice(1, 2, 6)") {
      var<D> v(up<D>(h), true);
      var<D> y = minibert::slice(v, 1, 2, 6);
      const htensor<T> dout = random_tensor<T>({2, 4, 6}, 19);
      y.backward(up<D>(dout));
      check_exact(down(y.value()).to_vector(), h.slice(1, 2, 6).to_vector(), "slice forward" + dev<D>());
      htensor<T> want = htensor<T>::zeros({2, 7, 6});
      for (std::int64_t i = 0; i < 2; ++i)
        for (std::int64_t j = 0; j < 4; ++j)
          for (std::int64_t k = 0; k < 6; ++k) want.at({i, j + 2, k}) = dout.at({i, j, k});
      check_exact(down(v.grad()).to_vector(), want.to_vector(), "slice backward (copy_into)" + dev<D>());
    }
    SUBCASE("select(2, 3) (a strided destination)") {
      var<D> v(up<D>(h), true);
      var<D> y = minibert::select(v, 2, 3);
      const htensor<T> dout = random_tensor<T>({2, 7}, 20);
      y.backward(up<D>(dout));
      check_exact(down(y.value()).to_vector(), h.select(2, 3).to_vector(), "select forward" + dev<D>());
      htensor<T> want = htensor<T>::zeros({2, 7, 6});
      for (std::int64_t i = 0; i < 2; ++i)
        for (std::int64_t j = 0; j < 7; ++j) want.at({i, j, 3}) = dout.at({i, j});
      check_exact(down(v.grad()).to_vector(), want.to_vector(), "select backward (copy_into)" + dev<D>());
    }
    SUBCASE("slice of a transpose: copy_into then copy_strided") {
      var<D> v(up<D>(h), true);
      var<D> y = minibert::slice(minibert::transpose(v, 0, 2), 1, 1, 6); // (6,5,2)
      CHECK(y.shape() == shape{6, 5, 2});
      const htensor<T> dout = random_tensor<T>({6, 5, 2}, 21);
      y.backward(up<D>(dout));
      htensor<T> want = htensor<T>::zeros({2, 7, 6});
      for (std::int64_t k = 0; k < 6; ++k)
        for (std::int64_t j = 0; j < 5; ++j)
          for (std::int64_t i = 0; i < 2; ++i) want.at({i, j + 1, k}) = dout.at({k, j, i});
      check_exact(down(v.grad()).to_vector(), want.to_vector(), "slice(transpose) backward" + dev<D>());
    }
    SUBCASE("permute(2, 0, 1) and contiguous") {
      var<D> v(up<D>(h), true);
      var<D> y = minibert::contiguous(minibert::permute(v, {2, 0, 1})); // (6,2,7), packed on the device
      CHECK(y.value().is_contiguous());
      check_exact(down(y.value()).to_vector(), h.permute({2, 0, 1}).to_vector(), "contiguous(permute) forward" + dev<D>());
      const htensor<T> dout = random_tensor<T>({6, 2, 7}, 22);
      y.backward(up<D>(dout));
      htensor<T> want = htensor<T>::empty({2, 7, 6});
      for (std::int64_t i = 0; i < 2; ++i)
        for (std::int64_t j = 0; j < 7; ++j)
          for (std::int64_t k = 0; k < 6; ++k) want.at({i, j, k}) = dout.at({k, i, j});
      check_exact(down(v.grad()).to_vector(), want.to_vector(), "permute backward" + dev<D>());
    }
  }
}

// ====================================================================== add, sub, mul with broadcasting

namespace {
struct shape_pair {
  shape a, b;
};
// equal, trailing vector, both sides broadcast, a one-element operand, (B,1,1,T)-style operand; all ragged
const std::vector<shape_pair> broadcast_cases = {
    {{3, 5}, {3, 5}}, {{3, 5}, {5}}, {{2, 1, 6}, {7, 1}}, {{1}, {3, 5}}, {{2, 7, 6}, {2, 1, 6}}, {{2, 3, 4, 5}, {2, 1, 1, 5}},
};
const char* op_name(ref::binop op) { return op == ref::binop::add ? "add" : op == ref::binop::sub ? "sub" : "mul"; }
template <class D> var<D> apply(ref::binop op, const var<D>& a, const var<D>& b) {
  switch (op) {
  case ref::binop::add: return a + b;
  case ref::binop::sub: return a - b;
  default: return a * b;
  }
}
} // namespace

TEST_CASE_TEMPLATE("backend_ops.binary", D, MINIBERT_TEST_DEVICES) {
  BACKEND_OPS_SKIP_UNLESS_USABLE(D);
  for (const auto& c : broadcast_cases) {
    SUBCASE((c.a.str() + " op " + c.b.str()).c_str()) {
      for (auto op : {ref::binop::add, ref::binop::sub, ref::binop::mul}) {
        for (int swap = 0; swap < 2; ++swap) {
          const shape& sa = swap ? c.b : c.a;
          const shape& sb = swap ? c.a : c.b;
          const std::string tag = std::string(op_name(op)) + " " + sa.str() + "," + sb.str() + dev<D>();
          const htensor<T> ha = random_tensor<T>(sa, 31), hb = random_tensor<T>(sb, 32);
          var<D> a(up<D>(ha), true), b(up<D>(hb), true);
          var<D> y = apply(op, a, b);
          const ref::array ra = to_ref(ha), rb = to_ref(hb);
          check_ref(down(y.value()), ref::binary(op, ra, rb), tag + " forward");
          const htensor<T> dout = random_tensor<T>(y.shape(), 33);
          y.backward(up<D>(dout));
          const ref::grad2 g = ref::binary_backward(op, ra, rb, to_ref(dout));
          // a broadcast operand's gradient (reduce_to / sum_to) sums numel(out)/numel(operand) terms: cond = that count
          check_ref(down(a.grad()), g.da, tag + " grad a", double(y.numel()) / double(a.numel()));
          check_ref(down(b.grad()), g.db, tag + " grad b", double(y.numel()) / double(b.numel()));
        }
      }
    }
  }
  SUBCASE("one variable used three times: gradients accumulate (axpy)") {
    const htensor<T> hx = random_tensor<T>({2, 7, 6}, 34);
    var<D> x(up<D>(hx), true);
    var<D> y = x * x - x; // d/dx = 2x - 1
    const htensor<T> dout = random_tensor<T>(y.shape(), 35);
    y.backward(up<D>(dout));
    ref::array want(test::dims_of(hx.shape()));
    const ref::array rx = to_ref(hx), rd = to_ref(dout);
    for (std::int64_t i = 0; i < want.size(); ++i) want[i] = rd[i] * (2.0 * rx[i] - 1.0);
    check_ref(down(x.grad()), want, "x*x - x grad" + dev<D>());
  }
}

// ====================================================================== scale

TEST_CASE_TEMPLATE("backend_ops.scale", D, MINIBERT_TEST_DEVICES) {
  BACKEND_OPS_SKIP_UNLESS_USABLE(D);
  const htensor<T> hx = random_tensor<T>({2, 7, 6}, 41);
  var<D> x(up<D>(hx), true);
  var<D> y = minibert::scale(x, T(-2.5));
  check_ref(down(y.value()), ref::scale(to_ref(hx), -2.5), "scale forward" + dev<D>());
  const htensor<T> dout = random_tensor<T>(y.shape(), 42);
  y.backward(up<D>(dout));
  check_ref(down(x.grad()), ref::scale(to_ref(dout), -2.5), "scale grad" + dev<D>());
}

// ====================================================================== sum, mean

TEST_CASE_TEMPLATE("backend_ops.reduce", D, MINIBERT_TEST_DEVICES) {
  BACKEND_OPS_SKIP_UNLESS_USABLE(D);
  for (const shape s : {shape{7}, shape{3, 5}, shape{2, 7, 6}, shape{37, 29}}) {
    SUBCASE(s.str().c_str()) {
      const htensor<T> hx = random_tensor<T>(s, 51);
      const ref::array rx = to_ref(hx);
      // a sum of n O(1) terms: |sum| ~ sqrt(n), rounding ~ eps * sqrt(n) (test_ops_math.cpp's cond)
      const double cond = std::sqrt(double(hx.numel()));
      var<D> x(up<D>(hx), true);
      var<D> sm = minibert::sum(x), mn = minibert::mean(x);
      CHECK(sm.shape() == shape{1});
      CHECK(mn.shape() == shape{1});
      check_scalar(minibert::item(sm.value()), ref::sum(rx), "sum " + s.str() + dev<D>(), cond);
      check_scalar(minibert::item(mn.value()), ref::mean(rx), "mean " + s.str() + dev<D>(), cond);
      sm.backward(scalar_on<D>(T(1.5)));
      check_ref(down(x.grad()), ref::sum_backward(rx, 1.5), "sum grad " + s.str() + dev<D>());
      x.zero_grad();
      mn.backward(scalar_on<D>(T(1.5)));
      check_ref(down(x.grad()), ref::mean_backward(rx, 1.5), "mean grad " + s.str() + dev<D>());
    }
  }
}

// ====================================================================== matmul

namespace {
struct mm_case {
  const char* name;
  shape a, b; // as op(a), op(b) see them: (...,M,K), (...,K,N) or a shared (K,N)
};
const std::vector<mm_case> mm_cases = {
    {"2-D 3x5x4", {3, 5}, {5, 4}},
    {"batched 3-D", {2, 3, 5}, {2, 5, 7}},
    {"batched 4-D", {2, 2, 3, 4}, {2, 2, 4, 3}},
    {"shared 2-D rhs, 3-D lhs", {3, 2, 5}, {5, 4}},
    {"shared 2-D rhs, 4-D lhs", {2, 2, 3, 4}, {4, 6}},
    {"inner dim 1", {2, 4, 1}, {2, 1, 3}},
    {"2-D 67x129x45 (ragged past a tile)", {67, 129}, {129, 45}},
};
shape stored(shape s, bool t) {
  if (t) std::swap(s[s.rank() - 1], s[s.rank() - 2]);
  return s;
}
} // namespace

TEST_CASE_TEMPLATE("backend_ops.matmul", D, MINIBERT_TEST_DEVICES) {
  BACKEND_OPS_SKIP_UNLESS_USABLE(D);
  for (const auto& c : mm_cases) {
    SUBCASE(c.name) {
      for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb) {
          const std::string tag = std::string("matmul ") + c.name + (ta ? " A^T" : " A") + (tb ? " B^T" : " B") + dev<D>();
          const htensor<T> ha = random_tensor<T>(stored(c.a, ta), 61), hb = random_tensor<T>(stored(c.b, tb), 62);
          var<D> a(up<D>(ha), true), b(up<D>(hb), true);
          var<D> y = minibert::matmul(a, b, ta != 0, tb != 0);
          const ref::array ra = to_ref(ha), rb = to_ref(hb);
          const std::int64_t K = c.a.dim(-1);
          // dot products of length K: cond sqrt(K); grad a sums N terms, grad b sums batch*M terms (shared rhs)
          check_ref(down(y.value()), ref::matmul(ra, rb, ta, tb), tag + " forward", std::sqrt(double(K)));
          const htensor<T> dout = random_tensor<T>(y.shape(), 63);
          y.backward(up<D>(dout));
          const ref::grad2 g = ref::matmul_backward(ra, rb, ta, tb, to_ref(dout));
          const double terms_b = double(y.numel()) / double(y.shape().dim(-1));
          check_ref(down(a.grad()), g.da, tag + " grad a", std::sqrt(double(y.shape().dim(-1))));
          check_ref(down(b.grad()), g.db, tag + " grad b", std::sqrt(terms_b));
        }
    }
  }
}

// ====================================================================== linear

TEST_CASE_TEMPLATE("backend_ops.linear", D, MINIBERT_TEST_DEVICES) {
  BACKEND_OPS_SKIP_UNLESS_USABLE(D);
  struct lin_case {
    const char* name;
    shape x;
    std::int64_t C;
    bool bias;
  };
  const std::vector<lin_case> cases = {{"(3,5)->4 with bias", {3, 5}, 4, true},
                                       {"(3,5)->4 without bias", {3, 5}, 4, false},
                                       {"(2,7,6)->5 with bias", {2, 7, 6}, 5, true},
                                       {"(2,7,6)->5 without bias", {2, 7, 6}, 5, false},
                                       {"(67,129)->45 with bias", {67, 129}, 45, true}};
  for (const auto& c : cases) {
    SUBCASE(c.name) {
      const std::int64_t K = c.x.dim(-1);
      const htensor<T> hx = random_tensor<T>(c.x, 71), hw = random_tensor<T>({c.C, K}, 72), hb = random_tensor<T>({c.C}, 73);
      var<D> x(up<D>(hx), true), w(up<D>(hw), true), b = c.bias ? var<D>(up<D>(hb), true) : var<D>();
      var<D> y = minibert::linear(x, w, b);
      const ref::array rx = to_ref(hx), rw = to_ref(hw), rb = c.bias ? to_ref(hb) : ref::array();
      const std::string tag = std::string("linear ") + c.name + dev<D>();
      check_ref(down(y.value()), ref::linear(rx, rw, rb), tag + " forward", std::sqrt(double(K)));
      const htensor<T> dout = random_tensor<T>(y.shape(), 74);
      y.backward(up<D>(dout));
      const ref::grad3 g = ref::linear_backward(rx, rw, rb, to_ref(dout));
      const double N = double(hx.numel() / K);
      // dx: dot products of length C; dw, db: sums over N rows
      check_ref(down(x.grad()), g.d0, tag + " dx", std::sqrt(double(c.C)));
      check_ref(down(w.grad()), g.d1, tag + " dw", std::sqrt(N));
      if (c.bias) check_ref(down(b.grad()), g.d2, tag + " db", std::sqrt(N));
    }
  }
}

// ====================================================================== activations

namespace {
struct act_case {
  const char* name;
  ref::act r;
  minibert::activation a;
};
const std::vector<act_case> act_cases = {{"gelu_erf", ref::act::gelu_erf, minibert::activation::gelu_erf},
                                         {"gelu_tanh", ref::act::gelu_tanh, minibert::activation::gelu_tanh},
                                         {"tanh", ref::act::tanh, minibert::activation::tanh},
                                         {"relu", ref::act::relu, minibert::activation::relu}};
template <class D> var<D> call(minibert::activation a, const var<D>& x) {
  switch (a) {
  case minibert::activation::gelu_erf: return minibert::gelu(x);
  case minibert::activation::gelu_tanh: return minibert::gelu(x, true);
  case minibert::activation::tanh: return minibert::tanh(x);
  default: return minibert::relu(x);
  }
}
} // namespace

TEST_CASE_TEMPLATE("backend_ops.activation", D, MINIBERT_TEST_DEVICES) {
  BACKEND_OPS_SKIP_UNLESS_USABLE(D);
  for (const auto& c : act_cases) {
    SUBCASE(c.name) {
      // [-8, 8): saturated tails and the curved middle; 5x41 = 205 elements (no multiple of a vector width)
      const htensor<T> hx = random_tensor<T>({5, 41}, 81, -8.0, 8.0);
      var<D> x(up<D>(hx), true);
      var<D> y = call(c.a, x);
      const std::string tag = std::string(c.name) + dev<D>();
      check_ref(down(y.value()), ref::activation(c.r, to_ref(hx)), tag + " forward");
      const htensor<T> dout = random_tensor<T>(y.shape(), 82);
      y.backward(up<D>(dout));
      check_ref(down(x.grad()), ref::activation_backward(c.r, to_ref(hx), to_ref(dout)), tag + " backward");
    }
  }
}

// ====================================================================== activation_linear

// linear(act(u)) with act(u) recomputed in the backward: the same backend calls in the same order as the composed
// ops, so values and gradients must be bitwise those of linear(activate(u)) on every device (in fp32: the fused
// members of CUDA's own GEMM differ only for 16-bit data, test_cuda_gemm), and match the reference
TEST_CASE_TEMPLATE("backend_ops.activation_linear", D, MINIBERT_TEST_DEVICES) {
  BACKEND_OPS_SKIP_UNLESS_USABLE(D);
  for (const auto& c : act_cases) {
    SUBCASE(c.name) {
      const htensor<T> hu = random_tensor<T>({3, 7, 9}, 91, -4.0, 4.0), hw = random_tensor<T>({5, 9}, 92),
                       hb = random_tensor<T>({5}, 93), dout = random_tensor<T>({3, 7, 5}, 94);
      var<D> u(up<D>(hu), true), w(up<D>(hw), true), b(up<D>(hb), true);
      var<D> y = minibert::activation_linear(u, c.a, w, b);
      var<D> u2(up<D>(hu), true), w2(up<D>(hw), true), b2(up<D>(hb), true);
      var<D> y2 = minibert::linear(call(c.a, u2), w2, b2);
      const std::string tag = std::string("activation_linear ") + c.name + dev<D>();
      const ref::array ra = ref::activation(c.r, to_ref(hu));
      check_ref(down(y.value()), ref::linear(ra, to_ref(hw), to_ref(hb)), tag + " forward", 3.0);
      y.backward(up<D>(dout));
      y2.backward(up<D>(dout));
      const ref::grad3 g = ref::linear_backward(ra, to_ref(hw), to_ref(hb), to_ref(dout));
      check_ref(down(u.grad()), ref::activation_backward(c.r, to_ref(hu), g.d0), tag + " du", 3.0);
      check_ref(down(w.grad()), g.d1, tag + " dw", 5.0);
      check_ref(down(b.grad()), g.d2, tag + " db", 5.0);
      CHECK_MESSAGE(bitwise_equal(down(y.value()), down(y2.value())), tag << ": forward differs from linear(activate)");
      CHECK_MESSAGE(bitwise_equal(down(u.grad()), down(u2.grad())), tag << ": du differs from linear(activate)'s");
      CHECK_MESSAGE(bitwise_equal(down(w.grad()), down(w2.grad())), tag << ": dw differs from linear(activate)'s");
    }
  }
}

// ====================================================================== layer norm

TEST_CASE_TEMPLATE("backend_ops.layer_norm", D, MINIBERT_TEST_DEVICES) {
  BACKEND_OPS_SKIP_UNLESS_USABLE(D);
  struct ln_case {
    const char* name;
    shape x;
    double eps, lo, hi;
  };
  const std::vector<ln_case> cases = {{"(3,5) eps 1e-5", {3, 5}, 1e-5, -1, 1},
                                      {"(2,7,6) eps 1e-12 (BERT)", {2, 7, 6}, 1e-12, -1, 1},
                                      {"(4,37) offset mean, scale 4", {4, 37}, 1e-5, -1.5, 6.5}};
  for (const auto& c : cases) {
    SUBCASE(c.name) {
      const std::int64_t C = c.x.dim(-1);
      const htensor<T> hx = random_tensor<T>(c.x, 91, c.lo, c.hi), hw = random_tensor<T>({C}, 92, 0.5, 1.5),
                       hb = random_tensor<T>({C}, 93);
      var<D> x(up<D>(hx), true), w(up<D>(hw), true), b(up<D>(hb), true);
      var<D> y = minibert::layer_norm(x, w, b, c.eps);
      const ref::array rx = to_ref(hx), rw = to_ref(hw), rb = to_ref(hb);
      const std::string tag = std::string("layer_norm ") + c.name + dev<D>();
      check_ref(down(y.value()), ref::layer_norm(rx, rw, rb, c.eps), tag + " forward");
      const htensor<T> dout = random_tensor<T>(y.shape(), 94);
      y.backward(up<D>(dout));
      const ref::grad3 g = ref::layer_norm_backward(rx, rw, rb, c.eps, to_ref(dout));
      const double N = double(hx.numel() / C);
      // dx subtracts two row means of C terms (cancellation ~ sqrt(C) eps); dw, db sum N rows (test_ops_nn.cpp)
      check_ref(down(x.grad()), g.d0, tag + " dx", std::sqrt(double(C)));
      check_ref(down(w.grad()), g.d1, tag + " dw", std::sqrt(N));
      check_ref(down(b.grad()), g.d2, tag + " db", std::sqrt(N));
    }
  }
}

// ====================================================================== softmax

TEST_CASE_TEMPLATE("backend_ops.softmax", D, MINIBERT_TEST_DEVICES) {
  BACKEND_OPS_SKIP_UNLESS_USABLE(D);
  struct sm_case {
    const char* name;
    shape x, mask; // mask rank 0: none
  };
  const std::vector<sm_case> cases = {
      {"(3,7) no mask", {3, 7}, {}},
      {"(2,3,5,5) with a (B,1,1,T) mask", {2, 3, 5, 5}, {2, 1, 1, 5}},
      {"(2,7,6) with a (T) mask", {2, 7, 6}, {6}},
      {"(2,7,6) with a (B,1,T) mask", {2, 7, 6}, {2, 1, 6}},
      {"(2,7,6) with a full-shape mask", {2, 7, 6}, {2, 7, 6}},
  };
  for (const auto& c : cases) {
    SUBCASE(c.name) {
      const htensor<T> hx = random_tensor<T>(c.x, 101, -2, 2);
      htensor<T> hm;
      if (c.mask.rank() > 0) { // additive: 0 keep, -1e9 drop, about a third dropped; key 0 never (no empty row)
        hm = random_tensor<T>(c.mask, 102);
        const std::int64_t L = c.mask.dim(-1);
        for (std::int64_t i = 0; i < hm.numel(); ++i)
          hm.data()[i] = (i % L != 0 && hm.data()[i] < -0.33) ? T(-1e9) : T(0);
      }
      var<D> x(up<D>(hx), true);
      var<D> y = minibert::softmax(x, hm.defined() ? up<D>(hm) : dtensor<T, D>());
      const ref::array rx = to_ref(hx), rm = hm.defined() ? to_ref(hm) : ref::array();
      const std::string tag = std::string("softmax ") + c.name + dev<D>();
      check_ref(down(y.value()), ref::softmax(rx, rm), tag + " forward");
      const htensor<T> dout = random_tensor<T>(y.shape(), 103);
      y.backward(up<D>(dout));
      check_ref(down(x.grad()), ref::softmax_backward(rx, rm, to_ref(dout)), tag + " grad");
    }
  }
}

// ====================================================================== embedding

TEST_CASE_TEMPLATE("backend_ops.embedding", D, MINIBERT_TEST_DEVICES) {
  BACKEND_OPS_SKIP_UNLESS_USABLE(D);
  const htensor<T> hw = random_tensor<T>({11, 6}, 111);
  auto run = [&](const auto& hids, const std::string& tag) {
    var<D> w(up<D>(hw), true);
    var<D> y = minibert::embedding(w, up<D>(hids));
    const std::vector<std::int64_t> id = test::ids_of(hids);
    check_ref(down(y.value()), ref::embedding(to_ref(hw), id, test::dims_of(hids.shape())), tag + " forward");
    const htensor<T> dout = random_tensor<T>(y.shape(), 112);
    y.backward(up<D>(dout));
    // a row read by several ids sums their gradients (cond 2, as test_ops_nn.cpp)
    check_ref(down(w.grad()), ref::embedding_backward(to_ref(hw), id, to_ref(dout)), tag + " grad", 2.0);
  };
  SUBCASE("int64 ids (2,7) with repeats") {
    run(htensor<std::int64_t>::from({3, 0, 3, 10, 1, 3, 0, 0, 10, 2, 3, 5, 3, 9}, {2, 7}), "embedding int64" + dev<D>());
  }
  SUBCASE("int32 ids (3,5) with repeats") {
    run(htensor<std::int32_t>::from({4, 4, 7, 1, 0, 10, 4, 2, 2, 9, 6, 4, 8, 0, 7}, {3, 5}), "embedding int32" + dev<D>());
  }
  SUBCASE("int32 ids, random (37)") { run(random_ids<std::int32_t>({37}, 11, 113), "embedding int32 (37)" + dev<D>()); }
}

// ====================================================================== cross entropy

TEST_CASE_TEMPLATE("backend_ops.cross_entropy", D, MINIBERT_TEST_DEVICES) {
  BACKEND_OPS_SKIP_UNLESS_USABLE(D);
  auto run = [](const htensor<T>& hl, const auto& ht, std::int64_t ignore, const std::string& tag) {
    var<D> logits(up<D>(hl), true);
    var<D> loss = minibert::cross_entropy(logits, up<D>(ht), ignore);
    CHECK(loss.shape() == shape{1});
    const std::vector<std::int64_t> t = test::ids_of(ht);
    const ref::array rl = to_ref(hl);
    // a mean of -log p over rows: logsumexp and the mean each round (cond 2, as test_ops_nn.cpp)
    check_scalar(minibert::item(loss.value()), ref::cross_entropy(rl, t, ignore), tag + " loss", 2.0);
    loss.backward(scalar_on<D>(T(0.75)));
    check_ref(down(logits.grad()), ref::cross_entropy_backward(rl, t, 0.75, ignore), tag + " dlogits");
  };
  SUBCASE("int64 targets, ignore_index -100 on two rows") {
    run(random_tensor<T>({7, 5}, 121, -3, 3), htensor<std::int64_t>::from({0, 4, -100, 2, -100, 4, 1}, {7}), -100,
        "cross_entropy int64" + dev<D>());
  }
  SUBCASE("int32 targets, ignore_index 2") {
    run(random_tensor<T>({5, 3}, 122, -3, 3), htensor<std::int32_t>::from({2, 1, 0, 2, 0}, {5}), 2,
        "cross_entropy int32 ignore 2" + dev<D>());
  }
  SUBCASE("large logits (+-80), 37 classes") {
    run(random_tensor<T>({6, 37}, 123, -80, 80), htensor<std::int64_t>::from({1, 36, 0, -100, 17, 5}, {6}), -100,
        "cross_entropy large" + dev<D>());
  }
}

// ====================================================================== mse_loss, bce_with_logits

TEST_CASE_TEMPLATE("backend_ops.mse_loss", D, MINIBERT_TEST_DEVICES) {
  BACKEND_OPS_SKIP_UNLESS_USABLE(D);
  const htensor<T> hx = random_tensor<T>({3, 7}, 131), hy = random_tensor<T>({3, 7}, 132);
  var<D> x(up<D>(hx), true);
  var<D> loss = minibert::mse_loss(x, up<D>(hy));
  check_scalar(minibert::item(loss.value()), ref::mse(to_ref(hx), to_ref(hy)), "mse" + dev<D>());
  loss.backward(scalar_on<D>(T(1.25)));
  check_ref(down(x.grad()), ref::mse_backward(to_ref(hx), to_ref(hy), 1.25), "mse grad" + dev<D>());
}

TEST_CASE_TEMPLATE("backend_ops.bce_with_logits", D, MINIBERT_TEST_DEVICES) {
  BACKEND_OPS_SKIP_UNLESS_USABLE(D);
  SUBCASE("soft targets") {
    const htensor<T> hx = random_tensor<T>({5, 3}, 141, -4, 4), hy = random_tensor<T>({5, 3}, 142, 0, 1);
    var<D> x(up<D>(hx), true);
    var<D> loss = minibert::bce_with_logits(x, up<D>(hy));
    check_scalar(minibert::item(loss.value()), ref::bce_with_logits(to_ref(hx), to_ref(hy)), "bce" + dev<D>());
    loss.backward(scalar_on<D>(T(1.25)));
    check_ref(down(x.grad()), ref::bce_with_logits_backward(to_ref(hx), to_ref(hy), 1.25), "bce grad" + dev<D>());
  }
  SUBCASE("stable for large |x|") {
    const htensor<T> hx = htensor<T>::from({-1000, -100, -30, 30, 100, 1000, -1000, 1000, -60}, {9});
    const htensor<T> hy = htensor<T>::from({0, 1, 0.5, 0, 1, 1, 1, 0, 0.25}, {9});
    var<D> x(up<D>(hx), true);
    var<D> loss = minibert::bce_with_logits(x, up<D>(hy));
    check_scalar(minibert::item(loss.value()), ref::bce_with_logits(to_ref(hx), to_ref(hy)), "bce large |x|" + dev<D>());
    loss.backward(scalar_on<D>(T(1)));
    check_ref(down(x.grad()), ref::bce_with_logits_backward(to_ref(hx), to_ref(hy), 1.0), "bce large |x| grad" + dev<D>());
  }
}

// ====================================================================== dropout

TEST_CASE_TEMPLATE("backend_ops.dropout", D, MINIBERT_TEST_DEVICES) {
  BACKEND_OPS_SKIP_UNLESS_USABLE(D);
  for (const float p : {0.1f, 0.5f}) {
    SUBCASE(("p = " + std::to_string(p)).c_str()) {
      const htensor<T> hx = random_tensor<T>({3, 7, 5}, 151); // 105 elements: not a multiple of 4
      generator gen(1234);
      gen.reserve(10); // a non-zero starting counter
      const std::uint64_t base = gen.offset();
      var<D> x(up<D>(hx), true);
      var<D> y = minibert::dropout(x, p, true, gen);
      CHECK(gen.offset() == base + (105 + 3) / 4); // ceil(n/4) counters consumed
      // the mask the host rebuilds from (seed, base): the same seed gives the same mask on every device
      const std::vector<int> keep = keep_mask(1234, base, 105, p);
      const std::string tag = "dropout p=" + std::to_string(p) + dev<D>();
      const htensor<T> out = down(y.value());
      check_ref(out, ref::dropout(to_ref(hx), keep, double(p)), tag + " forward");
      std::int64_t dropped_nonzero = 0;
      for (std::int64_t i = 0; i < 105; ++i) dropped_nonzero += !keep[std::size_t(i)] && out.data()[i] != T(0);
      CHECK_MESSAGE(dropped_nonzero == 0, tag << ": " << dropped_nonzero << " dropped elements are not exactly 0");
      const htensor<T> dout = random_tensor<T>(y.shape(), 152);
      y.backward(up<D>(dout));
      check_ref(down(x.grad()), ref::dropout_backward(keep, double(p), to_ref(dout)), tag + " grad");
    }
  }
}

// ====================================================================== attention, self_attention

namespace {
struct attn_case {
  const char* name;
  std::int64_t B, T, C;
  int NH;
};
// heads of size 4 with T = 5; heads of size 4 with T = 7 and 3 heads; head size 1
const std::vector<attn_case> attn_cases = {
    {"B2 T5 C8 NH2", 2, 5, 8, 2}, {"B3 T7 C12 NH3", 3, 7, 12, 3}, {"B2 T3 C4 NH4 (head size 1)", 2, 3, 4, 4}};

enum class attn_mode { eval, train_dropout };

/// one attention (or self_attention) run on device D against the reference: forward and dq, dk, dv
template <class D> void check_attention(const attn_case& c, bool fused, attn_mode mode) {
  const float p = 0.1f;
  const bool training = mode == attn_mode::train_dropout;
  const std::string tag = std::string(fused ? "self_attention " : "attention ") + c.name +
                          (training ? " dropout 0.1" : " eval") + dev<D>();
  const htensor<T> hq = random_tensor<T>({c.B, c.T, c.C}, 161), hk = random_tensor<T>({c.B, c.T, c.C}, 162),
                   hv = random_tensor<T>({c.B, c.T, c.C}, 163);
  const htensor<T> hm = padding_mask(c.B, c.T); // rows end in masked keys
  generator gen(2024);
  gen.reserve(6); // a non-zero starting counter
  const std::uint64_t base = gen.offset();
  const std::int64_t n = c.B * c.NH * c.T * c.T;
  var<D> q, k, v, qkv, y;
  if (fused) {
    // qkv (B,T,3C) = [q | k | v] built on the host
    htensor<T> h = htensor<T>::empty({c.B, c.T, 3 * c.C});
    for (std::int64_t b = 0; b < c.B; ++b)
      for (std::int64_t t = 0; t < c.T; ++t)
        for (std::int64_t j = 0; j < c.C; ++j) {
          h.at({b, t, j}) = hq.at({b, t, j});
          h.at({b, t, c.C + j}) = hk.at({b, t, j});
          h.at({b, t, 2 * c.C + j}) = hv.at({b, t, j});
        }
    qkv = var<D>(up<D>(h), true);
    y = minibert::self_attention(qkv, up<D>(hm), c.NH, p, training, gen);
  } else {
    q = var<D>(up<D>(hq), true);
    k = var<D>(up<D>(hk), true);
    v = var<D>(up<D>(hv), true);
    y = minibert::attention(q, k, v, up<D>(hm), c.NH, p, training, gen);
  }
  CHECK(gen.offset() == (training ? base + std::uint64_t((n + 3) / 4) : base)); // eval mode draws nothing
  const std::vector<int> keep = training ? keep_mask(2024, base, n, p) : std::vector<int>(); // over (B,NH,T,T)
  const ref::array rq = to_ref(hq), rk = to_ref(hk), rv = to_ref(hv), rm = to_ref(hm);
  // scores are dot products of length HS and outputs averages of T values: cond 2 (test_ops_nn.cpp)
  check_ref(down(y.value()), ref::attention(rq, rk, rv, rm, c.NH, keep, p).out, tag + " forward", 2.0);
  const htensor<T> dout = random_tensor<T>(y.shape(), 164);
  y.backward(up<D>(dout));
  const ref::grad3 g = ref::attention_backward(rq, rk, rv, rm, c.NH, to_ref(dout), keep, p);
  htensor<T> dq, dk, dv;
  if (fused) {
    const htensor<T> d = down(qkv.grad());
    dq = d.slice(2, 0, c.C);
    dk = d.slice(2, c.C, 2 * c.C);
    dv = d.slice(2, 2 * c.C, 3 * c.C);
  } else {
    dq = down(q.grad());
    dk = down(k.grad());
    dv = down(v.grad());
  }
  check_ref(dq, g.d0, tag + " dq", 2.0);
  check_ref(dk, g.d1, tag + " dk", 2.0);
  check_ref(dv, g.d2, tag + " dv", 2.0);
  if (training) { // the dropout really changed the result
    const ref::array no_drop = ref::attention(rq, rk, rv, rm, c.NH).out;
    const std::vector<double> got = values(down(y.value()));
    double maxdiff = 0;
    for (std::size_t i = 0; i < got.size(); ++i) maxdiff = std::max(maxdiff, std::abs(got[i] - no_drop.v[i]));
    CHECK_MESSAGE(maxdiff > 1e-2, tag << ": dropout changed the output by only " << maxdiff);
  }
}
} // namespace

TEST_CASE_TEMPLATE("backend_ops.attention", D, MINIBERT_TEST_DEVICES) {
  BACKEND_OPS_SKIP_UNLESS_USABLE(D);
  for (const auto& c : attn_cases) {
    SUBCASE(c.name) {
      check_attention<D>(c, false, attn_mode::eval);
      check_attention<D>(c, false, attn_mode::train_dropout);
    }
  }
  SUBCASE("no mask, no dropout") {
    const htensor<T> hq = random_tensor<T>({2, 5, 8}, 165), hk = random_tensor<T>({2, 5, 8}, 166),
                     hv = random_tensor<T>({2, 5, 8}, 167);
    var<D> q(up<D>(hq), true), k(up<D>(hk), true), v(up<D>(hv), true);
    generator gen(1);
    var<D> y = minibert::attention(q, k, v, dtensor<T, D>(), 2, 0.0f, true, gen);
    const ref::array rq = to_ref(hq), rk = to_ref(hk), rv = to_ref(hv);
    check_ref(down(y.value()), ref::attention(rq, rk, rv, ref::array(), 2).out, "attention no mask" + dev<D>(), 2.0);
    const htensor<T> dout = random_tensor<T>(y.shape(), 168);
    y.backward(up<D>(dout));
    const ref::grad3 g = ref::attention_backward(rq, rk, rv, ref::array(), 2, to_ref(dout));
    check_ref(down(q.grad()), g.d0, "attention no mask dq" + dev<D>(), 2.0);
    check_ref(down(k.grad()), g.d1, "attention no mask dk" + dev<D>(), 2.0);
    check_ref(down(v.grad()), g.d2, "attention no mask dv" + dev<D>(), 2.0);
  }
}

TEST_CASE_TEMPLATE("backend_ops.self_attention", D, MINIBERT_TEST_DEVICES) {
  BACKEND_OPS_SKIP_UNLESS_USABLE(D);
  for (const auto& c : attn_cases) {
    SUBCASE(c.name) {
      check_attention<D>(c, true, attn_mode::eval);
      check_attention<D>(c, true, attn_mode::train_dropout);
    }
  }
}

// ====================================================================== concat

TEST_CASE_TEMPLATE("backend_ops.concat", D, MINIBERT_TEST_DEVICES) {
  BACKEND_OPS_SKIP_UNLESS_USABLE(D);
  const htensor<T> ha = random_tensor<T>({2, 3, 5}, 171), hb = random_tensor<T>({1, 3, 5}, 172),
                   hc = random_tensor<T>({3, 3, 5}, 173);
  var<D> a(up<D>(ha), true), b(up<D>(hb), false), c(up<D>(hc), true); // b needs no gradient
  var<D> y = minibert::concat<T, D>({a, b, c});
  CHECK(y.shape() == shape{6, 3, 5});
  std::vector<T> want = ha.to_vector();
  for (const htensor<T>* h : {&hb, &hc}) {
    const std::vector<T> v = h->to_vector();
    want.insert(want.end(), v.begin(), v.end());
  }
  check_exact(down(y.value()).to_vector(), want, "concat forward" + dev<D>());
  const htensor<T> dout = random_tensor<T>({6, 3, 5}, 174);
  y.backward(up<D>(dout));
  check_exact(down(a.grad()).to_vector(), dout.slice(0, 0, 2).to_vector(), "concat grad a" + dev<D>());
  CHECK_FALSE(b.has_grad());
  check_exact(down(c.grad()).to_vector(), dout.slice(0, 3, 6).to_vector(), "concat grad c" + dev<D>());
}

// ====================================================================== the model's additive mask

TEST_CASE_TEMPLATE("backend_ops.additive_mask", D, MINIBERT_TEST_DEVICES) {
  BACKEND_OPS_SKIP_UNLESS_USABLE(D);
  const std::int64_t B = 3, Tn = 5;
  const htensor<std::int32_t> hm = htensor<std::int32_t>::from({1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0}, {B, Tn});
  minibert::bert_inputs<D> in;
  in.input_ids = up<D>(random_ids<std::int32_t>({B, Tn}, 30, 181));
  in.attention_mask = up<D>(hm);
  const dtensor<T, D> mask = minibert::bert_model<T, D>::additive_mask(in);
  REQUIRE(mask.defined());
  CHECK(mask.shape() == shape{B, Tn});
  // transformers' extended attention mask: (1 - mask) * torch.finfo(float32).min
  ref::array want(ref::dims{B, Tn});
  for (std::int64_t i = 0; i < want.size(); ++i)
    want[i] = (1.0 - double(hm.data()[i])) * double(std::numeric_limits<T>::lowest());
  check_ref(down(mask), want, "additive_mask" + dev<D>());
  CHECK_FALSE(minibert::bert_model<T, D>::additive_mask(minibert::bert_inputs<D>{in.input_ids, {}, {}, {}}).defined());
  // and the mask as the encoder uses it: attention over keys masked with lowest(float), no dropout
  const htensor<T> hq = random_tensor<T>({B, Tn, 8}, 182), hk = random_tensor<T>({B, Tn, 8}, 183),
                   hv = random_tensor<T>({B, Tn, 8}, 184);
  var<D> q(up<D>(hq), true), k(up<D>(hk), true), v(up<D>(hv), true);
  generator gen(1);
  var<D> y = minibert::attention(q, k, v, mask, 2, 0.1f, false, gen);
  const ref::array rq = to_ref(hq), rk = to_ref(hk), rv = to_ref(hv);
  check_ref(down(y.value()), ref::attention(rq, rk, rv, want, 2).out, "attention with the model's mask" + dev<D>(), 2.0);
  const htensor<T> dout = random_tensor<T>(y.shape(), 185);
  y.backward(up<D>(dout));
  const ref::grad3 g = ref::attention_backward(rq, rk, rv, want, 2, to_ref(dout));
  check_ref(down(q.grad()), g.d0, "attention with the model's mask dq" + dev<D>(), 2.0);
  check_ref(down(k.grad()), g.d1, "attention with the model's mask dk" + dev<D>(), 2.0);
  check_ref(down(v.grad()), g.d2, "attention with the model's mask dv" + dev<D>(), 2.0);
}

// ====================================================================== AdamW, clip_grad_norm

namespace {
/// torch.optim.AdamW's update (_single_tensor_adamw, PyTorch 1.13) in double, written from the formula
struct adamw_ref {
  std::vector<double> p, m, v;
  std::int64_t t = 0;
  void step(const std::vector<double>& g, double lr, double wd, double b1, double b2, double eps) {
    ++t;
    const double bc1 = 1.0 - std::pow(b1, double(t)), bc2 = 1.0 - std::pow(b2, double(t));
    for (std::size_t i = 0; i < p.size(); ++i) {
      p[i] *= 1.0 - lr * wd;
      m[i] = b1 * m[i] + (1.0 - b1) * g[i];
      v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
      p[i] -= lr / bc1 * m[i] / (std::sqrt(v[i]) / std::sqrt(bc2) + eps);
    }
  }
};
/// gives param the gradient g exactly, through the graph: d/dp sum(p * g) = g
template <class D> void set_grad(var<D>& param, const htensor<T>& g) {
  param.zero_grad();
  minibert::sum(param * var<D>(up<D>(g))).backward();
}
} // namespace

TEST_CASE_TEMPLATE("backend_ops.adamw", D, MINIBERT_TEST_DEVICES) {
  BACKEND_OPS_SKIP_UNLESS_USABLE(D);
  const minibert::adamw_options o; // betas (0.9, 0.999), eps 1e-8
  const htensor<T> hw = random_tensor<T>({3, 5}, 191), hb = random_tensor<T>({7}, 192);
  htensor<T> gw1 = random_tensor<T>({3, 5}, 193);
  gw1.data()[4] = T(0); // a zero gradient at step 1: m = v = 0, update 0 / eps = 0
  const htensor<T> gw2 = random_tensor<T>({3, 5}, 194), gb1 = random_tensor<T>({7}, 195), gb2 = random_tensor<T>({7}, 196);
  // device copies of their own (on the CPU, to_device of a packed host tensor shares its storage)
  var<D> w(up<D>(hw.clone()), true), b(up<D>(hb.clone()), true);
  const double wd = 0.01;
  std::vector<minibert::param_group<T, D>> groups(2);
  groups[0].names = {"w"};
  groups[0].params = {w};
  groups[0].weight_decay = wd;
  groups[1].names = {"b"};
  groups[1].params = {b};
  minibert::adamw<T, D> opt(groups, o);
  adamw_ref rw{values(hw), std::vector<double>(15, 0.0), std::vector<double>(15, 0.0)};
  adamw_ref rb{values(hb), std::vector<double>(7, 0.0), std::vector<double>(7, 0.0)};
  const double lrs[2] = {0.05, 0.03}; // a schedule: the second step at another rate
  for (int s = 0; s < 2; ++s) {
    const htensor<T>& gw = s == 0 ? gw1 : gw2;
    const htensor<T>& gb = s == 0 ? gb1 : gb2;
    set_grad(w, gw);
    set_grad(b, gb);
    check_exact(down(w.grad()).to_vector(), gw.to_vector(), "adamw: the gradient set through the graph" + dev<D>());
    opt.step(lrs[s]);
    rw.step(values(gw), lrs[s], wd, o.beta1, o.beta2, o.eps);
    rb.step(values(gb), lrs[s], 0.0, o.beta1, o.beta2, o.eps);
    const std::string tag = "adamw step " + std::to_string(s + 1) + dev<D>();
    check_ref(down(w.value()), ref::array(test::dims_of(hw.shape()), rw.p), tag + " w");
    check_ref(down(b.value()), ref::array(test::dims_of(hb.shape()), rb.p), tag + " b (no decay)");
    const auto* st = opt.state("w");
    REQUIRE(st != nullptr);
    CHECK(st->step == s + 1);
    check_ref(down(st->exp_avg), ref::array(test::dims_of(hw.shape()), rw.m), tag + " exp_avg");
    check_ref(down(st->exp_avg_sq), ref::array(test::dims_of(hw.shape()), rw.v), tag + " exp_avg_sq");
  }
}

namespace {
/// One adamw_step over a list of tensors of ragged sizes (an empty one, and 70000 elements: two of the CUDA launch's
/// 65536-element chunks) against one call per tensor, on device D: every master, moment and parameter bit-equal.
/// P is the parameter type: float (the parameter is its own master) or bfloat16 (an fp32 master beside it).
template <class P, class D> void check_adamw_list() {
  using A = minibert::acc_t<P>;
  auto& ctx = minibert::current_context<D>();
  const minibert::adamw_coefficients<A> c{A(0.999), A(0.9), A(0.1), A(0.999), A(0.001), A(0.3), A(1e-8), A(-0.01)};
  const std::vector<std::int64_t> sizes = {5, 0, 70000, 1, 3};
  struct state {
    dtensor<A, D> master, m, v;
    dtensor<P, D> param, grad;
  };
  auto make = [&](std::int64_t n, std::uint64_t seed) {
    auto host = [&](std::uint64_t k, double lo) { return random_tensor<A>({n}, seed * 10 + k, lo, 1.0); };
    state st{up<D>(host(1, -1.0)), up<D>(host(2, -1.0)), up<D>(host(3, 0.0)), {}, {}};
    const htensor<A> hp = down(st.master), hg = host(4, -1.0);
    htensor<P> p = htensor<P>::empty({n}), g = htensor<P>::empty({n});
    for (std::int64_t i = 0; i < n; ++i) {
      p.data()[i] = P(hp.data()[i]);
      g.data()[i] = P(hg.data()[i]);
    }
    st.param = up<D>(p);
    st.grad = up<D>(g);
    return st;
  };
  auto entry = [](state& st) {
    A* master = nullptr;
    if constexpr (std::is_same_v<P, A>) master = st.param.data();
    else master = st.master.data();
    return minibert::adamw_tensor<P>{master, st.param.data(), st.grad.data(), st.m.data(), st.v.data(), st.param.numel()};
  };
  std::vector<state> batched, single;
  std::vector<minibert::adamw_tensor<P>> list;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    batched.push_back(make(sizes[i], i + 1));
    single.push_back(make(sizes[i], i + 1));
  }
  for (auto& st : batched) list.push_back(entry(st));
  minibert::backend<D>::adamw_step(ctx, std::span<const minibert::adamw_tensor<P>>(list), c);
  for (auto& st : single) {
    const minibert::adamw_tensor<P> one = entry(st);
    minibert::backend<D>::adamw_step(ctx, std::span<const minibert::adamw_tensor<P>>(&one, 1), c);
  }
  // parameters compared as floats (exact: every bfloat16 is a float)
  auto params = [](const dtensor<P, D>& t) {
    std::vector<float> f;
    for (P x : down(t).to_vector()) f.push_back(float(x));
    return f;
  };
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const std::string tag = "adamw_step list, tensor " + std::to_string(i) + " of " + std::to_string(sizes[i]) + dev<D>();
    check_exact(params(batched[i].param), params(single[i].param), tag + " param");
    check_exact(down(batched[i].m).to_vector(), down(single[i].m).to_vector(), tag + " exp_avg");
    check_exact(down(batched[i].v).to_vector(), down(single[i].v).to_vector(), tag + " exp_avg_sq");
    if constexpr (!std::is_same_v<P, A>) {
      check_exact(down(batched[i].master).to_vector(), down(single[i].master).to_vector(), tag + " master");
      std::vector<float> rounded;
      for (A x : down(batched[i].master).to_vector()) rounded.push_back(float(P(x)));
      check_exact(params(batched[i].param), rounded, tag + " param = bf16(master)");
    }
  }
  // and every element was updated, the tail past the first 65536-element chunk included: each exp_avg moved
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const std::vector<A> before = down(make(sizes[i], i + 1).m).to_vector(), after = down(batched[i].m).to_vector();
    std::size_t unchanged = 0;
    for (std::size_t e = 0; e < before.size(); ++e) unchanged += before[e] == after[e];
    CHECK_MESSAGE(unchanged == 0, "tensor " << i << ": " << unchanged << " of " << before.size() << " not updated");
  }
}
} // namespace

TEST_CASE_TEMPLATE("backend_ops.adamw_step over a list of tensors", D, MINIBERT_TEST_DEVICES) {
  BACKEND_OPS_SKIP_UNLESS_USABLE(D);
  check_adamw_list<float, D>();
  check_adamw_list<minibert::bfloat16, D>();
}

// the multi-tensor members on lists longer than a GPU's reduction block (1,500 tensors: 1,500 partial sums), with an
// empty tensor in them, onto a total that is not zero; and on empty lists
TEST_CASE_TEMPLATE("backend_ops.sum_squares and clip_by_norm over long lists", D, MINIBERT_TEST_DEVICES) {
  BACKEND_OPS_SKIP_UNLESS_USABLE(D);
  auto& ctx = minibert::current_context<D>();
  constexpr std::int64_t tensors = 1500;
  const htensor<T> hx = random_tensor<T>({tensors}, 207);
  dtensor<T, D> dx = up<D>(minibert::clone(hx)); // (on the CPU, up shares storage: the clip must not reach hx)
  std::vector<minibert::foreach_tensor<T>> list;
  for (std::int64_t i = 0; i < tensors; ++i) {
    list.push_back({dx.data() + i, 1});
    if (i == 700) list.push_back({dx.data() + i, 0});
  }
  std::vector<minibert::foreach_tensor<const T>> clist;
  for (const auto& t : list) clist.push_back({t.data, t.n});
  double want = 5.0;
  for (const double e : values(hx)) want += e * e;
  dtensor<double, D> total = up<D>(htensor<double>::full({1}, 5.0));
  minibert::backend<D>::sum_squares(ctx, std::span<const minibert::foreach_tensor<const T>>(clist), total.data());
  const double got = down(total).to_vector()[0];
  CHECK_MESSAGE(std::abs(got - want) <= 1e-12 * want, "sum_squares " << got << ", want " << want << dev<D>());
  // clip to half the norm: every element scaled by T(coef)
  const double max_norm = std::sqrt(want) / 2, coef = max_norm / (std::sqrt(want) + 1e-6);
  minibert::backend<D>::clip_by_norm(ctx, std::span<const minibert::foreach_tensor<T>>(list), total.data(), max_norm);
  check_ref(down(dx), ref::scale(to_ref(hx), double(T(coef))), "clip_by_norm over 1,500 tensors" + dev<D>());
  // empty lists: nothing happens
  minibert::backend<D>::sum_squares(ctx, std::span<const minibert::foreach_tensor<const T>>(), total.data());
  minibert::backend<D>::clip_by_norm(ctx, std::span<const minibert::foreach_tensor<T>>(), total.data(), 0.0);
  dtensor<minibert::acc_t<T>, D> found = up<D>(htensor<minibert::acc_t<T>>::full({1}, 0));
  minibert::backend<D>::non_finite_check_and_unscale(ctx, std::span<const minibert::foreach_tensor<T>>(), T(2),
                                                      found.data());
  CHECK(down(total).to_vector()[0] == got);
  CHECK(down(found).to_vector()[0] == 0);
}

TEST_CASE_TEMPLATE("backend_ops.clip_grad_norm", D, MINIBERT_TEST_DEVICES) {
  BACKEND_OPS_SKIP_UNLESS_USABLE(D);
  // b spans two of a GPU's 2^16-element chunks
  const htensor<T> ga = random_tensor<T>({3, 5}, 201), gb = random_tensor<T>({2, 35000}, 202);
  double sq = 0;
  for (double e : values(ga)) sq += e * e;
  for (double e : values(gb)) sq += e * e;
  const double norm = std::sqrt(sq);
  for (const double factor : {0.5, 2.0}) { // clipped; left alone
    SUBCASE(factor < 1 ? "max_norm = norm / 2: clipped" : "max_norm = 2 norm: unchanged") {
      var<D> a(up<D>(random_tensor<T>({3, 5}, 203)), true), b(up<D>(random_tensor<T>({2, 35000}, 204)), true),
          c(up<D>(random_tensor<T>({4}, 205)), true); // c has no gradient: skipped
      set_grad(a, ga);
      set_grad(b, gb);
      const T* a_grad = a.grad().data();
      const double max_norm = factor * norm;
      const double got = minibert::clip_grad_norm<T, D>({a, b, c}, max_norm);
      CHECK(a.grad().data() == a_grad); // held by a alone: scaled in place, not copied first
      const std::string tag = std::string("clip_grad_norm ") + (factor < 1 ? "clipped" : "unclipped") + dev<D>();
      check_scalar(T(got), norm, tag + " norm");
      CHECK_FALSE(c.has_grad());
      // torch: coef = max_norm / (norm + 1e-6), applied when < 1
      const double coef = std::min(1.0, max_norm / (norm + 1e-6));
      check_ref(down(a.grad()), ref::scale(to_ref(ga), coef), tag + " grad a");
      check_ref(down(b.grad()), ref::scale(to_ref(gb), coef), tag + " grad b");
      if (factor > 1) check_exact(down(a.grad()).to_vector(), ga.to_vector(), tag + " grad a untouched");
    }
  }
}

// ====================================================================== fp16 loss scaling: unscale and check

namespace {
/// torch's _amp_foreach_non_finite_check_and_unscale_ per element, as written in AmpKernels.cu: the value times
/// inv_scale (the exact double product of two floats, rounded to float once: the fp32 product), untouched when
/// inv_scale is 1; found when a value is inf or NaN (minibert: before or after the product)
struct unscale_ref {
  std::vector<double> out;
  bool found = false;
  unscale_ref(const std::vector<float>& g, float inv) {
    for (float v : g) {
      const float o = inv == 1.0f ? v : float(double(v) * double(inv));
      out.push_back(o);
      found |= !std::isfinite(v) || !std::isfinite(o);
    }
  }
};
} // namespace

TEST_CASE_TEMPLATE("backend_ops.non_finite_check_and_unscale", D, MINIBERT_TEST_DEVICES) {
  BACKEND_OPS_SKIP_UNLESS_USABLE(D);
  using A = minibert::acc_t<T>;
  const std::int64_t n = 90001; // ragged, and large enough for several CPU chunks and CUDA blocks
  const std::vector<float> base = random_tensor<T>({n}, 211, -3e4, 3e4).to_vector();
  // runs the op on the device over g, as a list of three tensors (its first 70,000 elements, which span two of a
  // GPU's 2^16-element chunks, then one element, then the rest) when g is long enough, with found_inf starting at
  // `found0`; CHECKs g and found_inf against unscale_ref
  auto run = [&](std::vector<float> g, float inv, float found0, const std::string& what) {
    dtensor<T, D> dg = up<D>(htensor<T>::from(g, {std::int64_t(g.size())}));
    dtensor<A, D> found = up<D>(htensor<A>::full({1}, A(found0)));
    const std::int64_t len = std::int64_t(g.size());
    std::vector<minibert::foreach_tensor<T>> list;
    if (len > 70001) list = {{dg.data(), 70000}, {dg.data() + 70000, 1}, {dg.data() + 70001, len - 70001}};
    else list = {{dg.data(), len}};
    minibert::backend<D>::non_finite_check_and_unscale(minibert::current_context<D>(),
                                                        std::span<const minibert::foreach_tensor<T>>(list), A(inv),
                                                        found.data());
    const unscale_ref want(g, inv);
    test::check_close(values(down(dg)), want.out, 0.0, 0.0, 0.0, what + dev<D>()); // exact, NaN and inf in place
    const A got = down(found).to_vector()[0];
    CHECK_MESSAGE(got == ((want.found || found0 != 0) ? A(1) : A(0)), what << dev<D>() << ": found_inf " << got);
  };
  const float inv = float(1.0 / 3.0); // a reciprocal that rounds: every product is rounded
  SUBCASE("finite: scaled, found_inf stays 0") { run(base, inv, 0.0f, "unscale finite"); }
  SUBCASE("inv_scale 1: unchanged") { run(base, 1.0f, 0.0f, "unscale by 1"); }
  SUBCASE("finite, found_inf already 1: stays 1") { run(base, inv, 1.0f, "unscale finite, found_inf preset"); }
  SUBCASE("empty") { run({}, inv, 0.0f, "unscale n=0"); }
  const float bad[3] = {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                        std::numeric_limits<float>::quiet_NaN()};
  const char* names[3] = {"inf", "-inf", "NaN"};
  for (int b = 0; b < 3; ++b)
    for (const std::int64_t at : {std::int64_t(0), n / 2, std::int64_t(65536), std::int64_t(70000), n - 1}) {
      const std::string what = std::string("unscale ") + names[b] + " at " + std::to_string(at);
      SUBCASE(what.c_str()) {
        std::vector<float> g = base;
        g[std::size_t(at)] = bad[b];
        run(g, inv, 0.0f, what);
        run(g, 1.0f, 0.0f, what + ", inv_scale 1");
        run(g, inv, 1.0f, what + ", found_inf preset");
      }
    }
  SUBCASE("finite values that overflow when multiplied (inv_scale > 1) are found") {
    std::vector<float> g = base;
    g[7] = 0.75f * std::numeric_limits<float>::max();
    run(g, 2.0f, 0.0f, "unscale overflow after the product");
  }
}

} // namespace test_backend_ops
