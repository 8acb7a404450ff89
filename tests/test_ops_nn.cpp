// SPDX-License-Identifier: MIT
// Neural-network ops against tests/reference/ops.hpp (float and double, forward and backward), autograd
// against central finite differences (double), and shape errors: layer_norm, softmax (+ broadcast
// additive mask), embedding, dropout (seeded Philox), cross_entropy (ignore_index), mse_loss,
// bce_with_logits, and fused multi-head attention (key mask, dropout on the probabilities).
// Tolerances: see test_helpers.hpp.

#include <cmath>   // sqrt, isfinite, isnan, ceil
#include <cstdint> // int64_t, int32_t, uint64_t
#include <limits>  // infinity
#include <string>  // string
#include <vector>  // vector

#include "test_helpers.hpp"

namespace test_ops_nn { // each test file in its own namespace: a test group compiles as one unit

using minibert::generator;
using minibert::shape;
using test::bitwise_equal;
using test::check_error;
using test::check_gradients;
using test::check_ref;
using test::check_scalar;
using test::dtensor;
using test::dvar;
using test::random_ids;
using test::random_tensor;
using test::tname;
using test::to_ref;
using test::values;
template <class T> using tensor = test::tensor<T>;
template <class T> using variable = test::variable<T>;

namespace {
constexpr double neg_inf = -std::numeric_limits<double>::infinity();

/// the keep mask the CPU kernels draw for n elements at generator counter `base` (element i kept when
/// its Philox uniform is >= p), rebuilt independently of the kernels
std::vector<int> keep_mask(std::uint64_t seed, std::uint64_t base, std::int64_t n, float p) {
  std::vector<int> keep(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) keep[std::size_t(i)] = generator::uniform_at(seed, base, std::uint64_t(i)) >= p;
  return keep;
}
} // namespace

// ====================================================================== layer norm

TEST_CASE_TEMPLATE("ops.layer_norm: vs reference", T, float, double) {
  struct ln_case {
    const char* name;
    shape x;
    double eps, lo, hi;
  };
  const std::vector<ln_case> cases = {{"(4,8) eps 1e-5", {4, 8}, 1e-5, -1, 1},
                                      {"(2,3,16) eps 1e-12 (BERT)", {2, 3, 16}, 1e-12, -1, 1},
                                      {"(3,64) offset mean, scale 4", {3, 64}, 1e-5, -1.5, 6.5},
                                      {"(5,1): C = 1 normalizes to 0", {5, 1}, 1e-5, -1, 1}};
  for (const auto& c : cases) {
    SUBCASE(c.name) {
      const std::int64_t C = c.x.dim(-1);
      const tensor<T> x = random_tensor<T>(c.x, 201, c.lo, c.hi), w = random_tensor<T>({C}, 202, 0.5, 1.5),
                      b = random_tensor<T>({C}, 203);
      variable<T> vx(x, true), vw(w, true), vb(b, true);
      variable<T> y = minibert::layer_norm(vx, vw, vb, c.eps);
      const ref::array rx = to_ref(x), rw = to_ref(w), rb = to_ref(b);
      const std::string tag = std::string("layer_norm ") + c.name + tname<T>();
      check_ref(y.value(), ref::layer_norm(rx, rw, rb, c.eps), tag + " forward");
      const tensor<T> dout = random_tensor<T>(y.shape(), 204);
      y.backward(dout);
      const ref::grad3 g = ref::layer_norm_backward(rx, rw, rb, c.eps, to_ref(dout));
      const double N = double(x.numel() / C);
      // dx subtracts two row means of C terms (cancellation ~ sqrt(C) eps); dw, db sum N rows
      check_ref(vx.grad(), g.d0, tag + " grad x", std::sqrt(double(C)));
      check_ref(vw.grad(), g.d1, tag + " grad w", std::sqrt(N));
      check_ref(vb.grad(), g.d2, tag + " grad b", std::sqrt(N));
    }
  }
  SUBCASE("non-contiguous input, weight and bias views") {
    const tensor<T> x = random_tensor<T>({6, 3}, 205), wb = random_tensor<T>({6, 2}, 206, 0.5, 1.5);
    variable<T> vx(x, true), vwb(wb, true);
    variable<T> xt = minibert::transpose(vx, 0, 1);                     // (3,6)
    variable<T> w = minibert::select(vwb, 1, 0), b = minibert::select(vwb, 1, 1); // (6) with stride 2
    REQUIRE_FALSE(w.value().is_contiguous());
    variable<T> y = minibert::layer_norm(xt, w, b, 1e-5);
    const ref::array rx = to_ref(x.transpose(0, 1)), rw = to_ref(wb.select(1, 0)), rb = to_ref(wb.select(1, 1));
    check_ref(y.value(), ref::layer_norm(rx, rw, rb, 1e-5), "layer_norm(views) forward" + tname<T>());
    const tensor<T> dout = random_tensor<T>(y.shape(), 207);
    y.backward(dout);
    const ref::grad3 g = ref::layer_norm_backward(rx, rw, rb, 1e-5, to_ref(dout));
    check_ref(vx.grad().transpose(0, 1), g.d0, "layer_norm(views) grad x" + tname<T>(), 2.0);
    check_ref(vwb.grad().select(1, 0), g.d1, "layer_norm(views) grad w" + tname<T>(), 2.0);
    check_ref(vwb.grad().select(1, 1), g.d2, "layer_norm(views) grad b" + tname<T>(), 2.0);
  }
}

TEST_CASE("ops.layer_norm: gradients by finite differences") {
  SUBCASE("(3,5)") {
    check_gradients("layer_norm (3,5)", [](const std::vector<dvar>& x) { return minibert::layer_norm(x[0], x[1], x[2], 1e-5); },
                    {random_tensor<double>({3, 5}, 211), random_tensor<double>({5}, 212, 0.5, 1.5), random_tensor<double>({5}, 213)});
  }
  SUBCASE("(2,2,4), eps 1e-12") {
    check_gradients("layer_norm (2,2,4)", [](const std::vector<dvar>& x) { return minibert::layer_norm(x[0], x[1], x[2], 1e-12); },
                    {random_tensor<double>({2, 2, 4}, 214), random_tensor<double>({4}, 215), random_tensor<double>({4}, 216)});
  }
}

TEST_CASE_TEMPLATE("ops.layer_norm: shape errors", T, float, double) {
  variable<T> x(random_tensor<T>({2, 4}, 1), true), w4(random_tensor<T>({4}, 2)), w5(random_tensor<T>({5}, 3)),
      w14(random_tensor<T>({1, 4}, 4));
  check_error([&] { (void)minibert::layer_norm(x, w5, w4, 1e-5); }, {"[minibert.layer_norm]", "(2,4)", "weight (5)", "bias (4)"});
  check_error([&] { (void)minibert::layer_norm(x, w4, w5, 1e-5); }, {"[minibert.layer_norm]", "(2,4)", "bias (5)"});
  check_error([&] { (void)minibert::layer_norm(x, w14, w4, 1e-5); }, {"[minibert.layer_norm]", "weight (1,4)"});
}

// ====================================================================== softmax

TEST_CASE_TEMPLATE("ops.softmax: with and without masks vs reference", T, float, double) {
  struct sm_case {
    const char* name;
    shape x, mask; // mask rank 0: none
    double lo, hi;
  };
  const std::vector<sm_case> cases = {
      {"(3,7) no mask", {3, 7}, {}, -2, 2},
      {"(2,3,5) full-shape mask", {2, 3, 5}, {2, 3, 5}, -2, 2},
      {"(2,3,4,4) (B,1,1,T) mask", {2, 3, 4, 4}, {2, 1, 1, 4}, -2, 2},
      {"(2,3,6) (T) mask", {2, 3, 6}, {6}, -2, 2},
      {"(2,3,6) (B,1,T) mask", {2, 3, 6}, {2, 1, 6}, -2, 2},
      // logits up to +-100: exp(z) of a float z with |z| <= 200 has relative error ~|z| eps/2 ~ 1.2e-5
      {"(4,9) large logits", {4, 9}, {}, -100, 100},
  };
  for (const auto& c : cases) {
    SUBCASE(c.name) {
      const tensor<T> x = random_tensor<T>(c.x, 221, c.lo, c.hi);
      tensor<T> mask;
      if (c.mask.rank() > 0) { // additive BERT-style mask: 0 keep, -1e9 drop (about a third dropped)
        mask = random_tensor<T>(c.mask, 222);
        for (std::int64_t i = 0; i < mask.numel(); ++i) mask.data()[i] = mask.data()[i] < -0.33 ? T(-1e9) : T(0);
      }
      variable<T> v(x, true);
      variable<T> y = minibert::softmax(v, mask);
      const ref::array rx = to_ref(x), rm = mask.defined() ? to_ref(mask) : ref::array();
      const std::string tag = std::string("softmax ") + c.name + tname<T>();
      const double cond = c.hi > 10 ? 4.0 : 1.0;
      check_ref(y.value(), ref::softmax(rx, rm), tag + " forward", cond);
      const tensor<T> dout = random_tensor<T>(y.shape(), 223);
      y.backward(dout);
      check_ref(v.grad(), ref::softmax_backward(rx, rm, to_ref(dout)), tag + " grad", cond);
    }
  }
  SUBCASE("fully masked rows (-inf) give zeros and zero gradient, others unaffected") {
    const tensor<T> x = random_tensor<T>({2, 2, 3, 4}, 224);
    tensor<T> mask = tensor<T>::zeros({2, 1, 1, 4});
    for (std::int64_t j = 0; j < 4; ++j) mask.at({1, 0, 0, j}) = T(neg_inf); // batch 1: every key masked
    mask.at({0, 0, 0, 2}) = T(neg_inf);                                      // batch 0: one key masked
    variable<T> v(x, true);
    variable<T> y = minibert::softmax(v, mask);
    const ref::array rx = to_ref(x), rm = to_ref(mask);
    check_ref(y.value(), ref::softmax(rx, rm), "softmax -inf mask" + tname<T>());
    for (double e : values(y.value().select(0, 1))) CHECK(e == 0.0);
    for (double e : values(y.value().select(0, 0).select(-1, 2))) CHECK(e == 0.0);
    const tensor<T> dout = random_tensor<T>(y.shape(), 225);
    y.backward(dout);
    check_ref(v.grad(), ref::softmax_backward(rx, rm, to_ref(dout)), "softmax -inf mask grad" + tname<T>());
    for (double e : values(v.grad().select(0, 1))) CHECK(e == 0.0);
  }
  SUBCASE("rows sum to one; the mask gets no gradient and is not modified") {
    const tensor<T> x = random_tensor<T>({3, 5}, 226);
    const tensor<T> mask = random_tensor<T>({5}, 227);
    variable<T> y = minibert::softmax(variable<T>(x, true), mask);
    for (std::int64_t r = 0; r < 3; ++r) CHECK(ref::sum(to_ref(y.value().select(0, r))) == doctest::Approx(1.0).epsilon(1e-6));
    const std::vector<T> before = mask.to_vector();
    y.backward(random_tensor<T>({3, 5}, 228));
    CHECK(mask.to_vector() == before);
  }
}

TEST_CASE("ops.softmax: gradients by finite differences") {
  SUBCASE("no mask") {
    check_gradients("softmax", [](const std::vector<dvar>& x) { return minibert::softmax(x[0]); },
                    {random_tensor<double>({3, 4}, 231, -2, 2)});
  }
  SUBCASE("(B,1,1,T) mask with -1e9 and -inf entries, one fully masked batch") {
    dtensor mask = dtensor::zeros({2, 1, 1, 3});
    mask.at({0, 0, 0, 1}) = -1e9;
    for (std::int64_t j = 0; j < 3; ++j) mask.at({1, 0, 0, j}) = neg_inf;
    check_gradients("softmax masked", [mask](const std::vector<dvar>& x) { return minibert::softmax(x[0], mask); },
                    {random_tensor<double>({2, 2, 3, 3}, 232, -2, 2)});
  }
}

TEST_CASE_TEMPLATE("ops.softmax: mask shape errors", T, float, double) {
  variable<T> x(random_tensor<T>({2, 3, 5}, 1), true);
  check_error([&] { (void)minibert::softmax(x, tensor<T>::zeros({4, 5})); }, {"[minibert.softmax]", "(2,3,5)", "(4,5)"});
  check_error([&] { (void)minibert::softmax(x, tensor<T>::zeros({2, 2, 3, 5})); }, {"[minibert.softmax]", "(2,3,5)", "(2,2,3,5)"});
  check_error([&] { (void)minibert::softmax(x, tensor<T>::zeros({2, 3, 1})); }, {"[minibert.softmax]", "(2,3,5)", "(2,3,1)"});
  check_error([&] { (void)minibert::softmax(x, tensor<T>::zeros({6})); }, {"[minibert.softmax]", "(2,3,5)", "(6)"});
}

// ====================================================================== embedding

TEST_CASE_TEMPLATE("ops.embedding: vs reference, repeated ids, int32 and int64 ids", T, float, double) {
  const tensor<T> w = random_tensor<T>({7, 5}, 241);
  auto run = [&](auto ids, const std::string& tag) {
    variable<T> vw(w, true);
    variable<T> y = minibert::embedding(vw, ids);
    const std::vector<std::int64_t> id = test::ids_of(ids);
    check_ref(y.value(), ref::embedding(to_ref(w), id, test::dims_of(ids.shape())), tag + " forward");
    const tensor<T> dout = random_tensor<T>(y.shape(), 242);
    y.backward(dout);
    check_ref(vw.grad(), ref::embedding_backward(to_ref(w), id, to_ref(dout)), tag + " grad", 2.0);
  };
  SUBCASE("int64 ids (2,6) with repeats") {
    const tensor<std::int64_t> ids = tensor<std::int64_t>::from({3, 0, 3, 6, 1, 3, 0, 0, 6, 2, 3, 5}, {2, 6});
    run(ids, "embedding int64" + tname<T>());
  }
  SUBCASE("int32 ids (3,4)") { run(random_ids<std::int32_t>({3, 4}, 7, 243), "embedding int32" + tname<T>()); }
  SUBCASE("1-D ids and a non-contiguous id view") {
    run(tensor<std::int64_t>::from({6, 6, 6}, {3}), "embedding 1-D" + tname<T>());
    run(random_ids<std::int64_t>({4, 3}, 7, 244).transpose(0, 1), "embedding id view" + tname<T>());
  }
  SUBCASE("a non-contiguous weight view") {
    const tensor<T> wt = random_tensor<T>({5, 7}, 245); // weight = wt^T (7,5)
    variable<T> vwt(wt, true);
    const tensor<std::int64_t> ids = tensor<std::int64_t>::from({1, 4, 4, 0}, {4});
    variable<T> y = minibert::embedding(minibert::transpose(vwt, 0, 1), ids);
    check_ref(y.value(), ref::embedding(to_ref(wt.transpose(0, 1)), test::ids_of(ids), {4}), "embedding(weight view)" + tname<T>());
  }
}

TEST_CASE("ops.embedding: backward is identical on 1 and 2 threads") {
  test::thread_count_guard guard;
  const tensor<float> w = random_tensor<float>({50, 256}, 246);
  const tensor<std::int64_t> ids = random_ids<std::int64_t>({512}, 50, 247); // many repeats
  const tensor<float> dout = random_tensor<float>({512, 256}, 248);
  tensor<float> g[2];
  for (int t = 0; t < 2; ++t) {
    minibert::set_num_threads(t + 1);
    variable<float> vw(w, true);
    minibert::embedding(vw, ids).backward(dout);
    g[t] = vw.grad();
  }
  CHECK(bitwise_equal(g[0], g[1]));
  check_ref(g[1], ref::embedding_backward(to_ref(w), test::ids_of(ids), to_ref(dout)), "embedding grad 512 ids", 4.0);
}

TEST_CASE("ops.embedding: gradient by finite differences") {
  const tensor<std::int64_t> ids = tensor<std::int64_t>::from({2, 0, 2, 3, 2, 1}, {2, 3});
  check_gradients("embedding", [ids](const std::vector<dvar>& x) { return minibert::embedding(x[0], ids); },
                  {random_tensor<double>({5, 3}, 251)});
}

TEST_CASE_TEMPLATE("ops.embedding: id and shape errors", T, float, double) {
  variable<T> w(random_tensor<T>({7, 5}, 1), true);
  check_error([&] { (void)minibert::embedding(w, tensor<std::int64_t>::from({1, 7}, {2})); },
              {"[minibert.embedding]", "id 7", "position 1", "(7,5)"});
  check_error([&] { (void)minibert::embedding(w, tensor<std::int32_t>::from({-1}, {1})); },
              {"[minibert.embedding]", "id -1", "(7,5)"});
  variable<T> w1(random_tensor<T>({7}, 2)), w3(random_tensor<T>({2, 7, 5}, 3));
  check_error([&] { (void)minibert::embedding(w1, tensor<std::int64_t>::from({1}, {1})); }, {"[minibert.embedding]", "(7)", "(V, C)"});
  check_error([&] { (void)minibert::embedding(w3, tensor<std::int64_t>::from({1}, {1})); }, {"[minibert.embedding]", "(2,7,5)"});
}

// ====================================================================== dropout

TEST_CASE_TEMPLATE("ops.dropout: vs reference with the reconstructed keep mask", T, float, double) {
  for (const float p : {0.1f, 0.5f}) {
    SUBCASE(("p = " + std::to_string(p)).c_str()) {
      const tensor<T> x = random_tensor<T>({3, 7, 5}, 261); // 105 elements: not a multiple of 4
      generator gen(1234);
      gen.reserve(10); // start at a non-zero counter
      const std::uint64_t base = gen.offset();
      variable<T> v(x, true);
      variable<T> y = minibert::dropout(v, p, true, gen);
      CHECK(gen.offset() == base + (105 + 3) / 4); // ceil(n/4) counters consumed
      const std::vector<int> keep = keep_mask(1234, base, 105, p);
      const std::string tag = "dropout p=" + std::to_string(p) + tname<T>();
      check_ref(y.value(), ref::dropout(to_ref(x), keep, double(p)), tag + " forward");
      const tensor<T> dout = random_tensor<T>(y.shape(), 262);
      y.backward(dout);
      check_ref(v.grad(), ref::dropout_backward(keep, double(p), to_ref(dout)), tag + " grad");
      // kept elements are scaled by exactly 1/(1-p) (up to rounding), dropped ones are 0
      for (std::int64_t i = 0; i < 105; ++i)
        if (!keep[std::size_t(i)]) CHECK(y.value().data()[i] == T(0));
    }
  }
}

TEST_CASE("ops.dropout: seeds, offsets, keep rate, threads, eval mode") {
  const tensor<float> x = tensor<float>::full({1 << 16}, 1.0f);
  SUBCASE("reproducible for a seed; different across seeds and across successive calls") {
    generator g1(7), g2(7), g3(8);
    variable<float> v(x);
    const tensor<float> a = minibert::dropout(v, 0.3f, true, g1).value();
    const tensor<float> b = minibert::dropout(v, 0.3f, true, g2).value();
    const tensor<float> c = minibert::dropout(v, 0.3f, true, g3).value();
    const tensor<float> d = minibert::dropout(v, 0.3f, true, g1).value(); // g1 has moved on
    CHECK(bitwise_equal(a, b));
    CHECK_FALSE(bitwise_equal(a, c));
    CHECK_FALSE(bitwise_equal(a, d));
    // restoring the generator state replays the mask (checkpoint resume)
    generator g4(0);
    g4.set_state(7, 0);
    CHECK(bitwise_equal(minibert::dropout(v, 0.3f, true, g4).value(), a));
  }
  SUBCASE("keep rate ~ 1-p and kept values scaled by 1/(1-p)") {
    for (const float p : {0.1f, 0.5f, 0.9f}) {
      generator gen(99);
      const std::vector<float> y = minibert::dropout(variable<float>(x), p, true, gen).value().to_vector();
      std::int64_t kept = 0;
      for (float e : y) {
        if (e != 0.0f) {
          ++kept;
          CHECK(e == doctest::Approx(1.0 / (1.0 - p)).epsilon(1e-6));
        }
      }
      const double rate = double(kept) / double(y.size());
      const double sigma = std::sqrt(p * (1 - p) / double(y.size())); // binomial standard deviation
      std::printf("[dropout] p=%.1f keep rate %.5f (expected %.5f, 6 sigma = %.5f)\n", p, rate, 1.0 - p, 6 * sigma);
      CHECK(std::abs(rate - (1.0 - p)) < 6 * sigma);
    }
  }
  SUBCASE("identical with 1 and 2 threads (forward and backward)") {
    test::thread_count_guard guard;
    const tensor<float> xr = random_tensor<float>({1 << 16}, 263), dout = random_tensor<float>({1 << 16}, 264);
    tensor<float> y[2], g[2];
    for (int t = 0; t < 2; ++t) {
      minibert::set_num_threads(t + 1);
      CHECK(minibert::num_threads() == t + 1);
      generator gen(5);
      variable<float> v(xr, true);
      variable<float> out = minibert::dropout(v, 0.25f, true, gen);
      out.backward(dout);
      y[t] = out.value();
      g[t] = v.grad();
    }
    CHECK(bitwise_equal(y[0], y[1]));
    CHECK(bitwise_equal(g[0], g[1]));
    check_ref(y[1], ref::dropout(to_ref(xr), keep_mask(5, 0, 1 << 16, 0.25f), 0.25), "dropout 64K, 2 threads");
  }
  SUBCASE("the vectorized keep mask is generator::uniform_at's, at any offset, length and counter") {
    // starts not a multiple of 4 (the scalar head), lengths across the 64-element vector steps (the masked
    // tail), counters whose low word wraps inside a vector step (the high word must carry)
    for (const std::uint64_t base : {std::uint64_t(0), std::uint64_t(0xFFFFFFF9ull), std::uint64_t(0x1234567890ull)})
      for (const std::uint64_t first : {0, 1, 2, 3, 4, 61, 130})
        for (const std::int64_t n : {0, 1, 3, 63, 64, 65, 200}) {
          std::vector<std::uint8_t> keep(std::size_t(n) + 1, 7);
          minibert::cpu::dropout_keep(99, base, first, n, 0.3f, keep.data());
          std::int64_t wrong = 0;
          for (std::int64_t i = 0; i < n; ++i)
            wrong += keep[std::size_t(i)] != std::uint8_t(generator::uniform_at(99, base, first + std::uint64_t(i)) >= 0.3f);
          CHECK_MESSAGE(wrong == 0, "base " << base << " first " << first << " n " << n << ": " << wrong << " bits differ");
          CHECK_MESSAGE(keep[std::size_t(n)] == 7, "base " << base << " first " << first << " n " << n << ": wrote past n");
        }
  }
  SUBCASE("eval mode and p = 0 are the identity and draw nothing") {
    generator gen(3);
    variable<float> v(x, true);
    variable<float> e = minibert::dropout(v, 0.5f, false, gen);
    CHECK(e.node_ptr() == v.node_ptr());
    variable<float> z = minibert::dropout(v, 0.0f, true, gen);
    CHECK(z.node_ptr() == v.node_ptr());
    CHECK(gen.offset() == 0);
  }
}

TEST_CASE("ops.dropout: gradient by finite differences") {
  check_gradients("dropout p=0.4", [](const std::vector<dvar>& x) {
    generator gen(11); // the same mask on every evaluation
    return minibert::dropout(x[0], 0.4f, true, gen);
  }, {random_tensor<double>({3, 5}, 271)});
}

TEST_CASE_TEMPLATE("ops.dropout: probability errors", T, float, double) {
  generator gen(1);
  variable<T> v(random_tensor<T>({2, 3}, 1), true);
  check_error([&] { (void)minibert::dropout(v, 1.0f, true, gen); }, {"[minibert.dropout]", "probability 1", "(2,3)"});
  check_error([&] { (void)minibert::dropout(v, -0.1f, true, gen); }, {"[minibert.dropout]", "probability -0.1"});
  check_error([&] { (void)minibert::dropout(v, 1.5f, false, gen); }, {"[minibert.dropout]", "probability 1.5"});
}

// ====================================================================== losses

TEST_CASE_TEMPLATE("ops.cross_entropy: vs reference incl. ignore_index", T, float, double) {
  auto run = [](const tensor<T>& logits, const auto& targets, std::int64_t ignore, const std::string& tag) {
    variable<T> v(logits, true);
    variable<T> loss = minibert::cross_entropy(v, targets, ignore);
    CHECK(loss.shape() == shape{1});
    const std::vector<std::int64_t> t = test::ids_of(targets);
    const ref::array rl = to_ref(logits);
    check_scalar(loss.value().item(), ref::cross_entropy(rl, t, ignore), tag + " loss", 2.0);
    loss.backward(tensor<T>::full({1}, T(0.75)));
    check_ref(v.grad(), ref::cross_entropy_backward(rl, t, double(T(0.75)), ignore), tag + " grad");
  };
  SUBCASE("default ignore_index -100 on two rows, int64 targets") {
    run(random_tensor<T>({6, 5}, 281, -3, 3), tensor<std::int64_t>::from({0, 4, -100, 2, -100, 4}, {6}), -100,
        "cross_entropy" + tname<T>());
  }
  SUBCASE("custom ignore_index 2, int32 targets") {
    run(random_tensor<T>({5, 4}, 282, -3, 3), tensor<std::int32_t>::from({2, 1, 3, 2, 0}, {5}), 2,
        "cross_entropy ignore 2" + tname<T>());
  }
  SUBCASE("large logits (+-80) stay finite") {
    run(random_tensor<T>({4, 6}, 283, -80, 80), tensor<std::int64_t>::from({1, 5, 0, 3}, {4}), -100,
        "cross_entropy large" + tname<T>());
  }
  SUBCASE("every row ignored: NaN loss (as torch), zero gradient") {
    variable<T> v(random_tensor<T>({3, 4}, 284), true);
    variable<T> loss = minibert::cross_entropy(v, tensor<std::int64_t>::from({-100, -100, -100}, {3}));
    CHECK(std::isnan(double(loss.value().item())));
    loss.backward();
    for (double e : values(v.grad())) CHECK(e == 0.0);
  }
}

TEST_CASE("ops.cross_entropy: gradient by finite differences") {
  const tensor<std::int64_t> t = tensor<std::int64_t>::from({1, -100, 3, 0}, {4});
  check_gradients("cross_entropy", [t](const std::vector<dvar>& x) { return minibert::cross_entropy(x[0], t); },
                  {random_tensor<double>({4, 4}, 291, -2, 2)});
}

TEST_CASE_TEMPLATE("ops.cross_entropy: target and shape errors", T, float, double) {
  variable<T> v(random_tensor<T>({3, 5}, 1), true);
  check_error([&] { (void)minibert::cross_entropy(v, tensor<std::int64_t>::from({0, 5, 1}, {3})); },
              {"[minibert.cross_entropy]", "target 5", "row 1", "5 classes"});
  check_error([&] { (void)minibert::cross_entropy(v, tensor<std::int64_t>::from({0, 1, -1}, {3})); },
              {"[minibert.cross_entropy]", "target -1", "row 2"});
  check_error([&] { (void)minibert::cross_entropy(v, tensor<std::int64_t>::from({-100, 1, 0}, {3}), 4); },
              {"[minibert.cross_entropy]", "target -100"}); // -100 is only special when it is the ignore_index
  check_error([&] { (void)minibert::cross_entropy(v, tensor<std::int64_t>::from({0, 1}, {2})); },
              {"[minibert.cross_entropy]", "(3,5)", "(2)"});
  check_error([&] { (void)minibert::cross_entropy(v, tensor<std::int64_t>::from({0, 1, 2}, {3, 1})); },
              {"[minibert.cross_entropy]", "(3,5)", "(3,1)"});
  variable<T> v3(random_tensor<T>({3, 5, 2}, 2), true);
  check_error([&] { (void)minibert::cross_entropy(v3, tensor<std::int64_t>::from({0, 1, 2}, {3})); },
              {"[minibert.cross_entropy]", "(3,5,2)", "(3)"});
}

TEST_CASE_TEMPLATE("ops.mse_loss and bce_with_logits: vs reference", T, float, double) {
  SUBCASE("mse") {
    const tensor<T> x = random_tensor<T>({4, 3}, 301), y = random_tensor<T>({4, 3}, 302);
    variable<T> v(x, true);
    variable<T> loss = minibert::mse_loss(v, y);
    check_scalar(loss.value().item(), ref::mse(to_ref(x), to_ref(y)), "mse" + tname<T>());
    loss.backward(tensor<T>::full({1}, T(1.25)));
    check_ref(v.grad(), ref::mse_backward(to_ref(x), to_ref(y), double(T(1.25))), "mse grad" + tname<T>());
  }
  SUBCASE("bce_with_logits, soft targets") {
    const tensor<T> x = random_tensor<T>({5, 3}, 303, -4, 4), y = random_tensor<T>({5, 3}, 304, 0, 1);
    variable<T> v(x, true);
    variable<T> loss = minibert::bce_with_logits(v, y);
    check_scalar(loss.value().item(), ref::bce_with_logits(to_ref(x), to_ref(y)), "bce" + tname<T>());
    loss.backward(tensor<T>::full({1}, T(1.25)));
    check_ref(v.grad(), ref::bce_with_logits_backward(to_ref(x), to_ref(y), double(T(1.25))), "bce grad" + tname<T>());
  }
  SUBCASE("bce_with_logits is stable for large |x|") {
    const tensor<T> x = tensor<T>::from({-1000, -100, -30, 30, 100, 1000, -1000, 1000, -60}, {9});
    const tensor<T> y = tensor<T>::from({0, 1, 0.5, 0, 1, 1, 1, 0, 0.25}, {9});
    variable<T> v(x, true);
    variable<T> loss = minibert::bce_with_logits(v, y);
    CHECK(std::isfinite(double(loss.value().item())));
    // per-element losses up to 1000: the mean (~250) in T has relative rounding ~eps
    check_scalar(loss.value().item(), ref::bce_with_logits(to_ref(x), to_ref(y)), "bce large |x|" + tname<T>());
    loss.backward();
    for (double e : values(v.grad())) CHECK(std::isfinite(e));
    check_ref(v.grad(), ref::bce_with_logits_backward(to_ref(x), to_ref(y), 1.0), "bce large |x| grad" + tname<T>());
  }
}

TEST_CASE("ops.mse_loss and bce_with_logits: gradients by finite differences") {
  const dtensor y = random_tensor<double>({3, 4}, 311, 0, 1);
  check_gradients("mse", [y](const std::vector<dvar>& x) { return minibert::mse_loss(x[0], y); },
                  {random_tensor<double>({3, 4}, 312)});
  check_gradients("bce_with_logits", [y](const std::vector<dvar>& x) { return minibert::bce_with_logits(x[0], y); },
                  {random_tensor<double>({3, 4}, 313, -5, 5)});
}

TEST_CASE_TEMPLATE("ops.mse_loss and bce_with_logits: shape errors", T, float, double) {
  variable<T> v(random_tensor<T>({3, 4}, 1), true);
  check_error([&] { (void)minibert::mse_loss(v, tensor<T>::zeros({4, 3})); }, {"[minibert.mse_loss]", "(3,4)", "(4,3)"});
  check_error([&] { (void)minibert::bce_with_logits(v, tensor<T>::zeros({12})); }, {"[minibert.bce_with_logits]", "(3,4)", "(12)"});
}

// ====================================================================== attention

namespace {
struct attn_case {
  const char* name;
  std::int64_t B, T, C;
  int NH;
  int mask; // 0 none, 1 -1e9 on some keys, 2 -inf on every key of batch 1 and one key of batch 0
};
const std::vector<attn_case> attn_cases = {
    {"no mask, 2 heads", 2, 5, 8, 2, 0},
    {"padding mask -1e9, 2 heads", 2, 5, 8, 2, 1},
    {"fully masked batch (-inf), 2 heads", 2, 4, 6, 2, 2},
    {"1 head", 1, 4, 4, 1, 1},
    {"head size 1", 2, 3, 4, 4, 1},
};
template <class T> tensor<T> make_mask(std::int64_t B, std::int64_t Tn, int kind) {
  if (kind == 0) return tensor<T>();
  tensor<T> m = tensor<T>::zeros({B, Tn});
  if (kind == 1) { // batch b has its last b+1 keys padded (b < B), like right-padded sequences
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t j = Tn - 1 - b; j < Tn; ++j)
        if (j > 0) m.at({b, j}) = T(-1e9);
  } else {
    for (std::int64_t j = 0; j < Tn; ++j) m.at({B - 1, j}) = T(neg_inf);
    m.at({0, 1}) = T(neg_inf);
  }
  return m;
}
} // namespace

