// SPDX-License-Identifier: MIT
// Math ops against tests/reference/ops.hpp (float and double, forward and backward), autograd against
// central finite differences (double), and shape errors: add/sub/mul/scale with broadcasting, matmul
// (all four transpose combinations, batched, shared 2-D rhs), linear, the shape ops (reshape, permute,
// transpose, slice, select, contiguous), sum/mean, and the activations (GELU erf/tanh, tanh, ReLU).
// Tolerances: see test_helpers.hpp.

#include <cmath>   // sqrt
#include <cstdint> // int64_t
#include <string>  // string
#include <vector>  // vector

#include "test_helpers.hpp"

namespace test_ops_math { // each test file in its own namespace: a test group compiles as one unit

using minibert::shape;
using test::check_error;
using test::check_gradients;
using test::check_ref;
using test::dtensor;
using test::dvar;
using test::random_tensor;
using test::to_ref;
template <class T> using tensor = test::tensor<T>;
template <class T> using variable = test::variable<T>;

namespace {

struct shape_pair {
  shape a, b;
};
// broadcasting combinations: equal, trailing vector, both sides broadcast, lower rank lhs, size-1 dims
// on both operands, a one-element operand, rank 4 with a (B,1,1,T)-style operand
const std::vector<shape_pair> broadcast_cases = {
    {{2, 3}, {2, 3}},       {{2, 3}, {3}},          {{2, 1, 4}, {3, 1}},        {{4}, {2, 3, 4}},
    {{2, 3, 1}, {1, 1, 5}}, {{1}, {2, 3}},          {{2, 3, 4, 5}, {2, 1, 1, 5}}, {{3, 1}, {1, 3}},
};

const char* op_name(ref::binop op) { return op == ref::binop::add ? "add" : op == ref::binop::sub ? "sub" : "mul"; }

template <class T> variable<T> apply(ref::binop op, const variable<T>& a, const variable<T>& b) {
  switch (op) {
  case ref::binop::add: return a + b;
  case ref::binop::sub: return a - b;
  default: return a * b;
  }
}

/// run op forward and backward (seed dout) with both inputs requiring grad; compare all three to the reference
template <class T> void check_binary(ref::binop op, const shape& sa, const shape& sb, const std::string& tag) {
  const tensor<T> ta = random_tensor<T>(sa, 1), tb = random_tensor<T>(sb, 2);
  variable<T> a(ta.clone(), true), b(tb.clone(), true);
  variable<T> y = apply(op, a, b);
  const ref::array ra = to_ref(ta), rb = to_ref(tb);
  check_ref(y.value(), ref::binary(op, ra, rb), tag + " forward");
  const tensor<T> dout = random_tensor<T>(y.shape(), 3);
  y.backward(dout);
  const ref::grad2 g = ref::binary_backward(op, ra, rb, to_ref(dout));
  // a broadcast operand's gradient sums up to numel(out)/numel(operand) terms: cond = that count
  check_ref(a.grad(), g.da, tag + " grad a", double(y.numel()) / double(a.numel()));
  check_ref(b.grad(), g.db, tag + " grad b", double(y.numel()) / double(b.numel()));
}

std::string str(const shape& s) { return s.str(); }

} // namespace

// ====================================================================== element-wise

TEST_CASE_TEMPLATE("ops.elementwise: add/sub/mul with broadcasting vs reference", T, float, double) {
  for (const auto& c : broadcast_cases) {
    SUBCASE((str(c.a) + " op " + str(c.b)).c_str()) {
      for (auto op : {ref::binop::add, ref::binop::sub, ref::binop::mul}) {
        check_binary<T>(op, c.a, c.b, std::string(op_name(op)) + test::tname<T>() + " " + str(c.a) + "," + str(c.b));
        check_binary<T>(op, c.b, c.a, std::string(op_name(op)) + test::tname<T>() + " " + str(c.b) + "," + str(c.a));
      }
    }
  }
}

TEST_CASE("ops.elementwise: add/sub/mul gradients by finite differences") {
  for (const auto& c : broadcast_cases) {
    SUBCASE((str(c.a) + " op " + str(c.b)).c_str()) {
      for (auto op : {ref::binop::add, ref::binop::sub, ref::binop::mul}) {
        check_gradients(std::string(op_name(op)) + " " + str(c.a) + "," + str(c.b),
                        [op](const std::vector<dvar>& x) { return apply(op, x[0], x[1]); },
                        {random_tensor<double>(c.a, 11), random_tensor<double>(c.b, 12)});
      }
    }
  }
  SUBCASE("the same variable on both sides") {
    check_gradients("x*x - x + x", [](const std::vector<dvar>& x) { return x[0] * x[0] - x[0] + x[0]; },
                    {random_tensor<double>({2, 3}, 13)});
  }
}

TEST_CASE_TEMPLATE("ops.elementwise: non-contiguous operands and scale", T, float, double) {
  SUBCASE("transposed and sliced views as operands") {
    const tensor<T> base = random_tensor<T>({4, 3}, 5), other = random_tensor<T>({3, 2}, 6);
    variable<T> a(base, true), b(other, true);
    variable<T> at = minibert::transpose(a, 0, 1);    // (3,4) view
    variable<T> as = minibert::slice(at, 1, 1, 3);    // (3,2) view of a view
    variable<T> y = as * b;
    ref::array ra(ref::dims{3, 2}), rb = to_ref(other);
    for (std::int64_t i = 0; i < 3; ++i)
      for (std::int64_t j = 0; j < 2; ++j) ra.at({i, j}) = double(base.at({j + 1, i}));
    check_ref(y.value(), ref::binary(ref::binop::mul, ra, rb), "mul of views" + test::tname<T>());
    y.backward(tensor<T>::full({3, 2}, T(1)));
    ref::array da(ref::dims{4, 3}); // d/d base = b scattered into the viewed positions
    for (std::int64_t i = 0; i < 3; ++i)
      for (std::int64_t j = 0; j < 2; ++j) da.at({j + 1, i}) = double(other.at({i, j}));
    check_ref(a.grad(), da, "mul of views grad" + test::tname<T>());
  }
  SUBCASE("scale") {
    const tensor<T> x = random_tensor<T>({2, 5}, 7);
    variable<T> v(x, true);
    variable<T> y = minibert::scale(v, T(-2.5));
    check_ref(y.value(), ref::scale(to_ref(x), double(T(-2.5))), "scale" + test::tname<T>());
    const tensor<T> dout = random_tensor<T>({2, 5}, 8);
    y.backward(dout);
    check_ref(v.grad(), ref::scale(to_ref(dout), double(T(-2.5))), "scale grad" + test::tname<T>());
  }
}

TEST_CASE("ops.elementwise: scale gradient by finite differences") {
  check_gradients("scale", [](const std::vector<dvar>& x) { return minibert::scale(x[0], 0.75); },
                  {random_tensor<double>({3, 4}, 9)});
}

TEST_CASE_TEMPLATE("ops.elementwise: shape errors name the op and both shapes", T, float, double) {
  variable<T> a(random_tensor<T>({2, 3}, 1), true), b(random_tensor<T>({4, 3}, 2), true), c(random_tensor<T>({2}, 3));
  check_error([&] { (void)(a + b); }, {"[minibert.add]", "(2,3)", "(4,3)", "broadcast"});
  check_error([&] { (void)(a - b); }, {"[minibert.sub]", "(2,3)", "(4,3)"});
  check_error([&] { (void)(a * b); }, {"[minibert.mul]", "(2,3)", "(4,3)"});
  check_error([&] { (void)(a * c); }, {"[minibert.mul]", "(2,3)", "(2)"}); // trailing dims must match
}

// ====================================================================== matmul

namespace {
struct mm_case {
  const char* name;
  shape a, b; // a as op(a) sees it untransposed: (...,M,K); b: (...,K,N) or (K,N) shared
};
const std::vector<mm_case> mm_cases = {
    {"2-D", {3, 5}, {5, 4}},
    {"batched 3-D", {2, 3, 5}, {2, 5, 4}},
    {"batched 4-D", {2, 2, 3, 4}, {2, 2, 4, 3}},
    {"shared 2-D rhs, 3-D lhs", {3, 2, 5}, {5, 4}},
    {"shared 2-D rhs, 4-D lhs", {2, 2, 3, 4}, {4, 2}},
    {"inner dim 1", {2, 4, 1}, {2, 1, 3}},
};
/// the stored shape of an operand given its logical (...,R,C) and whether it is stored transposed
shape stored(shape s, bool t) {
  if (t) std::swap(s[s.rank() - 1], s[s.rank() - 2]);
  return s;
}
} // namespace

TEST_CASE_TEMPLATE("ops.matmul: all transpose combinations, batched and shared rhs, vs reference", T, float, double) {
  for (const auto& c : mm_cases) {
    SUBCASE(c.name) {
      for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb) {
          const std::string tag = std::string("matmul ") + c.name + (ta ? " A^T" : " A") + (tb ? " B^T" : " B") + test::tname<T>();
          const tensor<T> xa = random_tensor<T>(stored(c.a, ta), 21), xb = random_tensor<T>(stored(c.b, tb), 22);
          variable<T> a(xa, true), b(xb, true);
          variable<T> y = minibert::matmul(a, b, ta != 0, tb != 0);
          const ref::array ra = to_ref(xa), rb = to_ref(xb);
          const std::int64_t K = c.a.dim(-1);
          // dot products of length K (and, for a shared rhs, its gradient sums batch*M terms): cond ~ sqrt(K)
          check_ref(y.value(), ref::matmul(ra, rb, ta, tb), tag + " forward", std::sqrt(double(K)));
          const tensor<T> dout = random_tensor<T>(y.shape(), 23);
          y.backward(dout);
          const ref::grad2 g = ref::matmul_backward(ra, rb, ta, tb, to_ref(dout));
          const double terms_b = double(y.numel()) / double(c.a.dim(-2) > 0 ? y.shape().dim(-1) : 1);
          check_ref(a.grad(), g.da, tag + " grad a", std::sqrt(double(y.shape().dim(-1))));
          check_ref(b.grad(), g.db, tag + " grad b", std::sqrt(terms_b));
        }
    }
  }
}

