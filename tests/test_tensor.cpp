// SPDX-License-Identifier: MIT
// tensor.hpp: shape, strides, views sharing storage (reshape, permute, transpose, slice, select),
// contiguous/clone copies, element access, and the errors each of them throws.

#include <cstdint> // int64_t
#include <vector>  // vector

#include "test_helpers.hpp"

namespace test_tensor { // each test file in its own namespace: a test group compiles as one unit

using minibert::shape;
using test::check_error;
template <class T> using tensor = test::tensor<T>;

namespace {
/// 0, 1, 2, ... in row-major order
template <class T> tensor<T> iota(const shape& s) {
  tensor<T> t = tensor<T>::empty(s);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = T(i);
  return t;
}
/// flat row-major index of a multi-index in shape s
std::int64_t flat(const std::vector<std::int64_t>& idx, const shape& s) {
  std::int64_t f = 0;
  for (int k = 0; k < s.rank(); ++k) f = f * s[k] + idx[std::size_t(k)];
  return f;
}
/// element at idx read by explicit pointer arithmetic through the view's offset and strides
template <class T> T read_strided(const tensor<T>& t, const std::vector<std::int64_t>& idx) {
  std::int64_t off = 0;
  for (int k = 0; k < t.rank(); ++k) off += idx[std::size_t(k)] * t.strides()[k];
  return t.storage_ptr()->data()[t.offset() + off];
}
/// every multi-index of s in row-major order
std::vector<std::vector<std::int64_t>> all_indices(const shape& s) {
  std::vector<std::vector<std::int64_t>> out;
  std::vector<std::int64_t> idx(std::size_t(s.rank()), 0);
  for (std::int64_t n = 0; n < s.numel(); ++n) {
    out.push_back(idx);
    for (int k = s.rank() - 1; k >= 0; --k) {
      if (++idx[std::size_t(k)] < s[k]) break;
      idx[std::size_t(k)] = 0;
    }
  }
  return out;
}
} // namespace

TEST_CASE("shape: rank, dims, numel, negative dims, printing, equality") {
  const shape s{2, 3, 4};
  CHECK(s.rank() == 3);
  CHECK(s.numel() == 24);
  CHECK(s.dim(-1) == 4);
  CHECK(s.dim(-3) == 2);
  CHECK(s.dim(1) == 3);
  CHECK(s.str() == "(2,3,4)");
  CHECK(s == shape{2, 3, 4});
  CHECK_FALSE(s == shape{2, 3});
  CHECK_FALSE(s == shape{2, 3, 5});
  CHECK(shape{}.numel() == 1); // rank 0: one element, as torch
  CHECK(shape{3, 0, 2}.numel() == 0);
  CHECK(shape(std::vector<std::int64_t>{5, 6}) == shape{5, 6});
  check_error([&] { (void)s.dim(3); }, {"[minibert.shape]", "dim 3", "rank 3"});
  check_error([&] { (void)s.dim(-4); }, {"[minibert.shape]", "dim -4"});
  check_error([] { shape t{1, 2, 3, 4, 5, 6, 7}; }, {"[minibert.shape]", "rank 7"});
  shape full{1, 1, 1, 1, 1, 1};
  check_error([&] { full.push_back(1); }, {"[minibert.shape]"});
}

TEST_CASE_TEMPLATE("tensor: construction, contiguous strides, fill, from", T, float, double, std::int64_t) {
  SUBCASE("empty is contiguous row-major") {
    const tensor<T> t = tensor<T>::empty({2, 3, 4});
    CHECK(t.shape() == shape{2, 3, 4});
    CHECK(t.strides() == shape{12, 4, 1});
    CHECK(t.rank() == 3);
    CHECK(t.numel() == 24);
    CHECK(t.size(-1) == 4);
    CHECK(t.offset() == 0);
    CHECK(t.is_contiguous());
    CHECK(t.defined());
    CHECK(t.storage_ptr()->size() == 24);
    CHECK(reinterpret_cast<std::uintptr_t>(t.data()) % 64 == 0); // cache-line aligned
    CHECK_FALSE(tensor<T>().defined());
  }
  SUBCASE("zeros, full, from") {
    CHECK(test::values(tensor<T>::zeros({2, 2})) == std::vector<double>(4, 0.0));
    CHECK(test::values(tensor<T>::full({3}, T(7))) == std::vector<double>(3, 7.0));
    const tensor<T> f = tensor<T>::from({1, 2, 3, 4, 5, 6}, {2, 3});
    CHECK(f.at({1, 0}) == T(4));
    CHECK(f.at({0, 2}) == T(3));
    check_error([] { (void)tensor<T>::from({1, 2, 3}, {2, 2}); }, {"[minibert.tensor.from]", "3 values", "(2,2)"});
  }
  SUBCASE("zero-size and rank-0 tensors") {
    const tensor<T> z = tensor<T>::empty({3, 0});
    CHECK(z.numel() == 0);
    CHECK(z.to_vector().empty());
    CHECK(z.clone().numel() == 0);
    CHECK(z.transpose(0, 1).clone().shape() == shape{0, 3});
    const tensor<T> s = tensor<T>::full({}, T(5));
    CHECK(s.rank() == 0);
    CHECK(s.item() == T(5));
    CHECK(s.at({}) == T(5));
  }
  SUBCASE("negative sizes are rejected") {
    check_error([] { (void)tensor<T>::empty({2, -3}); }, {"[minibert.tensor.empty]", "(2,-3)"});
  }
}

TEST_CASE("tensor: item and at") {
  tensor<float> t = iota<float>({2, 3});
  CHECK(t.at({1, 2}) == 5.0f);
  t.at({0, 1}) = 42.0f; // at() is a writable reference
  CHECK(t.data()[1] == 42.0f);
  CHECK(tensor<float>::full({1, 1}, 3.5f).item() == 3.5f);
  check_error([&] { (void)t.item(); }, {"[minibert.tensor.item]", "(2,3)", "6 elements"});
  check_error([&] { (void)t.at({1}); }, {"[minibert.tensor.at]", "1 indices", "(2,3)"});
  check_error([&] { (void)t.at({0, 1, 2}); }, {"[minibert.tensor.at]", "3 indices"});
  check_error([&] { (void)t.at({2, 0}); }, {"[minibert.tensor.at]", "index 2", "dim 0", "(2,3)"});
  check_error([&] { (void)t.at({0, -1}); }, {"[minibert.tensor.at]", "index -1", "dim 1"});
  check_error([&] { (void)t.at({0, 3}); }, {"[minibert.tensor.at]", "index 3", "dim 1"});
  // item/at of a view go through its offset and strides
  const tensor<float> v = t.transpose(0, 1).slice(0, 2, 3).slice(1, 1, 2);
  CHECK(v.item() == 5.0f);
  CHECK(v.at({0, 0}) == 5.0f);
}

TEST_CASE_TEMPLATE("tensor: reshape views share storage, -1 inference, errors", T, float, double) {
  const tensor<T> t = iota<T>({2, 3, 4});
  SUBCASE("contiguous reshape is a view") {
    tensor<T> r = t.reshape({6, 4});
    CHECK(r.shape() == shape{6, 4});
    CHECK(r.strides() == shape{4, 1});
    CHECK(r.shares_storage(t));
    CHECK(r.data() == t.data());
    r.at({5, 3}) = T(-1); // writing through the view is visible in the original
    CHECK(t.at({1, 2, 3}) == T(-1));
    CHECK(test::values(t.reshape({24})) == test::values(r.reshape({-1})));
  }
  SUBCASE("-1 is inferred") {
    CHECK(t.reshape({-1, 4}).shape() == shape{6, 4});
    CHECK(t.reshape({2, -1}).shape() == shape{2, 12});
    CHECK(t.reshape({-1}).shape() == shape{24});
    CHECK(t.reshape({4, 1, -1, 2}).shape() == shape{4, 1, 3, 2});
  }
  SUBCASE("reshape of a non-contiguous view copies, in row-major order of the view") {
    const tensor<T> tr = t.transpose(0, 2); // (4,3,2)
    REQUIRE_FALSE(tr.is_contiguous());
    const tensor<T> r = tr.reshape({4, 6});
    CHECK_FALSE(r.shares_storage(t));
    CHECK(r.is_contiguous());
    for (std::int64_t a = 0; a < 4; ++a)
      for (std::int64_t b = 0; b < 3; ++b)
        for (std::int64_t c = 0; c < 2; ++c) CHECK(r.at({a, b * 2 + c}) == t.at({c, b, a}));
    r.at({0, 0}) = T(100); // a copy: the original is untouched
    CHECK(t.at({0, 0, 0}) == T(0));
  }
  SUBCASE("errors name reshape and both shapes") {
    check_error([&] { (void)t.reshape({5, 5}); }, {"[minibert.reshape]", "(2,3,4)", "(5,5)", "24"});
    check_error([&] { (void)t.reshape({-1, -1}); }, {"[minibert.reshape]", "(2,3,4)", "(-1,-1)", "more than one -1"});
    check_error([&] { (void)t.reshape({5, -1}); }, {"[minibert.reshape]", "(2,3,4)", "(5,-1)", "infer"});
    check_error([&] { (void)t.transpose(0, 1).reshape({7}); }, {"[minibert.reshape]", "(3,2,4)", "(7)"});
  }
}

TEST_CASE_TEMPLATE("tensor: permute and transpose against index arithmetic", T, float, double) {
  const shape s{2, 3, 4, 5};
  const tensor<T> t = iota<T>(s);
  SUBCASE("permute (2,0,3,1)") {
    const std::vector<int> order{2, 0, 3, 1};
    const tensor<T> p = t.permute(order);
    CHECK(p.shape() == shape{4, 2, 5, 3});
    CHECK(p.strides() == shape{5, 60, 1, 20}); // out.stride(i) = in.stride(order[i])
    CHECK(p.shares_storage(t));
    CHECK_FALSE(p.is_contiguous());
    for (const auto& idx : all_indices(p.shape())) {
      std::vector<std::int64_t> in(4);
      for (int i = 0; i < 4; ++i) in[std::size_t(order[std::size_t(i)])] = idx[std::size_t(i)];
      const T want = T(flat(in, s));
      CHECK(p.at({idx[0], idx[1], idx[2], idx[3]}) == want);
      CHECK(read_strided(p, idx) == want);
    }
    // the copy is row-major over the permuted shape
    const std::vector<T> v = p.to_vector();
    std::int64_t n = 0;
    for (const auto& idx : all_indices(p.shape())) {
      std::vector<std::int64_t> in(4);
      for (int i = 0; i < 4; ++i) in[std::size_t(order[std::size_t(i)])] = idx[std::size_t(i)];
      CHECK(v[std::size_t(n++)] == T(flat(in, s)));
    }
    // permuting back with the inverse order gives the original layout
    const tensor<T> back = p.permute({1, 3, 0, 2});
    CHECK(back.shape() == s);
    CHECK(back.strides() == t.strides());
    CHECK(back.is_contiguous());
  }
  SUBCASE("negative dims in permute") {
    const tensor<T> p = t.permute({-1, 0, 1, 2});
    CHECK(p.shape() == shape{5, 2, 3, 4});
    CHECK(p.at({4, 1, 2, 3}) == t.at({1, 2, 3, 4}));
  }
  SUBCASE("transpose swaps two dims; negative dims count from the end") {
    const tensor<T> tr = t.transpose(1, -1);
    CHECK(tr.shape() == shape{2, 5, 4, 3});
    CHECK(tr.strides() == shape{60, 1, 5, 20});
    for (const auto& idx : all_indices(tr.shape()))
      CHECK(tr.at({idx[0], idx[1], idx[2], idx[3]}) == t.at({idx[0], idx[3], idx[2], idx[1]}));
    CHECK(tr.transpose(1, 3).is_contiguous());
  }
  SUBCASE("writes through permute/transpose views are visible") {
    tensor<T> base = t.clone();
    base.permute({3, 2, 1, 0}).at({4, 3, 2, 1}) = T(-7);
    CHECK(base.at({1, 2, 3, 4}) == T(-7));
    base.transpose(0, 3).at({0, 1, 2, 1}) = T(-8);
    CHECK(base.at({1, 1, 2, 0}) == T(-8));
  }
  SUBCASE("errors") {
    check_error([&] { (void)t.permute({0, 1, 2}); }, {"[minibert.permute]", "3 dims", "(2,3,4,5)"});
    check_error([&] { (void)t.permute({0, 1, 1, 2}); }, {"[minibert.permute]", "repeated", "(2,3,4,5)"});
    check_error([&] { (void)t.permute({0, 1, 2, 4}); }, {"dim 4", "rank 4"});
    check_error([&] { (void)t.transpose(0, 4); }, {"dim 4", "rank 4"});
  }
}

TEST_CASE_TEMPLATE("tensor: slice and select against index arithmetic", T, float, double) {
  const shape s{3, 4, 5};
  const tensor<T> t = iota<T>(s);
  SUBCASE("slice keeps the dim, offsets the view, shares storage") {
    const tensor<T> sl = t.slice(1, 1, 3);
    CHECK(sl.shape() == shape{3, 2, 5});
    CHECK(sl.strides() == t.strides());
    CHECK(sl.offset() == 5);
    CHECK(sl.shares_storage(t));
    CHECK_FALSE(sl.is_contiguous());
    for (const auto& idx : all_indices(sl.shape()))
      CHECK(sl.at({idx[0], idx[1], idx[2]}) == T(flat({idx[0], idx[1] + 1, idx[2]}, s)));
    CHECK(t.slice(0, 1, 3).is_contiguous()); // a slice of the leading dim stays contiguous
    CHECK(t.slice(-1, 2, 5).shape() == shape{3, 4, 3});
    CHECK(t.slice(2, 3, 3).numel() == 0); // empty slice is allowed
  }
  SUBCASE("select drops the dim") {
    const tensor<T> se = t.select(1, 2);
    CHECK(se.shape() == shape{3, 5});
    CHECK(se.strides() == shape{20, 1});
    CHECK(se.offset() == 10);
    for (const auto& idx : all_indices(se.shape())) CHECK(se.at({idx[0], idx[1]}) == T(flat({idx[0], 2, idx[1]}, s)));
    const tensor<T> last = t.select(-1, 4);
    CHECK(last.shape() == shape{3, 4});
    CHECK(last.at({2, 3}) == t.at({2, 3, 4}));
    const tensor<T> scalar = t.select(0, 2).select(0, 1).select(0, 3);
    CHECK(scalar.rank() == 0);
    CHECK(scalar.item() == t.at({2, 1, 3}));
  }
  SUBCASE("views compose: slice of a transpose of a select") {
    const tensor<T> v = t.select(0, 1).transpose(0, 1).slice(0, 1, 4).slice(1, 2, 4); // (3,2)
    CHECK(v.shape() == shape{3, 2});
    for (std::int64_t i = 0; i < 3; ++i)
      for (std::int64_t j = 0; j < 2; ++j) CHECK(v.at({i, j}) == t.at({1, j + 2, i + 1}));
    const std::vector<T> vals = v.to_vector();
    CHECK(vals.size() == 6);
    CHECK(vals[3] == t.at({1, 3, 2})); // row 1, col 1 of the view
  }
  SUBCASE("writes through slice/select are visible and stay in bounds") {
    tensor<T> base = t.clone();
    tensor<T> sl = base.slice(2, 1, 3);
    for (const auto& idx : all_indices(sl.shape())) sl.at({idx[0], idx[1], idx[2]}) = T(-1);
    for (const auto& idx : all_indices(s)) {
      const bool inside = idx[2] >= 1 && idx[2] < 3;
      CHECK(base.at({idx[0], idx[1], idx[2]}) == (inside ? T(-1) : T(flat(idx, s))));
    }
    base.select(0, 2).at({3, 4}) = T(-9);
    CHECK(base.data()[flat({2, 3, 4}, s)] == T(-9));
  }
  SUBCASE("errors name slice and the shape") {
    check_error([&] { (void)t.slice(1, 2, 5); }, {"[minibert.slice]", "[2,5)", "dim 1", "(3,4,5)"});
    check_error([&] { (void)t.slice(1, 3, 2); }, {"[minibert.slice]", "[3,2)", "(3,4,5)"});
    check_error([&] { (void)t.slice(0, -1, 2); }, {"[minibert.slice]", "[-1,2)"});
    check_error([&] { (void)t.slice(3, 0, 1); }, {"dim 3", "rank 3"});
    check_error([&] { (void)t.select(0, 3); }, {"[minibert.slice]", "dim 0", "(3,4,5)"});
    check_error([&] { (void)t.select(2, -1); }, {"[minibert.slice]", "dim 2"});
  }
}

TEST_CASE_TEMPLATE("tensor: contiguous and clone", T, float, double) {
  const tensor<T> t = iota<T>({3, 4});
  SUBCASE("contiguous of a contiguous tensor is the same view") {
    const tensor<T> c = t.contiguous();
    CHECK(c.shares_storage(t));
    CHECK(c.data() == t.data());
  }
  SUBCASE("contiguous of a view copies in row-major order") {
    const tensor<T> v = t.transpose(0, 1).slice(0, 1, 3); // (2,3)
    const tensor<T> c = v.contiguous();
    CHECK_FALSE(c.shares_storage(t));
    CHECK(c.is_contiguous());
    CHECK(c.shape() == shape{2, 3});
    CHECK(c.offset() == 0);
    for (std::int64_t i = 0; i < 2; ++i)
      for (std::int64_t j = 0; j < 3; ++j) CHECK(c.data()[i * 3 + j] == t.at({j, i + 1}));
  }
  SUBCASE("clone is independent both ways") {
    tensor<T> src = t.clone();
    tensor<T> c = src.clone();
    CHECK_FALSE(c.shares_storage(src));
    CHECK(c.to_vector() == src.to_vector());
    c.at({0, 0}) = T(-1);
    CHECK(src.at({0, 0}) == T(0));
    src.at({2, 3}) = T(-2);
    CHECK(c.at({2, 3}) == T(11));
  }
  SUBCASE("clone of a view holds only the view's elements") {
    const tensor<T> c = t.slice(1, 1, 3).clone();
    CHECK(c.storage_ptr()->size() == 6);
    CHECK(test::values(c) == std::vector<double>{1, 2, 5, 6, 9, 10});
  }
  SUBCASE("copies of a tensor handle alias the same storage (like torch.Tensor)") {
    tensor<T> a = t.clone();
    tensor<T> b = a;
    b.at({1, 1}) = T(99);
    CHECK(a.at({1, 1}) == T(99));
    CHECK(a.storage_ptr().use_count() == 2);
  }
  SUBCASE("views keep the storage alive") {
    tensor<T> v;
    {
      const tensor<T> owner = iota<T>({4, 4});
      v = owner.select(0, 3);
    }
    CHECK(test::values(v) == std::vector<double>{12, 13, 14, 15});
  }
}

TEST_CASE("host caching allocator: large blocks are reused by size class, and the reservation stays bounded") {
  auto& a = minibert::cpu::host_allocator::instance();
  if (!a.caching()) {
    MESSAGE("[minibert-skip] the host allocator does not cache in this build (AddressSanitizer or MINIBERT_CPU_CACHING=0)");
    return;
  }
  a.empty_cache();
  const std::size_t mb = std::size_t(1) << 20;
  void* p = a.allocate(12 * mb + 100);
  a.deallocate(p);
  CHECK(a.cached_bytes() >= 12 * mb);
  void* q = a.allocate(12 * mb + 5000); // the same size class: the cached block comes back
  CHECK(q == p);
  a.deallocate(q);
  void* r = a.allocate(12 * mb - 200000); // a shorter batch, one class lower: the next class's block is taken
  CHECK(r == p);
  a.deallocate(r);
  // a request far from every cached size: the cache is trimmed first, so live + cached stays within 9/8 of the peak
  // of live bytes (160 MB here; this process has had no larger one)
  std::vector<void*> big;
  for (int i = 0; i < 4; ++i) big.push_back(a.allocate(40 * mb));
  const std::size_t peak = a.live_bytes();
  for (void* b : big) a.deallocate(b);
  void* other = a.allocate(150 * mb);
  CHECK(a.live_bytes() + a.cached_bytes() <= peak + peak / 8); // without the trim: 160 cached + 152 live
  a.deallocate(other);
  a.empty_cache();
  CHECK(a.cached_bytes() == 0);
}

} // namespace test_tensor