TEST_CASE_TEMPLATE("ops.attention: vs reference with and without mask", T, float, double) {
  for (const auto& c : attn_cases) {
    SUBCASE(c.name) {
      const tensor<T> q = random_tensor<T>({c.B, c.T, c.C}, 321), k = random_tensor<T>({c.B, c.T, c.C}, 322),
                      v = random_tensor<T>({c.B, c.T, c.C}, 323);
      const tensor<T> mask = make_mask<T>(c.B, c.T, c.mask);
      variable<T> vq(q, true), vk(k, true), vv(v, true);
      generator gen(1);
      variable<T> y = minibert::attention(vq, vk, vv, mask, c.NH, 0.1f, /*training=*/false, gen);
      CHECK(gen.offset() == 0); // eval mode draws nothing
      const ref::array rq = to_ref(q), rk = to_ref(k), rv = to_ref(v), rm = mask.defined() ? to_ref(mask) : ref::array();
      const std::string tag = std::string("attention ") + c.name + tname<T>();
      // scores are dot products of length HS and outputs averages of T values: cond 2
      check_ref(y.value(), ref::attention(rq, rk, rv, rm, c.NH).out, tag + " forward", 2.0);
      const tensor<T> dout = random_tensor<T>(y.shape(), 324);
      y.backward(dout);
      const ref::grad3 g = ref::attention_backward(rq, rk, rv, rm, c.NH, to_ref(dout));
      check_ref(vq.grad(), g.d0, tag + " grad q", 2.0);
      check_ref(vk.grad(), g.d1, tag + " grad k", 2.0);
      check_ref(vv.grad(), g.d2, tag + " grad v", 2.0);
      if (c.mask == 2) { // batch 1 attends to nothing: zero output and zero gradients
        for (double e : values(y.value().select(0, c.B - 1))) CHECK(e == 0.0);
        for (double e : values(vq.grad().select(0, c.B - 1))) CHECK(e == 0.0);
      }
    }
  }
  SUBCASE("non-contiguous q, k, v (column blocks of one QKV projection)") {
    const tensor<T> qkv = random_tensor<T>({2, 4, 12}, 325);
    variable<T> vqkv(qkv, true);
    variable<T> q = minibert::slice(vqkv, 2, 0, 4), k = minibert::slice(vqkv, 2, 4, 8), v = minibert::slice(vqkv, 2, 8, 12);
    generator gen(1);
    variable<T> y = minibert::attention(q, k, v, tensor<T>(), 2, 0.0f, true, gen);
    const ref::array rq = to_ref(qkv.slice(2, 0, 4)), rk = to_ref(qkv.slice(2, 4, 8)), rv = to_ref(qkv.slice(2, 8, 12));
    check_ref(y.value(), ref::attention(rq, rk, rv, ref::array(), 2).out, "attention(QKV views)" + tname<T>(), 2.0);
    const tensor<T> dout = random_tensor<T>(y.shape(), 326);
    y.backward(dout);
    const ref::grad3 g = ref::attention_backward(rq, rk, rv, ref::array(), 2, to_ref(dout));
    check_ref(vqkv.grad().slice(2, 0, 4), g.d0, "attention(QKV views) grad q" + tname<T>(), 2.0);
    check_ref(vqkv.grad().slice(2, 4, 8), g.d1, "attention(QKV views) grad k" + tname<T>(), 2.0);
    check_ref(vqkv.grad().slice(2, 8, 12), g.d2, "attention(QKV views) grad v" + tname<T>(), 2.0);
  }
}