// Shapes past the CPU GEMM's blocking (cpu/gemm_kernel.hpp on AVX-512 fp32: MR 12, NR 32, mc 192, kc 384)
// with ragged edges everywhere: M = 200 (> mc, 200 % 12 = 8), K = 402 (two k blocks, the last of 18,
// 18 % 4 = 2), N = 45 (one full 32-column panel + 13 masked columns); 2MNK = 7.2 MFLOP, above the
// threading threshold. The backward passes multiply with K = M or N as the inner dimension as well.
TEST_CASE_TEMPLATE("ops.matmul: large ragged shapes across GEMM blocking, threaded, vs reference", T, float, double) {
  const std::int64_t M = 200, K = 402, N = 45;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      SUBCASE((std::string(ta ? "A^T" : "A") + (tb ? " B^T" : " B")).c_str()) {
        const std::string tag = std::string("matmul 200x402x45") + (ta ? " A^T" : " A") + (tb ? " B^T" : " B") + test::tname<T>();
        const tensor<T> xa = random_tensor<T>(stored({M, K}, ta), 24), xb = random_tensor<T>(stored({K, N}, tb), 25);
        variable<T> a(xa, true), b(xb, true);
        variable<T> y = minibert::matmul(a, b, ta != 0, tb != 0);
        const ref::array ra = to_ref(xa), rb = to_ref(xb);
        check_ref(y.value(), ref::matmul(ra, rb, ta, tb), tag + " forward", std::sqrt(double(K)));
        const tensor<T> dout = random_tensor<T>(y.shape(), 26);
        y.backward(dout);
        const ref::grad2 g = ref::matmul_backward(ra, rb, ta, tb, to_ref(dout));
        check_ref(a.grad(), g.da, tag + " grad a", std::sqrt(double(N)));
        check_ref(b.grad(), g.db, tag + " grad b", std::sqrt(double(M)));
      }
    }
  SUBCASE("linear with bias (GEMM with beta = 1 onto the bias rows)") {
    const tensor<T> x = random_tensor<T>({M, K}, 27), w = random_tensor<T>({N, K}, 28), bb = random_tensor<T>({N}, 29);
    variable<T> vx(x, true), vw(w, true), vb(bb, true);
    variable<T> y = minibert::linear(vx, vw, vb);
    const ref::array rx = to_ref(x), rw = to_ref(w), rb = to_ref(bb);
    check_ref(y.value(), ref::linear(rx, rw, rb), "linear 200x402->45" + test::tname<T>(), std::sqrt(double(K)));
    const tensor<T> dout = random_tensor<T>(y.shape(), 30);
    y.backward(dout);
    const ref::grad3 g = ref::linear_backward(rx, rw, rb, to_ref(dout));
    check_ref(vx.grad(), g.d0, "linear 200x402->45 grad x" + test::tname<T>(), std::sqrt(double(N)));
    check_ref(vw.grad(), g.d1, "linear 200x402->45 grad w" + test::tname<T>(), std::sqrt(double(M)));
    check_ref(vb.grad(), g.d2, "linear 200x402->45 grad b" + test::tname<T>(), std::sqrt(double(M)));
  }
