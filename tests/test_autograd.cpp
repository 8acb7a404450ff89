// SPDX-License-Identifier: MIT
// autograd.hpp: leaves, gradient accumulation across passes, shared values (diamonds, the same leaf
// twice), no_grad, detach, zero_grad, graph freeing, and the errors backward() raises. Values are small
// integers-ish so every expected gradient here is exact.

#include <cstdint> // int64_t
#include <vector>  // vector

#include "test_helpers.hpp"

namespace test_autograd { // each test file in its own namespace: a test group compiles as one unit

using minibert::no_grad;
using minibert::shape;
using test::check_error;
using test::values;
template <class T> using tensor = test::tensor<T>;
template <class T> using variable = test::variable<T>;

namespace {
template <class T> variable<T> leaf(std::vector<T> v, const shape& s, bool rg = true) {
  return variable<T>(tensor<T>::from(v, s), rg);
}
std::vector<double> fill(std::size_t n, double v) { return std::vector<double>(n, v); }
} // namespace

TEST_CASE_TEMPLATE("autograd: leaves and a simple chain", T, float, double) {
  variable<T> a = leaf<T>({1, 2, 3}, {3}), b = leaf<T>({4, 5, 6}, {3});
  CHECK(a.requires_grad());
  CHECK(std::string(a.op()) == "leaf");
  CHECK(a.node_ptr()->is_leaf());
  CHECK_FALSE(a.has_grad());
  variable<T> y = minibert::sum(a * b); // dy/da = b, dy/db = a
  CHECK(y.requires_grad());
  CHECK(std::string(y.op()) == "sum");
  CHECK_FALSE(y.node_ptr()->is_leaf());
  CHECK(y.value().item() == T(32));
  y.backward();
  REQUIRE(a.has_grad());
  REQUIRE(b.has_grad());
  CHECK(values(a.grad()) == std::vector<double>{4, 5, 6});
  CHECK(values(b.grad()) == std::vector<double>{1, 2, 3});
  // the graph is freed: the intermediate was released, its inputs and gradient dropped
  CHECK(y.node_ptr()->released);
  CHECK(y.node_ptr()->inputs.empty());
  CHECK_FALSE(y.node_ptr()->backward_fn);
}

TEST_CASE_TEMPLATE("autograd: gradients accumulate across two backward passes and zero_grad resets", T, float, double) {
  variable<T> a = leaf<T>({1, 2}, {2}), b = leaf<T>({3, -1}, {2});
  minibert::sum(a * b).backward();
  minibert::sum(minibert::scale(a, T(2))).backward(); // a only: +2
  CHECK(values(a.grad()) == std::vector<double>{5, 1});
  CHECK(values(b.grad()) == std::vector<double>{1, 2});
  minibert::sum(a * b).backward();
  CHECK(values(a.grad()) == std::vector<double>{8, 0});
  CHECK(values(b.grad()) == std::vector<double>{2, 4});
  a.zero_grad();
  CHECK_FALSE(a.has_grad());
  CHECK(b.has_grad());
  minibert::sum(a * b).backward();
  CHECK(values(a.grad()) == std::vector<double>{3, -1}); // starts from zero again
  CHECK(values(b.grad()) == std::vector<double>{3, 6});
}

TEST_CASE_TEMPLATE("autograd: diamond graph (an intermediate used twice)", T, float, double) {
  variable<T> a = leaf<T>({1, 2, 3}, {3}), b = leaf<T>({2, 0.5, -1}, {3});
  variable<T> h = a * b;                       // used by both branches
  variable<T> y = minibert::sum(h * h + h);    // dy/dh = 2h + 1
  y.backward();
  // dy/da = (2ab + 1) b, dy/db = (2ab + 1) a
  CHECK(values(a.grad()) == std::vector<double>{(2 * 2 + 1) * 2., (2 * 1 + 1) * 0.5, (2 * -3 + 1) * -1.});
  CHECK(values(b.grad()) == std::vector<double>{(2 * 2 + 1) * 1., (2 * 1 + 1) * 2., (2 * -3 + 1) * 3.});
  CHECK_FALSE(h.has_grad()); // the intermediate's gradient is freed
}

TEST_CASE_TEMPLATE("autograd: the same leaf twice and shared gradient buffers are never corrupted", T, float, double) {
  SUBCASE("y = a + a with a user seed: a.grad = 2 seed, the seed is untouched") {
    variable<T> a = leaf<T>({1, 2, 3}, {3});
    const tensor<T> seed = tensor<T>::from({1, 10, 100}, {3});
    (a + a).backward(seed);
    CHECK(values(a.grad()) == std::vector<double>{2, 20, 200});
    CHECK(values(seed) == std::vector<double>{1, 10, 100});
    (a + a).backward(seed); // again: accumulates, seed still untouched
    CHECK(values(a.grad()) == std::vector<double>{4, 40, 400});
    CHECK(values(seed) == std::vector<double>{1, 10, 100});
  }
  SUBCASE("add hands the same gradient tensor to two leaves; accumulating into one leaves the other alone") {
    variable<T> a = leaf<T>({1, 2}, {2}), b = leaf<T>({3, 4}, {2});
    const tensor<T> seed = tensor<T>::from({1, 1}, {2});
    (a + b).backward(seed);                     // a.grad and b.grad may alias the seed
    minibert::sum(minibert::scale(a, T(5))).backward(); // a.grad += 5
    CHECK(values(a.grad()) == std::vector<double>{6, 6});
    CHECK(values(b.grad()) == std::vector<double>{1, 1});
    CHECK(values(seed) == std::vector<double>{1, 1});
    minibert::sum(b * b).backward();            // b.grad += 2b
    CHECK(values(b.grad()) == std::vector<double>{7, 9});
    CHECK(values(a.grad()) == std::vector<double>{6, 6});
  }
  SUBCASE("an intermediate's accumulated gradient passed on to leaves is not modified later") {
    variable<T> a = leaf<T>({1, 2}, {2}), b = leaf<T>({3, 4}, {2}), c = leaf<T>({-1, 5}, {2});
    variable<T> h = a + b;                      // h gets gradient from two consumers (owned buffer)
    variable<T> y = minibert::sum(h * c + h);   // dy/dh = c + 1, passed by add to a and b unchanged
    y.backward();
    CHECK(values(a.grad()) == std::vector<double>{0, 6});
    CHECK(values(b.grad()) == std::vector<double>{0, 6});
    minibert::sum(a).backward();                // a.grad += 1: b.grad must not change with it
    CHECK(values(a.grad()) == std::vector<double>{1, 7});
    CHECK(values(b.grad()) == std::vector<double>{0, 6});
    CHECK(values(c.grad()) == std::vector<double>{4, 6});
  }
  SUBCASE("a view's gradient (reshape) aliasing the upstream gradient") {
    variable<T> a = leaf<T>({1, 2, 3, 4}, {2, 2});
    const tensor<T> seed = tensor<T>::from({1, 2, 3, 4}, {4});
    minibert::reshape(a, {4}).backward(seed);
    minibert::reshape(a, {4}).backward(seed);
    CHECK(values(a.grad()) == std::vector<double>{2, 4, 6, 8});
    CHECK(a.grad().shape() == shape{2, 2});
    CHECK(values(seed) == std::vector<double>{1, 2, 3, 4});
  }
  SUBCASE("y = a * a gives 2a") {
    variable<T> a = leaf<T>({1, -2, 3}, {3});
    minibert::sum(a * a).backward();
    CHECK(values(a.grad()) == std::vector<double>{2, -4, 6});
  }
}

TEST_CASE_TEMPLATE("autograd: a gradient nothing else holds is accumulated in place; a shared one never is", T,
                   float, double) {
  SUBCASE("sole handle: the second gradient is added into the first one's buffer") {
    variable<T> a = leaf<T>({1, 2, 3}, {3});
    a.node_ptr()->add_grad(tensor<T>::from({1, 1, 1}, {3}));
    const T* first = a.grad().data();
    a.node_ptr()->add_grad(tensor<T>::from({10, 20, 30}, {3}));
    CHECK(a.grad().data() == first); // no copy
    CHECK(values(a.grad()) == std::vector<double>{11, 21, 31});
  }
  SUBCASE("shared: the sum goes to a buffer of the node's own, the other holder's values stay") {
    variable<T> a = leaf<T>({1, 2, 3}, {3});
    const tensor<T> held = tensor<T>::from({1, 1, 1}, {3});
    a.node_ptr()->add_grad(held); // a second handle on the same storage
    a.node_ptr()->add_grad(tensor<T>::from({10, 20, 30}, {3}));
    CHECK(a.grad().data() != held.data());
    CHECK(values(a.grad()) == std::vector<double>{11, 21, 31});
    CHECK(values(held) == std::vector<double>{1, 1, 1});
    a.node_ptr()->add_grad(tensor<T>::from({100, 100, 100}, {3})); // now its own: in place
    CHECK(values(a.grad()) == std::vector<double>{111, 121, 131});
  }
  SUBCASE("a strided view is never accumulated into") {
    variable<T> a = leaf<T>({1, 2}, {2, 1});
    a.node_ptr()->add_grad(tensor<T>::from({1, 5, 2, 6}, {2, 2}).slice(1, 0, 1)); // column 0: {1, 2}, stride 2
    CHECK_FALSE(a.grad().is_contiguous());
    a.node_ptr()->add_grad(tensor<T>::from({10, 20}, {2, 1}));
    CHECK(a.grad().is_contiguous());
    CHECK(values(a.grad()) == std::vector<double>{11, 22});
  }
}

TEST_CASE_TEMPLATE("autograd: inputs that do not require grad get none", T, float, double) {
  variable<T> a = leaf<T>({1, 2}, {2}), c = leaf<T>({3, 4}, {2}, false);
  variable<T> y = minibert::sum(a * c);
  CHECK(y.node_ptr()->inputs.size() == 1);
  y.backward();
  CHECK(values(a.grad()) == std::vector<double>{3, 4});
  CHECK_FALSE(c.has_grad());
  // no input requires grad: the result records nothing
  variable<T> z = c * c;
  CHECK_FALSE(z.requires_grad());
  CHECK(z.node_ptr()->inputs.empty());
  CHECK_FALSE(z.node_ptr()->backward_fn);
}

TEST_CASE_TEMPLATE("autograd: no_grad records nothing and restores the mode", T, float, double) {
  variable<T> a = leaf<T>({1, 2}, {2});
  CHECK(minibert::grad_enabled());
  {
    no_grad ng;
    CHECK_FALSE(minibert::grad_enabled());
    variable<T> y = minibert::sum(a * a);
    CHECK(y.value().item() == T(5)); // values are still computed
    CHECK_FALSE(y.requires_grad());
    CHECK(y.node_ptr()->inputs.empty());
    CHECK_FALSE(y.node_ptr()->backward_fn);
    check_error([&] { y.backward(); }, {"[minibert.backward]", "does not require grad"});
    {
      no_grad inner;
      CHECK_FALSE(minibert::grad_enabled());
    }
    CHECK_FALSE(minibert::grad_enabled()); // the inner scope restores "off", not "on"
  }
  CHECK(minibert::grad_enabled());
  variable<T> y = minibert::sum(a * a);
  CHECK(y.requires_grad());
  y.backward();
  CHECK(values(a.grad()) == std::vector<double>{2, 4});
}

TEST_CASE_TEMPLATE("autograd: detach shares storage but cuts the graph", T, float, double) {
  variable<T> a = leaf<T>({1, 2}, {2});
  variable<T> h = minibert::scale(a, T(3));
  variable<T> d = h.detach();
  CHECK_FALSE(d.requires_grad());
  CHECK(d.node_ptr()->inputs.empty());
  CHECK(d.value().shares_storage(h.value()));
  variable<T> y = minibert::sum(h * d); // only the h branch reaches a: dy/da = 3 d = 9a... d treated as constant
  y.backward();
  CHECK(values(a.grad()) == std::vector<double>{9, 18}); // 3 * d, d = 3a
  CHECK_FALSE(d.has_grad());
  // a detached leaf can be made trainable again
  d.set_requires_grad(true);
  minibert::sum(d).backward();
  CHECK(values(d.grad()) == std::vector<double>{1, 1});
  CHECK(values(a.grad()) == std::vector<double>{9, 18});
}

TEST_CASE_TEMPLATE("autograd: errors", T, float, double) {
  variable<T> a = leaf<T>({1, 2, 3, 4}, {2, 2});
  SUBCASE("backward on a non-scalar without a seed") {
    variable<T> y = minibert::scale(a, T(2));
    check_error([&] { y.backward(); }, {"[minibert.backward]", "(2,2)", "not a scalar"});
    check_error([&] { y.backward(tensor<T>::full({4}, T(1))); }, {"[minibert.backward]", "(4)", "(2,2)"});
    y.backward(tensor<T>::full({2, 2}, T(1))); // with a seed it works
    CHECK(values(a.grad()) == fill(4, 2));
  }
  SUBCASE("a second backward through a freed graph") {
    variable<T> h = minibert::scale(a, T(2));
    variable<T> y = minibert::sum(h);
    y.backward();
    check_error([&] { y.backward(); }, {"[minibert.backward]", "second time"});
    // another output built on the freed intermediate h also hits the freed graph
    variable<T> z = minibert::sum(h * h);
    check_error([&] { z.backward(); }, {"[minibert.backward]", "second time"});
    CHECK(values(a.grad()) == fill(4, 2)); // the first pass's gradient is intact
  }
  SUBCASE("set_requires_grad on a non-leaf") {
    variable<T> y = minibert::scale(a, T(2));
    check_error([&] { y.set_requires_grad(false); }, {"[minibert.autograd]", "leaves"});
    variable<T> c = leaf<T>({1}, {1}, false);
    c.set_requires_grad(true); // fine on a leaf
    CHECK(c.requires_grad());
  }
  SUBCASE("backward of an output that does not require grad") {
    variable<T> c = leaf<T>({1}, {1}, false);
    check_error([&] { minibert::sum(c).backward(); }, {"[minibert.backward]", "does not require grad"});
  }
}

TEST_CASE_TEMPLATE("autograd: backward from a leaf and through views", T, float, double) {
  SUBCASE("a leaf's own backward stores the seed") {
    variable<T> a = leaf<T>({1, 2}, {2});
    a.backward(tensor<T>::from({3, 4}, {2}));
    CHECK(values(a.grad()) == std::vector<double>{3, 4});
  }
  SUBCASE("gradient of a transposed view comes back in the leaf's layout") {
    variable<T> a = leaf<T>({1, 2, 3, 4, 5, 6}, {2, 3});
    variable<T> t = minibert::transpose(a, 0, 1); // (3,2) view
    t.backward(tensor<T>::from({10, 20, 30, 40, 50, 60}, {3, 2}));
    CHECK(a.grad().shape() == shape{2, 3});
    CHECK(values(a.grad()) == std::vector<double>{10, 30, 50, 20, 40, 60});
  }
}

TEST_CASE("autograd: long chains backpropagate and are destroyed without recursion limits") {
  using V = variable<double>;
  V a = leaf<double>({1, 2}, {2});
  const int depth = 20000;
  {
    V y = a;
    for (int i = 0; i < depth; ++i) y = minibert::scale(y, 1.0);
    minibert::sum(y).backward(); // iterative topological sort
    CHECK(values(a.grad()) == fill(2, 1));
  }
  {
    V y = a;
    for (int i = 0; i < depth; ++i) y = minibert::scale(y, 1.0);
    // dropped without backward: the chain of nodes is released when y goes out of scope
  }
  CHECK(values(a.grad()) == fill(2, 1));
}

} // namespace test_autograd