TEST_CASE_TEMPLATE("ops.attention: dropout on the probabilities vs reference", T, float, double) {
  const std::int64_t B = 2, Tn = 5, C = 8;
  const int NH = 2;
  const float p = 0.3f;
  const tensor<T> q = random_tensor<T>({B, Tn, C}, 331), k = random_tensor<T>({B, Tn, C}, 332), v = random_tensor<T>({B, Tn, C}, 333);
  const tensor<T> mask = make_mask<T>(B, Tn, 1);
  generator gen(2024);
  gen.reserve(6); // a non-zero starting counter
  const std::uint64_t base = gen.offset();
  variable<T> vq(q, true), vk(k, true), vv(v, true);
  variable<T> y = minibert::attention(vq, vk, vv, mask, NH, p, true, gen);
  const std::int64_t n = B * NH * Tn * Tn;
  CHECK(gen.offset() == base + std::uint64_t((n + 3) / 4));
  const std::vector<int> keep = keep_mask(2024, base, n, p); // over (B,NH,T,T) in row-major order
  const ref::array rq = to_ref(q), rk = to_ref(k), rv = to_ref(v), rm = to_ref(mask);
  check_ref(y.value(), ref::attention(rq, rk, rv, rm, NH, keep, p).out, "attention dropout forward" + tname<T>(), 2.0);
  const tensor<T> dout = random_tensor<T>(y.shape(), 334);
  y.backward(dout);
  const ref::grad3 g = ref::attention_backward(rq, rk, rv, rm, NH, to_ref(dout), keep, p);
  check_ref(vq.grad(), g.d0, "attention dropout grad q" + tname<T>(), 2.0);
  check_ref(vk.grad(), g.d1, "attention dropout grad k" + tname<T>(), 2.0);
  check_ref(vv.grad(), g.d2, "attention dropout grad v" + tname<T>(), 2.0);
  // the dropout really changed the result
  const ref::array no_drop = ref::attention(rq, rk, rv, rm, NH).out;
  double maxdiff = 0;
  const std::vector<double> got = values(y.value());
  for (std::size_t i = 0; i < got.size(); ++i) maxdiff = std::max(maxdiff, std::abs(got[i] - no_drop.v[i]));
  CHECK(maxdiff > 1e-2);
}