#if defined(__AVX512F__)
  // minibert's own fp32 kernel promises bitwise-identical results for any thread count (each C tile is
  // computed whole, in one order, by one thread). Eigen's GEMM (fp64, and fp32 elsewhere) does not: its
  // results match only for a fixed thread count, so this check is fp32-on-AVX-512 only.
  if (std::is_same_v<T, float>) SUBCASE("bitwise identical results on 1 and 2 threads (AVX-512 fp32 kernel)") {
    test::thread_count_guard guard;
    const tensor<T> xa = random_tensor<T>({M, K}, 24), xb = random_tensor<T>({K, N}, 25);
    std::vector<T> out[2];
    for (int t = 0; t < 2; ++t) {
      minibert::set_num_threads(t + 1);
      out[t] = minibert::matmul(variable<T>(xa), variable<T>(xb)).value().to_vector();
    }
    CHECK(out[0] == out[1]);
  }
#endif
}

TEST_CASE_TEMPLATE("ops.matmul: a non-contiguous view operand equals the transpose flag", T, float, double) {
  const tensor<T> xa = random_tensor<T>({2, 5, 3}, 31), xb = random_tensor<T>({2, 5, 4}, 32);
  variable<T> a(xa, true), b(xb, true);
  variable<T> y1 = minibert::matmul(minibert::transpose(a, 1, 2), b); // (2,3,4) through a view
  const ref::array want = ref::matmul(to_ref(xa), to_ref(xb), true, false);
  check_ref(y1.value(), want, "matmul(transpose view)" + test::tname<T>(), std::sqrt(5.0));
  const tensor<T> dout = random_tensor<T>(y1.shape(), 33);
  y1.backward(dout);
  const ref::grad2 g = ref::matmul_backward(to_ref(xa), to_ref(xb), true, false, to_ref(dout));
  check_ref(a.grad(), g.da, "matmul(transpose view) grad a" + test::tname<T>(), 2.0);
  check_ref(b.grad(), g.db, "matmul(transpose view) grad b" + test::tname<T>(), 2.0);
}

