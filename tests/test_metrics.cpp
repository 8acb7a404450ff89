// SPDX-License-Identifier: MIT
// minibert/metrics.hpp against scikit-learn's definitions (precision_recall_fscore_support, zero_division=0,
// labels=None), written out independently here: a hand-computed example with zero-division classes, and random
// cases against a loop-per-class reference.
#include <doctest/doctest.h>

#include <cmath>   // abs
#include <cstdint> // int64_t, uint64_t
#include <set>     // set
#include <string>  // string
#include <vector>  // vector

#include <minibert/metrics.hpp>

namespace test_metrics { // each test file in its own namespace: a test group compiles as one unit

namespace {

using ids = std::vector<std::int64_t>;

// The reference: scikit-learn's formulas, one class at a time, straight from the arrays.
struct reference {
  double accuracy, p_macro, r_macro, f_macro, p_weighted, r_weighted, f_weighted;
  std::vector<double> p, r, f;
  std::vector<std::int64_t> support;
};

reference sklearn_reference(const ids& pred, const ids& y, std::int64_t k) {
  reference out{};
  const double n = static_cast<double>(y.size());
  double correct = 0;
  for (std::size_t i = 0; i < y.size(); ++i) correct += pred[i] == y[i];
  out.accuracy = y.empty() ? 0 : correct / n;
  std::set<std::int64_t> present(y.begin(), y.end()); // labels=None: the sorted union of labels and predictions
  present.insert(pred.begin(), pred.end());
  for (std::int64_t c = 0; c < k; ++c) {
    double tp = 0, fp = 0, fn = 0;
    for (std::size_t i = 0; i < y.size(); ++i) {
      tp += pred[i] == c && y[i] == c;
      fp += pred[i] == c && y[i] != c;
      fn += pred[i] != c && y[i] == c;
    }
    const double p = tp + fp > 0 ? tp / (tp + fp) : 0; // zero_division=0
    const double r = tp + fn > 0 ? tp / (tp + fn) : 0;
    const double f = p + r > 0 ? 2 * p * r / (p + r) : 0;
    out.p.push_back(p);
    out.r.push_back(r);
    out.f.push_back(f);
    out.support.push_back(static_cast<std::int64_t>(tp + fn));
    if (present.count(c)) {
      out.p_macro += p / static_cast<double>(present.size());
      out.r_macro += r / static_cast<double>(present.size());
      out.f_macro += f / static_cast<double>(present.size());
    }
    if (!y.empty()) {
      out.p_weighted += p * (tp + fn) / n;
      out.r_weighted += r * (tp + fn) / n;
      out.f_weighted += f * (tp + fn) / n;
    }
  }
  return out;
}

void check_against_reference(const ids& pred, const ids& y, std::size_t k) {
  const auto m = minibert::compute_classification_metrics(pred, y, k);
  const reference ref = sklearn_reference(pred, y, static_cast<std::int64_t>(k));
  const double tol = 1e-12;
  CHECK(std::abs(m.accuracy - ref.accuracy) < tol);
  CHECK(std::abs(m.precision_macro - ref.p_macro) < tol);
  CHECK(std::abs(m.recall_macro - ref.r_macro) < tol);
  CHECK(std::abs(m.f1_macro - ref.f_macro) < tol);
  CHECK(std::abs(m.precision_weighted - ref.p_weighted) < tol);
  CHECK(std::abs(m.recall_weighted - ref.r_weighted) < tol);
  CHECK(std::abs(m.f1_weighted - ref.f_weighted) < tol);
  CHECK(std::abs(m.recall_weighted - m.accuracy) < tol); // weighted recall is accuracy
  for (std::size_t c = 0; c < k; ++c) {
    CHECK(std::abs(m.per_class[c].precision - ref.p[c]) < tol);
    CHECK(std::abs(m.per_class[c].recall - ref.r[c]) < tol);
    CHECK(std::abs(m.per_class[c].f1 - ref.f[c]) < tol);
    CHECK(m.per_class[c].support == ref.support[c]);
  }
  std::int64_t total = 0;
  for (const auto& row : m.confusion)
    for (std::int64_t v : row) total += v;
  CHECK(total == static_cast<std::int64_t>(y.size()));
}

std::uint64_t splitmix(std::uint64_t& s) {
  std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

} // namespace

TEST_CASE("hand example: zero-division classes (never predicted, never true, absent)") {
  // class 2 is never predicted, class 3 never true, class 4 in neither (5 labels)
  const ids y = {0, 0, 0, 1, 1, 2, 2, 2, 2, 1};
  const ids p = {0, 1, 0, 1, 1, 1, 0, 3, 1, 1};
  const auto m = minibert::compute_classification_metrics(p, y, 5);
  CHECK(m.count == 10);
  CHECK(m.correct == 5);
  CHECK(m.accuracy == doctest::Approx(0.5));
  CHECK(m.per_class[0].precision == doctest::Approx(2.0 / 3));
  CHECK(m.per_class[1].precision == doctest::Approx(0.5));
  CHECK(m.per_class[1].recall == doctest::Approx(1.0));
  CHECK(m.per_class[1].f1 == doctest::Approx(2.0 / 3));
  CHECK(m.per_class[2].precision == 0.0); // zero division
  CHECK(m.per_class[2].recall == 0.0);
  CHECK(m.per_class[3].recall == 0.0); // zero division
  CHECK(m.per_class[3].predicted == 1);
  CHECK(m.per_class[4].support == 0);
  // macro over the 4 classes present in labels or predictions (scikit-learn's labels=None), not 5
  CHECK(m.precision_macro == doctest::Approx(7.0 / 24));
  CHECK(m.recall_macro == doctest::Approx(5.0 / 12));
  CHECK(m.f1_macro == doctest::Approx(1.0 / 3));
  // weighted by support 3, 3, 4, 0, 0
  CHECK(m.precision_weighted == doctest::Approx(0.35));
  CHECK(m.recall_weighted == doctest::Approx(0.5));
  CHECK(m.f1_weighted == doctest::Approx(0.4));
  const std::vector<std::vector<std::int64_t>> confusion = {
      {2, 1, 0, 0, 0}, {0, 3, 0, 0, 0}, {1, 2, 0, 1, 0}, {0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}};
  CHECK(m.confusion == confusion);
  check_against_reference(p, y, 5);
}

TEST_CASE("random cases against the reference") {
  std::uint64_t s = 12345;
  for (std::size_t k : {2u, 3u, 5u, 7u}) {
    for (std::size_t n : {1u, 17u, 1000u}) {
      ids y, p;
      for (std::size_t i = 0; i < n; ++i) {
        y.push_back(static_cast<std::int64_t>(splitmix(s) % k));
        // mostly right, sometimes a random class; never predict the last class, to keep zero divisions around
        const bool right = splitmix(s) % 4 != 0;
        p.push_back(right ? y.back() : static_cast<std::int64_t>(splitmix(s) % (k - 1)));
      }
      CAPTURE(k);
      CAPTURE(n);
      check_against_reference(p, y, k);
    }
  }
}

TEST_CASE("perfect and empty inputs") {
  const ids y = {1, 0, 1};
  const auto m = minibert::compute_classification_metrics(y, y, 2);
  CHECK(m.accuracy == 1.0);
  CHECK(m.f1_weighted == 1.0);
  CHECK(m.f1_macro == 1.0);
  const auto e = minibert::compute_classification_metrics(ids{}, ids{}, 3);
  CHECK(e.count == 0);
  CHECK(e.accuracy == 0.0);
  CHECK(e.f1_macro == 0.0);
  CHECK(e.confusion.size() == 3);
}

TEST_CASE("to_json: transformers' names") {
  const ids y = {0, 0, 1, 1, 2};
  const ids p = {0, 1, 1, 1, 2};
  const auto m = minibert::compute_classification_metrics(p, y, 3);
  const auto j = m.to_json("test", {"negative", "neutral", "positive"});
  CHECK(j.at("test_accuracy").get<double>() == doctest::Approx(0.8));
  CHECK(j.at("test_recall").get<double>() == doctest::Approx(0.8)); // weighted
  CHECK(j.at("test_precision").get<double>() == doctest::Approx(m.precision_weighted));
  CHECK(j.at("test_f1").get<double>() == doctest::Approx(m.f1_weighted));
  CHECK(j.at("test_f1_macro").get<double>() == doctest::Approx(m.f1_macro));
  CHECK(j.contains("test_precision_macro"));
  CHECK(j.contains("test_recall_macro"));
  CHECK(j.at("test_confusion_matrix") == nlohmann::json::parse("[[1,1,0],[0,2,0],[0,0,1]]"));
  const auto& pc = j.at("test_per_class");
  REQUIRE(pc.size() == 3);
  CHECK(pc[1].at("label") == "neutral");
  CHECK(pc[1].at("support") == 2);
  CHECK(pc[1].at("precision").get<double>() == doctest::Approx(2.0 / 3));
  CHECK(m.to_json().contains("eval_accuracy"));
  CHECK(m.to_json().at("eval_per_class")[2].at("label") == "2");
}

TEST_CASE("errors") {
  auto fails = [](auto&& f, const std::string& part) {
    std::string what;
    try {
      f();
    } catch (const minibert::error& e) {
      what = e.what();
    }
    CHECK_MESSAGE(what.find("[minibert.metrics]") == 0, what);
    CHECK_MESSAGE(what.find(part) != std::string::npos, what);
  };
  fails([] { minibert::compute_classification_metrics(ids{0, 1}, ids{0}, 2); }, "2 predictions for 1 labels");
  fails([] { minibert::compute_classification_metrics(ids{0}, ids{2}, 2); }, "label 2 at index 0 out of range [0, 2)");
  fails([] { minibert::compute_classification_metrics(ids{-1}, ids{0}, 2); }, "prediction -1 at index 0");
  fails([] { minibert::compute_classification_metrics(ids{}, ids{}, 0); }, "num_labels is 0");
  fails([] { minibert::compute_classification_metrics(ids{0}, ids{0}, 2).to_json("eval", {"a"}); }, "1 label names for 2");
}

} // namespace test_metrics