TEST_CASE("ops.attention: identical with 1 and 2 threads, with dropout") {
  test::thread_count_guard guard;
  const tensor<float> q = random_tensor<float>({2, 16, 32}, 341), k = random_tensor<float>({2, 16, 32}, 342),
                      v = random_tensor<float>({2, 16, 32}, 343), dout = random_tensor<float>({2, 16, 32}, 344);
  tensor<float> y[2], g[2];
  for (int t = 0; t < 2; ++t) {
    minibert::set_num_threads(t + 1);
    generator gen(77);
    variable<float> vq(q, true), vk(k, true), vv(v, true);
    variable<float> out = minibert::attention(vq, vk, vv, make_mask<float>(2, 16, 1), 2, 0.2f, true, gen);
    out.backward(dout);
    y[t] = out.value();
    g[t] = vk.grad();
  }
  CHECK(bitwise_equal(y[0], y[1]));
  CHECK(bitwise_equal(g[0], g[1]));
}

TEST_CASE("ops.attention: gradients by finite differences") {
  const std::vector<dtensor> in = {random_tensor<double>({2, 3, 4}, 351), random_tensor<double>({2, 3, 4}, 352),
                                   random_tensor<double>({2, 3, 4}, 353)};
  SUBCASE("no mask") {
    check_gradients("attention", [](const std::vector<dvar>& x) {
      generator gen(1);
      return minibert::attention(x[0], x[1], x[2], dtensor(), 2, 0.0f, true, gen);
    }, in);
  }
  SUBCASE("padding mask") {
    const dtensor mask = make_mask<double>(2, 3, 1);
    check_gradients("attention masked", [mask](const std::vector<dvar>& x) {
      generator gen(1);
      return minibert::attention(x[0], x[1], x[2], mask, 2, 0.0f, true, gen);
    }, in);
  }
  SUBCASE("padding mask and dropout (fixed seed)") {
    const dtensor mask = make_mask<double>(2, 3, 1);
    check_gradients("attention masked dropout", [mask](const std::vector<dvar>& x) {
      generator gen(5);
      return minibert::attention(x[0], x[1], x[2], mask, 2, 0.25f, true, gen);
    }, in);
  }
  SUBCASE("the same variable as q, k and v (self-attention without projections)") {
    check_gradients("attention q=k=v", [](const std::vector<dvar>& x) {
      generator gen(1);
      return minibert::attention(x[0], x[0], x[0], dtensor(), 1, 0.0f, true, gen);
    }, {in[0]});
  }
}