TEST_CASE("ops.matmul: gradients by finite differences") {
  for (const auto& c : mm_cases) {
    SUBCASE(c.name) {
      for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb)
          check_gradients(std::string("matmul ") + c.name + (ta ? " A^T" : " A") + (tb ? " B^T" : " B"),
                          [ta, tb](const std::vector<dvar>& x) { return minibert::matmul(x[0], x[1], ta != 0, tb != 0); },
                          {random_tensor<double>(stored(c.a, ta), 41), random_tensor<double>(stored(c.b, tb), 42)});
    }
  }
}

TEST_CASE_TEMPLATE("ops.matmul: shape errors", T, float, double) {
  auto v = [](const shape& s) { return variable<T>(random_tensor<T>(s, 1), true); };
  check_error([&] { (void)minibert::matmul(v({2, 3}), v({4, 5})); }, {"[minibert.matmul]", "(2,3)", "(4,5)", "inner dims 3 != 4"});
  check_error([&] { (void)minibert::matmul(v({2, 3}), v({2, 5}), false, true); }, {"[minibert.matmul]", "(2,3)", "(2,5)^T"});
  check_error([&] { (void)minibert::matmul(v({3, 2}), v({2, 5}), true, false); }, {"[minibert.matmul]", "(3,2)^T", "(2,5)", "inner dims 3 != 2"});
  check_error([&] { (void)minibert::matmul(v({3}), v({3, 5})); }, {"[minibert.matmul]", "(3)", "(3,5)", "rank"});
  check_error([&] { (void)minibert::matmul(v({2, 3, 4}), v({3, 4, 5})); }, {"[minibert.matmul]", "(2,3,4)", "(3,4,5)", "batch dim 0"});
  check_error([&] { (void)minibert::matmul(v({3, 4}), v({2, 4, 5})); }, {"[minibert.matmul]", "(3,4)", "(2,4,5)", "batch ranks"});
  check_error([&] { (void)minibert::matmul(v({2, 2, 3, 4}), v({2, 4, 5})); }, {"[minibert.matmul]", "batch ranks"});
}

// ====================================================================== linear

TEST_CASE_TEMPLATE("ops.linear: with and without bias, 2-D and 3-D input, vs reference", T, float, double) {
  struct lin_case {
    const char* name;
    shape x;
    std::int64_t C;
    bool bias;
  };
  const std::vector<lin_case> cases = {{"2-D with bias", {4, 6}, 5, true},
                                       {"2-D without bias", {4, 6}, 5, false},
                                       {"3-D with bias", {2, 3, 6}, 4, true},
                                       {"3-D without bias", {2, 3, 6}, 4, false}};
  for (const auto& c : cases) {
    SUBCASE(c.name) {
      const std::int64_t K = c.x.dim(-1);
      const tensor<T> x = random_tensor<T>(c.x, 51), w = random_tensor<T>({c.C, K}, 52), bb = random_tensor<T>({c.C}, 53);
      variable<T> vx(x, true), vw(w, true), vb = c.bias ? variable<T>(bb, true) : variable<T>();
      variable<T> y = minibert::linear(vx, vw, vb);
      const ref::array rx = to_ref(x), rw = to_ref(w), rb = c.bias ? to_ref(bb) : ref::array();
      const std::string tag = std::string("linear ") + c.name + test::tname<T>();
      check_ref(y.value(), ref::linear(rx, rw, rb), tag + " forward", std::sqrt(double(K)));
      const tensor<T> dout = random_tensor<T>(y.shape(), 54);
      y.backward(dout);
      const ref::grad3 g = ref::linear_backward(rx, rw, rb, to_ref(dout));
      const double N = double(x.numel() / K);
      check_ref(vx.grad(), g.d0, tag + " grad x", std::sqrt(double(c.C)));
      check_ref(vw.grad(), g.d1, tag + " grad w", std::sqrt(N));
      if (c.bias) check_ref(vb.grad(), g.d2, tag + " grad b", std::sqrt(N));
    }
  }
  SUBCASE("only the weight requires grad") {
    const tensor<T> x = random_tensor<T>({3, 4}, 55), w = random_tensor<T>({2, 4}, 56);
    variable<T> vx(x, false), vw(w, true);
    variable<T> y = minibert::linear(vx, vw, variable<T>());
    const tensor<T> dout = random_tensor<T>(y.shape(), 57);
    y.backward(dout);
    CHECK_FALSE(vx.has_grad());
    check_ref(vw.grad(), ref::linear_backward(to_ref(x), to_ref(w), ref::array(), to_ref(dout)).d1,
              "linear weight-only grad" + test::tname<T>());
  }
  SUBCASE("a non-contiguous weight view (e.g. tied, transposed weights)") {
    const tensor<T> x = random_tensor<T>({3, 4}, 58), wt = random_tensor<T>({4, 5}, 59); // weight = wt^T (5,4)
    variable<T> vx(x, true), vwt(wt, true);
    variable<T> w = minibert::transpose(vwt, 0, 1);
    REQUIRE_FALSE(w.value().is_contiguous());
    variable<T> y = minibert::linear(vx, w, variable<T>());
    const ref::array rw = to_ref(wt.transpose(0, 1));
    check_ref(y.value(), ref::linear(to_ref(x), rw, ref::array()), "linear(transposed weight)" + test::tname<T>(), 2.0);
    const tensor<T> dout = random_tensor<T>(y.shape(), 60);
    y.backward(dout);
    const ref::grad3 g = ref::linear_backward(to_ref(x), rw, ref::array(), to_ref(dout));
    check_ref(vx.grad(), g.d0, "linear(transposed weight) grad x" + test::tname<T>(), 2.0);
    check_ref(vwt.grad().transpose(0, 1), g.d1, "linear(transposed weight) grad w" + test::tname<T>(), 2.0);
  }
}

TEST_CASE("ops.linear: gradients by finite differences") {
  SUBCASE("with bias, 3-D input") {
    check_gradients("linear+bias", [](const std::vector<dvar>& x) { return minibert::linear(x[0], x[1], x[2]); },
                    {random_tensor<double>({2, 3, 4}, 61), random_tensor<double>({5, 4}, 62), random_tensor<double>({5}, 63)});
  }
  SUBCASE("without bias") {
    check_gradients("linear", [](const std::vector<dvar>& x) { return minibert::linear(x[0], x[1], dvar()); },
                    {random_tensor<double>({3, 4}, 64), random_tensor<double>({2, 4}, 65)});
  }
}

TEST_CASE("ops.activation_linear: gradients by finite differences") {
  for (const auto act : {minibert::activation::gelu_erf, minibert::activation::gelu_tanh, minibert::activation::tanh}) {
    check_gradients("activation_linear",
                    [act](const std::vector<dvar>& x) { return minibert::activation_linear(x[0], act, x[1], x[2]); },
                    {random_tensor<double>({2, 3, 4}, 66), random_tensor<double>({5, 4}, 67), random_tensor<double>({5}, 68)});
  }
}