TEST_CASE_TEMPLATE("ops.attention: shape errors", T, float, double) {
  auto var = [](const shape& s) { return variable<T>(random_tensor<T>(s, 1), true); };
  generator gen(1);
  variable<T> q = var({2, 3, 4});
  check_error([&] { (void)minibert::attention(q, var({2, 3, 5}), q, tensor<T>(), 2, 0.0f, true, gen); },
              {"[minibert.attention]", "(2,3,4)", "(2,3,5)"});
  check_error([&] { (void)minibert::attention(q, q, var({2, 4, 4}), tensor<T>(), 2, 0.0f, true, gen); },
              {"[minibert.attention]", "v (2,4,4)"});
  check_error([&] { (void)minibert::attention(var({3, 4}), var({3, 4}), var({3, 4}), tensor<T>(), 2, 0.0f, true, gen); },
              {"[minibert.attention]", "(3,4)"});
  check_error([&] { (void)minibert::attention(q, q, q, tensor<T>(), 3, 0.0f, true, gen); },
              {"[minibert.attention]", "C 4", "3 heads"});
  check_error([&] { (void)minibert::attention(q, q, q, tensor<T>(), 0, 0.0f, true, gen); }, {"[minibert.attention]", "0 heads"});
  check_error([&] { (void)minibert::attention(q, q, q, tensor<T>::zeros({2, 4}), 2, 0.0f, true, gen); },
              {"[minibert.attention]", "mask (2,4)", "(2,3)"});
  check_error([&] { (void)minibert::attention(q, q, q, tensor<T>::zeros({2, 1, 3}), 2, 0.0f, true, gen); },
              {"[minibert.attention]", "mask (2,1,3)"});
  check_error([&] { (void)minibert::attention(q, q, q, tensor<T>(), 2, 1.0f, true, gen); },
              {"[minibert.attention]", "dropout probability 1"});
  CHECK(gen.offset() == 0); // failed calls draw nothing
}