TEST_CASE_TEMPLATE("ops.linear: shape errors", T, float, double) {
  auto v = [](const shape& s) { return variable<T>(random_tensor<T>(s, 1), true); };
  check_error([&] { (void)minibert::linear(v({3, 4}), v({5, 3}), variable<T>()); },
              {"[minibert.linear]", "(3,4)", "(5,3)", "inner dims 4 != 3"});
  check_error([&] { (void)minibert::linear(v({3, 4}), v({5, 4}), v({4})); }, {"[minibert.linear]", "bias (4)", "(5,4)"});
  check_error([&] { (void)minibert::linear(v({3, 4}), v({5, 4}), v({1, 5})); }, {"[minibert.linear]", "bias (1,5)"});
  check_error([&] { (void)minibert::linear(v({3, 4}), v({4}), variable<T>()); }, {"[minibert.linear]", "weight (4)"});
}

// ====================================================================== shape ops

TEST_CASE_TEMPLATE("ops.shape: forward views and exact gradients", T, float, double) {
  const tensor<T> x = random_tensor<T>({2, 3, 4}, 71);
  variable<T> v(x, true);
  const tensor<T> dout24 = random_tensor<T>({24}, 72);
  SUBCASE("reshape: a view; gradient reshaped back") {
    variable<T> y = minibert::reshape(v, {4, -1});
    CHECK(y.shape() == shape{4, 6});
    CHECK(y.value().shares_storage(x));
    const tensor<T> dout = dout24.reshape({4, 6});
    y.backward(dout);
    CHECK(v.grad().shape() == shape{2, 3, 4});
    CHECK(test::values(v.grad()) == test::values(dout24));
  }
  SUBCASE("permute: gradient un-permuted") {
    variable<T> y = minibert::permute(v, {2, 0, 1});
    CHECK(y.shape() == shape{4, 2, 3});
    CHECK(y.value().shares_storage(x));
    const tensor<T> dout = dout24.reshape({4, 2, 3});
    y.backward(dout);
    for (std::int64_t i = 0; i < 2; ++i)
      for (std::int64_t j = 0; j < 3; ++j)
        for (std::int64_t k = 0; k < 4; ++k) CHECK(v.grad().at({i, j, k}) == dout.at({k, i, j}));
  }
  SUBCASE("transpose: gradient transposed back") {
    variable<T> y = minibert::transpose(v, 0, -1);
    CHECK(y.shape() == shape{4, 3, 2});
    const tensor<T> dout = dout24.reshape({4, 3, 2});
    y.backward(dout);
    for (std::int64_t i = 0; i < 2; ++i)
      for (std::int64_t j = 0; j < 3; ++j)
        for (std::int64_t k = 0; k < 4; ++k) CHECK(v.grad().at({i, j, k}) == dout.at({k, j, i}));
  }
  SUBCASE("slice: gradient scattered into zeros") {
    variable<T> y = minibert::slice(v, 2, 1, 3);
    CHECK(y.shape() == shape{2, 3, 2});
    CHECK(y.value().at({1, 2, 0}) == x.at({1, 2, 1}));
    const tensor<T> dout = dout24.slice(0, 0, 12).reshape({2, 3, 2});
    y.backward(dout);
    for (std::int64_t i = 0; i < 2; ++i)
      for (std::int64_t j = 0; j < 3; ++j)
        for (std::int64_t k = 0; k < 4; ++k)
          CHECK(v.grad().at({i, j, k}) == (k >= 1 && k < 3 ? dout.at({i, j, k - 1}) : T(0)));
  }
  SUBCASE("select: gradient scattered into zeros") {
    variable<T> y = minibert::select(v, 1, 2);
    CHECK(y.shape() == shape{2, 4});
    const tensor<T> dout = dout24.slice(0, 0, 8).reshape({2, 4});
    y.backward(dout);
    for (std::int64_t i = 0; i < 2; ++i)
      for (std::int64_t j = 0; j < 3; ++j)
        for (std::int64_t k = 0; k < 4; ++k) CHECK(v.grad().at({i, j, k}) == (j == 2 ? dout.at({i, k}) : T(0)));
  }
  SUBCASE("contiguous: a copy of a view, identity when already contiguous") {
    CHECK(minibert::contiguous(v).node_ptr() == v.node_ptr());
    variable<T> t = minibert::transpose(v, 1, 2);
    variable<T> y = minibert::contiguous(t);
    CHECK(y.value().is_contiguous());
    CHECK_FALSE(y.value().shares_storage(x));
    CHECK(test::values(y.value()) == test::values(t.value()));
    const tensor<T> dout = dout24.reshape({2, 4, 3});
    y.backward(dout);
    for (std::int64_t i = 0; i < 2; ++i)
      for (std::int64_t j = 0; j < 3; ++j)
        for (std::int64_t k = 0; k < 4; ++k) CHECK(v.grad().at({i, j, k}) == dout.at({i, k, j}));
  }
  SUBCASE("errors") {
    check_error([&] { (void)minibert::reshape(v, {5, 5}); }, {"[minibert.reshape]", "(2,3,4)", "(5,5)"});
    check_error([&] { (void)minibert::permute(v, {0, 0, 1}); }, {"[minibert.permute]", "(2,3,4)"});
    check_error([&] { (void)minibert::slice(v, 1, 2, 4); }, {"[minibert.slice]", "(2,3,4)"});
    check_error([&] { (void)minibert::select(v, 0, 2); }, {"[minibert.slice]", "(2,3,4)"});
  }
}