// ====================================================================== self_attention (fused QKV) and concat

TEST_CASE_TEMPLATE("ops.self_attention: qkv column blocks vs reference, with mask and a short-lived mask tensor", T, float,
                   double) {
  const std::int64_t B = 2, Tn = 5, C = 8, NH = 2;
  const tensor<T> qkv = random_tensor<T>({B, Tn, 3 * C}, 361);
  variable<T> vqkv(qkv, true);
  generator gen(1);
  variable<T> y;
  {
    const tensor<T> mask = make_mask<T>(B, Tn, 1); // destroyed before backward: the op must own what it needs
    y = minibert::self_attention(vqkv, mask, NH, 0.0f, true, gen);
  }
  const tensor<T> mask = make_mask<T>(B, Tn, 1);
  const ref::array rq = to_ref(qkv.slice(2, 0, C)), rk = to_ref(qkv.slice(2, C, 2 * C)), rv = to_ref(qkv.slice(2, 2 * C, 3 * C));
  check_ref(y.value(), ref::attention(rq, rk, rv, to_ref(mask), NH).out, "self_attention forward" + tname<T>(), 2.0);
  const tensor<T> dout = random_tensor<T>(y.shape(), 362);
  y.backward(dout);
  const ref::grad3 g = ref::attention_backward(rq, rk, rv, to_ref(mask), NH, to_ref(dout));
  check_ref(vqkv.grad().slice(2, 0, C), g.d0, "self_attention grad q" + tname<T>(), 2.0);
  check_ref(vqkv.grad().slice(2, C, 2 * C), g.d1, "self_attention grad k" + tname<T>(), 2.0);
  check_ref(vqkv.grad().slice(2, 2 * C, 3 * C), g.d2, "self_attention grad v" + tname<T>(), 2.0);
  check_error([&] { (void)minibert::self_attention(variable<T>(random_tensor<T>({2, 5, 10}, 1), true), tensor<T>(), 2, 0.0f,
                                                   true, gen); },
              {"[minibert.self_attention]", "(2,5,10)"});
}