TEST_CASE("ops.shape: gradients by finite differences, alone and chained") {
  const std::vector<dtensor> in = {random_tensor<double>({2, 3, 4}, 81)};
  check_gradients("reshape", [](const std::vector<dvar>& x) { return minibert::reshape(x[0], {3, 8}); }, in);
  check_gradients("permute", [](const std::vector<dvar>& x) { return minibert::permute(x[0], {1, 2, 0}); }, in);
  check_gradients("transpose", [](const std::vector<dvar>& x) { return minibert::transpose(x[0], 0, 2); }, in);
  check_gradients("slice", [](const std::vector<dvar>& x) { return minibert::slice(x[0], 1, 1, 3); }, in);
  check_gradients("select", [](const std::vector<dvar>& x) { return minibert::select(x[0], -1, 3); }, in);
  check_gradients("contiguous", [](const std::vector<dvar>& x) { return minibert::contiguous(minibert::transpose(x[0], 0, 1)); }, in);
  // views of views feeding a broadcasting op, with the input used twice
  check_gradients("chain", [](const std::vector<dvar>& x) {
    dvar p = minibert::permute(x[0], {2, 0, 1});                  // (4,2,3)
    dvar s = minibert::slice(minibert::select(p, 1, 1), 0, 1, 4); // (3,3)
    dvar r = minibert::reshape(minibert::transpose(x[0], 1, 2), {2, 12});
    return minibert::reshape(s, {9, 1}) * minibert::slice(minibert::select(r, 0, 0), 0, 3, 12) + minibert::reshape(s, {1, 9});
  }, in);
}

// ====================================================================== sum, mean

TEST_CASE_TEMPLATE("ops.reduce: sum and mean vs reference", T, float, double) {
  for (const shape s : {shape{7}, shape{3, 5}, shape{4, 1, 6}, shape{100, 50}}) {
    SUBCASE(s.str().c_str()) {
      const tensor<T> x = random_tensor<T>(s, 91);
      variable<T> v(x, true);
      const ref::array rx = to_ref(x);
      // a sum of n O(1) terms: |sum| ~ sqrt(n), rounding ~ eps * sqrt(n)
      const double cond = std::sqrt(double(x.numel()));
      variable<T> sm = minibert::sum(v), mn = minibert::mean(v);
      CHECK(sm.shape() == shape{1});
      CHECK(mn.shape() == shape{1});
      test::check_scalar(sm.value().item(), ref::sum(rx), "sum " + s.str() + test::tname<T>(), cond);
      test::check_scalar(mn.value().item(), ref::mean(rx), "mean " + s.str() + test::tname<T>(), cond);
      sm.backward(tensor<T>::full({1}, T(1.5)));
      check_ref(v.grad(), ref::sum_backward(rx, double(T(1.5))), "sum grad " + s.str() + test::tname<T>());
      v.zero_grad();
      mn.backward(tensor<T>::full({1}, T(1.5)));
      check_ref(v.grad(), ref::mean_backward(rx, double(T(1.5))), "mean grad " + s.str() + test::tname<T>());
    }
  }
  SUBCASE("of a non-contiguous view") {
    const tensor<T> x = random_tensor<T>({4, 6}, 92);
    variable<T> v(x, true);
    variable<T> sm = minibert::sum(minibert::slice(minibert::transpose(v, 0, 1), 0, 1, 4));
    test::check_scalar(sm.value().item(), ref::sum(to_ref(x.transpose(0, 1).slice(0, 1, 4))), "sum(view)" + test::tname<T>(), 4.0);
  }
  SUBCASE("mean of an empty tensor") {
    variable<T> e(tensor<T>::empty({0, 3}), true);
    check_error([&] { (void)minibert::mean(e); }, {"[minibert.mean]", "(0,3)"});
    CHECK(minibert::sum(e).value().item() == T(0));
  }
}

TEST_CASE("ops.reduce: gradients by finite differences") {
  check_gradients("sum", [](const std::vector<dvar>& x) { return minibert::sum(x[0]); }, {random_tensor<double>({3, 4}, 93)});
  check_gradients("mean", [](const std::vector<dvar>& x) { return minibert::mean(x[0]); }, {random_tensor<double>({3, 4}, 94)});
  check_gradients("mean of a product",
                  [](const std::vector<dvar>& x) { return minibert::mean(x[0] * x[1]); },
                  {random_tensor<double>({2, 3}, 95), random_tensor<double>({3}, 96)});
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
template <class T> variable<T> call(minibert::activation a, const variable<T>& x) {
  switch (a) {
  case minibert::activation::gelu_erf: return minibert::gelu(x);
  case minibert::activation::gelu_tanh: return minibert::gelu(x, true);
  case minibert::activation::tanh: return minibert::tanh(x);
  default: return minibert::relu(x);
  }
}
} // namespace

TEST_CASE_TEMPLATE("ops.activation: GELU erf/tanh, tanh, ReLU vs reference", T, float, double) {
  for (const auto& c : act_cases) {
    SUBCASE(c.name) {
      // [-8, 8): both saturated tails and the curved middle; 4100 elements: vector body and a scalar tail
      const tensor<T> x = random_tensor<T>({4100}, 101, -8.0, 8.0);
      variable<T> v(x, true);
      variable<T> y = call(c.a, v);
      CHECK(std::string(y.op()) == "activation");
      const std::string tag = std::string(c.name) + test::tname<T>();
      check_ref(y.value(), ref::activation(c.r, to_ref(x)), tag + " forward");
      const tensor<T> dout = random_tensor<T>({4100}, 102);
      y.backward(dout);
      check_ref(v.grad(), ref::activation_backward(c.r, to_ref(x), to_ref(dout)), tag + " backward");
      // and through a non-contiguous input
      variable<T> w(x.reshape({20, 205}), false);
      check_ref(call(c.a, minibert::transpose(w, 0, 1)).value(),
                ref::activation(c.r, to_ref(x.reshape({20, 205}).transpose(0, 1))), tag + " forward (view)");
    }
  }
  SUBCASE("known values") {
    const tensor<T> x = tensor<T>::from({-1, 0, 1, 2}, {4});
    variable<T> v(x);
    // torch.nn.functional.gelu(torch.tensor([-1., 0., 1., 2.], dtype=torch.float64)) and approximate="tanh"
    test::check_close(minibert::gelu(v).value(), ref::array({4}, {-0.15865525393145702, 0, 0.841344746068543, 1.9544997361036416}),
                      test::tol<T>::atol, test::tol<T>::rtol, "gelu erf known values" + test::tname<T>());
    test::check_close(minibert::gelu(v, true).value(), ref::array({4}, {-0.15880800939172324, 0, 0.8411919906082768, 1.954597694087775}),
                      test::tol<T>::atol, test::tol<T>::rtol, "gelu tanh known values" + test::tname<T>());
    CHECK(test::values(minibert::relu(v).value()) == std::vector<double>{0, 0, 1, 2});
  }
}

TEST_CASE("ops.activation: gradients by finite differences") {
  for (const auto& c : act_cases) {
    SUBCASE(c.name) {
      dtensor x = random_tensor<double>({3, 5}, 111, -3.0, 3.0);
      if (c.r == ref::act::relu) // keep ReLU's inputs away from its kink at 0 (|x| >= 0.1 >> h)
        for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] += x.data()[i] >= 0 ? 0.1 : -0.1;
      check_gradients(c.name, [a = c.a](const std::vector<dvar>& v) { return call(a, v[0]); }, {x});
    }
  }
}

} // namespace test_ops_math