TEST_CASE("ops.self_attention and concat: gradients by finite differences") {
  const dtensor mask = make_mask<double>(2, 3, 1);
  check_gradients("self_attention masked dropout", [mask](const std::vector<dvar>& x) {
    generator gen(5);
    return minibert::self_attention(x[0], mask, 2, 0.25f, true, gen);
  }, {random_tensor<double>({2, 3, 12}, 371)});
  check_gradients("concat rows", [](const std::vector<dvar>& x) { return minibert::concat<double, minibert::device::cpu>({x[0], x[1], x[2]}); },
                  {random_tensor<double>({2, 3}, 372), random_tensor<double>({1, 3}, 373), random_tensor<double>({3, 3}, 374)});
  check_gradients("concat vectors", [](const std::vector<dvar>& x) { return minibert::concat<double, minibert::device::cpu>({x[0], x[1]}); },
                  {random_tensor<double>({4}, 375), random_tensor<double>({2}, 376)});
}

TEST_CASE_TEMPLATE("ops.concat: values and shape errors", T, float, double) {
  const tensor<T> a = random_tensor<T>({2, 3}, 381), b = random_tensor<T>({1, 3}, 382);
  const variable<T> y = minibert::concat<T, minibert::device::cpu>({variable<T>(a), variable<T>(b)});
  CHECK(y.shape() == shape{3, 3});
  for (std::int64_t j = 0; j < 3; ++j) {
    CHECK(y.value().at({0, j}) == a.at({0, j}));
    CHECK(y.value().at({2, j}) == b.at({0, j}));
  }
  check_error([&] { (void)minibert::concat<T, minibert::device::cpu>({variable<T>(a), variable<T>(random_tensor<T>({1, 4}, 1))}); },
              {"[minibert.concat]", "(1,4)", "(2,3)"});
  check_error([&] { (void)minibert::concat<T, minibert::device::cpu>({}); }, {"[minibert.concat]", "no inputs"});
}

} // namespace test_ops_nn
